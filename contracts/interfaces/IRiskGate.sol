// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/**
 * @title IRiskGate
 * @notice What minting and financing ask the risk side (EpochSettlement) before they let a node
 * take on more: whether it broke its covenant, and how much financing its collateral carries.
 */
interface IRiskGate {
    /// @notice True while node `nodeId` is flagged (DSCR under covenant or LTV over the cap at its
    /// last settlement): it may not publish new capacity offers nor raise more financing.
    function isFlagged(uint256 nodeId) external view returns (bool);

    /// @notice The most a pool may have raised for node `nodeId` now: maxLtvBps × depreciated
    /// value / 10_000 (RiskModel.raiseCap), and 0 while the node is flagged.
    function raiseCap(uint256 nodeId) external view returns (uint256);
}
