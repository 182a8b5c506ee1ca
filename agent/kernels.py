"""The challenge's matrix product on the best device present.

PyTorch (CUDA) or CuPy when installed with a GPU, numpy otherwise: the CPU path
is what tests and GPU-less hosts run. On a GPU, TF32 tensor cores are allowed:
the challenge's small integers are exact in TF32 inputs and the products are
accumulated in FP32, so the result is the same bytes as numpy's. Only the
product is timed (inputs already on the device, the device synchronised at
both ends); generating and moving the matrices is not.
"""

from __future__ import annotations

import time

import numpy as np


def backend() -> str:
    """``torch``, ``cupy`` or ``numpy``: the first that can reach a GPU, numpy otherwise."""
    try:
        import torch

        if torch.cuda.is_available():
            return "torch"
    except ImportError:
        pass
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            return "cupy"
    except Exception:  # noqa: BLE001 - no CuPy, or CuPy without a driver
        pass
    return "numpy"


def timed_matmul(a: np.ndarray, b: np.ndarray, use: str | None = None) -> tuple[np.ndarray, float]:
    """``a @ b`` as float32 and the seconds the product itself took."""
    use = use or backend()
    if use == "torch":
        import torch

        torch.backends.cuda.matmul.allow_tf32 = True
        ta, tb = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
        _ = ta[:1] @ tb[:, :1]  # cuBLAS starts outside the timed part
        torch.cuda.synchronize()
        started = time.perf_counter()
        tc = ta @ tb
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - started
        return tc.cpu().numpy(), elapsed
    if use == "cupy":
        import cupy

        ca, cb = cupy.asarray(a), cupy.asarray(b)
        _ = ca[:1] @ cb[:, :1]  # cuBLAS starts outside the timed part
        cupy.cuda.Device().synchronize()
        started = time.perf_counter()
        cc = ca @ cb
        cupy.cuda.Device().synchronize()
        elapsed = time.perf_counter() - started
        return cupy.asnumpy(cc), elapsed
    started = time.perf_counter()
    c = a @ b
    return c, time.perf_counter() - started
