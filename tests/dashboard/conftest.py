"""Dashboard tests: the backend's real stack (uvicorn API + Celery worker + Redis + anvil,
tests/backend/conftest.py) serving the page to Debian's Chromium, driven by Playwright.

No browser is ever downloaded: Playwright launches /usr/bin/chromium
(toolchain/bootstrap.sh installs it with apt when it is missing)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.backend.conftest import backend, stack  # noqa: F401  (fixtures, re-exported)

CHROMIUM = Path(os.environ.get("GPUCAP_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: `make setup` installs Debian's chromium "
            "(or set GPUCAP_CHROMIUM to a Chromium binary)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def refusals() -> set[tuple[int, str]]:
    """(status, path) answers a test provokes on purpose (an order the API refuses): the
    browser logs each as a console error, which the `page` fixture then does not count."""
    return set()
