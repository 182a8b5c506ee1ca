"""``python -m gpucap governance …``: admin changes through the GpucapTimelock.

Outside the dev chain (and in the demo once seeded) every admin power is a call the
timelock makes after its delay (README: the table of powers). ``list`` reads what the
API's index holds; ``schedule`` announces one call of a gpucap contract (a proposer's
transaction: ``schedule`` on the timelock), ``bind-pool`` announces the batch that binds a
node's new pool, and ``execute`` carries out an announced operation once due (anyone may).
Each is the wallet's own transaction, simulated first: one that would revert is refused
with the contract's error and exit code 2, before anything is signed or sent.
"""

from __future__ import annotations

import json
import os
import time
from typing import Annotated, Any

import typer
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3RPCError

from gpucap import actions
from gpucap.cli import Ctx, DevAccount, Keystore, _ctx, app, console, err_console, show, wallet

gov_app = typer.Typer(
    help="Admin changes through the timelock: list, schedule, bind-pool, execute.",
    no_args_is_help=True,
)
app.add_typer(gov_app, name="governance")

TIMELOCK = "GpucapTimelock"
POOL = "RevenuePool"
ZERO32 = b"\0" * 32
COLUMNS = ["status", "time_of_effect", "contract", "call", "operation_id"]


def _timelock(ctx: Ctx) -> Any:
    if TIMELOCK not in ctx.deployment.contracts:
        err_console.print(
            f"[red]{ctx.manifest_path} names no timelock:[/] this deployment's admin is "
            "not behind one (the dev chain's tests), so there is nothing to schedule"
        )
        raise typer.Exit(code=2)
    return ctx.deployment.contract(ctx.w3, TIMELOCK)


def _send(ctx: Ctx, signer: Any, call: Any, what: str) -> None:
    try:
        sent = actions.send_call(ctx.w3, signer, call)
    except actions.TxRejected as exc:
        err_console.print(f"[red]rejected:[/] {exc}")
        raise typer.Exit(code=2) from None
    console.print(f"[green]confirmed[/] {what} in block {sent.block_number} (tx {sent.tx_hash})")


def call_text(change: dict[str, Any]) -> str:
    if not change.get("function"):
        return f"{change['data'][:10]}… (not a gpucap call)"
    args = ", ".join(f"{k}={v}" for k, v in (change.get("args") or {}).items())
    return f"{change['function']}({args})"


@gov_app.command("list")
def list_changes(
    typer_ctx: typer.Context,
    status: Annotated[
        str | None, typer.Option(help="pending | ready | executed | cancelled")
    ] = None,
    limit: Annotated[int, typer.Option(help="at most this many")] = 100,
) -> None:
    """The changes the timelock announced (soonest time of effect first)."""
    ctx = _ctx(typer_ctx)
    rows = ctx.get("/api/v1/governance/changes", status=status, limit=limit)
    if ctx.as_json:
        console.print_json(data=rows)
        return
    for row in rows:
        row["time_of_effect"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(row["eta"]))
        row["call"] = call_text(row)
        row["contract"] = row["contract"] or row["target"]
    show(ctx, rows, "Timelock changes", COLUMNS)


# ---------------------------------------------------------------------------
# schedule
# ---------------------------------------------------------------------------


def _abi_and_address(ctx: Ctx, contract: str, at: str | None) -> tuple[list[Any], str]:
    if contract == POOL:
        if at is None:
            raise typer.BadParameter("a RevenuePool call needs the pool's --at address")
        return actions.pool_abi(), Web3.to_checksum_address(at)
    ref = ctx.deployment.contracts.get(contract)
    if ref is None:
        names = ", ".join([*ctx.deployment.contracts, POOL])
        raise typer.BadParameter(f"{contract} is not a gpucap contract (one of: {names})")
    return ref.abi, ref.address


def parse_arg(abi_type: str, text: str) -> Any:
    """A command-line argument as ``abi_type`` wants it: addresses (any case), integers,
    true/false, bytes as 0x-hex, a role by name for bytes32 (``DISTRIBUTOR_ROLE``,
    ``DEFAULT_ADMIN_ROLE``), arrays and structs as JSON."""
    try:
        if abi_type.endswith("]") or abi_type.startswith("tuple") or abi_type.startswith("("):
            return json.loads(text)
        if abi_type == "address":
            return Web3.to_checksum_address(text)
        if abi_type.startswith(("uint", "int")):
            return int(text, 0)
        if abi_type == "bool":
            if text.lower() not in ("true", "false"):
                raise ValueError("true or false")
            return text.lower() == "true"
        if abi_type == "bytes32" and text.endswith("_ROLE"):
            return ZERO32 if text == "DEFAULT_ADMIN_ROLE" else keccak(text=text)
        if abi_type.startswith("bytes"):
            return bytes.fromhex(text.removeprefix("0x"))
        return text
    except ValueError as exc:
        raise typer.BadParameter(f"{text!r} is not a {abi_type}: {exc}") from exc


def _encode(abi: list[Any], function: str, texts: list[str]) -> str:
    candidates = [
        item
        for item in abi
        if item.get("type") == "function"
        and item["name"] == function
        and len(item["inputs"]) == len(texts)
    ]
    if not candidates:
        inputs = [
            ", ".join(f"{i['type']} {i['name']}" for i in item["inputs"])
            for item in abi
            if item.get("type") == "function" and item["name"] == function
        ]
        if not inputs:
            raise typer.BadParameter(f"no function {function}")
        raise typer.BadParameter(f"{function} takes ({' | '.join(inputs)}); got {len(texts)}")
    item = candidates[0]
    args = [parse_arg(i["type"], t) for i, t in zip(item["inputs"], texts, strict=True)]
    return Web3().eth.contract(abi=[item]).encode_abi(function, args=args)


def _salt(text: str | None) -> bytes:
    if text is None:
        return os.urandom(32)  # one operation id per announcement, even of the same call
    raw = text.encode()
    if len(raw) > 32:
        raise typer.BadParameter("a salt is at most 32 bytes of text")
    return raw.ljust(32, b"\0")


def _warn_if_it_would_revert_now(ctx: Ctx, timelock: str, to: str, data: str) -> None:
    """The call as the timelock would make it today: a hint, not a refusal (the state may
    be different when it is due, e.g. an earlier change of the same batch)."""
    try:
        ctx.w3.eth.call({"from": timelock, "to": to, "data": data})  # type: ignore[typeddict-item]
    except (ContractLogicError, Web3RPCError) as exc:
        err_console.print(f"[yellow]note:[/] made now, the call would fail: {exc}")


@gov_app.command()
def schedule(
    typer_ctx: typer.Context,
    contract: Annotated[str, typer.Argument(help="e.g. EpochSettlement, Market, RevenuePool")],
    function: Annotated[str, typer.Argument(help="e.g. setUsageTerms")],
    args: Annotated[list[str] | None, typer.Argument(help="the function's arguments")] = None,
    at: Annotated[str | None, typer.Option(help="a RevenuePool's address")] = None,
    salt: Annotated[str | None, typer.Option(help="text (default: random)")] = None,
    delay: Annotated[int | None, typer.Option(help="seconds (default: the minimum)")] = None,
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Announce one call through the timelock (a proposer's transaction); it can be
    executed once its delay has passed."""
    ctx = _ctx(typer_ctx)
    abi, address = _abi_and_address(ctx, contract, at)
    data = _encode(abi, function, list(args or []))
    timelock = _timelock(ctx)
    _warn_if_it_would_revert_now(ctx, timelock.address, address, data)
    wait = timelock.functions.getMinDelay().call() if delay is None else delay
    salt_bytes = _salt(salt)
    signer = wallet(dev_account, keystore)
    call = timelock.functions.schedule(address, 0, data, ZERO32, salt_bytes, wait)
    operation = timelock.functions.hashOperation(address, 0, data, ZERO32, salt_bytes).call()
    _send(ctx, signer, call, f"scheduled {contract}.{function}, due in {wait} s")
    console.print(f"operation {Web3.to_hex(operation)}")


@gov_app.command("bind-pool")
def bind_pool(
    typer_ctx: typer.Context,
    node_id: Annotated[int, typer.Argument(help="the node the pool finances")],
    pool: Annotated[str, typer.Argument(help="the deployed pool (its admin: the timelock)")],
    salt: Annotated[str | None, typer.Option(help="text (default: random)")] = None,
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Announce the batch that binds a new pool to its node: the settlement may distribute
    into it, the loan book may book a default's loss, EpochSettlement.setPool, the guardian
    may pause it, and its shares are listed on the market."""
    ctx = _ctx(typer_ctx)
    timelock = _timelock(ctx)
    address = Web3.to_checksum_address(pool)
    settlement = ctx.deployment.contracts["EpochSettlement"].address
    # The loss waterfall at default books the stakers' first loss (bookLoss): the loan book
    # (a deployment from before PoolLoans books it from the settlement).
    loans = ctx.deployment.contracts.get("PoolLoans")
    slasher = loans.address if loans is not None else settlement
    with open(ctx.manifest_path) as manifest:
        guardian = json.load(manifest).get("guardian")
    calls: list[tuple[str, list[Any], str, list[str]]] = [
        (address, actions.pool_abi(), "grantRole", ["DISTRIBUTOR_ROLE", settlement]),
        (address, actions.pool_abi(), "grantRole", ["SLASHER_ROLE", slasher]),
        (
            settlement,
            ctx.deployment.contracts["EpochSettlement"].abi,
            "setPool",
            [str(node_id), address],
        ),
    ]
    if guardian:
        calls.append((address, actions.pool_abi(), "grantRole", ["GUARDIAN_ROLE", guardian]))
    if "Market" in ctx.deployment.contracts:
        market = ctx.deployment.contracts["Market"]
        calls.append((market.address, market.abi, "setPoolListed", [address, "true"]))
    targets = [to for to, _, _, _ in calls]
    payloads = [_encode(abi, fn, texts) for _, abi, fn, texts in calls]
    wait = timelock.functions.getMinDelay().call()
    salt_bytes = _salt(salt)
    values = [0] * len(calls)
    signer = wallet(dev_account, keystore)
    call = timelock.functions.scheduleBatch(targets, values, payloads, ZERO32, salt_bytes, wait)
    operation = timelock.functions.hashOperationBatch(
        targets, values, payloads, ZERO32, salt_bytes
    ).call()
    _send(ctx, signer, call, f"scheduled the binding of pool {address} to node {node_id}")
    console.print(f"operation {Web3.to_hex(operation)}")


# ---------------------------------------------------------------------------
# execute
# ---------------------------------------------------------------------------


@gov_app.command()
def execute(
    typer_ctx: typer.Context,
    operation_id: Annotated[str, typer.Argument(help="0x-hex, from `governance list`")],
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Carry out an announced operation once its time of effect has come (anyone may)."""
    ctx = _ctx(typer_ctx)
    rows = ctx.get("/api/v1/governance/changes", operation_id=operation_id, limit=1000)
    waiting = [r for r in rows if r["status"] in ("pending", "ready")]
    if not waiting:
        states = sorted({r["status"] for r in rows}) or ["not indexed (yet)"]
        err_console.print(f"[red]operation {operation_id} is {', '.join(states)}[/]")
        raise typer.Exit(code=2)
    calls = sorted(waiting, key=lambda r: r["call_index"])
    first = calls[0]
    if first["status"] == "pending":
        due = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(first["eta"]))
        err_console.print(f"[red]operation {operation_id} is not due until {due}[/]")
        raise typer.Exit(code=2)
    call = actions.timelock_execute(_timelock(ctx), calls)
    what = ", ".join(f"{c['contract'] or c['target']}.{c['function'] or '?'}" for c in calls)
    _send(ctx, wallet(dev_account, keystore), call, f"executed {what}")
