// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

/**
 * @title GpucapTimelock
 * @notice The admin of every gpucap contract outside the dev chain: OpenZeppelin's
 * TimelockController as it is. Every power over users' money or data (roles, the oracle
 * set and quorum, GPU classes, risk parameters, fees and splits, pool bindings, the
 * treasury) is a call this contract makes after `minDelay`, announced by its CallScheduled
 * event with the call's target, data and time of effect, and cancellable until then.
 * @dev Self-administered (no admin address): changing the delay or the proposers itself
 * waits the delay. Executors: anyone (address(0)), so a scheduled change cannot be held
 * back by its proposer once it is due.
 */
contract GpucapTimelock is TimelockController {
    /**
     * @param minDelay Seconds between scheduling a call and executing it.
     * @param proposers May schedule and cancel calls (the operations multisig).
     */
    constructor(uint256 minDelay, address[] memory proposers)
        TimelockController(minDelay, proposers, _anyone(), address(0))
    {}

    function _anyone() private pure returns (address[] memory executors) {
        executors = new address[](1); // address(0): EXECUTOR_ROLE open to everyone
    }
}
