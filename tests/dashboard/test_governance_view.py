"""The dashboard's governance view in a real browser (Debian's Chromium via Playwright)
against the real stack on a deployment handed over to a timelock: an announced change is
listed with its target, function, arguments and time of effect, turns due when the chain's
clock reaches it (anvil's time advanced, not waited for), and moves to the history once
executed."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from brownie import chain

from scripts.deploy import DeployConfig, deploy_system, hand_over_to_timelock, write_manifest
from tests.backend.backend_helpers import ROOT, Stack, wait_for
from tests.conftest import LiveDeployment

DELAY = 3_600
USD = 10**6
ZERO32 = b"\0" * 32
SALT = b"dashboard".ljust(32, b"\0")
SHOTS = ROOT / "reports" / "screenshots"


@pytest.fixture(scope="module")
def live_deployment(admin, accounts, tmp_path_factory):
    """A deployment handed over to a timelock (accounts[10] proposes)."""
    from tests.support.brownie_network import ANVIL_PORT

    system = deploy_system(admin, DeployConfig.for_tests())
    hand_over_to_timelock(system, admin, delay_seconds=DELAY, proposers=[accounts[10].address])
    manifest = write_manifest(system, tmp_path_factory.mktemp("deployment") / "manifest.json")
    return LiveDeployment(system, manifest, f"http://127.0.0.1:{ANVIL_PORT}")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh tab; fails the test on any script error, console error or 5xx answer but
    /health's 503 (its documented answer while some work is stale)."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000})
    tab = context.new_page()
    tab.set_default_timeout(30_000)
    problems: list[str] = []
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    tab.on(
        "console",
        lambda m: m.type == "error" and "503" not in m.text and problems.append(m.text),
    )
    tab.on(
        "response",
        lambda r: (
            r.status >= 500
            and not r.url.split("?")[0].endswith("/health")
            and problems.append(f"{r.status} from {r.url}")
        ),
    )
    try:
        yield tab
    finally:
        context.close()
    assert not problems, problems


def _row(page: Any, table: str, operation: str) -> Any:
    return page.locator(f"#{table} tr[data-operation='{operation}']")


def test_announced_change_is_listed_then_due_then_executed(
    page: Any, stack: Stack, live_deployment, accounts, operator
) -> None:
    system = live_deployment.system
    market, timelock = system.market, system.timelock
    data = market.setFeeRecipient.encode_input(accounts[12])
    tx = timelock.schedule(market, 0, data, ZERO32, SALT, DELAY, {"from": accounts[10]})
    operation = "0x" + bytes(timelock.hashOperation(market, 0, data, ZERO32, SALT)).hex()
    wait_for(
        lambda: stack.get("/api/v1/governance/changes", params={"status": "pending"}).json(),
        30,
        "the scheduled change to be indexed",
    )

    page.goto(f"{stack.api_url}/dashboard/#governance")
    page.wait_for_selector("body[data-ready=true]")
    row = _row(page, "governance-pending", operation)
    row.wait_for()
    text = row.inner_text()
    assert "pending" in text and "Market" in text
    recipient = f"{accounts[12].address[:6]}…{accounts[12].address[-4:]}"
    assert f"setFeeRecipient(recipient {recipient})" in text
    eta = tx.timestamp + DELAY
    assert datetime.fromtimestamp(eta, UTC).strftime("%Y-%m-%d %H:%M UTC") in text
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / "governance.png"), full_page=True)

    chain.sleep(DELAY + 1)
    chain.mine()
    page.wait_for_function(  # the view refreshes itself (every 5 s)
        "op => document.querySelector(`#governance-pending tr[data-operation='${op}']`)"
        "?.innerText.includes('ready')",
        arg=operation,
    )
    timelock.execute(market, 0, data, ZERO32, SALT, {"from": operator})
    _row(page, "governance-history", operation).wait_for()
    assert "executed" in _row(page, "governance-history", operation).inner_text()
    assert _row(page, "governance-pending", operation).count() == 0
