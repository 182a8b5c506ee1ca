"""schemathesis against the live API's OpenAPI document: no input makes it answer 5xx,
and every answer is one the document describes (status code, content type, body schema).

Real uvicorn, worker, Redis and anvil (the ``stack`` fixture); schemathesis runs from
its own tool venv (.toolchain/schemathesis-venv: its hypothesis cannot share .venv
with brownie's pinned one). The chain-dependent routes answer 4xx for fuzzed input
or 2xx; a 503 would only mean the chain is down, which it is not here.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.backend.backend_helpers import ROOT, Stack
from tests.support.profiles import active_profile

SCHEMATHESIS = ROOT / ".toolchain" / "schemathesis-venv" / "bin" / "schemathesis"
# Per operation: 25 in CI, 300 in the slow profile; $GPUCAP_SCHEMATHESIS_EXAMPLES overrides.
EXAMPLES = os.environ.get(
    "GPUCAP_SCHEMATHESIS_EXAMPLES", "300" if active_profile().name == "slow" else "25"
)


def test_no_input_makes_the_api_fail_or_answer_off_its_document(stack: Stack) -> None:
    assert SCHEMATHESIS.exists(), "run `make setup`: it installs schemathesis"
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{stack.api_url}/openapi.json",
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,"
            "response_schema_conformance",
            "--max-examples",
            EXAMPLES,
            "--workers",
            "1",
            "--seed",
            "1",
            "--suppress-health-check",
            "all",
            # /health's 503 is its documented answer when a part is slow or down (a
            # busy worker misses the 0.5 s ping under fuzzing load), not a server error.
            "--exclude-path",
            "/health",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "NO_COLOR": "1"},
    )
    if result.returncode != 0:
        pytest.fail(result.stdout[-8000:] + result.stderr[-2000:], pytrace=False)
