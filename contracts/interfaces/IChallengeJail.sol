// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {INodeRegistry} from "./INodeRegistry.sol";
import {IOracleHub} from "./IOracleHub.sol";

/**
 * @title IChallengeJail
 * @notice Jails a node whose attested leaves show repeated failed work challenges.
 * Anyone submits the evidence: attested leaves of one node, of distinct epochs in
 * ascending order, all within the last `windowEpochs` attested epochs. When at least
 * `failingEpochsToJail` of them carry a failed challenge, the node is jailed in the
 * registry with the evidence's hash (keccak256 of the leaf hashes, in epoch order) as
 * the reason. A leaf once used as evidence can never jail the node again: after the
 * guardian unjails it, only failures in later epochs count.
 */
interface IChallengeJail {
    /// @notice Node `nodeId` was jailed by `reporter` on the attested leaves of `epochs`,
    /// whose failed-challenge counts are `failed`; `evidenceHash` is the registry's reason.
    event NodeJailedForChallenges(
        uint256 indexed nodeId,
        bytes32 indexed evidenceHash,
        address indexed reporter,
        uint64[] epochs,
        uint16[] failed
    );

    /// @notice The rule changed: `failingEpochsToJail` epochs with a failed challenge among
    /// the last `windowEpochs` attested epochs jail a node.
    event JailParamsSet(uint16 failingEpochsToJail, uint16 windowEpochs);

    /// @notice No leaves, or not one proof per leaf (`leaves`, `proofs`).
    error ChallengeJailInvalidEvidence(uint256 leaves, uint256 proofs);

    /// @notice A leaf is of node `nodeId`, the evidence is about node `expectedNodeId`.
    error ChallengeJailForeignNode(uint256 expectedNodeId, uint256 nodeId);

    /// @notice Epochs must be distinct and ascending: `epoch` follows `previousEpoch`.
    error ChallengeJailEpochsNotAscending(uint64 previousEpoch, uint64 epoch);

    /// @notice `epoch` is older than `oldestEpoch`, the first epoch of the window.
    error ChallengeJailStaleEpoch(uint64 epoch, uint64 oldestEpoch);

    /// @notice The leaf of `epoch` already jailed node `nodeId` (evidence is used up through
    /// `usedThroughEpoch`).
    error ChallengeJailEvidenceUsed(uint256 nodeId, uint64 epoch, uint64 usedThroughEpoch);

    /// @notice The leaf of node `nodeId` for `epoch` is not attested (or out of range).
    error ChallengeJailInvalidProof(uint256 nodeId, uint64 epoch);

    /// @notice Only `failingEpochs` of the leaves carry a failed challenge; `required` jail.
    error ChallengeJailNotEnoughFailures(uint256 failingEpochs, uint256 required);

    /// @notice Node `nodeId` is in `status`, not Active (already jailed, exiting or exited).
    error ChallengeJailNodeNotActive(uint256 nodeId, INodeRegistry.NodeStatus status);

    /// @notice The rule is out of bounds: 2 ≤ failingEpochsToJail ≤ windowEpochs ≤ `maxWindowEpochs`.
    error ChallengeJailInvalidParams(uint16 failingEpochsToJail, uint16 windowEpochs, uint16 maxWindowEpochs);

    /**
     * @notice Jails `leaves[0].nodeId` on the evidence of `leaves` (with `proofs[i]` the
     * Merkle proof of `leaves[i]` against its epoch's attested root) and returns the
     * evidence's hash. Anyone may call.
     * Requirements: one node; epochs strictly ascending, each after the last one already
     * used to jail the node and within the last `windowEpochs` attested epochs; every leaf
     * attested; at least `failingEpochsToJail` leaves with `challengesFailed > 0`; the node
     * is Active.
     */
    function jail(IOracleHub.NodeLeaf[] calldata leaves, bytes32[][] calldata proofs)
        external
        returns (bytes32 evidenceHash);

    /**
     * @notice Sets the rule for evidence submitted from now on.
     * Requirements: caller has DEFAULT_ADMIN_ROLE; 2 ≤ failingEpochsToJail ≤ windowEpochs
     * ≤ MAX_WINDOW_EPOCHS.
     */
    function setParams(uint16 failingEpochsToJail, uint16 windowEpochs) external;

    /// @notice The rule: epochs with a failed challenge that jail, and the window they must be in.
    function params() external view returns (uint16 failingEpochsToJail, uint16 windowEpochs);

    /// @notice The newest epoch whose leaf jailed node `nodeId` (0: never jailed here).
    function usedThroughEpoch(uint256 nodeId) external view returns (uint64);

    /// @notice The registry this contract jails in (it holds JAILER_ROLE there).
    function registry() external view returns (INodeRegistry);

    /// @notice The hub whose attested roots the leaves are proven against.
    function hub() external view returns (IOracleHub);
}
