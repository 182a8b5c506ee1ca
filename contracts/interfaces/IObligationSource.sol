// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/**
 * @title IObligationSource
 * @notice A contract that creates obligations a node's bond stands behind (a pool loan, say)
 * and that the NodeRegistry asks before it lets the node exit or its bond be withdrawn.
 * Bond locked by a BOND_LOCKER (CapacityToken's offers and reservations) is counted by the
 * registry itself; a source answers for what is owed without a lock.
 */
interface IObligationSource {
    /// @notice True while node `nodeId` owes something through this contract (for a pool:
    /// principal outstanding or arrears unpaid). Must not revert for any registered node id.
    function hasOpenObligations(uint256 nodeId) external view returns (bool);
}
