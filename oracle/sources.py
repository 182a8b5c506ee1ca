"""Wire the configured telemetry source (and, for live scrapers, its sampler)."""

from __future__ import annotations

from oracle.collectors.base import PolledSource, Sampler, SampleStore, TelemetrySource
from oracle.collectors.simulated import SimulatedFleet
from oracle.config import OracleSettings

# Keep a day of live samples: enough to catch up on late epochs after an outage.
RETENTION_S = 86_400


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
    store = SampleStore(RETENTION_S)
    if settings.source == "dcgm":
        from oracle.collectors.dcgm import DcgmCollector

        collector = DcgmCollector(settings.dcgm_target_map())
    else:
        from oracle.collectors.nvml import NvmlCollector

        assert settings.nvml_node_id is not None  # checked by OracleSettings
        collector = NvmlCollector(settings.nvml_node_id)
    return PolledSource(store, interval), Sampler(collector, store, interval)
