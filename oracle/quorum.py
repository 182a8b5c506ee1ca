"""M-of-N across separate oracle processes: signatures meet in Redis.

Why Redis and not the backend: oracles are independent attesters and must not
depend on the relayer they attest for; Redis is a dumb shared board, it holds
no authority (every signature is verified against the on-chain oracle set
before use, and the contract verifies again), it is already part of the stack,
and losing it only delays attestation: each oracle re-publishes on every step.

Per epoch each oracle publishes, under its address, its signed report and its
leaves (hash ``gpucap:oracle:<chain>:epoch:<n>``). An oracle that sees at least
``quorum`` valid signatures over exactly its own report may transmit.

Transmitter rotation: the current oracle set sorted by address; for epoch ``e``
the oracle at index ``e mod N`` is primary (rank 0), the next one rank 1, ….
Rank ``k`` transmits once ``k × fallback_s`` have passed since it first saw a
quorum for the epoch, unless the epoch got attested meanwhile: if the primary
dies, the next one takes over, and so on. A late race between two transmitters
is settled by the contract (the second reverts ``OracleEpochNotNewer`` and is
logged as already attested).

Disagreement: a report from another oracle with a different root is logged
once per epoch and oracle, with the nodes whose leaves differ.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis
from eth_account import Account

from gpucap.attestation import (
    EpochCommitment,
    EpochReport,
    OracleSignature,
    report_digest,
    sign_report,
    sort_signatures,
)
from oracle.chain import ChainClient, HubState
from oracle.errors import OracleError

log = logging.getLogger("gpucap.oracle.quorum")

LEAF_FIELDS = (
    "nodeId",
    "epoch",
    "uptimeBps",
    "utilizationBps",
    "sampleCoverageBps",
    "energyWh",
    "milliGpuHours",
)


class NotAnOracle(OracleError):
    """This process's key is not in the hub's current oracle set."""


@dataclass(frozen=True)
class QuorumWait:
    """Why this oracle does not transmit (yet)."""

    reason: str
    kind: str = "signatures"  # or "turn": quorum reached, another oracle transmits first


class QuorumBoard:
    """The Redis hash per epoch where oracles leave their signed reports."""

    def __init__(self, client: redis.Redis, namespace: str, ttl_s: int = 7 * 86_400) -> None:
        self.client = client
        self.namespace = namespace
        self.ttl_s = ttl_s

    @classmethod
    def from_url(cls, url: str, namespace: str) -> QuorumBoard:
        return cls(
            redis.Redis.from_url(url, socket_timeout=10, socket_connect_timeout=10), namespace
        )

    def _key(self, epoch: int) -> str:
        return f"gpucap:oracle:{self.namespace}:epoch:{epoch}"

    def publish(self, epoch: int, signer: str, entry: dict) -> None:
        key = self._key(epoch)
        pipe = self.client.pipeline()
        pipe.hset(key, signer, json.dumps(entry))
        pipe.expire(key, self.ttl_s)
        pipe.execute()

    def entries(self, epoch: int) -> dict[str, dict]:
        raw = self.client.hgetall(self._key(epoch))
        out = {}
        for signer, value in raw.items():
            try:
                out[signer.decode()] = json.loads(value)
            except (UnicodeDecodeError, ValueError):
                log.warning("epoch %d: unreadable board entry under %r ignored", epoch, signer)
        return out


def report_json(report: EpochReport) -> dict:
    message = report.message()
    message["root"] = "0x" + report.root.hex()
    return message


def report_from_json(data: dict) -> EpochReport:
    return EpochReport(
        epoch=int(data["epoch"]),
        root=bytes.fromhex(str(data["root"]).removeprefix("0x")),
        node_count=int(data["nodeCount"]),
        total_energy_wh=int(data["totalEnergyWh"]),
        total_milli_gpu_hours=int(data["totalMilliGpuHours"]),
        config_version=int(data["configVersion"]),
    )


def leaf_differences(ours: list[list[int]], theirs: list[list[int]], limit: int = 5) -> dict:
    """Nodes only one side has, and nodes whose leaf values differ (first ``limit``)."""
    mine = {row[0]: row for row in ours}
    other = {row[0]: row for row in theirs}
    differing = [
        {
            "nodeId": node_id,
            "ours": {
                f: v for f, v, w in zip(LEAF_FIELDS, mine[node_id], row, strict=True) if v != w
            },
            "theirs": {
                f: w for f, v, w in zip(LEAF_FIELDS, mine[node_id], row, strict=True) if v != w
            },
        }
        for node_id, row in sorted(other.items())
        if node_id in mine and list(mine[node_id]) != list(row)
    ]
    return {
        "onlyOurs": sorted(set(mine) - set(other)),
        "onlyTheirs": sorted(set(other) - set(mine)),
        "differingCount": len(differing),
        "differing": differing[:limit],
    }


class QuorumCoordinator:
    def __init__(
        self,
        board: QuorumBoard,
        chain: ChainClient,
        private_key: str,
        fallback_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.board = board
        self.chain = chain
        self._key = private_key
        self.address = Account.from_key(private_key).address
        self.fallback_s = fallback_s
        self._clock = clock
        self._quorum_seen: dict[int, float] = {}
        self._reported_disagreements: set[tuple[int, str]] = set()

    def gather(
        self, commitment: EpochCommitment, state: HubState
    ) -> list[OracleSignature] | QuorumWait:
        """Publish our signature; return ``quorum`` signatures if it is our turn to transmit."""
        report = commitment.report
        chain_id, hub = self.chain.deployment.chain_id, self.chain.hub.address
        oracle_set = self.chain.oracle_set()
        members = {a.lower() for a in oracle_set}
        if self.address.lower() not in members:
            raise NotAnOracle(f"this oracle's key {self.address} is not in OracleHub's oracle set")
        [own] = sign_report(report, [self._key], chain_id, hub)
        leaves = [list(leaf.values()) for leaf in commitment.leaves]
        self.board.publish(
            report.epoch,
            self.address,
            {
                "report": report_json(report),
                "signature": "0x" + own.signature.hex(),
                "leaves": leaves,
            },
        )
        digest = report_digest(report, chain_id, hub)
        valid = [own]
        for signer, entry in self.board.entries(report.epoch).items():
            if signer.lower() == self.address.lower():
                continue
            signature = self._matching_signature(signer, entry, report, digest, members, leaves)
            if signature is not None:
                valid.append(signature)
        if len(valid) < state.quorum:
            return QuorumWait(f"{len(valid)} of {state.quorum} signatures for this root")
        first_seen = self._quorum_seen.setdefault(report.epoch, self._clock())
        ordered = sorted(oracle_set, key=lambda a: int(a, 16))
        index = [a.lower() for a in ordered].index(self.address.lower())
        rank = (index - report.epoch) % len(ordered)
        waited = self._clock() - first_seen
        if waited < rank * self.fallback_s:
            return QuorumWait(
                f"quorum reached; transmitter rank {rank}, taking over after"
                f" {rank * self.fallback_s - waited:.1f}s more",
                kind="turn",
            )
        if rank:
            log.warning(
                "epoch %d: not attested %.1fs after quorum; transmitting as fallback rank %d",
                report.epoch,
                waited,
                rank,
            )
        return sort_signatures(valid)[: state.quorum]

    def _matching_signature(
        self,
        signer: str,
        entry: dict,
        report: EpochReport,
        digest: bytes,
        members: set[str],
        leaves: list[list[int]],
    ) -> OracleSignature | None:
        try:
            theirs = report_from_json(entry["report"])
            signature = bytes.fromhex(str(entry["signature"]).removeprefix("0x"))
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("epoch %d: malformed entry from %s ignored (%s)", report.epoch, signer, exc)
            return None
        if theirs != report:
            self._disagreement(signer, theirs, report, entry.get("leaves") or [], leaves)
            return None
        try:
            recovered = Account._recover_hash(digest, signature=signature)
        except ValueError:
            recovered = None
        if recovered is None or recovered.lower() != signer.lower():
            log.warning("epoch %d: signature under %s does not recover to it", report.epoch, signer)
            return None
        if signer.lower() not in members:
            log.warning("epoch %d: %s signed but is not a current oracle", report.epoch, signer)
            return None
        return OracleSignature(signer=recovered, signature=signature)

    def _disagreement(
        self,
        signer: str,
        theirs: EpochReport,
        ours: EpochReport,
        their_leaves: list[list[int]],
        our_leaves: list[list[int]],
    ) -> None:
        if (ours.epoch, signer) in self._reported_disagreements:
            return
        self._reported_disagreements.add((ours.epoch, signer))
        if theirs.root == ours.root:
            log.warning(
                "epoch %d: oracle %s signed the same root with other totals/config: %s vs ours %s",
                ours.epoch,
                signer,
                report_json(theirs),
                report_json(ours),
            )
            return
        diff = leaf_differences(our_leaves, their_leaves)
        log.warning(
            "epoch %d: oracle %s DISAGREES: root 0x%s vs ours 0x%s; %d node(s) differ,"
            " only ours %s, only theirs %s; first differences: %s",
            ours.epoch,
            signer,
            theirs.root.hex(),
            ours.root.hex(),
            diff["differingCount"],
            diff["onlyOurs"],
            diff["onlyTheirs"],
            json.dumps(diff["differing"]),
        )
