"""Wire the configured telemetry source (and, for live scrapers, its sampler)."""

from __future__ import annotations

from pathlib import Path

from oracle.collectors.base import PolledSource, Sampler, SampleStore, TelemetrySource
from oracle.collectors.simulated import SimulatedFleet
from oracle.config import OracleSettings

# Keep a day of live samples: enough to catch up on late epochs after an outage.
RETENTION_S = 86_400
# A dcgm-exporter answers in milliseconds; one slower than this is a gap, not a wait.
DCGM_DEADLINE_S = 5.0


def samples_path(settings: OracleSettings) -> Path:
    """The live sample store, in the oracle's state folder."""
    return settings.state_path.parent / "samples.sqlite3"


def build_source(settings: OracleSettings) -> tuple[TelemetrySource, Sampler | None]:
    """The source the reporter reads, and the sampler to start for live sources.

    Raises CollectorUnavailable if the configured source cannot work on this host.
    """
    if settings.source == "simulated":
        fleet = SimulatedFleet(
            settings.fleet_seed, settings.fleet_samples_per_epoch, settings.fleet_day_seconds
        )
        return fleet, None
    interval = settings.sample_interval_seconds
    # Beside the write-ahead state: what this oracle saw survives a restart.
    store = SampleStore(RETENTION_S, samples_path(settings))
    if settings.source == "dcgm":
        from oracle.collectors.dcgm import DcgmCollector

        # One deadline for the whole poll, well inside the interval.
        collector = DcgmCollector(
            settings.dcgm_target_map(), deadline_s=min(DCGM_DEADLINE_S, 0.8 * interval)
        )
    else:
        from oracle.collectors.nvml import NvmlCollector

        assert settings.nvml_node_id is not None  # checked by OracleSettings
        collector = NvmlCollector(settings.nvml_node_id)
    return PolledSource(store, interval), Sampler(collector, store, interval)
