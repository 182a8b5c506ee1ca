"""The challenge's matrix product on the best device present.

PyTorch (CUDA) or CuPy when installed with a GPU, numpy otherwise: the CPU path
is what tests and GPU-less hosts run. On a GPU, TF32 tensor cores are allowed:
the challenge's small integers are exact in TF32 inputs and the products are
accumulated in FP32, so the result is the same bytes as numpy's. Only the
product is timed (inputs already on the device, the device synchronised at
both ends); generating and moving the matrices (the challenge's prepare step)
is not.
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


class Loaded:
    """A challenge's ``A`` and ``B`` on the device, ready for the timed product."""

    def __init__(self, a: np.ndarray, b: np.ndarray, use: str | None = None) -> None:
        self.use = use or backend()
        if self.use == "torch":
            import torch

            torch.backends.cuda.matmul.allow_tf32 = True
            self.a, self.b = torch.from_numpy(a).cuda(), torch.from_numpy(b).cuda()
            _ = self.a[:1] @ self.b[:, :1]  # cuBLAS starts outside the timed part
            torch.cuda.synchronize()
        elif self.use == "cupy":
            import cupy

            self.a, self.b = cupy.asarray(a), cupy.asarray(b)
            _ = self.a[:1] @ self.b[:, :1]
            cupy.cuda.Device().synchronize()
        else:
            self.a, self.b = a, b

    def product(self, signs: np.ndarray) -> tuple[np.ndarray, float]:
        """``A @ (diag(signs) B)`` as float32, and the seconds the product itself took."""
        if self.use == "torch":
            import torch

            b = self.b * torch.from_numpy(signs).cuda()[:, None]
            torch.cuda.synchronize()
            started = time.perf_counter()
            c = self.a @ b
            torch.cuda.synchronize()
            elapsed = time.perf_counter() - started
            return c.cpu().numpy(), elapsed
        if self.use == "cupy":
            import cupy

            b = self.b * cupy.asarray(signs)[:, None]
            cupy.cuda.Device().synchronize()
            started = time.perf_counter()
            c = self.a @ b
            cupy.cuda.Device().synchronize()
            elapsed = time.perf_counter() - started
            return cupy.asnumpy(c), elapsed
        b = self.b * signs[:, None]
        started = time.perf_counter()
        c = self.a @ b
        return c, time.perf_counter() - started
