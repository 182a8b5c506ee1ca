// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/**
 * @title MockNodeCount
 * @notice Test double for the one NodeRegistry view OracleHub reads (`nodeCount`),
 * so OracleHub tests can attest fleets of any size (e.g. 10,000 nodes for the gas
 * figures) without registering every node. Never deployed by scripts/deploy.py.
 */
contract MockNodeCount {
    uint256 public nodeCount;

    constructor(uint256 count) {
        nodeCount = count;
    }
}
