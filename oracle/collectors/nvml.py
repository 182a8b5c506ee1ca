"""NVIDIA NVML through nvidia-ml-py (``pynvml``): the GPUs of the host the oracle runs on.

One oracle agent per node: every GPU NVML sees belongs to ``node_id``. Per GPU
and per poll: utilization, power draw (mW → W), the total energy counter (mJ
since the driver loaded), memory use and temperature (logged at debug level:
useful to an operator, not part of the leaf), and health.

Utilization is the mean of the driver's own utilization samples since the
previous poll (``nvmlDeviceGetSamples``), so it covers the whole interval, not
the instant of the poll; where the driver keeps no samples it falls back to
``nvmlDeviceGetUtilizationRates``. A GPU in MIG mode answers NotSupported to
both: its utilization is then *unknown* (None, which the aggregation counts as
a gap), while the GPU stays up and its power and energy are kept.

Health, as the DCGM path has it: a GPU with uncorrectable volatile ECC errors
(where the board supports ECC), or one that raised a fatal XID (an
``nvmlEventTypeXidCriticalError`` event whose XID is in ``FATAL_XIDS``; the
events are drained at every poll), is recorded as down, the latter until the
collector restarts, as DCGM's last-XID field stays set. A GPU that stops
answering altogether (e.g. fallen off the bus) is down, not absent.

On a host without the NVIDIA driver or without a GPU, ``NvmlCollector()``
raises ``CollectorUnavailable`` saying so, instead of a bare NVML error.
"""

from __future__ import annotations

import logging

import pynvml

from oracle.collectors.base import FATAL_XIDS, CollectorUnavailable, Reading, Sample

log = logging.getLogger("gpucap.oracle.collectors.nvml")

_NO_DRIVER = {
    pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
    pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
}

# nvmlValueType_t → the c_nvmlValue_t member holding it
_VALUE_FIELDS = {
    pynvml.NVML_VALUE_TYPE_DOUBLE: "dVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_INT: "uiVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG: "ulVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG: "ullVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_LONG_LONG: "sllVal",
    pynvml.NVML_VALUE_TYPE_SIGNED_INT: "siVal",
    pynvml.NVML_VALUE_TYPE_UNSIGNED_SHORT: "usVal",
}


def _optional(call, *args):
    """The value, or None where the board does not support the query."""
    try:
        return call(*args)
    except pynvml.NVMLError_NotSupported:
        return None


class NvmlCollector:
    name = "nvml"

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as exc:
            if exc.value in _NO_DRIVER:
                raise CollectorUnavailable(
                    f"no NVIDIA driver/GPU on this host: NVML could not start ({exc})"
                ) from exc
            raise CollectorUnavailable(f"NVML could not start: {exc}") from exc
        count = pynvml.nvmlDeviceGetCount()
        if count == 0:
            pynvml.nvmlShutdown()
            raise CollectorUnavailable("no NVIDIA GPU on this host: NVML sees 0 devices")
        self._handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        # Driver timestamp (µs) of the last utilization sample read, per GPU.
        self._last_sample_us = [0] * count
        # GPU index → the fatal XID it raised.
        self._fatal_xid: dict[int, int] = {}
        self._events = self._watch_xids()
        log.info("NVML: %d GPU(s) on this host reported as node %d", count, node_id)

    def close(self) -> None:
        if self._events is not None:
            pynvml.nvmlEventSetFree(self._events)
        pynvml.nvmlShutdown()

    def _watch_xids(self):
        """An event set receiving every GPU's critical XIDs, or None if none can."""
        try:
            events = pynvml.nvmlEventSetCreate()
        except pynvml.NVMLError as exc:
            log.warning("NVML: no event set (%s): fatal XIDs will not be seen", exc)
            return None
        watched = 0
        for index, handle in enumerate(self._handles):
            try:
                pynvml.nvmlDeviceRegisterEvents(
                    handle, pynvml.nvmlEventTypeXidCriticalError, events
                )
                watched += 1
            except pynvml.NVMLError as exc:
                log.warning("NVML gpu%d: XID events unavailable (%s)", index, exc)
        return events if watched else None

    def _drain_xids(self) -> None:
        if self._events is None:
            return
        while True:
            try:
                event = pynvml.nvmlEventSetWait_v2(self._events, 0)
            except pynvml.NVMLError as exc:
                if exc.value != pynvml.NVML_ERROR_TIMEOUT:
                    log.warning("NVML: reading XID events failed: %s", exc)
                return  # TIMEOUT: no event waiting
            xid = int(event.eventData)
            index = pynvml.nvmlDeviceGetIndex(event.device)
            if xid in FATAL_XIDS:
                log.error("NVML gpu%d: fatal XID %d; recorded as down", index, xid)
                self._fatal_xid[index] = xid
            else:
                log.warning("NVML gpu%d: XID %d", index, xid)

    def poll(self, now: float) -> list[Reading]:
        self._drain_xids()
        readings = []
        for index, handle in enumerate(self._handles):
            device = f"gpu{index}"
            try:
                readings.append(Reading(self.node_id, device, self._sample(index, handle, now)))
            except pynvml.NVMLError as exc:
                # A GPU that stops answering (e.g. fallen off the bus) is down, not absent.
                log.warning("NVML %s: %s; recorded as down", device, exc)
                readings.append(Reading(self.node_id, device, Sample(now, None, None, None, False)))
        return readings

    def _utilization(self, index: int, handle) -> float | None:
        """Mean busy % since the previous poll; None when the GPU cannot say (MIG)."""
        try:
            value_type, samples = pynvml.nvmlDeviceGetSamples(
                handle, pynvml.NVML_GPU_UTILIZATION_SAMPLES, self._last_sample_us[index]
            )
        except pynvml.NVMLError as exc:
            # NOT_FOUND: no sample since the last read; NOT_SUPPORTED: MIG or old boards.
            if exc.value not in (pynvml.NVML_ERROR_NOT_FOUND, pynvml.NVML_ERROR_NOT_SUPPORTED):
                raise
            samples = []
        if samples:
            member = _VALUE_FIELDS[value_type]
            values = [float(getattr(s.sampleValue, member)) for s in samples]
            self._last_sample_us[index] = max(s.timeStamp for s in samples)
            return sum(values) / len(values)
        rates = _optional(pynvml.nvmlDeviceGetUtilizationRates, handle)
        return None if rates is None else float(rates.gpu)

    def _sample(self, index: int, handle, now: float) -> Sample:
        mig = _optional(pynvml.nvmlDeviceGetMigMode, handle)
        util = self._utilization(index, handle)
        power_mw = _optional(pynvml.nvmlDeviceGetPowerUsage, handle)
        energy_mj = _optional(pynvml.nvmlDeviceGetTotalEnergyConsumption, handle)
        ecc = _optional(
            pynvml.nvmlDeviceGetTotalEccErrors,
            handle,
            pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED,
            pynvml.NVML_VOLATILE_ECC,
        )
        memory = _optional(pynvml.nvmlDeviceGetMemoryInfo, handle)
        temperature = _optional(
            pynvml.nvmlDeviceGetTemperature, handle, pynvml.NVML_TEMPERATURE_GPU
        )
        log.debug(
            "gpu%d util %s%% power %s mW energy %s mJ mem %s/%s B temp %s C ecc %s mig %s",
            index,
            util,
            power_mw,
            energy_mj,
            getattr(memory, "used", None),
            getattr(memory, "total", None),
            temperature,
            ecc,
            mig,
        )
        return Sample(
            t=now,
            utilization_pct=util,
            power_w=None if power_mw is None else power_mw / 1000,
            energy_mj=None if energy_mj is None else int(energy_mj),
            up=not ecc and index not in self._fatal_xid,
        )
