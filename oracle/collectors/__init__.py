"""Pluggable telemetry sources (see base.py for the interface)."""

from oracle.collectors.base import (
    Collector,
    CollectorUnavailable,
    DeviceSeries,
    NodeTelemetry,
    PolledSource,
    Reading,
    Sample,
    Sampler,
    SampleStore,
    TelemetrySource,
)
from oracle.collectors.simulated import SimulatedFleet, synthetic_nodes

__all__ = [
    "Collector",
    "CollectorUnavailable",
    "DeviceSeries",
    "NodeTelemetry",
    "PolledSource",
    "Reading",
    "Sample",
    "SampleStore",
    "Sampler",
    "SimulatedFleet",
    "TelemetrySource",
    "synthetic_nodes",
]
