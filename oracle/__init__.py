"""gpucap's oracle daemon: measure nodes, sign each epoch's commitment, post it.

This is the walking skeleton: a simulated fleet as the telemetry source and,
on a dev chain, every oracle key held by one process so one daemon reaches the
quorum alone. The production shape (one key per oracle from an encrypted
keystore, quorum assembled across oracles, NVML/DCGM sources, metrics endpoint)
keeps the same seams: ``TelemetrySource``, ``Reporter.report_once`` and the
``Daemon`` lifecycle.
"""
