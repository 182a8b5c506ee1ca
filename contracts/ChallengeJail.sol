// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

import {IChallengeJail} from "./interfaces/IChallengeJail.sol";
import {INodeRegistry} from "./interfaces/INodeRegistry.sol";
import {IOracleHub} from "./interfaces/IOracleHub.sol";

/**
 * @title ChallengeJail
 * @notice Permissionless jailing of nodes that keep failing the oracles' work challenges,
 * on attested evidence. See {IChallengeJail}.
 * @dev Design decisions:
 * - Why a contract of its own: NodeRegistry and OracleHub stay small, and the power it
 *   needs is exactly the registry's JAILER_ROLE (unjailing stays with the guardian, who
 *   holds the same role and judges appeals).
 * - The rule counts EPOCHS with a failed challenge, not failed challenges: one bad epoch
 *   (a driver crash, a throttled GPU) may fail several challenges at once and is already
 *   punished by the leaf (no GPU-hours credited for it); jailing freezes the operator's
 *   business and is for a pattern that repeats across epochs. Hence failingEpochsToJail
 *   is at least 2.
 * - The window is in epoch numbers back from the hub's last attested epoch, so evidence
 *   is about recent behaviour; an epoch nobody attested is simply not evidence.
 * - Evidence is used once: jailing records the newest epoch it used, and later evidence
 *   for the node must be from later epochs, so the guardian's unjail is not undone by
 *   resubmitting the same leaves.
 * - Storage packing: _failingEpochsToJail (uint16) | _windowEpochs (uint16) in one slot.
 */
contract ChallengeJail is AccessControl, IChallengeJail {
    /// @notice Longest window (30 days of hourly epochs; PoolLoans' run bound).
    uint16 public constant MAX_WINDOW_EPOCHS = 720;

    INodeRegistry private immutable _registry;
    IOracleHub private immutable _hub;

    uint16 private _failingEpochsToJail;
    uint16 private _windowEpochs;
    mapping(uint256 nodeId => uint64 epoch) private _usedThroughEpoch;

    /**
     * @param admin DEFAULT_ADMIN_ROLE (the rule); the timelock after the hand-over.
     * @param registry_ The registry to jail in (grant this contract JAILER_ROLE there).
     * @param hub_ The hub whose attested roots prove the leaves.
     * @param failingEpochsToJail_ Epochs with a failed challenge that jail a node.
     * @param windowEpochs_ How many epochs back from the last attested one evidence may reach.
     */
    constructor(
        address admin,
        INodeRegistry registry_,
        IOracleHub hub_,
        uint16 failingEpochsToJail_,
        uint16 windowEpochs_
    ) {
        _registry = registry_;
        _hub = hub_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _setParams(failingEpochsToJail_, windowEpochs_);
    }

    /// @inheritdoc IChallengeJail
    function jail(IOracleHub.NodeLeaf[] calldata leaves, bytes32[][] calldata proofs)
        external
        returns (bytes32 evidenceHash)
    {
        uint256 count = leaves.length;
        if (count == 0 || proofs.length != count) revert ChallengeJailInvalidEvidence(count, proofs.length);
        uint256 nodeId = leaves[0].nodeId;
        // Trusted system contracts, view calls only.
        INodeRegistry.NodeStatus status = _registry.nodeStatus(nodeId);
        if (status != INodeRegistry.NodeStatus.Active) revert ChallengeJailNodeNotActive(nodeId, status);
        (uint64[] memory epochs, uint16[] memory failed, bytes32[] memory hashes, uint256 failing) =
            _readEvidence(nodeId, leaves, proofs);
        uint256 required = _failingEpochsToJail;
        if (failing < required) revert ChallengeJailNotEnoughFailures(failing, required);

        evidenceHash = keccak256(abi.encodePacked(hashes));
        _usedThroughEpoch[nodeId] = epochs[count - 1];
        emit NodeJailedForChallenges(nodeId, evidenceHash, msg.sender, epochs, failed);
        // External call after the state write: the registry is trusted and checks the status again.
        _registry.jail(nodeId, evidenceHash);
    }

    /// @inheritdoc IChallengeJail
    function setParams(uint16 failingEpochsToJail_, uint16 windowEpochs_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setParams(failingEpochsToJail_, windowEpochs_);
    }

    /// @inheritdoc IChallengeJail
    function params() external view returns (uint16 failingEpochsToJail, uint16 windowEpochs) {
        return (_failingEpochsToJail, _windowEpochs);
    }

    /// @inheritdoc IChallengeJail
    function usedThroughEpoch(uint256 nodeId) external view returns (uint64) {
        return _usedThroughEpoch[nodeId];
    }

    /// @inheritdoc IChallengeJail
    function registry() external view returns (INodeRegistry) {
        return _registry;
    }

    /// @inheritdoc IChallengeJail
    function hub() external view returns (IOracleHub) {
        return _hub;
    }

    function _setParams(uint16 failingEpochsToJail_, uint16 windowEpochs_) private {
        if (failingEpochsToJail_ < 2 || failingEpochsToJail_ > windowEpochs_ || windowEpochs_ > MAX_WINDOW_EPOCHS) {
            revert ChallengeJailInvalidParams(failingEpochsToJail_, windowEpochs_, MAX_WINDOW_EPOCHS);
        }
        _failingEpochsToJail = failingEpochsToJail_;
        _windowEpochs = windowEpochs_;
        emit JailParamsSet(failingEpochsToJail_, windowEpochs_);
    }

    /// @dev Checks every leaf (one node, ascending fresh unused epochs, attested) and returns
    /// the epochs, failed counts and leaf hashes in order, and how many leaves have failures.
    function _readEvidence(uint256 nodeId, IOracleHub.NodeLeaf[] calldata leaves, bytes32[][] calldata proofs)
        private
        view
        returns (uint64[] memory epochs, uint16[] memory failed, bytes32[] memory hashes, uint256 failing)
    {
        uint256 count = leaves.length;
        // Trusted system contract, view call.
        uint64 oldest = _oldestEpoch(_hub.lastAttestedEpoch());
        uint64 used = _usedThroughEpoch[nodeId];
        epochs = new uint64[](count);
        failed = new uint16[](count);
        hashes = new bytes32[](count);
        uint64 previous = 0;
        for (uint256 i = 0; i < count; ++i) {
            IOracleHub.NodeLeaf calldata leaf = leaves[i];
            uint64 epoch = leaf.epoch;
            if (leaf.nodeId != nodeId) revert ChallengeJailForeignNode(nodeId, leaf.nodeId);
            if (epoch <= previous) revert ChallengeJailEpochsNotAscending(previous, epoch);
            if (epoch < oldest) revert ChallengeJailStaleEpoch(epoch, oldest);
            if (epoch <= used) revert ChallengeJailEvidenceUsed(nodeId, epoch, used);
            // slither-disable-next-line calls-loop (the trusted hub; at most windowEpochs views)
            if (!_hub.verifyLeaf(leaf, proofs[i])) revert ChallengeJailInvalidProof(nodeId, epoch);
            // slither-disable-next-line calls-loop (the hub's own leaf hash: one encoder)
            hashes[i] = _hub.leafHash(leaf);
            epochs[i] = epoch;
            failed[i] = leaf.challengesFailed;
            if (leaf.challengesFailed != 0) ++failing;
            previous = epoch;
        }
    }

    /// @dev First epoch of the window ending at `last` (the hub's last attested epoch).
    function _oldestEpoch(uint64 last) private view returns (uint64) {
        uint64 window = _windowEpochs;
        return last >= window ? last - window + 1 : 1;
    }
}
