"""The challenge kernel on a real GPU, where one is present."""

from __future__ import annotations

import pytest

from agent.kernels import Loaded, backend
from agent.protocol import expected_rows, matrix, signs

BACKEND = backend()
pytestmark = pytest.mark.skipif(
    BACKEND == "numpy",
    reason="no GPU reachable through PyTorch (CUDA) or CuPy on this host: only the CPU path runs",
)


def test_gpu_product_is_bit_exact():
    nonce = bytes(range(32))
    n = 4096  # an H100-class challenge at a 0.3 ms target; large enough to use tensor cores
    a, b = matrix(nonce, 0, n), matrix(nonce, 1, n)
    go = bytes(reversed(range(32)))
    c, elapsed = Loaded(a, b, BACKEND).product(signs(go, n))
    rows = [0, 1, 2047, 4095]
    # TF32 tensor cores, FP32 accumulation: the same bytes as the oracle's exact rows.
    assert (c[rows] == expected_rows(nonce, go, n, rows)).all()
    assert elapsed > 0
