"""Wire the configured telemetry source (and, for live scrapers, its sampler)."""

from __future__ import annotations

from pathlib import Path

from oracle.challenges import ChallengeLedger, ChallengePolicy, Challenger
from oracle.collectors.agent import AgentCollector, AgentSource, CachedRegistry
from oracle.collectors.base import (
    Collector,
    PolledSource,
    Sampler,
    SampleStore,
    TelemetrySource,
)
from oracle.collectors.simulated import SimulatedFleet
from oracle.config import OracleSettings

# Keep a day of live samples: enough to catch up on late epochs after an outage.
RETENTION_S = 86_400
# A dcgm-exporter (or node agent) answers in milliseconds; one slower than this is a gap.
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
    if settings.source == "agent":
        return _agent_source(settings, store, interval)
    collector: Collector
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


def challenges_path(settings: OracleSettings) -> Path:
    """This oracle's challenge verdicts, in its state folder."""
    return settings.state_path.parent / "challenges.sqlite3"


def challenge_policy(settings: OracleSettings) -> ChallengePolicy:
    return ChallengePolicy(
        mean_interval_s=settings.challenge_mean_interval_seconds,
        rows=settings.challenge_rows,
        target_seconds=settings.challenge_target_seconds,
        min_efficiency=settings.challenge_min_efficiency,
        prepare_s=settings.challenge_prepare_seconds,
        overhead_s=settings.challenge_overhead_seconds,
        kernel_slack_s=settings.challenge_kernel_slack_seconds,
    )


def _agent_source(
    settings: OracleSettings, store: SampleStore, interval: float
) -> tuple[AgentSource, Sampler]:
    """Signed agent samples, checked against the registry; challenges when enabled."""
    from oracle.chain import ChainClient

    chain = ChainClient.connect(settings.rpc_url, str(settings.manifest_path))
    registry = CachedRegistry(chain)
    targets = settings.agent_target_map()
    chain_id = chain.deployment.chain_id
    ledger = ChallengeLedger(challenges_path(settings))
    collector = AgentCollector(
        targets,
        registry,
        chain_id,
        max_skew_s=settings.agent_max_skew_seconds,
        deadline_s=min(DCGM_DEADLINE_S, 0.8 * interval),
    )
    if settings.challenge_mean_interval_seconds > 0:
        collector.challenger = Challenger(
            targets,
            registry,
            chain_id,
            challenge_policy(settings),
            ledger,
            collector.gpus_of,
        )
    return AgentSource(store, interval, ledger), Sampler(collector, store, interval)
