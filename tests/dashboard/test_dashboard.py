"""The dashboard in a real browser (Debian's Chromium via Playwright) against the real
stack: every view loads from the indexed world, its charts draw data, the fleet refreshes
itself as new epochs are attested, and a stress scenario runs from the page and reads the
same answer the API gave. Screenshots go to reports/screenshots/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.backend.backend_helpers import ROOT, Stack, wait_for
from tests.dashboard.world import H100, USD, World, attest_next, build_world

SHOTS = ROOT / "reports" / "screenshots"
TIMEOUT_MS = 30_000
# Non-transparent pixels of a canvas: a drawn chart has thousands, a blank one none.
INKED_PIXELS = """id => {
  const c = document.getElementById(id);
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
  return n;
}"""


def usd(base: int) -> str:
    """The page's money format (js/format.js usd)."""
    v = base / USD
    return f"${v:,.0f}" if abs(v) >= 1000 else f"${v:,.2f}"


@pytest.fixture(scope="module")
def world(stack: Stack, admin, operator, operator2, buyer, staker) -> World:
    proofs = stack.env.get("GPUCAP_PROOFS_DIR")  # set when the backend reads oracle proofs
    w = build_world(
        stack.deployment.system,
        admin,
        operator,
        operator2,
        buyer,
        staker,
        proofs_dir=Path(proofs) if proofs else None,
    )
    wait_for(
        lambda: (
            stack.get("/api/v1/indexer").status_code == 200
            and stack.get("/api/v1/indexer").json()["next_block"] > w.last_block
        ),
        60,
        "the indexer to reach the world's last block",
    )
    if w.proofs_dir is not None:  # the keeper settles what the oracle published
        wait_for(
            lambda: all(
                (p.get("risk") or {}).get("last_settled_epoch") == w.epochs[-1]
                for p in stack.get("/api/v1/pools").json()
            ),
            90,
            "the settlement keeper to settle the world's epochs",
        )
    return w


@pytest.fixture(scope="module")
def pools_served(stack: Stack) -> bool:
    return "/api/v1/pools" in stack.get("/openapi.json").json()["paths"]


@pytest.fixture
def page(browser: Any, stack: Stack, world: World, refusals: set[tuple[int, str]]) -> Iterator[Any]:
    """A fresh tab; fails the test on any script error, console error (a failed request
    is one, but those in ``refusals``) or 5xx answer but /health's 503."""
    context = browser.new_context(viewport={"width": 1440, "height": 1100})
    tab = context.new_page()
    tab.set_default_timeout(TIMEOUT_MS)
    problems: list[str] = []
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))

    # /health's 503 is its documented answer when some work is stale (the header shows it).
    def health_503(url: str, status: int) -> bool:
        return status == 503 and url.split("?")[0].endswith("/health")

    def refused(url: str, text: str) -> bool:
        path = "/" + url.split("?")[0].split("/", 3)[-1]
        return any(f"status of {status} " in text and path == p for status, p in refusals)

    tab.on(
        "console",
        lambda m: (
            m.type == "error"
            and not health_503(m.location.get("url", ""), 503 if "503" in m.text else 0)
            and not refused(m.location.get("url", ""), m.text)
            and problems.append(f"console error: {m.text} {m.location}")
        ),
    )
    tab.on(
        "response",
        lambda r: (
            r.status >= 500
            and not health_503(r.url, r.status)
            and problems.append(f"{r.status} from {r.url}")
        ),
    )
    try:
        yield tab
    finally:
        context.close()
    assert not problems, problems


def open_view(page: Any, stack: Stack, view: str) -> None:
    page.goto(f"{stack.api_url}/dashboard/#{view}")
    page.wait_for_selector("body[data-ready=true]")
    assert page.get_attribute(f"#tab-{view}", "aria-selected") == "true"


def wait_points(page: Any, canvas: str, at_least: int = 1) -> int:
    page.wait_for_function(
        "([id, n]) => Number(document.getElementById(id)?.dataset.points || 0) >= n",
        arg=[canvas, at_least],
    )
    assert page.evaluate(INKED_PIXELS, canvas) > 500, f"{canvas} has data but drew nothing"
    return int(page.get_attribute(f"#{canvas}", "data-points"))


def shoot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"dashboard-{name}.png"), full_page=True)


def test_root_redirects_to_the_dashboard_and_assets_are_served(stack: Stack) -> None:
    resp = stack.get("/", allow_redirects=False)
    assert (resp.status_code, resp.headers["location"]) == (307, "/dashboard/")
    page = stack.get("/dashboard/")
    assert page.status_code == 200 and "<title>gpucap" in page.text
    chartjs = stack.get("/dashboard/vendor/chartjs/chart.umd.min.js")
    assert chartjs.status_code == 200 and "Chart" in chartjs.text[:2000]
    assert stack.get("/dashboard/js/nope.js").status_code == 404
    assert "/dashboard" not in "".join(stack.get("/openapi.json").json()["paths"])


def test_fleet_map_and_metrics_breathe(page: Any, stack: Stack, world: World) -> None:
    page.goto(stack.api_url + "/")  # redirected to /dashboard/, Fleet first
    page.wait_for_selector("body[data-ready=true]")
    fleet_map = page.inner_text("#fleet-map")
    for text in ("H100-SXM-80GB", "A100-SXM-80GB", "eu-west", "us-east"):
        assert text in fleet_map, (text, fleet_map)
    # H100 in both regions, A100 only in us-east: three filled cells, one empty
    cells = page.locator("#fleet-map td.cell:not(.muted)").all_inner_texts()
    assert len(cells) == 3 and all(c.startswith("8 GPUs\n1 node") for c in cells), cells
    assert wait_points(page, "fleet-map-chart") == 2 * 2  # 2 classes x 2 regions
    assert wait_points(page, "fleet-epochs-chart", 2 * len(world.epochs)) >= 2 * len(world.epochs)
    nodes = page.locator("#fleet-nodes tbody tr")
    assert nodes.count() == len(world.nodes)
    if "/api/v1/fleet/metrics" in stack.get("/openapi.json").json()["paths"]:
        wait_for(
            lambda: len(stack.get("/api/v1/fleet/metrics").json()) >= len(world.epochs),
            60,
            "attested leaves to be ingested",
        )
        # utilization, uptime and efficiency per class (2) per epoch; the first node's history
        assert wait_points(page, "fleet-class-chart", 3 * 2 * len(world.epochs)) > 0
        assert wait_points(page, "fleet-node-chart", 3 * len(world.epochs)) > 0
        page.wait_for_function(
            "() => !document.querySelector('#fleet-nodes tbody').innerText.includes('—')"
        )
    newest = page.inner_text("#fleet-kpis")
    assert f"#{world.epochs[-1]}" in newest
    shoot(page, "fleet")

    # Breathing: a new attested epoch reaches the open page without a reload.
    epoch = attest_next(world)
    page.wait_for_function(
        "t => document.getElementById('fleet-kpis').innerText.includes(t)", arg=f"#{epoch}"
    )
    page.wait_for_function(
        "n => Number(document.getElementById('fleet-epochs-chart').dataset.points) >= n",
        arg=2 * len(world.epochs),
    )
    assert "epoch" in page.inner_text("#status-text")


def test_market_price_index_and_capacity_per_window(page: Any, stack: Stack, world: World) -> None:
    open_view(page, stack, "market")
    # H100 traded in two windows, A100 in one.
    assert wait_points(page, "market-price-chart", 3) == 3
    # offered/sold/redeemed for 3 (class, window) pairs
    assert wait_points(page, "market-capacity-chart", 9) == 9
    rows = page.locator("#market-windows tbody tr")
    assert rows.count() == 3
    table = page.inner_text("#market-windows")
    assert "$2.07" in table  # H100 first window: (20 x 2.00 + 10 x 2.20) / 30
    page.select_option("#market-class", label="A100-SXM-80GB")
    page.wait_for_function(
        "() => document.querySelectorAll('#market-windows tbody tr').length === 1"
    )
    assert "$1.10" in page.inner_text("#market-windows")
    shoot(page, "market")


def test_pools_with_covenant_flags(page: Any, stack: Stack, world: World, pools_served) -> None:
    open_view(page, stack, "pools")
    if not pools_served:
        page.wait_for_selector("#view-pools > .notice:not([hidden])")
        assert "does not serve pools yet" in page.inner_text("#view-pools > .notice")
        shoot(page, "pools")
        pytest.skip("this API does not serve /api/v1/pools yet; the page says so")
    wait_for(
        lambda: len(stack.get("/api/v1/pools").json()) >= len(world.pools), 30, "pools indexed"
    )
    page.wait_for_function(
        "n => document.querySelectorAll('#pools-table tbody tr[data-pool]').length >= n",
        arg=len(world.pools),
    )
    assert wait_points(page, "pools-risk-chart") >= 1
    table = page.inner_text("#pools-table")
    for label in world.pools:
        assert f"{label} pool" in table
    # Each node's collateral: book value beside its marked value, as the API says.
    for pool in stack.get("/api/v1/pools").json():
        c = pool["collateral"]
        row = f'#pools-table tr[data-pool="{pool["address"]}"]'
        assert page.get_attribute(f"{row} td[data-col=collateral]", "data-basis") == c["basis"]
        assert c["marked_value"] <= c["book_value"]
        marked = f"{row} [data-value=marked]"
        wait_for(
            lambda marked=marked, address=pool["address"]: (
                page.get_attribute(marked, "data-marked")
                == str(stack.get(f"/api/v1/pools/{address}").json()["collateral"]["marked_value"])
            ),
            30,
            "the marked value shown as the API gives it",
        )
        value = int(page.get_attribute(marked, "data-marked"))
        shown = page.inner_text(marked)
        assert shown == ("= book" if c["basis"] == "book" else f"▾ {usd(value)}"), shown
    page.click("#pools-table tbody tr[data-pool] button")
    page.wait_for_selector("#pool-detail:not([hidden])")
    summary = page.inner_text("#pool-collateral-summary")
    assert summary.startswith("Book $") and "wash trades left out" in summary, summary
    shoot(page, "pools")


def test_pools_show_each_loan_and_its_history(
    page: Any, stack: Stack, world: World, pools_served
) -> None:
    if not pools_served:
        pytest.skip("this API does not serve /api/v1/pools yet")
    open_view(page, stack, "pools")
    # Each pool's settlements have pledged its bond: the loan and its history are indexed.
    pools = wait_for(
        lambda: (
            (body := stack.get("/api/v1/pools").json())
            and all(
                p["loan"] is not None
                and stack.get(f"/api/v1/pools/{p['address']}/loan/history").json()
                for p in body
            )
            and body
        ),
        30,
        "every pool's loan indexed",
    )
    page.wait_for_function(
        "n => document.querySelectorAll('#pools-table tbody td[data-loan-state]').length >= n",
        arg=len(world.pools),
    )
    for pool in pools:
        cell = page.locator(f'#pools-table tr[data-pool="{pool["address"]}"] td[data-loan-state]')
        assert cell.get_attribute("data-loan-state") == pool["loan"]["state"]
        assert pool["loan"]["state"].replace("_", " ") in cell.inner_text()
    chosen = pools[0]
    history = stack.get(f"/api/v1/pools/{chosen['address']}/loan/history").json()
    page.click(f'#pools-table tr[data-pool="{chosen["address"]}"] button')
    page.wait_for_function(
        "n => document.querySelectorAll("
        "'#pool-loan-history tbody tr[data-loan-event]').length >= n",
        arg=len(history),
    )
    shown = page.locator("#pool-loan-history tbody tr[data-loan-event]")
    assert [shown.nth(i).get_attribute("data-loan-event") for i in range(shown.count())] == [
        h["event"] for h in history
    ]
    pledged = chosen["loan"]["pledged_bond_micro_usd"]
    summary = page.inner_text("#pool-loan-summary")
    assert f"pledged bond {usd(pledged)}" in summary
    assert chosen["loan"]["state"].replace("_", " ") in summary
    shoot(page, "pools-loan")


def test_staker_view_read_only_and_with_a_wallet(
    page: Any, stack: Stack, world: World, buyer, staker, pools_served
) -> None:
    open_view(page, stack, "staker")
    assert page.is_visible("#wallet-none")  # no browser wallet: read-only
    page.fill("#staker-address", "0x1234")
    page.click("#staker-form button[type=submit]")
    assert page.is_hidden("#staker-body")  # rejected in the browser, nothing asked

    page.fill("#staker-address", buyer.address)
    page.click("#staker-form button[type=submit]")
    page.wait_for_selector("#staker-body:not([hidden])")
    page.wait_for_function(
        "() => document.querySelectorAll('#staker-capacity tbody tr').length === 3"
    )
    reservations = page.inner_text("#staker-reservations")
    assert f"#{world.nodes['h100-eu']}" in reservations and "reserved" in reservations

    # An EIP-1193 wallet in the page (what a browser extension injects): connect, and the
    # staker view shows the wallet's own positions.
    page.add_init_script(
        "window.ethereum = {request: async ({method}) => method === 'eth_requestAccounts'"
        f" ? ['{staker.address}'] : [], on: () => {{}}}};"
    )
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.is_hidden("#wallet-none")
    page.click("#wallet-connect")
    page.wait_for_function(
        "a => document.getElementById('staker-address').value === a", arg=staker.address
    )
    assert staker.address in page.inner_text("#wallet-address")
    page.wait_for_selector("#staker-body:not([hidden])")
    if pools_served:
        page.wait_for_function(
            "n => document.querySelectorAll('#staker-positions tbody tr').length === n",
            arg=len(world.pools),
        )
        assert "pool" in page.inner_text("#staker-positions")
    shoot(page, "staker")


# An EIP-1193 wallet as an extension injects it, whose user can switch accounts and chains
# (window.__wallet.switch(...) stands for the user's clicks in the extension).
FAKE_WALLET = """
(() => {
  const handlers = {};
  const state = { accounts: [ACCOUNT], chainId: "0x7a69" };
  window.ethereum = {
    request: async ({ method }) => {
      if (method === "eth_requestAccounts" || method === "eth_accounts") return state.accounts;
      if (method === "eth_chainId") return state.chainId;
      throw new Error(`unsupported ${method}`);
    },
    on: (event, fn) => { (handlers[event] ??= []).push(fn); },
  };
  const emit = (event, value) => (handlers[event] ?? []).forEach((f) => f(value));
  window.__wallet = {
    switchAccount: (a) => { state.accounts = [a]; emit("accountsChanged", [a]); },
    switchChain: (id) => { state.chainId = id; emit("chainChanged", id); },
  };
})();
"""


def test_staker_view_follows_the_wallet_and_a_wrong_chain_is_said(
    page: Any, stack: Stack, world: World, buyer, staker
) -> None:
    page.add_init_script(FAKE_WALLET.replace("ACCOUNT", repr(staker.address)))
    open_view(page, stack, "staker")
    page.wait_for_function(  # authorised already (eth_accounts): the view shows it
        "a => document.getElementById('staker-address').value === a", arg=staker.address
    )
    assert page.is_hidden("#wallet-chain")  # the wallet is on gpucap's chain (31337)

    page.evaluate("a => window.__wallet.switchAccount(a)", buyer.address)
    page.wait_for_function(
        "a => document.getElementById('staker-address').value === a", arg=buyer.address
    )
    assert buyer.address in page.inner_text("#wallet-address")
    page.wait_for_function(  # the buyer's own capacity, not the staker's
        "() => document.querySelectorAll('#staker-capacity tbody tr').length === 3"
    )

    page.evaluate("() => window.__wallet.switchChain('0x1')")
    page.wait_for_selector("#wallet-chain:not([hidden])")
    warning = page.inner_text("#wallet-chain")
    assert "chain 1" in warning and "chain 31337" in warning and "Switch networks" in warning
    page.evaluate("() => window.__wallet.switchChain('0x7a69')")
    page.wait_for_selector("#wallet-chain", state="hidden")


def test_stress_h100_price_fall_from_the_page(
    page: Any, stack: Stack, world: World, pools_served
) -> None:
    open_view(page, stack, "stress")
    page.wait_for_selector("#stress-named input")
    assert page.input_value("#stress-class") == H100
    assert page.input_value("#stress-decline") == "40"

    with page.expect_response(
        lambda r: r.url.endswith("/api/v1/risk/scenarios") and r.request.method == "POST"
    ) as answered:
        page.click("#stress-run")
    response = answered.value
    assert response.status == 200, response.text()
    body, served = response.request.post_data_json, response.json()
    page.wait_for_selector("#stress-results:not([hidden])")

    assert body["node_ids"] == sorted(world.nodes.values())
    # The covenant fields left empty: the run takes the chain's, and the page draws them.
    assert "covenant_dscr_bps" not in body and "max_ltv_bps" not in body
    assert served["terms_source"]["covenant_dscr_bps"] == "chain"
    assert served["terms"]["covenant_dscr_bps"] == 12_500
    assert served["results"][0]["scenario"]["name"] == "H100-SXM-80GB-40pct-yr" or any(
        r["scenario"]["name"] == "H100-SXM-80GB-40pct-yr" for r in served["results"]
    )
    shock = next(r for r in served["results"] if r["scenario"]["name"].startswith(H100))
    runs = len(served["results"])
    assert runs == 4  # base, deflation_20, deflation_40 + the H100 shock
    assert page.locator("#stress-summary tbody tr").count() == runs
    assert wait_points(page, "stress-waterfall-chart", 4 * runs) == 4 * runs

    answer = page.inner_text("#stress-answer")
    assert "H100-SXM-80GB rental prices fall 40% a year" in answer
    if pools_served:
        # the page opens on the shock: one line per pool, every finite month plotted
        pooled_paths = [n["paths"] for n in shock["nodes"] if n["has_pool"]]
        references = page.evaluate(
            "() => Chart.getChart('stress-dscr-chart').data.datasets"
            ".filter((d) => d.reference).map((d) => d.label)"
        )
        assert any(label.startswith("covenant 1.25") for label in references), references
        for chart, field in (("stress-dscr-chart", "dscr_bps"), ("stress-ltv-chart", "ltv_bps")):
            finite = sum(v is not None for p in pooled_paths for v in p[field])
            assert wait_points(page, chart) == finite > 0
        # DSCR is drawn as it is, on a log axis: never flattened at a cap (the demo's
        # platform line sat at the old 5x cap); under 0.1x it sits on the floor, marked.
        drawn = page.evaluate(
            """() => {
              const c = Chart.getChart('stress-dscr-chart');
              const lines = c.data.datasets.filter((d) => !d.reference);
              return {type: c.options.scales.y.type, max: c.scales.y.max,
                      real: lines.map((d) => d.real), data: lines.map((d) => d.data)};
            }"""
        )
        real = [[None if v is None else v / 10_000 for v in p["dscr_bps"]] for p in pooled_paths]
        assert drawn["type"] == "logarithmic" and drawn["real"] == real
        top = max(v for path in real for v in path if v is not None)
        assert drawn["max"] >= top  # the highest figure is on the axis, not cut off
        for path, plotted in zip(real, drawn["data"], strict=True):
            assert plotted == [None if v is None else max(v, 0.1) for v in path]
        # the server found each pool's loan in the index: nothing sent but the node ids
        assert "overrides" not in body and body["loans_from_draw"] is False
        pooled = [n for n in shock["nodes"] if n["has_pool"]]
        assert {n["node_id"] for n in pooled} == {world.nodes[k] for k in world.pools}
        breaching = [n for n in pooled if n["first_dscr_breach_month"] is not None]
        assert f"{len(breaching)} of {len(pooled)}" in answer
        assert usd(shock["platform"]["waterfall"]["stakers"]) in answer
        # the heavily financed H100 pool cannot carry its debt when prices fall 40%/yr
        assert world.nodes["h100-eu"] in {n["node_id"] for n in breaching}
        # ... or the whole loan again, from its draw
        page.check("input[name=stress-debt][value=draw]")
        with page.expect_response(
            lambda r: r.url.endswith("/api/v1/risk/scenarios") and r.request.method == "POST"
        ) as again:
            page.click("#stress-run")
        assert again.value.status == 200
        # the server projects each indexed loan from its draw: the page sends only the flag
        sent = again.value.request.post_data_json
        assert sent["loans_from_draw"] is True and "overrides" not in sent
        redone = next(
            r for r in again.value.json()["results"] if r["scenario"]["name"].startswith(H100)
        )
        # a pool's 36 months of epochs are 36 months of debt service from the draw
        for node in (n for n in redone["nodes"] if n["has_pool"] and n["paths"]):
            serviced = sum(d > 0 for d in node["paths"]["debt_service"])
            assert serviced == 36 or node["first_default_month"] is not None, node
        # ... or with collateral marked to the market: the page sends the choice, the server
        # adds each node's market price where its class traded enough
        assert body["collateral"] == "book"
        page.check("input[name=stress-collateral][value=marked]")
        with page.expect_response(
            lambda r: r.url.endswith("/api/v1/risk/scenarios") and r.request.method == "POST"
        ) as marked:
            page.click("#stress-run")
        assert marked.value.status == 200
        assert marked.value.request.post_data_json["collateral"] == "marked"
        assert marked.value.json()["collateral"] == "marked"
        page.wait_for_function(
            "() => document.getElementById('stress-fleet').innerText.includes('marked')"
        )
        page.check("input[name=stress-collateral][value=book]")
    else:
        assert "No indexed node carries pool debt" in answer
        for chart in ("stress-dscr-chart", "stress-ltv-chart"):  # no debt, nothing to plot
            assert page.get_attribute(f"#{chart}", "data-points") == "0"
        assert page.locator("#view-stress .card .empty:visible").count() == 2
    shoot(page, "stress")

    if pools_served:
        # Over 300 nodes (the demo's 1,000) the page asks for no per-node paths and plots
        # the platform's DSCR: the same request as such a page sends, to the real server.
        def without_paths(route: Any) -> None:
            body = route.request.post_data_json
            route.continue_(post_data=json.dumps({**body, "include_node_paths": False}))

        page.route("**/api/v1/risk/scenarios", without_paths)
        with page.expect_response(
            lambda r: r.url.endswith("/api/v1/risk/scenarios") and r.request.method == "POST"
        ) as platform_run:
            page.click("#stress-run")
        page.unroute("**/api/v1/risk/scenarios")
        served = next(
            r
            for r in platform_run.value.json()["results"]
            if r["scenario"]["name"].startswith(H100)
        )
        real = [None if v is None else v / 10_000 for v in served["platform"]["dscr_bps"]]
        page.wait_for_function(
            "() => Chart.getChart('stress-dscr-chart').data.datasets[0].label"
            ".startsWith('platform')"
        )
        drawn = page.evaluate(
            """() => {
              const c = Chart.getChart('stress-dscr-chart');
              const [platform] = c.data.datasets.filter((d) => !d.reference);
              return {label: platform.label, real: platform.real, max: c.scales.y.max};
            }"""
        )
        assert drawn["label"] == "platform (all pools)" and drawn["real"] == real
        assert drawn["max"] >= max(v for v in real if v is not None)
        assert len({v for v in real if v is not None}) > 1  # a line that moves, not a cap
        shoot(page, "stress-platform")

    # A run with nothing to run is refused on the page, with the reason.
    page.uncheck("#stress-shock-on")
    for box in page.locator("#stress-named input").all():
        box.uncheck()
    page.click("#stress-run")
    page.wait_for_selector("#view-stress > .notice.error:not([hidden])")
    assert "choose at least one scenario" in page.inner_text("#view-stress > .notice")


def test_header_is_not_green_while_attestation_is_stale(page: Any, stack: Stack, world) -> None:
    """Epochs end and no oracle attests them: the header says so and its pulse is not green
    (it stayed green with "attested 3 min ago" while every oracle was dead)."""
    from tests.oracle.hub_helpers import end_epoch

    hub = world.system.oracle_hub
    for _ in range(4):  # the oldest unattested epoch ended 3 epoch lengths ago: over 2
        end_epoch(hub)
    stale = stack.get("/health")
    assert stale.status_code == 503 and stale.json()["checks"]["attestation"]["ok"] is False
    page.goto(stack.api_url + "/dashboard/")
    page.wait_for_function(
        "() => document.getElementById('status-text').innerText.includes('unattested')"
        " && document.getElementById('pulse').classList.contains('stale')",
        timeout=TIMEOUT_MS,
    )
    assert "attestation" in page.get_attribute("#status", "title")
    shoot(page, "header-stale")


# How far a table reaches past what its scroll box shows (0: nothing clipped), and how far
# the page itself overflows the window sideways.
CLIPPED = """id => {
  const table = document.getElementById(id);
  const box = table.closest('.table-wrap');
  return {
    table: Math.ceil(table.scrollWidth - box.clientWidth),
    page: document.documentElement.scrollWidth - window.innerWidth,
  };
}"""
WIDEST = """() => [...document.querySelectorAll('body *')]
  .filter((e) => e.getBoundingClientRect().right > window.innerWidth).slice(0, 5)
  .map((e) => `${e.tagName}#${e.id}.${e.className} ${e.getBoundingClientRect().right}`)"""
DEMO_REGIONS = ("eu-west", "eu-north", "us-east", "us-west", "ap-south", "ap-northeast")


def test_fleet_map_and_pools_table_are_not_clipped_at_1400_px(
    page: Any, stack: Stack, world: World, operator, pools_served
) -> None:
    """The demo's fleet (every class in its six regions) and the pools table fit a 1,400 px
    window; narrower, the page does not overflow and a table scrolls inside its card."""
    from brownie import chain

    system = world.system
    for region in DEMO_REGIONS:  # every class in every region of the demo
        for cls in (H100, "A100-SXM-80GB", "L40S-48GB"):
            system.registry.registerNode(
                system.class_ids[cls],
                8,
                region.encode().ljust(32, b"\0"),
                100_000 * USD,
                chain[-1].timestamp - 86_400,
                f"0x{0xD000 + system.registry.nodeCount():040x}",  # one key per node
                {"from": operator},
            )
    last = system.registry.nodeCount()
    wait_for(
        lambda: len(stack.get("/api/v1/nodes", params={"limit": 500}).json()) >= last,
        60,
        "the new nodes indexed",
    )
    page.set_viewport_size({"width": 1400, "height": 1000})
    open_view(page, stack, "fleet")
    page.wait_for_function(
        "n => document.querySelectorAll('#fleet-map thead th').length >= n",
        arg=len(DEMO_REGIONS) + 1,
    )
    assert page.evaluate(CLIPPED, "fleet-map") == {"table": 0, "page": 0}
    shoot(page, "fleet-1400")
    if pools_served:
        open_view(page, stack, "pools")
        page.wait_for_selector("#pools-table tbody tr[data-pool]")
        assert page.evaluate(CLIPPED, "pools-table") == {"table": 0, "page": 0}
        shoot(page, "pools-1400")

    page.set_viewport_size({"width": 900, "height": 1000})  # narrower: still usable
    for view, table in (("fleet", "fleet-map"), ("pools", "pools-table")):
        open_view(page, stack, view)
        page.wait_for_selector(f"#{table} tbody tr")
        assert page.evaluate(CLIPPED, table)["page"] == 0, (view, page.evaluate(WIDEST))
        overflow = page.evaluate(
            "id => getComputedStyle(document.getElementById(id).closest('.table-wrap')).overflowX",
            table,
        )
        assert overflow == "auto"  # what does not fit scrolls inside its card
