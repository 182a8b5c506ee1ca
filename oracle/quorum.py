"""M-of-N across separate oracle processes: signatures meet in Redis.

Why Redis and not the backend: oracles are independent attesters and must not
depend on the relayer they attest for; Redis is a dumb shared board, it holds
no authority (every signature is verified against the on-chain oracle set
before use, and the contract verifies again), it is already part of the stack,
and losing it only delays attestation: each oracle re-publishes on every step.

Per epoch each oracle publishes, under its address, a signed report and the
leaves it commits to (hash ``gpucap:oracle:<chain>:epoch:<n>``). Entries are
checked before use: the leaves must rebuild the report, the signature must
recover to the oracle it is filed under, and that oracle must be in the hub's
current set at the hub's config version.

What an oracle signs: its own measurement, unless a higher-priority oracle (in
the rotation order below) published a report whose every leaf is within
``Tolerance`` of its own measurement; then it co-signs that one. Live scrapes
taken seconds apart never match to the bit, so this is how independent oracles
converge on one root; a simulated fleet agrees exactly anyway. An oracle that
sees at least ``quorum`` signatures over the report it signed may transmit.

Transmitter rotation: the current oracle set sorted by address; for epoch ``e``
the oracle at index ``e mod N`` is primary (rank 0), the next one rank 1, ….
Rank ``k`` transmits once ``k × fallback_s`` have passed since it first saw a
quorum for the epoch, unless the epoch got attested meanwhile: if the primary
dies, the next one takes over, and so on. A late race between two transmitters
is settled by the contract (the second reverts ``OracleEpochAlreadyAttested`` and is
logged as already attested).

Disagreement: a report from another oracle that is not within tolerance of our
own measurement is logged once per epoch, oracle and root, with the nodes whose
leaves differ.
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
    BPS,
    LEAF_FIELDS,
    EpochCommitment,
    EpochReport,
    NodeLeaf,
    OracleSignature,
    build_commitment,
    report_digest,
    sign_report,
    sort_signatures,
)
from oracle.chain import ChainClient, HubState
from oracle.errors import OracleError

log = logging.getLogger("gpucap.oracle.quorum")


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
    def from_url(cls, url: str, namespace: str, timeout_s: float = 10.0) -> QuorumBoard:
        return cls(
            redis.Redis.from_url(url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s),
            namespace,
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
                name = signer.decode() if isinstance(signer, bytes) else signer
                out[name] = json.loads(value)
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
        total_energy_joules=int(data["totalEnergyJoules"]),
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


_INDEX = {name: i for i, name in enumerate(LEAF_FIELDS)}
_RATIOS = tuple(
    _INDEX[f]
    for f in (
        "uptimeBps",
        "utilizationBps",
        "sampleCoverageBps",
        "utilizationCoverageBps",
        "energyCoverageBps",
    )
)
_AMOUNTS = tuple(
    _INDEX[f] for f in ("challengesPassed", "challengesFailed", "energyJoules", "milliGpuHours")
)
_CUMULATIVE = (
    (_INDEX["cumMilliGpuHours"], _INDEX["milliGpuHours"]),
    (_INDEX["cumEnergyJoules"], _INDEX["energyJoules"]),
)
_CUM_BUSY = _INDEX["cumBusyGpuSeconds"]


@dataclass(frozen=True)
class Tolerance:
    """How far another oracle's leaf may be from ours for us to co-sign it.

    Independent oracles scraping live telemetry at slightly different instants
    never measure bit-identical figures, so exact-root agreement would never
    reach a quorum. An oracle therefore co-signs the highest-priority report
    (by transmitter rotation) whose every leaf is within this tolerance of its
    own measurement of the same node, with the same node set; anything else is
    a disagreement.
    """

    ratio_bps: int = 100  # uptime, utilization, coverages: absolute difference in bps
    relative_bps: int = 100  # energy, GPU-hours, challenge counts: relative (1 %), at least 1

    def leaf_ok(self, ours: list[int], theirs: list[int]) -> bool:
        """Leaf rows in LEAF_FIELDS order. The cumulative counters' bases (cum minus the
        epoch's figure) must be EQUAL: both come from the same attested leaves, so a
        difference means one of us built on other history (oracle/cumulative.py)."""
        if list(ours[:2]) != list(theirs[:2]):
            return False
        if any(abs(ours[i] - theirs[i]) > self.ratio_bps for i in _RATIOS):
            return False
        if any(not self._close(ours[i], theirs[i]) for i in _AMOUNTS):
            return False
        for cum, epoch_figure in _CUMULATIVE:
            if ours[cum] - ours[epoch_figure] != theirs[cum] - theirs[epoch_figure]:
                return False
        # Busy time has no per-epoch field: its cumulative gets the relative tolerance.
        return self._close(ours[_CUM_BUSY], theirs[_CUM_BUSY])

    def _close(self, a: int, b: int) -> bool:
        return abs(a - b) <= max(1, max(a, b) * self.relative_bps // BPS)

    def accepts(self, ours: list[list[int]], theirs: list[list[int]]) -> bool:
        mine = {row[0]: row for row in ours}
        if len(mine) != len(theirs) or {row[0] for row in theirs} != set(mine):
            return False
        return all(self.leaf_ok(mine[row[0]], row) for row in theirs)


@dataclass(frozen=True)
class QuorumResult:
    """What this oracle signed (its own report or an adopted one), and whether to transmit."""

    commitment: EpochCommitment
    signatures: list[OracleSignature] | None = None
    wait: QuorumWait | None = None


@dataclass(frozen=True)
class _Verified:
    commitment: EpochCommitment
    signature: OracleSignature


def _rows(commitment: EpochCommitment) -> list[list[int]]:
    return [list(leaf.values()) for leaf in commitment.leaves]


class QuorumCoordinator:
    def __init__(
        self,
        board: QuorumBoard,
        chain: ChainClient,
        private_key: str,
        fallback_s: float,
        clock: Callable[[], float] = time.monotonic,
        tolerance: Tolerance | None = None,
    ) -> None:
        self.board = board
        self.chain = chain
        self._key = private_key
        self.address = Account.from_key(private_key).address
        self.fallback_s = fallback_s
        self.tolerance = tolerance or Tolerance()
        self._clock = clock
        self._quorum_seen: dict[tuple[int, bytes], float] = {}
        self._reported: set[tuple[int, str, str]] = set()
        self._cache: dict[tuple[str, str], _Verified | None] = {}

    def gather(self, commitment: EpochCommitment, state: HubState) -> QuorumResult:
        """Sign our report or a tolerable higher-priority one, publish it, and return
        ``quorum`` signatures over it if it is our turn to transmit."""
        epoch = commitment.report.epoch
        chain_id, hub = self.chain.deployment.chain_id, self.chain.hub.address
        ordered = sorted(self.chain.oracle_set(), key=lambda a: int(a, 16))
        lowered = [a.lower() for a in ordered]
        if self.address.lower() not in lowered:
            raise NotAnOracle(f"this oracle's key {self.address} is not in OracleHub's oracle set")

        def rank(address: str) -> int:
            return (lowered.index(address.lower()) - epoch) % len(ordered)

        own_rows = _rows(commitment)
        others = {
            signer: verified
            for signer, entry in self.board.entries(epoch).items()
            if signer.lower() != self.address.lower()
            and (verified := self._verify(signer, entry, epoch, state, lowered)) is not None
        }
        for signer, verified in others.items():
            if not self.tolerance.accepts(own_rows, _rows(verified.commitment)):
                self._disagreement(signer, verified.commitment, commitment)

        chosen = commitment
        for signer in sorted(others, key=rank):
            if rank(signer) >= rank(self.address):
                break
            candidate = others[signer].commitment
            if self.tolerance.accepts(own_rows, _rows(candidate)):
                if candidate.report != commitment.report:
                    self._once(
                        epoch,
                        signer,
                        "adopt",
                        "epoch %d: co-signing oracle %s's report (root 0x%s), within tolerance"
                        " of our measurement",
                        epoch,
                        signer,
                        candidate.report.root.hex(),
                    )
                chosen = candidate
                break

        report = chosen.report
        [own] = sign_report(report, [self._key], chain_id, hub)
        self.board.publish(
            epoch,
            self.address,
            {
                "report": report_json(report),
                "signature": "0x" + own.signature.hex(),
                "leaves": _rows(chosen),
            },
        )
        valid = [own] + [v.signature for v in others.values() if v.commitment.report == report]
        if len(valid) < state.quorum:
            return QuorumResult(
                chosen, wait=QuorumWait(f"{len(valid)} of {state.quorum} signatures for this root")
            )
        first_seen = self._quorum_seen.setdefault((epoch, report.root), self._clock())
        my_rank = rank(self.address)
        waited = self._clock() - first_seen
        if waited < my_rank * self.fallback_s:
            return QuorumResult(
                chosen,
                wait=QuorumWait(
                    f"quorum reached; transmitter rank {my_rank}, taking over after"
                    f" {my_rank * self.fallback_s - waited:.1f}s more",
                    kind="turn",
                ),
            )
        if my_rank:
            log.warning(
                "epoch %d: not attested %.1fs after quorum; transmitting as fallback rank %d",
                epoch,
                waited,
                my_rank,
            )
        return QuorumResult(chosen, signatures=sort_signatures(valid)[: state.quorum])

    def _verify(
        self, signer: str, entry: dict, epoch: int, state: HubState, members: list[str]
    ) -> _Verified | None:
        """The entry's commitment rebuilt from its leaves and its checked signature, or None."""
        cache_key = (signer, json.dumps([entry.get("report"), entry.get("signature")]))
        if cache_key in self._cache:
            return self._cache[cache_key]
        result = self._verify_uncached(signer, entry, epoch, state, members)
        self._cache[cache_key] = result
        return result

    def _verify_uncached(
        self, signer: str, entry: dict, epoch: int, state: HubState, members: list[str]
    ) -> _Verified | None:
        try:
            report = report_from_json(entry["report"])
            signature = bytes.fromhex(str(entry["signature"]).removeprefix("0x"))
            leaves = [NodeLeaf.from_values(row) for row in entry["leaves"]]
            rebuilt = build_commitment(epoch, leaves, report.config_version)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("epoch %d: malformed entry from %s ignored (%s)", epoch, signer, exc)
            return None
        if rebuilt.report != report:
            log.warning("epoch %d: %s's leaves do not build its report; ignored", epoch, signer)
            return None
        if report.config_version != state.config_version:
            log.warning(
                "epoch %d: %s signed config version %d, the hub is at %d; ignored",
                epoch,
                signer,
                report.config_version,
                state.config_version,
            )
            return None
        digest = report_digest(report, self.chain.deployment.chain_id, self.chain.hub.address)
        try:
            recovered = Account._recover_hash(digest, signature=signature)
        except ValueError:
            recovered = None
        if recovered is None or recovered.lower() != signer.lower():
            log.warning("epoch %d: signature under %s does not recover to it", epoch, signer)
            return None
        if signer.lower() not in members:
            log.warning("epoch %d: %s signed but is not a current oracle", epoch, signer)
            return None
        return _Verified(rebuilt, OracleSignature(signer=recovered, signature=signature))

    def _once(self, epoch: int, signer: str, what: str, message: str, *args) -> None:
        if (epoch, signer, what) not in self._reported:
            self._reported.add((epoch, signer, what))
            log.info(message, *args)

    def _disagreement(self, signer: str, theirs: EpochCommitment, ours: EpochCommitment) -> None:
        epoch = ours.report.epoch
        key = (epoch, signer, "0x" + theirs.report.root.hex())
        if key in self._reported:
            return
        self._reported.add(key)
        diff = leaf_differences(_rows(ours), _rows(theirs))
        log.warning(
            "epoch %d: oracle %s DISAGREES: root 0x%s vs ours 0x%s; %d node(s) beyond"
            " tolerance or different, only ours %s, only theirs %s; first differences: %s",
            epoch,
            signer,
            theirs.report.root.hex(),
            ours.report.root.hex(),
            diff["differingCount"],
            diff["onlyOurs"],
            diff["onlyTheirs"],
            json.dumps(diff["differing"]),
        )
