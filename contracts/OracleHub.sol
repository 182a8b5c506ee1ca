// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";

import {INodeRegistry} from "./interfaces/INodeRegistry.sol";
import {IOracleHub} from "./interfaces/IOracleHub.sol";

/**
 * @title OracleHub
 * @notice Accepts one quorum-signed commitment per epoch (Merkle root over every
 * node's figures + fleet totals) and lets consumers prove a node's leaf against it.
 *
 * Replay protection follows Chainlink OCR2's ideas: the EIP-712 domain binds a
 * signature to this chain and this contract, the signed struct names the
 * oracle-set `configVersion` (bumped by every set or quorum change), each epoch is
 * attested at most once (its stored root is never overwritten), and signers must be
 * sorted strictly ascending so a duplicate is caught in O(1) per signature.
 *
 * Epochs arrive in strictly increasing order (gaps allowed). A leaf's cumulative
 * counters are the node's newest leaf attested for an earlier epoch plus this epoch's
 * figures: if an older epoch could still be attested after a newer one, the newer
 * leaves' base would change under them. The price: an epoch skipped (no quorum
 * before the next one was attested) stays unattested for good, and whoever settles
 * treats it as unproven (EpochSettlement skips it; a delivery window counts it as not
 * delivered), exactly as an epoch nobody attests at all.
 *
 * Sanity bounds (per node per epoch; totals are checked against bound × nodeCount,
 * which is as far as an O(1) check can go: that the totals equal the sums of the
 * leaves is what the oracles sign, not what the chain can recompute):
 * - delivered milli-GPU-hours ≤ MAX_GPUS_PER_NODE × epochLength × 1000 / 3600
 *   (every GPU of the largest node up for the whole epoch);
 * - energy J ≤ MAX_GPUS_PER_NODE × MAX_WATTS_PER_GPU × epochLength.
 * A leaf's cumulative counters must be at least its epoch's figures (checked per leaf).
 */
contract OracleHub is AccessControl, EIP712, IOracleHub {
    // ------------------------------------------------------------------
    // Constants
    // ------------------------------------------------------------------

    /// @notice May change the oracle set and the quorum.
    bytes32 public constant ORACLE_ADMIN_ROLE = keccak256("ORACLE_ADMIN_ROLE");

    /// @notice Most oracles the set may hold (bounds the signature loop).
    uint256 public constant MAX_ORACLES = 31;

    /// @notice Mirrors NodeRegistry.MAX_GPUS_PER_NODE: the largest node a leaf can describe.
    uint256 public constant MAX_GPUS_PER_NODE = 4096;

    /// @notice Power one GPU may account for, host share and cooling included (a GB200
    /// board is ~1.2 kW); anything above is a measurement error, not a real node.
    uint256 public constant MAX_WATTS_PER_GPU = 2_000;

    /// @notice Longest epoch the schedule accepts (one year), so epoch math stays small.
    uint64 public constant MAX_EPOCH_LENGTH_SECONDS = 365 days;

    uint16 private constant _BPS = 10_000;

    bytes32 private constant _EPOCH_REPORT_TYPEHASH = keccak256(
        "EpochReport(uint64 epoch,bytes32 root,uint32 nodeCount,uint64 totalEnergyJoules,"
        "uint64 totalMilliGpuHours,uint64 configVersion)"
    );

    // ------------------------------------------------------------------
    // State
    // ------------------------------------------------------------------

    INodeRegistry private immutable _registry;
    uint64 private immutable _genesisTimestamp;
    uint64 private immutable _epochLengthSeconds;
    uint256 private immutable _maxNodeMilliGpuHours;
    uint256 private immutable _maxNodeEnergyJoules;

    // Storage packing (one slot, read once per attest):
    // _configVersion (uint64) | _lastAttestedEpoch (uint64) | _quorum (uint8)
    uint64 private _configVersion;
    uint64 private _lastAttestedEpoch;
    uint8 private _quorum;

    address[] private _oracleList;
    /// @dev Position in _oracleList plus one; 0 = not a member.
    mapping(address oracle => uint256 positionPlusOne) private _oraclePosition;

    mapping(uint64 epoch => EpochAttestation) private _epochs;

    // ------------------------------------------------------------------
    // Constructor
    // ------------------------------------------------------------------

    /**
     * @param admin Receives DEFAULT_ADMIN_ROLE and ORACLE_ADMIN_ROLE.
     * @param registry_ NodeRegistry whose node count bounds a report's node count.
     * @param genesisTimestamp_ Start of epoch 1.
     * @param epochLengthSeconds_ Length of every epoch, 1..MAX_EPOCH_LENGTH_SECONDS.
     * @param initialOracles First oracle set (each emits {OracleAdded}).
     * @param initialQuorum Signatures a report needs, 1..initialOracles.length.
     */
    constructor(
        address admin,
        INodeRegistry registry_,
        uint64 genesisTimestamp_,
        uint64 epochLengthSeconds_,
        address[] memory initialOracles,
        uint8 initialQuorum
    ) EIP712("gpucap OracleHub", "1") {
        if (address(registry_) == address(0)) revert OracleInvalidRegistry();
        if (genesisTimestamp_ == 0 || epochLengthSeconds_ == 0 || epochLengthSeconds_ > MAX_EPOCH_LENGTH_SECONDS) {
            revert OracleInvalidEpochSchedule(genesisTimestamp_, epochLengthSeconds_);
        }
        _registry = registry_;
        _genesisTimestamp = genesisTimestamp_;
        _epochLengthSeconds = epochLengthSeconds_;
        _maxNodeMilliGpuHours = (MAX_GPUS_PER_NODE * epochLengthSeconds_ * 1_000) / 1 hours;
        _maxNodeEnergyJoules = MAX_GPUS_PER_NODE * MAX_WATTS_PER_GPU * epochLengthSeconds_;

        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(ORACLE_ADMIN_ROLE, admin);
        for (uint256 i = 0; i < initialOracles.length; ++i) {
            _addOracle(initialOracles[i]);
        }
        _setQuorum(initialQuorum);
    }

    // ------------------------------------------------------------------
    // Oracle set
    // ------------------------------------------------------------------

    /// @inheritdoc IOracleHub
    function addOracle(address oracle) external onlyRole(ORACLE_ADMIN_ROLE) {
        _addOracle(oracle);
    }

    /// @inheritdoc IOracleHub
    function removeOracle(address oracle) external onlyRole(ORACLE_ADMIN_ROLE) {
        uint256 positionPlusOne = _oraclePosition[oracle];
        if (positionPlusOne == 0) revert OracleNotMember(oracle);
        uint256 remaining = _oracleList.length - 1;
        if (remaining < _quorum) revert OracleInvalidQuorum(_quorum, remaining);

        // Swap-and-pop: move the last member into the freed position.
        address last = _oracleList[remaining];
        _oracleList[positionPlusOne - 1] = last;
        _oraclePosition[last] = positionPlusOne;
        _oracleList.pop();
        delete _oraclePosition[oracle];

        uint64 version = ++_configVersion;
        emit OracleRemoved(oracle, version);
    }

    /// @inheritdoc IOracleHub
    function setQuorum(uint8 newQuorum) external onlyRole(ORACLE_ADMIN_ROLE) {
        _setQuorum(newQuorum);
    }

    // ------------------------------------------------------------------
    // Attestation
    // ------------------------------------------------------------------

    /// @inheritdoc IOracleHub
    function attest(EpochReport calldata report, bytes[] calldata signatures) external {
        uint64 version = _configVersion;
        if (report.configVersion != version) revert OracleConfigVersionMismatch(report.configVersion, version);
        if (report.epoch == 0) revert OracleInvalidEpoch(report.epoch);
        uint64 attestedAt = _epochs[report.epoch].attestedAt;
        if (attestedAt != 0) revert OracleEpochAlreadyAttested(report.epoch, attestedAt);
        uint64 last = _lastAttestedEpoch;
        if (report.epoch <= last) revert OracleEpochNotAfterLast(report.epoch, last);
        uint256 endsAt = _epochEnd(report.epoch);
        // slither-disable-next-line timestamp (drift of seconds only shifts when an ended epoch is postable)
        if (block.timestamp < endsAt) revert OracleEpochNotEnded(report.epoch, endsAt);
        // External view call before the state writes below; the registry is trusted
        // (deployed with the system) and only read.
        _checkContent(report, _registry.nodeCount());
        _checkSignatures(_hashTypedDataV4(_hashReport(report)), signatures);

        _lastAttestedEpoch = report.epoch;
        _epochs[report.epoch] = EpochAttestation({
            root: report.root,
            nodeCount: report.nodeCount,
            totalEnergyJoules: report.totalEnergyJoules,
            totalMilliGpuHours: report.totalMilliGpuHours,
            attestedAt: uint64(block.timestamp)
        });
        emit EpochAttested(
            report.epoch,
            report.root,
            report.nodeCount,
            report.totalEnergyJoules,
            report.totalMilliGpuHours,
            version,
            msg.sender
        );
    }

    /// @inheritdoc IOracleHub
    function verifyLeaf(NodeLeaf calldata leaf, bytes32[] calldata proof) external view returns (bool) {
        // slither-disable-next-line timestamp (false positive: no time comparison here)
        return _leafInRange(leaf) && _leafProven(leaf, proof);
    }

    /// @inheritdoc IOracleHub
    function requireLeaf(NodeLeaf calldata leaf, bytes32[] calldata proof) external view {
        if (!_leafInRange(leaf)) revert OracleLeafOutOfRange(leaf.nodeId, leaf.epoch);
        if (!_leafProven(leaf, proof)) revert OracleInvalidProof(leaf.nodeId, leaf.epoch);
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @inheritdoc IOracleHub
    function leafHash(NodeLeaf calldata leaf) external pure returns (bytes32) {
        return _leafHash(leaf);
    }

    /// @inheritdoc IOracleHub
    function reportDigest(EpochReport calldata report) external view returns (bytes32) {
        return _hashTypedDataV4(_hashReport(report));
    }

    /// @inheritdoc IOracleHub
    function epochAttestation(uint64 epoch) external view returns (EpochAttestation memory) {
        return _epochs[epoch];
    }

    /// @inheritdoc IOracleHub
    function lastAttestedEpoch() external view returns (uint64) {
        return _lastAttestedEpoch;
    }

    /// @inheritdoc IOracleHub
    function newestAttestedIn(uint64 fromEpoch, uint64 toEpoch) external view returns (uint64) {
        for (uint64 e = toEpoch; e >= fromEpoch && e != 0; --e) {
            // slither-disable-next-line timestamp (false positive: a root, no time comparison)
            if (_epochs[e].root != bytes32(0)) return e;
        }
        return 0;
    }

    /// @inheritdoc IOracleHub
    function lastAttestedAt() external view returns (uint64) {
        return _epochs[_lastAttestedEpoch].attestedAt;
    }

    /// @inheritdoc IOracleHub
    function isStale(uint256 maxAgeSeconds) external view returns (bool) {
        uint64 last = _lastAttestedEpoch;
        if (last == 0) return true;
        // An attested epoch has ended, so block.timestamp >= its end: no underflow.
        // slither-disable-next-line timestamp (staleness spans epochs; seconds of drift are noise)
        return block.timestamp - _epochEnd(last) > maxAgeSeconds;
    }

    /// @inheritdoc IOracleHub
    function currentEpoch() external view returns (uint64) {
        // slither-disable-next-line timestamp (drift moves an epoch boundary by seconds only)
        if (block.timestamp < _genesisTimestamp) return 0;
        return uint64((block.timestamp - _genesisTimestamp) / _epochLengthSeconds + 1);
    }

    /// @inheritdoc IOracleHub
    function epochEnd(uint64 epoch) external view returns (uint256) {
        return _epochEnd(epoch);
    }

    /// @inheritdoc IOracleHub
    function genesisTimestamp() external view returns (uint64) {
        return _genesisTimestamp;
    }

    /// @inheritdoc IOracleHub
    function epochLengthSeconds() external view returns (uint64) {
        return _epochLengthSeconds;
    }

    /// @inheritdoc IOracleHub
    function maxNodeMilliGpuHours() external view returns (uint256) {
        return _maxNodeMilliGpuHours;
    }

    /// @inheritdoc IOracleHub
    function maxNodeEnergyJoules() external view returns (uint256) {
        return _maxNodeEnergyJoules;
    }

    /// @inheritdoc IOracleHub
    function oracles() external view returns (address[] memory) {
        return _oracleList;
    }

    /// @inheritdoc IOracleHub
    function isOracle(address account) external view returns (bool) {
        return _oraclePosition[account] != 0;
    }

    /// @inheritdoc IOracleHub
    function quorum() external view returns (uint8) {
        return _quorum;
    }

    /// @inheritdoc IOracleHub
    function configVersion() external view returns (uint64) {
        return _configVersion;
    }

    /// @inheritdoc IOracleHub
    function registry() external view returns (INodeRegistry) {
        return _registry;
    }

    // ------------------------------------------------------------------
    // Internal
    // ------------------------------------------------------------------

    function _addOracle(address oracle) internal {
        if (oracle == address(0) || _oraclePosition[oracle] != 0) revert OracleAlreadyMember(oracle);
        if (_oracleList.length >= MAX_ORACLES) revert OracleSetFull(MAX_ORACLES);
        _oracleList.push(oracle);
        _oraclePosition[oracle] = _oracleList.length;
        uint64 version = ++_configVersion;
        emit OracleAdded(oracle, version);
    }

    function _setQuorum(uint8 newQuorum) internal {
        uint256 members = _oracleList.length;
        if (newQuorum == 0 || newQuorum > members) revert OracleInvalidQuorum(newQuorum, members);
        _quorum = newQuorum;
        uint64 version = ++_configVersion;
        emit QuorumSet(newQuorum, version);
    }

    /// @dev Root, node count and totals against the O(1) bounds documented on the contract.
    function _checkContent(EpochReport calldata report, uint256 registeredNodes) internal view {
        if (report.root == bytes32(0)) revert OracleEmptyRoot();
        if (report.nodeCount == 0 || report.nodeCount > registeredNodes) {
            revert OracleNodeCountOutOfRange(report.nodeCount, registeredNodes);
        }
        uint256 maxEnergyJoules = _maxNodeEnergyJoules * report.nodeCount;
        if (report.totalEnergyJoules > maxEnergyJoules) {
            revert OracleEnergyOutOfRange(report.totalEnergyJoules, maxEnergyJoules);
        }
        uint256 maxMilliGpuHours = _maxNodeMilliGpuHours * report.nodeCount;
        if (report.totalMilliGpuHours > maxMilliGpuHours) {
            revert OracleGpuHoursOutOfRange(report.totalMilliGpuHours, maxMilliGpuHours);
        }
    }

    /// @dev At least `_quorum` valid signatures by distinct current oracles, sorted by signer.
    function _checkSignatures(bytes32 digest, bytes[] calldata signatures) internal view {
        uint256 required = _quorum;
        if (signatures.length < required) revert OracleQuorumNotMet(signatures.length, required);
        address previous = address(0);
        for (uint256 i = 0; i < signatures.length; ++i) {
            // slither-disable-next-line unused-return (errorArg unneeded: we revert with the index)
            (address signer, ECDSA.RecoverError error, ) = ECDSA.tryRecover(digest, signatures[i]);
            if (error != ECDSA.RecoverError.NoError) revert OracleInvalidSignature(i);
            // Membership first: a signature over another domain or config recovers to
            // an unrelated address, and that is the error worth reporting.
            if (_oraclePosition[signer] == 0) revert OracleUnknownSigner(signer);
            if (signer == previous) revert OracleDuplicateSigner(signer);
            if (signer < previous) revert OracleSignersNotAscending(previous, signer);
            previous = signer;
        }
    }

    function _hashReport(EpochReport calldata report) internal pure returns (bytes32) {
        return keccak256(
            abi.encode(
                _EPOCH_REPORT_TYPEHASH,
                report.epoch,
                report.root,
                report.nodeCount,
                report.totalEnergyJoules,
                report.totalMilliGpuHours,
                report.configVersion
            )
        );
    }

    function _leafHash(NodeLeaf calldata leaf) internal pure returns (bytes32) {
        // Double hashing (StandardMerkleTree): a 64-byte leaf preimage can never be
        // mistaken for an inner node.
        return keccak256(
            bytes.concat(
                keccak256(
                    abi.encode(
                        leaf.nodeId,
                        leaf.epoch,
                        leaf.uptimeBps,
                        leaf.utilizationBps,
                        leaf.sampleCoverageBps,
                        leaf.utilizationCoverageBps,
                        leaf.energyCoverageBps,
                        leaf.challengesPassed,
                        leaf.challengesFailed,
                        leaf.energyJoules,
                        leaf.milliGpuHours,
                        leaf.cumMilliGpuHours,
                        leaf.cumEnergyJoules,
                        leaf.cumBusyGpuSeconds
                    )
                )
            )
        );
    }

    function _leafInRange(NodeLeaf calldata leaf) internal view returns (bool) {
        return leaf.nodeId != 0 && leaf.uptimeBps <= _BPS && leaf.utilizationBps <= _BPS
            && leaf.sampleCoverageBps <= _BPS && leaf.utilizationCoverageBps <= _BPS
            && leaf.energyCoverageBps <= _BPS && leaf.energyJoules <= _maxNodeEnergyJoules
            && leaf.milliGpuHours <= _maxNodeMilliGpuHours
            && leaf.cumMilliGpuHours >= leaf.milliGpuHours && leaf.cumEnergyJoules >= leaf.energyJoules;
    }

    function _leafProven(NodeLeaf calldata leaf, bytes32[] calldata proof) internal view returns (bool) {
        bytes32 root = _epochs[leaf.epoch].root;
        // slither-disable-next-line timestamp (false positive: no time comparison here)
        return root != bytes32(0) && MerkleProof.verifyCalldata(proof, root, _leafHash(leaf));
    }

    function _epochEnd(uint64 epoch) internal view returns (uint256) {
        return uint256(_genesisTimestamp) + uint256(epoch) * _epochLengthSeconds;
    }
}
