"""Epoch aggregation: raw device samples → one node's leaf figures, or a rejection.

Definitions (all in GPU-seconds so nodes of any size compare; ``W`` is the
epoch's length, ``G`` the node's registered GPU count):

- **Holding.** A sample's values hold from its timestamp until the next sample,
  but never longer than ``max_hold = gap_factor × interval``. Time not held by any
  sample is a *gap*: missing data. A gap is neither downtime nor idleness nor
  zero energy; it lowers only ``sample_coverage_bps``.
- **observed** = Σ over devices of held time inside ``[start, end)`` × GPUs the
  series stands for. ``sample_coverage_bps = observed / (G × W)``.
- **up** = the observed time whose sample says ``up``.
  ``uptime_bps = up / observed`` (0 when nothing was observed): the share of the
  time we could see in which the node was serving.
- **busy** = ∫ utilization over the up time. ``utilization_bps = busy / observed``
  ("share of the node's GPU-time that was busy", IOracleHub.NodeLeaf).
- **GPU-hours delivered** = ``up`` only, rounded down to milli-GPU-hours: the
  oracle attests the capacity it witnessed and never extrapolates delivery
  across a gap (consumers see the coverage and may be stricter).
- **Energy.** From the cumulative counter when the device has one: the sum of
  positive increments between consecutive counter readings, pro-rated to the part
  of each interval inside the epoch. An increment across a gap still counts (the
  counter kept counting while we could not see). A decrease is a *reset*
  (driver reload, reboot) when the new value is small enough to have been
  accumulated since the previous reading at the plausible maximum power; the
  energy after the reset (the new value) counts. Any other decrease is a
  counter running backwards: nonsense. Without a counter, energy is the
  time-integral of power over the observed time, scaled to the whole epoch
  (gaps filled with the observed average, not with zero).
- **Efficiency** (not in the leaf; published in the proofs file and logs):
  ``busy_gpu_hours_per_mwh = (busy / 3600) / (energy_wh / 10⁶)``: useful
  GPU-hours bought with one MWh; and ``power_ratio = (energy_J / up) /
  reference_power_w``: average draw per serving GPU relative to the class's
  reference board power (≈ 0.3-1.0 healthy; well above 1 means a degraded or
  mis-declared node).

Nonsense excludes the node from the epoch's leaf set with a reason, never
raises: utilization outside 0..100 %, negative power or energy, a counter
running backwards, an energy increment implying more than
``plausible_power_factor ×`` the class's reference power, timestamps from the
future, or more devices than the registry says the node has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gpucap.attestation import BPS, SECONDS_PER_HOUR, milli_gpu_hours
from oracle.collectors.base import DeviceSeries, NodeTelemetry, Sample
from oracle.telemetry import EpochWindow, NodeInfo, NodeMeasurement

MJ_PER_WH = 3_600_000


@dataclass(frozen=True)
class AggregationPolicy:
    # A silence longer than gap_factor × interval is a gap.
    gap_factor: float = 2.0
    # Energy faster than this multiple of the class's reference power is impossible.
    plausible_power_factor: float = 2.0
    # Samples stamped more than this past "now" come from a skewed or lying clock.
    max_future_skew_s: float = 5.0


@dataclass(frozen=True)
class Rejection:
    """Why a node is left out of an epoch's leaf set."""

    node_id: int
    reason: str


@dataclass(frozen=True)
class NodeFigures:
    """The leaf figures plus the efficiency numbers derived from the same data."""

    measurement: NodeMeasurement
    observed_gpu_s: float
    up_gpu_s: float
    busy_gpu_s: float
    energy_j: float
    energy_from_counter: bool

    @property
    def busy_gpu_hours_per_mwh(self) -> float | None:
        if self.energy_j <= 0:
            return None
        return (self.busy_gpu_s / SECONDS_PER_HOUR) / (self.energy_j / 3.6e9)

    def power_ratio(self, reference_power_w: int) -> float | None:
        if self.up_gpu_s <= 0 or reference_power_w <= 0:
            return None
        return (self.energy_j / self.up_gpu_s) / reference_power_w

    def efficiency_json(self, reference_power_w: int) -> dict[str, float | None]:
        per_mwh = self.busy_gpu_hours_per_mwh
        ratio = self.power_ratio(reference_power_w)
        return {
            "busyGpuHoursPerMWh": None if per_mwh is None else round(per_mwh, 3),
            "powerRatio": None if ratio is None else round(ratio, 4),
        }


class _Nonsense(ValueError):
    pass


def aggregate(
    node: NodeInfo,
    telemetry: NodeTelemetry | None,
    window: EpochWindow,
    now: float,
    policy: AggregationPolicy = AggregationPolicy(),
) -> NodeFigures | Rejection:
    """The node's figures for ``window`` or why it cannot have any (see module doc)."""
    expected = node.gpu_count * window.seconds
    if telemetry is None or not telemetry.series:
        return _figures(0.0, 0.0, 0.0, 0.0, False, expected, window)
    try:
        gpus = sum(s.gpus for s in telemetry.series)
        if gpus > node.gpu_count:
            raise _Nonsense(f"reports {gpus} GPUs but the registry says {node.gpu_count}")
        max_hold = policy.gap_factor * telemetry.interval_s
        max_power_w = policy.plausible_power_factor * node.reference_power_w
        observed = up = busy = energy_j = 0.0
        from_counter = True
        for series in telemetry.series:
            samples = _clean(series, now, policy)
            o, u, b, held_power_j = _hold(samples, window, max_hold)
            observed += o * series.gpus
            up += u * series.gpus
            busy += b * series.gpus
            counter_j = _counter_energy_j(samples, window, max_power_w * series.gpus, series)
            if counter_j is None:
                from_counter = False
                # Gaps are filled with the observed average draw, not with zero.
                energy_j += held_power_j * (window.seconds / o) if o else 0.0
            else:
                energy_j += counter_j
    except _Nonsense as exc:
        return Rejection(node.node_id, str(exc))
    return _figures(observed, up, busy, energy_j, from_counter, expected, window)


def _figures(
    observed: float,
    up: float,
    busy: float,
    energy_j: float,
    from_counter: bool,
    expected: int,
    window: EpochWindow,
) -> NodeFigures:
    observed = min(observed, float(expected))
    measurement = NodeMeasurement(
        uptime_bps=_bps(up, observed),
        utilization_bps=_bps(busy, observed),
        sample_coverage_bps=_bps(observed, expected),
        energy_wh=int(energy_j // SECONDS_PER_HOUR),
        milli_gpu_hours=milli_gpu_hours(int(up)),
    )
    return NodeFigures(measurement, observed, up, busy, energy_j, from_counter)


def _bps(part: float, whole: float) -> int:
    if whole <= 0:
        return 0
    return max(0, min(BPS, math.floor(part * BPS / whole)))


def _clean(series: DeviceSeries, now: float, policy: AggregationPolicy) -> list[Sample]:
    """Validated samples in time order (a clock that stepped back is re-sorted)."""
    for s in series.samples:
        if not math.isfinite(s.t):
            raise _Nonsense(f"{series.device}: sample without a finite timestamp")
        if s.t > now + policy.max_future_skew_s:
            raise _Nonsense(
                f"{series.device}: sample stamped {s.t - now:.0f}s in the future (clock skew)"
            )
        if s.utilization_pct is not None and not 0 <= s.utilization_pct <= 100:
            raise _Nonsense(f"{series.device}: utilization {s.utilization_pct}% outside 0..100")
        if s.power_w is not None and not (math.isfinite(s.power_w) and s.power_w >= 0):
            raise _Nonsense(f"{series.device}: power {s.power_w} W is not a non-negative number")
        if s.energy_mj is not None and s.energy_mj < 0:
            raise _Nonsense(f"{series.device}: energy counter {s.energy_mj} mJ is negative")
    ordered = sorted(series.samples, key=lambda s: s.t)
    # Two readings at the same instant: keep the later-received one.
    deduped: list[Sample] = []
    for s in ordered:
        if deduped and deduped[-1].t == s.t:
            deduped[-1] = s
        else:
            deduped.append(s)
    return deduped


def _hold(
    samples: list[Sample], window: EpochWindow, max_hold: float
) -> tuple[float, float, float, float]:
    """(observed s, up s, busy s, ∫power dt over observed J) of one device inside the window."""
    observed = up = busy = power_j = 0.0
    for i, s in enumerate(samples):
        until = s.t + max_hold
        if i + 1 < len(samples):
            until = min(until, samples[i + 1].t)
        lo, hi = max(s.t, window.start), min(until, window.end)
        if hi <= lo:
            continue
        held = hi - lo
        observed += held
        if s.power_w is not None:
            power_j += s.power_w * held
        if s.up:
            up += held
            busy += held * (s.utilization_pct or 0.0) / 100
    return observed, up, busy, power_j


def _counter_energy_j(
    samples: list[Sample], window: EpochWindow, max_power_w: float, series: DeviceSeries
) -> float | None:
    """Energy in J from the cumulative counter, or None if the device has no counter."""
    readings = [s for s in samples if s.energy_mj is not None]
    if len(readings) < 2:
        return None if not readings else 0.0
    total_mj = 0.0
    for a, b in zip(readings, readings[1:], strict=False):
        dt = b.t - a.t
        lo, hi = max(a.t, window.start), min(b.t, window.end)
        if hi <= lo:
            continue
        assert a.energy_mj is not None and b.energy_mj is not None
        ceiling_mj = max_power_w * dt * 1000
        if b.energy_mj >= a.energy_mj:
            delta = b.energy_mj - a.energy_mj
            if delta > ceiling_mj:
                raise _Nonsense(
                    f"{series.device}: energy counter rose {delta / 1000:.0f} J in {dt:.0f}s"
                    f" ({delta / 1000 / dt:.0f} W > plausible {max_power_w:.0f} W)"
                )
        elif b.energy_mj <= ceiling_mj:
            delta = b.energy_mj  # reset: what was counted since it restarted from 0
        else:
            raise _Nonsense(
                f"{series.device}: energy counter ran backwards"
                f" {a.energy_mj} → {b.energy_mj} mJ at t={b.t:.0f}"
            )
        total_mj += delta * (hi - lo) / dt
    return total_mj / 1000
