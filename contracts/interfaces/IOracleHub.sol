// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {INodeRegistry} from "./INodeRegistry.sol";

/**
 * @title IOracleHub
 * @notice Quorum-signed epoch attestations of node telemetry.
 *
 * Once per epoch an M-of-N oracle set signs (EIP-712) one commitment for the
 * whole fleet: the Merkle root over one leaf per node plus fleet totals. Consumers
 * prove a node's figures against the stored root with {verifyLeaf}/{requireLeaf},
 * so the cost of attesting is O(1) in the number of nodes.
 *
 * Epochs are numbered from 1: epoch `e` covers
 * `[genesis + (e - 1) * epochLength, genesis + e * epochLength)` and can be
 * attested once it has ended. Epoch 0 means "none". Epochs are attested in
 * strictly increasing order (an epoch never attested before a newer one is
 * never attested): a leaf's cumulative counters build on the node's newest leaf
 * attested for an earlier epoch, which must not change once a later leaf used it.
 *
 * Units: ratios in basis points (1/10_000); energy in joules; delivered
 * capacity in milli-GPU-hours (1 GPU-hour = 1_000 units; one GPU up for the
 * whole of a 60-second epoch delivers 16 units, rounded down); busy time in
 * GPU-seconds (GPUs × seconds × utilization).
 *
 * Leaf v2 follows OpenZeppelin's StandardMerkleTree convention:
 * `keccak256(bytes.concat(keccak256(abi.encode(nodeId, epoch, uptimeBps,
 * utilizationBps, sampleCoverageBps, utilizationCoverageBps, energyCoverageBps,
 * challengesPassed, challengesFailed, energyJoules, milliGpuHours,
 * cumMilliGpuHours, cumEnergyJoules, cumBusyGpuSeconds))))` with leaf encoding
 * `[uint256, uint64, uint16 ×7, uint64 ×5]` and sorted-pair hashing
 * (OpenZeppelin MerkleProof). The one off-chain encoder is gpucap/attestation.py.
 */
interface IOracleHub {
    /// @notice One node's measured figures for one epoch (a Merkle leaf, v2).
    /// @dev A coverage of 0 means the figure it covers is UNKNOWN (published as 0), never
    /// a measured zero: consumers must not read `utilizationBps` or `energyJoules` as idle
    /// or free when their coverage is 0.
    /// @param nodeId NodeRegistry id.
    /// @param epoch Epoch the figures describe.
    /// @param uptimeBps Share of the observed time the node was up and serving.
    /// @param utilizationBps Share of the node's observed GPU-time that was busy.
    /// @param sampleCoverageBps Share of the epoch's GPU-time the oracle observed.
    /// @param utilizationCoverageBps Share of the epoch's GPU-time with a known utilization.
    /// @param energyCoverageBps Share of the epoch's GPU-time whose energy is known (0: unknown).
    /// @param challengesPassed Work challenges the node answered correctly in the epoch.
    /// @param challengesFailed Work challenges it failed (no GPU-hours are credited then).
    /// @param energyJoules Energy the node drew during the epoch.
    /// @param milliGpuHours GPU capacity delivered (GPUs up × hours × 1_000).
    /// @param cumMilliGpuHours Sum of `milliGpuHours` over the node's attested leaves up to this one.
    /// @param cumEnergyJoules Sum of `energyJoules` over the node's attested leaves up to this one.
    /// @param cumBusyGpuSeconds Busy GPU-seconds (utilization-weighted) summed the same way.
    struct NodeLeaf {
        uint256 nodeId;
        uint64 epoch;
        uint16 uptimeBps;
        uint16 utilizationBps;
        uint16 sampleCoverageBps;
        uint16 utilizationCoverageBps;
        uint16 energyCoverageBps;
        uint16 challengesPassed;
        uint16 challengesFailed;
        uint64 energyJoules;
        uint64 milliGpuHours;
        uint64 cumMilliGpuHours;
        uint64 cumEnergyJoules;
        uint64 cumBusyGpuSeconds;
    }

    /// @notice What the oracles sign for an epoch (EIP-712 struct `EpochReport`).
    /// @param configVersion The oracle-set version the signers were members of.
    struct EpochReport {
        uint64 epoch;
        bytes32 root;
        uint32 nodeCount;
        uint64 totalEnergyJoules;
        uint64 totalMilliGpuHours;
        uint64 configVersion;
    }

    /// @notice What is stored per attested epoch.
    /// @dev Storage packing: root (slot 0) | nodeCount (uint32) + totalEnergyJoules (uint64)
    /// + totalMilliGpuHours (uint64) + attestedAt (uint64) = 28 bytes (slot 1).
    struct EpochAttestation {
        bytes32 root;
        uint32 nodeCount;
        uint64 totalEnergyJoules;
        uint64 totalMilliGpuHours;
        uint64 attestedAt;
    }

    /// @notice `oracle` joined the set; the configuration is now `configVersion`.
    event OracleAdded(address indexed oracle, uint64 configVersion);

    /// @notice `oracle` left the set; the configuration is now `configVersion`.
    event OracleRemoved(address indexed oracle, uint64 configVersion);

    /// @notice The quorum became `quorum` signatures; the configuration is now `configVersion`.
    event QuorumSet(uint8 quorum, uint64 configVersion);

    /// @notice Epoch `epoch` was attested with Merkle root `root` by a quorum, posted by `transmitter`.
    event EpochAttested(
        uint64 indexed epoch,
        bytes32 root,
        uint32 nodeCount,
        uint64 totalEnergyJoules,
        uint64 totalMilliGpuHours,
        uint64 configVersion,
        address indexed transmitter
    );

    /// @notice The genesis timestamp is zero or the epoch length is zero or above a year.
    error OracleInvalidEpochSchedule(uint64 genesisTimestamp, uint64 epochLengthSeconds);

    /// @notice The registry address is zero.
    error OracleInvalidRegistry();

    /// @notice `oracle` is the zero address or already a member.
    error OracleAlreadyMember(address oracle);

    /// @notice `oracle` is not a member of the set.
    error OracleNotMember(address oracle);

    /// @notice The set already holds `maxOracles` members.
    error OracleSetFull(uint256 maxOracles);

    /// @notice `quorum` is zero or above the `oracleCount` members of the set.
    error OracleInvalidQuorum(uint256 quorum, uint256 oracleCount);

    /// @notice The report names `configVersion` but the current one is `currentConfigVersion`.
    error OracleConfigVersionMismatch(uint64 configVersion, uint64 currentConfigVersion);

    /// @notice Epoch `epoch` is 0, which means "none" (epochs are numbered from 1).
    error OracleInvalidEpoch(uint64 epoch);

    /// @notice `epoch` was already attested, at block time `attestedAt` (its root is final).
    error OracleEpochAlreadyAttested(uint64 epoch, uint64 attestedAt);

    /// @notice `epoch` is not after `lastAttestedEpoch`, the newest attested epoch: epochs are
    /// attested in strictly increasing order (cumulative counters chain on earlier leaves).
    error OracleEpochNotAfterLast(uint64 epoch, uint64 lastAttestedEpoch);

    /// @notice `epoch` ends at `endsAt`, which is after the current block time.
    error OracleEpochNotEnded(uint64 epoch, uint256 endsAt);

    /// @notice The report's Merkle root is zero.
    error OracleEmptyRoot();

    /// @notice `nodeCount` is zero or above the `registeredNodes` known to the registry.
    error OracleNodeCountOutOfRange(uint32 nodeCount, uint256 registeredNodes);

    /// @notice Total energy `totalEnergyJoules` is above the bound `maxEnergyJoules` for the node count.
    error OracleEnergyOutOfRange(uint64 totalEnergyJoules, uint256 maxEnergyJoules);

    /// @notice Total delivered `totalMilliGpuHours` is above the bound `maxMilliGpuHours` for the node count.
    error OracleGpuHoursOutOfRange(uint64 totalMilliGpuHours, uint256 maxMilliGpuHours);

    /// @notice `signatures` were given, fewer than the `quorum` required.
    error OracleQuorumNotMet(uint256 signatures, uint256 quorum);

    /// @notice Signature number `index` is malformed (wrong length, high s, or unrecoverable).
    error OracleInvalidSignature(uint256 index);

    /// @notice Signature recovered to `signer`, which is not in the current oracle set.
    /// @dev A signature made for another chain, contract or configuration recovers
    /// to an unrelated address and therefore also ends here.
    error OracleUnknownSigner(address signer);

    /// @notice `signer` signed twice.
    error OracleDuplicateSigner(address signer);

    /// @notice Signers must be sorted strictly ascending; `signer` came after `previous`.
    error OracleSignersNotAscending(address previous, address signer);

    /// @notice The leaf of node `nodeId` for `epoch` is not in that epoch's attested tree.
    error OracleInvalidProof(uint256 nodeId, uint64 epoch);

    /// @notice The leaf of node `nodeId` for `epoch` carries a value outside its range.
    error OracleLeafOutOfRange(uint256 nodeId, uint64 epoch);

    // ------------------------------------------------------------------
    // Oracle set
    // ------------------------------------------------------------------

    /**
     * @notice Adds `oracle` to the set and bumps the configuration version.
     * @dev Signatures made under the previous version stop verifying.
     * Requirements: caller has ORACLE_ADMIN_ROLE; `oracle` non-zero and not a
     * member; the set holds fewer than MAX_ORACLES.
     */
    function addOracle(address oracle) external;

    /**
     * @notice Removes `oracle` from the set and bumps the configuration version.
     * Requirements: caller has ORACLE_ADMIN_ROLE; `oracle` is a member; the
     * remaining members can still meet the quorum (lower it first).
     */
    function removeOracle(address oracle) external;

    /**
     * @notice Sets the number of signatures a report needs and bumps the configuration version.
     * Requirements: caller has ORACLE_ADMIN_ROLE; 1 ≤ `quorum` ≤ number of oracles.
     */
    function setQuorum(uint8 quorum_) external;

    // ------------------------------------------------------------------
    // Attestation
    // ------------------------------------------------------------------

    /**
     * @notice Records `report` for its epoch if a quorum of the current oracles signed it.
     * @dev Anyone may transmit: the signatures are the authority. Each signature
     * is a 65-byte (r, s, v) ECDSA signature over the EIP-712 digest of `report`.
     * Epochs are attested in strictly increasing order; gaps are allowed (an epoch no
     * quorum attested is skipped for good once a later one is attested).
     * Requirements: `report.configVersion` is current; `report.epoch` is not 0
     * ({OracleInvalidEpoch}), was never attested ({OracleEpochAlreadyAttested}), is after
     * {lastAttestedEpoch} ({OracleEpochNotAfterLast}) and has ended ({OracleEpochNotEnded}); root non-zero; 1 ≤ nodeCount ≤ nodes in
     * the registry; totals within the per-node bounds × nodeCount; at least
     * `quorum` signatures from distinct current oracles, sorted by signer address.
     * Emits {EpochAttested}.
     */
    function attest(EpochReport calldata report, bytes[] calldata signatures) external;

    /**
     * @notice Whether `leaf` is in the attested tree of `leaf.epoch` and within range.
     * @dev False for an epoch never attested.
     */
    function verifyLeaf(NodeLeaf calldata leaf, bytes32[] calldata proof) external view returns (bool);

    /**
     * @notice Reverts unless `leaf` is in the attested tree of `leaf.epoch` and within range.
     * @dev For consumer contracts: reverts {OracleLeafOutOfRange} or {OracleInvalidProof}.
     */
    function requireLeaf(NodeLeaf calldata leaf, bytes32[] calldata proof) external view;

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @notice The Merkle leaf hash of `leaf` (StandardMerkleTree convention).
    function leafHash(NodeLeaf calldata leaf) external pure returns (bytes32);

    /// @notice The EIP-712 digest the oracles sign for `report` on this chain and contract.
    function reportDigest(EpochReport calldata report) external view returns (bytes32);

    /// @notice What was stored for `epoch` (all zero if never attested).
    function epochAttestation(uint64 epoch) external view returns (EpochAttestation memory);

    /// @notice The newest (highest-numbered) attested epoch, or 0 if none.
    /// @dev Not "every epoch up to it is attested": an epoch below it that is not attested
    /// never will be (attestation is in increasing order). Ask {epochAttestation} per epoch.
    function lastAttestedEpoch() external view returns (uint64);

    /**
     * @notice The newest attested epoch in [fromEpoch, toEpoch], or 0 if none (or the range is
     * empty). Below {lastAttestedEpoch}, 0 is final: those epochs were passed over for good.
     * @dev Reads one slot per epoch (an epoch's root), newest first, up to the first found:
     * the caller bounds the range.
     */
    function newestAttestedIn(uint64 fromEpoch, uint64 toEpoch) external view returns (uint64);

    /// @notice Block time at which the newest epoch was attested, or 0 if none.
    function lastAttestedAt() external view returns (uint64);

    /**
     * @notice Whether the newest attested data is older than `maxAgeSeconds`.
     * @dev Age is measured from the END of the last attested epoch (what the data
     * describes), not from when it was posted: a late catch-up post of an old epoch
     * must not look fresh. True when nothing was ever attested.
     */
    function isStale(uint256 maxAgeSeconds) external view returns (bool);

    /// @notice The epoch the current block time falls in (0 before genesis).
    function currentEpoch() external view returns (uint64);

    /// @notice Timestamp at which `epoch` ends (its report may be posted from then on).
    function epochEnd(uint64 epoch) external view returns (uint256);

    /// @notice Start of epoch 1.
    function genesisTimestamp() external view returns (uint64);

    /// @notice Length of every epoch, in seconds.
    function epochLengthSeconds() external view returns (uint64);

    /// @notice Upper bound on one node's `milliGpuHours` in one epoch.
    function maxNodeMilliGpuHours() external view returns (uint256);

    /// @notice Upper bound on one node's `energyJoules` in one epoch.
    function maxNodeEnergyJoules() external view returns (uint256);

    /// @notice The current oracle set, in insertion order (with swap-and-pop on removal).
    function oracles() external view returns (address[] memory);

    /// @notice Whether `account` is in the current oracle set.
    function isOracle(address account) external view returns (bool);

    /// @notice Signatures a report needs.
    function quorum() external view returns (uint8);

    /// @notice Version of the oracle-set configuration; bumped by every change to it.
    function configVersion() external view returns (uint64);

    /// @notice The NodeRegistry whose node count bounds a report's node count.
    function registry() external view returns (INodeRegistry);
}
