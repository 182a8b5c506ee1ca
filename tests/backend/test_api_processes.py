"""``python -m backend api --workers N``: N uvicorn processes on one port, one database.

A real HTTP server (the command users run), no chain needed: the read routes answer
from the index, which is empty here.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import requests

from backend.db.session import get_sessionmaker
from devnet.processes import ManagedProcess
from gpucap import devchain
from tests.backend.backend_helpers import node_row


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def test_two_api_processes_serve_one_port_and_share_the_database(tmp_path: Path) -> None:
    port = devchain.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCAP_")}
    env.update(
        {
            "GPUCAP_RUN_DIR": str(tmp_path),
            "GPUCAP_DATABASE_URL": f"sqlite:///{tmp_path / 'api.db'}",
            # Enqueuing is not exercised: any Redis URL will do, none is started.
            "GPUCAP_REDIS_URL": f"redis://127.0.0.1:{devchain.free_port()}/0",
            "GPUCAP_API_WORKERS": "2",
            "GPUCAP_API_ACCESS_LOG": "false",
        }
    )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        # Both serving processes up, not just the first: uvicorn starts them one by one,
        # and on a busy machine the second can take seconds longer to import the app.
        started = (tmp_path / "api.log").read_text().count("Application startup complete")
        if started < 2:
            return False
        try:
            return requests.get(base + "/api/v1/nodes", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    api = ManagedProcess(
        "api",
        [sys.executable, "-m", "backend", "api", "--port", str(port)],
        env,
        tmp_path / "api.log",
        ready,
        cwd=devchain.REPO_ROOT,
    )
    api.start(timeout=60)
    try:
        assert api.popen is not None
        # uvicorn's supervisor and (at least) its two serving processes
        assert len(_children(api.popen.pid)) >= 2
        # Every answer on the shared port comes from the one migrated database, and a
        # commit there (as the worker's indexer makes) is seen by both processes at once.
        with requests.Session() as http:
            answers = [http.get(base + "/api/v1/nodes", timeout=5) for _ in range(20)]
            assert {a.status_code for a in answers} == {200}
            assert {a.text for a in answers} == {"[]"}
            with get_sessionmaker(env["GPUCAP_DATABASE_URL"])() as session:
                session.add(node_row(7))
                session.commit()
            # fresh connections spread over both processes
            after = [requests.get(base + "/api/v1/nodes", timeout=5) for _ in range(20)]
        assert {tuple(n["node_id"] for n in a.json()) for a in after} == {(7,)}
        log = (tmp_path / "api.log").read_text()
        assert log.count("Started server process") == 2, log
        assert "GET /api/v1/nodes" not in log  # access log off
    finally:
        api.stop()
