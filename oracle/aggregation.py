"""Epoch aggregation: raw device samples → one node's leaf figures, or a rejection.

Definitions (all in GPU-seconds so nodes of any size compare; ``W`` is the
epoch's length, ``G`` the node's registered GPU count):

- **Holding.** A sample's values hold from its timestamp until the next sample,
  but never longer than ``max_hold = gap_factor × interval``. Time not held by any
  sample is a *gap*: missing data. A gap is neither downtime nor idleness nor
  zero energy; it lowers only ``sample_coverage_bps``.
- **Unknown is not zero.** A sample of a serving device that lacks its
  utilization, or lacks both power and an energy-counter value, is *incomplete*:
  the time it holds counts as a gap (lower coverage), never as 0 % busy or 0 W.
  A down sample needs neither (a down GPU is not busy whatever it says).
- **observed** = Σ over devices of held time inside ``[start, end)`` × GPUs the
  series stands for. ``sample_coverage_bps = observed / (G × W)``.
- **up** = the observed time whose sample says ``up``.
  ``uptime_bps = up / observed`` (0 when nothing was observed): the share of the
  time we could see in which the node was serving.
- **busy** = ∫ utilization over the up time. ``utilization_bps = busy / observed``
  ("share of the node's GPU-time that was busy", IOracleHub.NodeLeaf).
- **utilization coverage** = time held by samples whose utilization is known
  (a down sample counts: a down GPU is not busy) / ``G × W``. At least the sample
  coverage; 0 means the utilization is unknown, not 0 %.
- **busy GPU-seconds** = ``busy`` rounded down (feeds the leaf's cumulative
  ``cumBusyGpuSeconds``; GPUs × seconds × utilization, for billed hours).
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
  time-integral of power over the time power was known, scaled to the whole
  epoch (gaps filled with the observed average, not with zero).
- **Energy coverage** = GPU-time whose energy was measured / ``G × W``: for a
  counter, the stretches between consecutive readings inside the epoch; without
  one, the time held by samples carrying power. A device with neither adds no
  energy and no coverage; a node with no energy coverage at all publishes 0 J
  with coverage 0, which the leaf defines as *unknown* (never "drew nothing").
  Energy is in whole joules, rounded down.
- **Counter against power.** Where a device reports both, the counter's
  increments and the integral of its power (trapezoids between consecutive
  counter readings of a serving device, resets left out) must agree within
  ``energy_power_tolerance`` (relative) or ``energy_power_floor_w`` × the
  seconds compared, whichever is larger; otherwise the node is excluded: a
  counter frozen while power reads 200 W, or rising at a tenth of the power's
  integral, would make the node look many times more efficient than it is.
- **Efficiency** (not in the leaf; published in the proofs file and logs):
  ``busy_gpu_hours_per_mwh = (busy / 3600) / (energy_wh / 10⁶)``: useful
  GPU-hours bought with one MWh; and ``power_ratio = (energy_J / up) /
  reference_power_w``: average draw per serving GPU relative to the class's
  reference board power (≈ 0.1-1.0 healthy, real idle draw being 7.5-23 % of
  it, up to 31.5 % for a GPU a pod holds at full clocks; a busy T4 or A100 reads
  0.97-1.02; well above 1 means a degraded or mis-declared node).

Nonsense excludes the node from the epoch's leaf set with a reason, never
raises: utilization outside 0..100 %, negative power or energy, a counter
running backwards, an energy increment implying more than
``plausible_power_factor ×`` the class's reference power, a counter that
disagrees with the power readings, timestamps from the future, or more devices
than the registry says the node has.
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
    # Counter increments and ∫power may differ by this share of the larger one...
    energy_power_tolerance: float = 0.25
    # ...or by this many watts over the compared time (idle draw is noisy), whichever is larger.
    energy_power_floor_w: float = 10.0


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
        return _figures(_Totals(), False, expected)
    try:
        gpus = sum(s.gpus for s in telemetry.series)
        if gpus > node.gpu_count:
            raise _Nonsense(f"reports {gpus} GPUs but the registry says {node.gpu_count}")
        max_hold = policy.gap_factor * telemetry.interval_s
        max_power_w = policy.plausible_power_factor * node.reference_power_w
        t = _Totals()
        from_counter = True
        for series in telemetry.series:
            samples = _clean(series, now, policy)
            held = _hold(samples, window, max_hold)
            t.observed += held.observed * series.gpus
            t.up += held.up * series.gpus
            t.busy += held.busy * series.gpus
            t.utilization_known += held.utilization_known * series.gpus
            counter = _counter_energy_j(samples, window, max_power_w * series.gpus, series, policy)
            if counter is None:
                from_counter = False
                # Gaps are filled with the average draw while power was known, not with zero.
                if held.power_s:
                    t.energy_j += held.power_j * (window.seconds / held.power_s)
                    t.energy_known += held.power_s * series.gpus
            else:
                t.energy_j += counter[0]
                t.energy_known += counter[1] * series.gpus
    except _Nonsense as exc:
        return Rejection(node.node_id, str(exc))
    return _figures(t, from_counter, expected)


@dataclass
class _Totals:
    """GPU-seconds (and joules) summed over a node's devices."""

    observed: float = 0.0
    up: float = 0.0
    busy: float = 0.0
    utilization_known: float = 0.0
    energy_j: float = 0.0
    energy_known: float = 0.0


def _figures(t: _Totals, from_counter: bool, expected: int) -> NodeFigures:
    observed = min(t.observed, float(expected))
    energy_coverage = _coverage_bps(t.energy_known, expected)
    measurement = NodeMeasurement(
        uptime_bps=_bps(t.up, observed),
        utilization_bps=_bps(t.busy, observed),
        sample_coverage_bps=_bps(observed, expected),
        utilization_coverage_bps=max(
            _bps(observed, expected), _coverage_bps(t.utilization_known, expected)
        ),
        energy_coverage_bps=energy_coverage,
        # Unknown energy is published as 0 with coverage 0, never as a measured zero.
        energy_joules=int(t.energy_j) if energy_coverage else 0,
        milli_gpu_hours=milli_gpu_hours(int(t.up)),
        busy_gpu_seconds=int(t.busy),
    )
    return NodeFigures(measurement, observed, t.up, t.busy, t.energy_j, from_counter)


def _bps(part: float, whole: float) -> int:
    if whole <= 0:
        return 0
    return max(0, min(BPS, math.floor(part * BPS / whole)))


def _coverage_bps(part: float, whole: float) -> int:
    """Like ``_bps``, but any known time is at least 1 bps: 0 is reserved for unknown."""
    bps = _bps(part, whole)
    return max(bps, 1) if part > 0 and whole > 0 else bps


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


@dataclass
class _Held:
    """Seconds (and joules) one device's samples hold inside the window."""

    observed: float = 0.0
    up: float = 0.0
    busy: float = 0.0
    power_s: float = 0.0  # held by samples that carry power
    power_j: float = 0.0  # ∫ power over power_s
    utilization_known: float = 0.0  # held by samples whose utilization is known (or down)


def _complete(s: Sample) -> bool:
    """Whether a sample says enough to count as observed (see the module doc)."""
    if not s.up:
        return True
    return s.utilization_pct is not None and (s.power_w is not None or s.energy_mj is not None)


def _hold(samples: list[Sample], window: EpochWindow, max_hold: float) -> _Held:
    out = _Held()
    for i, s in enumerate(samples):
        until = s.t + max_hold
        if i + 1 < len(samples):
            until = min(until, samples[i + 1].t)
        lo, hi = max(s.t, window.start), min(until, window.end)
        if hi <= lo:
            continue
        held = hi - lo
        if s.power_w is not None:
            out.power_s += held
            out.power_j += s.power_w * held
        if not s.up or s.utilization_pct is not None:
            out.utilization_known += held
        if not _complete(s):
            continue  # unknown, not zero: a gap
        out.observed += held
        if s.up:
            assert s.utilization_pct is not None
            out.up += held
            out.busy += held * s.utilization_pct / 100
    return out


def _counter_energy_j(
    samples: list[Sample],
    window: EpochWindow,
    max_power_w: float,
    series: DeviceSeries,
    policy: AggregationPolicy,
) -> tuple[float, float] | None:
    """(energy in J, seconds it covers) from the cumulative counter, or None if the
    device has no counter. One reading covers nothing (energy unknown, not zero)."""
    readings = [s for s in samples if s.energy_mj is not None]
    if len(readings) < 2:
        return None if not readings else (0.0, 0.0)
    total_mj = covered_s = 0.0
    # The same stretches measured by the power readings, to cross-check the counter.
    compared_s = compared_counter_mj = compared_power_mj = 0.0
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
        share = (hi - lo) / dt
        total_mj += delta * share
        covered_s += hi - lo
        if (
            b.energy_mj >= a.energy_mj
            and a.up
            and b.up
            and a.power_w is not None
            and b.power_w is not None
        ):
            compared_s += hi - lo
            compared_counter_mj += delta * share
            compared_power_mj += (a.power_w + b.power_w) / 2 * dt * 1000 * share
    if compared_s > 0:
        _check_counter_against_power(
            compared_counter_mj / 1000, compared_power_mj / 1000, compared_s, series, policy
        )
    return total_mj / 1000, covered_s


def _check_counter_against_power(
    counter_j: float,
    power_j: float,
    seconds: float,
    series: DeviceSeries,
    policy: AggregationPolicy,
) -> None:
    slack = max(
        policy.energy_power_tolerance * max(counter_j, power_j),
        policy.energy_power_floor_w * series.gpus * seconds,
    )
    if abs(counter_j - power_j) > slack:
        raise _Nonsense(
            f"{series.device}: energy counter says {counter_j:.0f} J ({counter_j / seconds:.1f} W)"
            f" but its power readings integrate to {power_j:.0f} J ({power_j / seconds:.1f} W)"
            f" over the same {seconds:.0f}s"
        )
