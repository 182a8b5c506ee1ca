"""Node agents: samples signed by the node's registered key, and their challenges.

Each poll fetches ``GET /sample`` from every agent at once under one deadline.
A page counts only if it is signed (EIP-191) by the ``nodeKey`` the registry
records for that node, for this chain and node, stamped within
``max_skew_s`` of the oracle's clock and lists no more GPUs than the registry
does. Anything else (unreachable, unsigned, wrong key, stale, too many GPUs) is
*missing*: no readings for that poll, so the node's coverage drops and the
aggregation never sees an unverified number; the reason is logged when it
changes and counted in ``rejections``. Accepted readings are stamped on
receipt, as every live source's are.

GPUs are the registry's: a reading counts only for a GPU whose id (keccak256 of
its UUID, gpucap.gpu_ids) NodeRegistry binds to that node (``bindGpus``). A GPU
that is not bound (``gpu_unbound``) or bound to another node
(``gpu_of_another_node``) is missing, logged with the UUIDs when the set
changes: an operator cannot claim another node's GPUs, nor make that node's
challenges fail by listing them, and a node's coverage counts only GPUs it
bound.

The registry is re-read at most every ``registry_ttl_s`` (registrations and GPU
bindings alike) so a key rotated or a GPU bound by a registry update takes
effect without a restart. The UUIDs of a node's accepted readings are what its
challenge answers may name (oracle/challenges.py).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

import requests

from agent.protocol import SAMPLE_KIND, ProtocolError, open_document
from gpucap.gpu_ids import gpu_id
from oracle.challenges import ChallengeLedger, Challenger, Registration, Registry
from oracle.collectors.base import PolledSource, Reading, Sample, SampleStore

log = logging.getLogger("gpucap.oracle.collectors.agent")


class CachedRegistry:
    def __init__(self, registry: Registry, ttl_s: float = 60.0) -> None:
        self._registry = registry
        self._ttl_s = ttl_s
        self._lock = threading.Lock()
        self._cache: dict[int, tuple[float, Registration]] = {}
        self._gpu_cache: dict[bytes, tuple[float, int]] = {}

    def registration(self, node_id: int) -> Registration:
        with self._lock:
            hit = self._cache.get(node_id)
        if hit is not None and time.monotonic() - hit[0] < self._ttl_s:
            return hit[1]
        reg = self._registry.registration(node_id)
        with self._lock:
            self._cache[node_id] = (time.monotonic(), reg)
        return reg

    def gpu_nodes(self, gpu_ids: list[bytes]) -> list[int]:
        """As the registry's, each id read at most every ``ttl_s`` (one batch for the rest)."""
        now = time.monotonic()
        with self._lock:
            known = {
                g: hit[1]
                for g in gpu_ids
                if (hit := self._gpu_cache.get(g)) is not None and now - hit[0] < self._ttl_s
            }
        stale = [g for g in dict.fromkeys(gpu_ids) if g not in known]
        if stale:
            owners = self._registry.gpu_nodes(stale)
            with self._lock:
                for g, owner in zip(stale, owners, strict=True):
                    self._gpu_cache[g] = (now, owner)
                    known[g] = owner
        return [known[g] for g in gpu_ids]

    def gpu_owners(self, uuids: Iterable[str]) -> dict[str, int]:
        """UUID -> the node the registry binds its GPU to (0: none)."""
        names = sorted(set(uuids))
        return dict(zip(names, self.gpu_nodes([gpu_id(u) for u in names]), strict=True))


class AgentCollector:
    name = "agent"

    def __init__(
        self,
        targets: Mapping[int, str],
        registry: Registry,
        chain_id: int,
        max_skew_s: float = 5.0,
        deadline_s: float = 5.0,
    ) -> None:
        self.targets = dict(targets)
        self.registry = (
            registry if isinstance(registry, CachedRegistry) else CachedRegistry(registry)
        )
        self.chain_id = chain_id
        self.max_skew_s = max_skew_s
        self.deadline_s = deadline_s
        self.rejections: Counter[str] = Counter()
        self._why: dict[int, str] = {}
        self._gpu_why: dict[int, str] = {}  # node -> its GPUs left out, as last logged
        self._gpus: dict[int, set[str]] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=min(32, max(1, len(self.targets))))
        self.challenger: Challenger | None = None

    def gpus_of(self, node_id: int) -> set[str]:
        with self._lock:
            return set(self._gpus.get(node_id, ()))

    def close(self) -> None:
        if self.challenger is not None:
            self.challenger.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def poll(self, now: float) -> list[Reading]:
        if self.challenger is not None:
            self.challenger.start()  # challenges run while the oracle samples
        futures = {n: self._pool.submit(self._fetch, n, url) for n, url in self.targets.items()}
        readings: list[Reading] = []
        for node_id, future in futures.items():
            try:
                readings.extend(future.result(timeout=self.deadline_s + 1))
            except Exception as exc:  # noqa: BLE001 - one agent never costs the others
                self._reject(node_id, "unreachable", f"{type(exc).__name__}: {exc}")
        return readings

    def _fetch(self, node_id: int, url: str) -> list[Reading]:
        try:
            response = requests.get(f"{url.rstrip('/')}/sample", timeout=self.deadline_s)
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as exc:
            self._reject(node_id, "unreachable", f"{type(exc).__name__}: {exc}")
            return []
        received = time.time()
        try:
            payload, signer = open_document(document, SAMPLE_KIND, self.chain_id, node_id)
        except ProtocolError as exc:
            self._reject(node_id, "unsigned", str(exc))
            return []
        try:
            reg = self.registry.registration(node_id)
        except Exception as exc:  # noqa: BLE001 - the chain, not the node: still missing
            self._reject(node_id, "registry_unreadable", f"{type(exc).__name__}: {exc}")
            return []
        if signer.lower() != reg.node_key.lower():
            self._reject(node_id, "wrong_key", f"signed by {signer}, nodeKey is {reg.node_key}")
            return []
        stamp = payload.get("timestamp")
        if not isinstance(stamp, int | float) or abs(received - stamp) > self.max_skew_s:
            self._reject(node_id, "stale", f"stamped {stamp}, received at {received:.3f}")
            return []
        gpus = payload.get("gpus")
        if not isinstance(gpus, list) or not 0 < len(gpus) <= reg.gpu_count:
            listed = len(gpus) if isinstance(gpus, list) else gpus
            detail = f"lists {listed} GPU(s), the registry {reg.gpu_count}"
            self._reject(node_id, "gpu_count", detail)
            return []
        try:
            readings = [Reading(node_id, str(g["uuid"]), _sample(g, received)) for g in gpus]
        except (KeyError, TypeError, ValueError) as exc:
            self._reject(node_id, "malformed", f"bad GPU reading ({exc})")
            return []
        try:
            owners = self.registry.gpu_owners(r.device for r in readings)
        except Exception as exc:  # noqa: BLE001 - the chain, not the node: still missing
            self._reject(node_id, "registry_unreadable", f"{type(exc).__name__}: {exc}")
            return []
        readings = self._bound_only(node_id, readings, owners)
        if not readings:
            self._reject(node_id, "no_bound_gpu", "none of its GPUs is bound to it in the registry")
            return []
        with self._lock:
            self._gpus[node_id] = {r.device for r in readings}
        if self._why.pop(node_id, None) is not None:
            log.info("node %d: agent samples accepted again", node_id)
        return readings

    def _bound_only(
        self, node_id: int, readings: list[Reading], owners: dict[str, int]
    ) -> list[Reading]:
        """The readings of GPUs the registry binds to ``node_id``; the others are missing,
        counted per GPU and logged (with their UUIDs) when the set left out changes."""
        unbound = sorted(u for u, owner in owners.items() if owner == 0)
        foreign = {u: owner for u, owner in sorted(owners.items()) if owner not in (0, node_id)}
        self.rejections["gpu_unbound"] += len(unbound)
        self.rejections["gpu_of_another_node"] += len(foreign)
        why = ""
        if unbound:
            why += f"GPUs not bound to it in the registry (gpu_unbound): {unbound}; "
        if foreign:
            why += f"GPUs bound to other nodes (gpu_of_another_node): {foreign}; "
        if why != self._gpu_why.get(node_id, ""):
            if why:
                log.warning("node %d: agent readings of %scounted as missing", node_id, why)
            else:
                log.info("node %d: every GPU its agent lists is bound to it", node_id)
            self._gpu_why[node_id] = why
        return [r for r in readings if owners[r.device] == node_id]

    def _reject(self, node_id: int, kind: str, detail: str) -> None:
        self.rejections[kind] += 1
        if self._why.get(node_id) != kind:
            log.warning(
                "node %d: agent sample rejected (%s): %s; counted as missing", node_id, kind, detail
            )
            self._why[node_id] = kind


def _number(value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, int | float | str):
        raise TypeError(f"not a number: {value!r}")
    number = float(value)  # raises on a string that is not a number
    if not math.isfinite(number):
        raise ValueError(f"non-finite reading {value!r}")
    return number


def _sample(gpu: dict, t: float) -> Sample:
    energy = gpu.get("energyMj")
    return Sample(
        t=t,
        utilization_pct=_number(gpu.get("utilizationPct")),
        power_w=_number(gpu.get("powerW")),
        energy_mj=None if energy is None else int(energy),
        up=bool(gpu.get("up", True)),
    )


class AgentSource(PolledSource):
    """The polled agent samples plus this oracle's challenge verdicts for the same nodes."""

    def __init__(self, store: SampleStore, interval_s: float, ledger: ChallengeLedger) -> None:
        super().__init__(store, interval_s)
        self.ledger = ledger

    def challenge_counts(self, node_ids: Iterable[int], start: float, end: float) -> dict:
        return self.ledger.counts(node_ids, start, end)
