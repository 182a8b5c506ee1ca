"""``python -m gpucap``: act on gpucap from a terminal, as an operator or a wallet user.

Every action goes through the API exactly as a browser wallet's would: the CLI
signs an EIP-712 forward request (and an EIP-2612 permit where tokens move)
locally and posts it to ``/api/v1/forward``, so it gets the same validation and
the same error codes; then it follows the action to its end. Reads come from
the API's index. The wallet key comes from an encrypted keystore
(``--keystore``, password from ``$GPUCAP_KEYSTORE_PASSWORD`` or a prompt), from
``$GPUCAP_WALLET_KEY``, or, on a local chain, from anvil's dev accounts
(``--dev-account N``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import httpx
import requests
import typer
import typer.core
from eth_account import Account
from eth_account.signers.local import LocalAccount
from rich.console import Console
from rich.table import Table
from web3 import Web3
from web3.exceptions import ProviderConnectionError, TimeExhausted, Web3RPCError

from gpucap import actions, devchain
from gpucap.actions import ApiRejected, TxRejected
from gpucap.deployment import REPO_ROOT, Deployment, ManifestError

app = typer.Typer(
    name="gpucap", help="Act on gpucap as an operator or a wallet user.", no_args_is_help=True
)
console = Console()
err_console = Console(stderr=True)


def _flags_show_no_type(display: Any) -> Any:
    """typer's rich help prints every option's type, a flag's too (``--json <bool>``); a
    flag takes no value, so it shows none."""

    def display_type_rich(self: typer.core.TyperOption, ctx: Any) -> str | None:
        return None if self.is_flag else display(self, ctx)

    return display_type_rich


typer.core.TyperOption.display_type_rich = _flags_show_no_type(  # type: ignore[method-assign]
    typer.core.TyperOption.display_type_rich
)

USD = 10**6


class Ctx:
    def __init__(self, api: str, manifest: Path, as_json: bool, rpc_url: str) -> None:
        self.api = api.rstrip("/")
        self.manifest_path = manifest
        self.as_json = as_json
        self.rpc_url = rpc_url
        self.http = httpx.Client(base_url=self.api, timeout=15.0)
        self.client = actions.Api(self.api)
        self._deployment: Deployment | None = None
        self._w3: Web3 | None = None

    @property
    def w3(self) -> Web3:
        """The chain, for what the API does not relay (pool transactions, approvals)."""
        if self._w3 is None:
            self._w3 = Web3(Web3.HTTPProvider(self.rpc_url))
        return self._w3

    @property
    def deployment(self) -> Deployment:
        if self._deployment is None:
            self._deployment = Deployment.load(self.manifest_path)
        return self._deployment

    def contract(self, name: str) -> Any:
        return self.deployment.contract(Web3(), name)

    # A rejection ends the command: fail() prints the API's code and reason, exits 2.
    def get(self, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        return _answer(self._send("GET", path, params=query))

    def post(self, path: str, body: Any = None) -> Any:
        return _answer(self._send("POST", path, json=body))

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            err_console.print(f"[red]cannot reach the API at {self.api}:[/] {exc}")
            raise typer.Exit(code=2) from exc


def _answer(resp: httpx.Response) -> Any:
    try:
        body = resp.json()
    except ValueError:
        body = {"code": "HTTPError", "reason": resp.text}
    if resp.status_code >= 400:
        fail(ApiRejected(resp.status_code, body))
    return body


def _ctx(typer_ctx: typer.Context) -> Ctx:
    ctx: Ctx = typer_ctx.obj
    return ctx


@app.callback()
def main(
    typer_ctx: typer.Context,
    api: Annotated[str, typer.Option(envvar="GPUCAP_API_URL", help="API base URL")] = (
        "http://127.0.0.1:8000"
    ),
    manifest: Annotated[
        Path | None,
        typer.Option(
            envvar="GPUCAP_MANIFEST_PATH",
            help="deployment manifest (ABIs); default: the running demo's, else development's",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON, not tables")] = False,
    rpc_url: Annotated[
        str, typer.Option(envvar="GPUCAP_RPC_URL", help="chain node, for direct transactions")
    ] = "http://127.0.0.1:8545",
) -> None:
    typer_ctx.obj = Ctx(api, manifest or _default_manifest(), as_json, rpc_url)


def _default_manifest() -> Path:
    demo = Path(os.environ.get("GPUCAP_DEMO_DIR", REPO_ROOT / ".run" / "demo")) / "deployment.json"
    return demo if demo.exists() else REPO_ROOT / "deployments" / "development.json"


# ---------------------------------------------------------------------------
# Wallet
# ---------------------------------------------------------------------------

DevAccount = Annotated[
    int | None, typer.Option("--dev-account", help="anvil dev account index (local chains only)")
]
Keystore = Annotated[
    Path | None, typer.Option("--keystore", help="encrypted JSON keystore (eth-account)")
]


def wallet(dev_account: int | None, keystore: Path | None) -> LocalAccount:
    if keystore is not None:
        password = os.environ.get("GPUCAP_KEYSTORE_PASSWORD")
        if password is None:
            password = typer.prompt(f"password for {keystore}", hide_input=True)
        try:
            key = Account.decrypt(json.loads(keystore.read_text()), password)
        except (OSError, ValueError) as exc:
            raise typer.BadParameter(f"cannot open keystore {keystore}: {exc}") from exc
        return Account.from_key(key)
    if dev_account is not None:
        if not 0 <= dev_account < devchain.DEV_ACCOUNTS:
            raise typer.BadParameter(
                f"{dev_account} is not a dev account: a local chain has accounts "
                f"0 to {devchain.DEV_ACCOUNTS - 1}",
                param_hint="--dev-account",
            )
        return Account.from_key(devchain.dev_private_key(dev_account))
    env_key = os.environ.get("GPUCAP_WALLET_KEY")
    if env_key:
        return Account.from_key(env_key)
    raise typer.BadParameter("no wallet: pass --keystore, --dev-account, or set GPUCAP_WALLET_KEY")


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------


def show(
    ctx: Ctx, rows: list[dict[str, Any]] | dict[str, Any], title: str, columns: list[str]
) -> None:
    if ctx.as_json:
        console.print_json(data=rows)
        return
    items = rows if isinstance(rows, list) else [rows]
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in items:
        table.add_row(*(_cell(column, row.get(column)) for column in columns))
    console.print(table)


def _cell(column: str, value: Any) -> str:
    if value is None:
        return "-"
    if column in {"price_per_gpu_hour", "bonded", "locked", "stablecoin", "volume"} or (
        column.endswith(("_vwap", "_last", "_twap"))
    ):
        return f"{value / USD:,.2f}"
    if column == "window_start":
        return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(value))
    return str(value)


def fail(exc: ApiRejected) -> NoReturn:
    err_console.print(
        f"[red]rejected ({exc.status} {exc.body.get('code')}):[/] {exc.body.get('reason')}"
    )
    raise typer.Exit(code=2)


# ---------------------------------------------------------------------------
# Reads
# ---------------------------------------------------------------------------


@app.command()
def status(typer_ctx: typer.Context) -> None:
    """API health and how far the index trails the chain."""
    ctx = _ctx(typer_ctx)
    health = ctx._send("GET", "/health").json()
    indexer = ctx.get("/api/v1/indexer")
    if ctx.as_json:
        console.print_json(data={"health": health, "indexer": indexer})
        return
    for name, check in health.get("checks", {}).items():
        mark = "[green]ok[/]" if check.get("ok") else "[red]down[/]"
        console.print(f"{name:>9}: {mark} {check.get('detail', '')}")
    console.print(
        f"  indexer: block {indexer['next_block'] - 1} of {indexer['head_block']} "
        f"(lag {indexer['lag_blocks']}), reorgs {indexer['reorgs']}, resets {indexer['resets']}"
    )


@app.command()
def nodes(typer_ctx: typer.Context, operator: str | None = None) -> None:
    """Registered nodes (optionally one operator's)."""
    ctx = _ctx(typer_ctx)
    rows = ctx.get("/api/v1/nodes", operator=operator)
    show(
        ctx,
        rows,
        "nodes",
        ["node_id", "operator", "class_id", "gpu_count", "region", "status", "bonded", "locked"],
    )


@app.command()
def offers(
    typer_ctx: typer.Context,
    class_id: int | None = None,
    all_: bool = typer.Option(False, "--all", help="include cancelled"),
) -> None:
    """Capacity offers (open ones by default)."""
    ctx = _ctx(typer_ctx)
    rows = ctx.get("/api/v1/offers", class_id=class_id, status=None if all_ else "open")
    show(
        ctx,
        rows,
        "offers",
        [
            "offer_id",
            "node_id",
            "class_id",
            "window_start",
            "amount",
            "sold",
            "price_per_gpu_hour",
            "status",
        ],
    )


PRICE_COLUMNS = [
    "class_id",
    "window_start",
    "primary_vwap",
    "secondary_vwap",
    "combined_vwap",
    "combined_last",
    "combined_twap",
    "gpu_hours",
    "trades",
    "wash_excluded",
]


def _price_row(p: dict[str, Any]) -> dict[str, Any]:
    """One price point as a table row: each source's VWAP, the combined figures."""
    c = p["combined"]
    return {
        "class_id": p["class_id"],
        "window_start": p["window_start"],
        "primary_vwap": p["primary"]["vwap_per_gpu_hour"],
        "secondary_vwap": p["secondary"]["vwap_per_gpu_hour"],
        "combined_vwap": c["vwap_per_gpu_hour"],
        "combined_last": c["last_per_gpu_hour"],
        "combined_twap": c["twap_per_gpu_hour"],
        "gpu_hours": c["gpu_hours"],
        "trades": f"{p['primary']['trades']} + {p['secondary']['trades']}",
        "wash_excluded": p["excluded"]["trades"],
    }


@app.command()
def prices(
    typer_ctx: typer.Context, class_id: int | None = None, window_start: int | None = None
) -> None:
    """Price per GPU-hour by class and delivery window: VWAP of primary sales, of secondary
    fills and of both, with the combined last and time-weighted price (USD). Wash trades
    are left out of every price and counted apart; --json gives every figure."""
    ctx = _ctx(typer_ctx)
    rows = ctx.get("/api/v1/price-index", class_id=class_id, window_start=window_start)
    if ctx.as_json:
        show(ctx, rows, "price index", [])
        return
    show(ctx, [_price_row(p) for p in rows], "price index", PRICE_COLUMNS)


@app.command()
def portfolio(
    typer_ctx: typer.Context,
    address: Annotated[str | None, typer.Argument(help="default: your wallet")] = None,
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Stablecoin, capacity tokens, reservations and nodes of an address."""
    ctx = _ctx(typer_ctx)
    address = address or wallet(dev_account, keystore).address
    body = ctx.get(f"/api/v1/portfolio/{address}")
    if ctx.as_json:
        console.print_json(data=body)
        return
    balance = body["stablecoin"] / USD
    console.print(f"{body['address']} (as of block {body['as_of_block']}): {balance:,.2f} tUSD")
    show(
        ctx, body["capacity"], "capacity tokens", ["token_id", "class_id", "window_start", "amount"]
    )
    if body["reservations"]:
        show(
            ctx,
            body["reservations"],
            "reservations",
            ["reservation_id", "node_id", "window_start", "amount", "status", "refund"],
        )
    if body["nodes"]:
        show(
            ctx,
            body["nodes"],
            "nodes",
            ["node_id", "class_id", "gpu_count", "status", "bonded", "locked"],
        )


# ---------------------------------------------------------------------------
# Actions
# ---------------------------------------------------------------------------


def follow(ctx: Ctx, action_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    with console.status(f"action {action_id}…"):
        while True:
            action = ctx.get(f"/actions/{action_id}")
            if action["status"] in ("confirmed", "failed") or time.monotonic() > deadline:
                return action
            time.sleep(0.3)


def report(ctx: Ctx, action: dict[str, Any]) -> None:
    if ctx.as_json:
        console.print_json(data=action)
    elif action["status"] == "confirmed":
        block, tx = action.get("block_number"), action.get("tx_hash")
        console.print(f"[green]confirmed[/] in block {block} (tx {tx})")
    elif action["status"] == "failed":
        console.print(f"[red]failed[/] {action.get('error_code')}: {action.get('error')}")
    else:
        console.print(f"still {action['status']}: follow it with GET /actions/{action['id']}")
    if action["status"] == "failed":
        raise typer.Exit(code=1)


def relay(
    ctx: Ctx,
    signer: LocalAccount,
    contract: str,
    data: str,
    signing: actions.Signing | None = None,
) -> None:
    """Sign a forward request for ``contract`` with ``data``, post it, follow the action."""
    try:
        accepted = actions.forward(ctx.client, ctx.deployment, signer, contract, data, signing)
    except ApiRejected as exc:
        fail(exc)
    if not ctx.as_json:
        call = f"{accepted['contract']}.{accepted['function']}"
        console.print(f"accepted: {call} as action {accepted['action_id']}")
    report(ctx, follow(ctx, accepted["action_id"]))


@app.command()
def buy(
    typer_ctx: typer.Context,
    offer_id: int,
    amount: Annotated[int, typer.Argument(help="GPU-hours")],
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Buy GPU-hours from an offer, gasless: a permit and a forward request, both signed here."""
    ctx = _ctx(typer_ctx)
    signer = wallet(dev_account, keystore)
    try:
        data, signing = actions.buy_calldata(ctx.client, ctx.deployment, signer, offer_id, amount)
    except ApiRejected as exc:
        fail(exc)
    relay(ctx, signer, "CapacityToken", data, signing)


@app.command()
def redeem(
    typer_ctx: typer.Context,
    token_id: int,
    amount: Annotated[int, typer.Argument(help="GPU-hours")],
    node_id: Annotated[int, typer.Argument(help="the node that sold them (see: offers)")],
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Redeem capacity tokens into a reservation on a node, before the window opens."""
    ctx = _ctx(typer_ctx)
    signer = wallet(dev_account, keystore)
    data = ctx.contract("CapacityToken").encode_abi("redeem", args=[token_id, amount, node_id])
    relay(ctx, signer, "CapacityToken", data)


@app.command("publish-offer")
def publish_offer(
    typer_ctx: typer.Context,
    node_id: int,
    class_id: int,
    window_start: Annotated[int, typer.Argument(help="unix seconds, aligned to the window")],
    amount: Annotated[int, typer.Argument(help="GPU-hours")],
    price: Annotated[float, typer.Argument(help="tUSD per GPU-hour")],
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Offer GPU-hours of your node for a future window (as the node's operator)."""
    ctx = _ctx(typer_ctx)
    signer = wallet(dev_account, keystore)
    capacity = ctx.deployment.contract(ctx.w3, "CapacityToken")
    window_seconds = int(capacity.functions.windowSeconds().call())
    if window_start % window_seconds:
        before = window_start - window_start % window_seconds
        raise typer.BadParameter(
            f"{window_start} is not the start of a delivery window (windows are "
            f"{window_seconds} s long): the nearest are {before} and {before + window_seconds}",
            param_hint="WINDOW_START",
        )
    token_id = (class_id << 64) | window_start
    data = ctx.contract("CapacityToken").encode_abi(
        "publishOffer", args=[node_id, token_id, amount, round(price * USD)]
    )
    relay(ctx, signer, "CapacityToken", data)


@app.command("cancel-offer")
def cancel_offer(
    typer_ctx: typer.Context,
    offer_id: int,
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Withdraw the unsold part of one of your offers."""
    ctx = _ctx(typer_ctx)
    signer = wallet(dev_account, keystore)
    data = ctx.contract("CapacityToken").encode_abi("cancelOffer", args=[offer_id])
    relay(ctx, signer, "CapacityToken", data)


@app.command()
def faucet(
    typer_ctx: typer.Context, dev_account: DevAccount = None, keystore: Keystore = None
) -> None:
    """Get test stablecoin for your wallet (rate-limited)."""
    ctx = _ctx(typer_ctx)
    signer = wallet(dev_account, keystore)
    accepted = ctx.post("/faucet", {"address": signer.address})
    report(ctx, follow(ctx, accepted["action_id"]))


# ---------------------------------------------------------------------------
# Entry point: a failure is one line and an exit code, never a traceback
# ---------------------------------------------------------------------------

# A node that cannot be reached, as web3.py's HTTP provider reports it.
NODE_UNREACHABLE = (requests.ConnectionError, requests.Timeout, ProviderConnectionError)


def run() -> None:
    """``python -m gpucap``. Exit codes: 0 done, 1 the action failed, 2 rejected or
    unreachable (API, node) or a usage error. ``GPUCAP_DEBUG=1`` shows tracebacks."""
    try:
        app()
    except Exception as exc:  # the last line between any failure and the user's terminal
        if os.environ.get("GPUCAP_DEBUG"):
            raise
        err_console.print(f"[red]error:[/] {_one_line(exc)}", soft_wrap=True)
        sys.exit(2)


def _one_line(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"the API at {_url_of(exc)} did not answer in time ({type(exc).__name__})"
    if isinstance(exc, httpx.TransportError):
        return f"cannot reach the API at {_url_of(exc)}: {exc or type(exc).__name__}"
    if isinstance(exc, requests.Timeout | TimeExhausted):
        return f"the chain node did not answer in time: {_first_line(exc)}"
    if isinstance(exc, NODE_UNREACHABLE):
        url = getattr(getattr(exc, "request", None), "url", None) or "the --rpc-url"
        return f"cannot reach the chain node at {url} (is it running? see --rpc-url)"
    if isinstance(exc, ApiRejected):
        return f"rejected ({exc.status} {exc.body.get('code')}): {exc.body.get('reason')}"
    if isinstance(exc, TxRejected | ManifestError | Web3RPCError):
        return _first_line(exc)
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _url_of(exc: httpx.HTTPError) -> str:
    try:
        url = exc.request.url
    except RuntimeError:  # no request attached
        return "the --api URL"
    return f"{url.scheme}://{url.host}:{url.port}" if url.port else f"{url.scheme}://{url.host}"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
