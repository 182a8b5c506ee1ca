"""NVIDIA NVML through nvidia-ml-py (``pynvml``): the GPUs of the host the oracle runs on.

One oracle agent per node: every GPU NVML sees belongs to ``node_id``. Per GPU
and per poll: utilization (%), power draw (mW → W), the total energy counter
(mJ since the driver loaded), memory use and temperature (logged at debug level:
useful to an operator, not part of the leaf), and uncorrectable volatile ECC
errors where the board supports ECC (a GPU with any is recorded as down).

On a host without the NVIDIA driver or without a GPU, ``NvmlCollector()``
raises ``CollectorUnavailable`` saying so, instead of a bare NVML error.
"""

from __future__ import annotations

import logging

import pynvml

from oracle.collectors.base import CollectorUnavailable, Reading, Sample

log = logging.getLogger("gpucap.oracle.collectors.nvml")

_NO_DRIVER = {
    pynvml.NVML_ERROR_LIBRARY_NOT_FOUND,
    pynvml.NVML_ERROR_DRIVER_NOT_LOADED,
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
        log.info("NVML: %d GPU(s) on this host reported as node %d", count, node_id)

    def close(self) -> None:
        pynvml.nvmlShutdown()

    def poll(self, now: float) -> list[Reading]:
        readings = []
        for index, handle in enumerate(self._handles):
            device = f"gpu{index}"
            try:
                readings.append(Reading(self.node_id, device, self._sample(handle, now)))
            except pynvml.NVMLError as exc:
                # A GPU that stops answering (e.g. fallen off the bus) is down, not absent.
                log.warning("NVML %s: %s; recorded as down", device, exc)
                readings.append(Reading(self.node_id, device, Sample(now, None, None, None, False)))
        return readings

    @staticmethod
    def _sample(handle, now: float) -> Sample:
        util = pynvml.nvmlDeviceGetUtilizationRates(handle)
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
            "util %s%% power %s mW energy %s mJ mem %s/%s B temp %s C ecc %s",
            util.gpu,
            power_mw,
            energy_mj,
            getattr(memory, "used", None),
            getattr(memory, "total", None),
            temperature,
            ecc,
        )
        return Sample(
            t=now,
            utilization_pct=float(util.gpu),
            power_w=None if power_mw is None else power_mw / 1000,
            energy_mj=None if energy_mj is None else int(energy_mj),
            up=not ecc,
        )
