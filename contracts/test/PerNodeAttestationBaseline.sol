// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";

/**
 * @title PerNodeAttestationBaseline
 * @notice Benchmark baseline only (bench/, never deployed by scripts/deploy.py): the
 * naive design OracleHub's Merkle root replaces. Every node's epoch metrics are an
 * EIP-712 report of their own, signed by a quorum of oracles; the contract verifies
 * the quorum on each node's report and stores each node's metrics (one slot) so other
 * contracts can read them without a proof. Checks mirror OracleHub's: known oracles,
 * signers strictly ascending (no duplicates), quorum met, one report per node-epoch.
 */
contract PerNodeAttestationBaseline is EIP712 {
    /// @notice One node's metrics for one epoch (same fields as IOracleHub.NodeLeaf).
    struct NodeReport {
        uint256 nodeId;
        uint64 epoch;
        uint16 uptimeBps;
        uint16 utilizationBps;
        uint16 sampleCoverageBps;
        uint64 energyWh;
        uint64 milliGpuHours;
    }

    /// @notice What is kept per node-epoch: 3 x 16 + 2 x 64 bits, one storage slot.
    struct StoredMetrics {
        uint16 uptimeBps;
        uint16 utilizationBps;
        uint16 sampleCoverageBps;
        uint64 energyWh;
        uint64 milliGpuHours;
        bool attested;
    }

    bytes32 private constant _NODE_REPORT_TYPEHASH = keccak256(
        "NodeReport(uint256 nodeId,uint64 epoch,uint16 uptimeBps,uint16 utilizationBps,"
        "uint16 sampleCoverageBps,uint64 energyWh,uint64 milliGpuHours)"
    );

    uint256 public immutable quorum;
    mapping(address oracle => bool member) public isOracle;
    mapping(uint256 nodeId => mapping(uint64 epoch => StoredMetrics)) private _metrics;

    /// @notice A node's metrics for an epoch were verified and stored.
    event NodeAttested(uint256 indexed nodeId, uint64 indexed epoch, uint64 milliGpuHours);

    error BaselineLengthMismatch(uint256 reports, uint256 signatureSets);
    error BaselineQuorumNotMet(uint256 nodeId, uint256 given, uint256 required);
    error BaselineBadSigner(uint256 nodeId, address signer);
    error BaselineAlreadyAttested(uint256 nodeId, uint64 epoch);

    constructor(address[] memory oracles, uint256 quorum_) EIP712("gpucap PerNodeBaseline", "1") {
        for (uint256 i = 0; i < oracles.length; ++i) {
            isOracle[oracles[i]] = true;
        }
        quorum = quorum_;
    }

    /// @notice Verify and store a batch of per-node reports; `signatures[i]` signs `reports[i]`.
    function attestBatch(NodeReport[] calldata reports, bytes[][] calldata signatures) external {
        if (reports.length != signatures.length) revert BaselineLengthMismatch(reports.length, signatures.length);
        for (uint256 i = 0; i < reports.length; ++i) {
            NodeReport calldata r = reports[i];
            StoredMetrics storage slot = _metrics[r.nodeId][r.epoch];
            if (slot.attested) revert BaselineAlreadyAttested(r.nodeId, r.epoch);
            _checkQuorum(r, signatures[i]);
            slot.uptimeBps = r.uptimeBps;
            slot.utilizationBps = r.utilizationBps;
            slot.sampleCoverageBps = r.sampleCoverageBps;
            slot.energyWh = r.energyWh;
            slot.milliGpuHours = r.milliGpuHours;
            slot.attested = true;
            emit NodeAttested(r.nodeId, r.epoch, r.milliGpuHours);
        }
    }

    /// @notice The stored metrics of `nodeId` in `epoch` (attested = false if none).
    function metricsOf(uint256 nodeId, uint64 epoch) external view returns (StoredMetrics memory) {
        return _metrics[nodeId][epoch];
    }

    /// @notice EIP-712 digest the oracles sign for `r`.
    function reportDigest(NodeReport calldata r) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    _NODE_REPORT_TYPEHASH,
                    r.nodeId,
                    r.epoch,
                    r.uptimeBps,
                    r.utilizationBps,
                    r.sampleCoverageBps,
                    r.energyWh,
                    r.milliGpuHours
                )
            )
        );
    }

    function _checkQuorum(NodeReport calldata r, bytes[] calldata sigs) private view {
        if (sigs.length < quorum) revert BaselineQuorumNotMet(r.nodeId, sigs.length, quorum);
        bytes32 digest = reportDigest(r);
        address previous = address(0);
        for (uint256 j = 0; j < sigs.length; ++j) {
            address signer = ECDSA.recover(digest, sigs[j]);
            if (!isOracle[signer] || signer <= previous) revert BaselineBadSigner(r.nodeId, signer);
            previous = signer;
        }
    }
}
