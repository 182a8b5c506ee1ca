"""The web dashboard: static HTML/CSS/ES modules served by the API itself (no build step).

``/dashboard/`` is the page; it reads only the public ``/api/v1`` routes, so what it
shows is exactly what any API client sees. Chart.js comes from ``Settings.chartjs_dir``
(npm's copy by default, pinned by package-lock.json): one source for the library, and a
deployment without node_modules points the setting at wherever it keeps the file.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from backend.config import Settings

STATIC_DIR = Path(__file__).resolve().parent / "static"
CHARTJS_BUNDLE = "chart.umd.min.js"
log = logging.getLogger(__name__)


def mount_dashboard(app: FastAPI, settings: Settings) -> None:
    """Serve the dashboard at ``/dashboard/`` and send ``/`` there."""
    if not (settings.chartjs_dir / CHARTJS_BUNDLE).is_file():
        # The page still loads and says so; the API is unaffected.
        log.warning(
            "dashboard: %s not found in %s (GPUCAP_CHARTJS_DIR; run `make setup`): "
            "charts will not render",
            CHARTJS_BUNDLE,
            settings.chartjs_dir,
        )
    app.mount(
        "/dashboard/vendor/chartjs",
        StaticFiles(directory=settings.chartjs_dir, check_dir=False),
        name="dashboard-chartjs",
    )
    app.mount("/dashboard", StaticFiles(directory=STATIC_DIR, html=True), name="dashboard")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/", status_code=307)
