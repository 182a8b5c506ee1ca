// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {IObligationSource} from "../interfaces/IObligationSource.sol";

/// @notice Test-only obligation source whose answer per node the test sets, so the registry's
/// exit checks can be exercised apart from the settlement contract that answers in deployments.
contract ObligationSourceStub is IObligationSource {
    mapping(uint256 nodeId => bool) public owing;

    function setOwing(uint256 nodeId, bool value) external {
        owing[nodeId] = value;
    }

    function hasOpenObligations(uint256 nodeId) external view returns (bool) {
        return owing[nodeId];
    }
}
