"""``python -m gpucap pool …``: a node's RevenuePool as an investor or staker.

``list`` reads the API's pool index; the actions find a node's pool on-chain
(``EpochSettlement.poolOf``). Their calls are the
wallet's own transactions (pools are not relayable), simulated first: a call
that would revert is refused with the pool's custom error and exit code 2,
before anything is signed or sent.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from eth_account.signers.local import LocalAccount
from rich.table import Table

from gpucap import actions
from gpucap.cli import USD, Ctx, DevAccount, Keystore, _ctx, app, console, err_console, wallet

pool_app = typer.Typer(
    help="Node revenue pools: list, show, loan, deposit, stake, unstake, withdraw, claim.",
    no_args_is_help=True,
)
app.add_typer(pool_app, name="pool")

SHARE = 10**18
ROUND = ("raising", "failed", "funded")  # RevenuePool.RoundStatus


def _pool(ctx: Ctx, node_id: int) -> Any:
    settlement = ctx.deployment.contract(ctx.w3, "EpochSettlement")
    address = settlement.functions.poolOf(node_id).call()
    if int(address, 16) == 0:
        err_console.print(f"[red]node {node_id} has no revenue pool[/]")
        raise typer.Exit(code=2)
    return actions.pool(ctx.w3, address)


def _send(ctx: Ctx, signer: LocalAccount, call: Any, what: str) -> None:
    try:
        sent = actions.send_call(ctx.w3, signer, call)
    except actions.TxRejected as exc:
        err_console.print(f"[red]rejected:[/] {exc}")
        raise typer.Exit(code=2) from None
    console.print(f"[green]confirmed[/] {what} in block {sent.block_number} (tx {sent.tx_hash})")


@pool_app.command("list")
def list_pools(
    typer_ctx: typer.Context,
    address: Annotated[str | None, typer.Argument(help="default: your wallet")] = None,
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Every node pool and your position in each (from the API's index)."""
    ctx = _ctx(typer_ctx)
    who = address or wallet(dev_account, keystore).address
    rows = []
    for pool in ctx.get("/api/v1/pools"):
        position = ctx.get(f"/api/v1/pools/{pool['address']}/positions/{who}")
        rows.append(
            {
                "node_id": pool["node_id"],
                "pool": pool["address"],
                "round": pool["round"]["state"],
                "raised": pool["round"]["raised"],
                "target": pool["round"]["target"],
                "shares": int(position["shares"]),
                "staked": int(position["staked"]),
                "claimable": position["claimable"],
            }
        )
    if ctx.as_json:
        console.print_json(data=rows)
        return
    table = Table(title=f"revenue pools, position of {who}")
    for column in (
        "node",
        "pool",
        "round",
        "raised / target tUSD",
        "shares",
        "staked",
        "claimable",
    ):
        table.add_column(column)
    for r in rows:
        table.add_row(
            str(r["node_id"]),
            r["pool"],
            r["round"],
            f"{r['raised'] / USD:,.0f} / {r['target'] / USD:,.0f}",
            f"{r['shares'] / SHARE:,.2f}",
            f"{r['staked'] / SHARE:,.2f}",
            f"{r['claimable'] / USD:,.2f}",
        )
    console.print(table)


@pool_app.command("show")
def show(
    typer_ctx: typer.Context,
    node_id: int,
    address: Annotated[str | None, typer.Argument(help="default: your wallet")] = None,
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """The pool's round and totals, and a position in it."""
    ctx = _ctx(typer_ctx)
    pool = _pool(ctx, node_id)
    who = address or wallet(dev_account, keystore).address
    terms = pool.functions.terms().call()
    totals = pool.functions.totals().call()
    stake = pool.functions.stakeOf(who).call()
    body = {
        "pool": pool.address,
        "node_id": node_id,
        "round": ROUND[pool.functions.roundStatus().call()],
        "target": terms[3],
        "raised": totals[0],
        "drawn": totals[2],
        "revenue_in": totals[3],
        "staked_shares": totals[7],
        "address": who,
        "shares": pool.functions.balanceOf(who).call(),
        "earning_shares": stake[0],
        "pending_shares": stake[1],
        "cooling_shares": stake[2],
        "unlock_epoch": stake[4],
        "claimable": stake[5],
    }
    if ctx.as_json:
        console.print_json(data=body)
        return
    console.print(
        f"pool {pool.address} of node {node_id}: round {body['round']}, raised "
        f"{body['raised'] / USD:,.0f} of {body['target'] / USD:,.0f} tUSD, "
        f"{body['staked_shares'] / SHARE:,.0f} shares staked"
    )
    console.print(
        f"{who}: {body['shares'] / SHARE:,.2f} shares held, {stake[0] / SHARE:,.2f} earning, "
        f"{stake[1] / SHARE:,.2f} warming up, {stake[2] / SHARE:,.2f} cooling, "
        f"{stake[5] / USD:,.2f} tUSD claimable"
    )


@pool_app.command()
def deposit(
    typer_ctx: typer.Context,
    node_id: int,
    amount: Annotated[float, typer.Argument(help="tUSD to put in the funding round")],
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Buy shares in a pool's funding round (approves the pool for exactly that first)."""
    ctx = _ctx(typer_ctx)
    signer = wallet(dev_account, keystore)
    pool = _pool(ctx, node_id)
    units = round(amount * USD)
    coin = ctx.deployment.contract(ctx.w3, "TestStablecoin")
    # Simulating deposit needs the allowance in place; a refused approval costs nothing.
    _send(ctx, signer, coin.functions.approve(pool.address, units), "approval")
    _send(ctx, signer, pool.functions.deposit(units, signer.address), f"deposit of {amount} tUSD")


@pool_app.command()
def stake(
    typer_ctx: typer.Context,
    node_id: int,
    shares: Annotated[float | None, typer.Argument(help="shares to stake (default: all)")] = None,
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Stake pool shares: they earn the node's revenue from the next full epoch."""
    ctx = _ctx(typer_ctx)
    signer = wallet(dev_account, keystore)
    pool = _pool(ctx, node_id)
    units = (
        pool.functions.balanceOf(signer.address).call() if shares is None else round(shares * SHARE)
    )
    _send(ctx, signer, pool.functions.stake(units), f"stake of {units / SHARE:,.2f} shares")


@pool_app.command()
def unstake(
    typer_ctx: typer.Context,
    node_id: int,
    shares: Annotated[float, typer.Argument(help="shares to stop staking")],
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Ask to unstake: the shares stop earning now and can be withdrawn after the cooldown."""
    ctx = _ctx(typer_ctx)
    signer = wallet(dev_account, keystore)
    pool = _pool(ctx, node_id)
    units = round(shares * SHARE)
    _send(ctx, signer, pool.functions.requestUnstake(units), f"unstake of {shares:,.2f} shares")


@pool_app.command()
def withdraw(
    typer_ctx: typer.Context,
    node_id: int,
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Take back shares whose cooldown has passed."""
    ctx = _ctx(typer_ctx)
    signer = wallet(dev_account, keystore)
    _send(ctx, signer, _pool(ctx, node_id).functions.withdraw(), "withdrawal")


@pool_app.command()
def claim(
    typer_ctx: typer.Context,
    node_id: int,
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Claim the revenue your stake has earned."""
    ctx = _ctx(typer_ctx)
    signer = wallet(dev_account, keystore)
    _send(ctx, signer, _pool(ctx, node_id).functions.claim(signer.address), "claim")


def _usd(micro: int) -> str:
    return f"{micro / USD:,.2f}"


@pool_app.command("collateral")
def collateral(typer_ctx: typer.Context, node_id: int) -> None:
    """The node's collateral: depreciated book value beside its value marked to the market
    (the lower of book and what its class's GPU-hour trades imply), from the API's index."""
    ctx = _ctx(typer_ctx)
    pools = ctx.get("/api/v1/pools", node_id=node_id)
    if not pools or pools[0]["collateral"] is None:
        err_console.print(f"[red]node {node_id}: no indexed pool or node[/]")
        raise typer.Exit(code=2)
    c = pools[0]["collateral"]
    if ctx.as_json:
        console.print_json(data=c)
        return
    m, rule = c["market"], c["rule"]
    market = "-" if c["market_value"] is None else _usd(c["market_value"])
    console.print(
        f"node {node_id}: book {_usd(c['book_value'])} tUSD ({c['curve'].replace('_', ' ')}), "
        f"market {market}, marked {_usd(c['marked_value'])} ({c['basis']})"
    )
    price = "-" if m["price_per_gpu_hour"] is None else _usd(m["price_per_gpu_hour"])
    console.print(
        f"class {m['class_id']}: {m['trades']} trades, {_usd(m['volume'])} tUSD, VWAP {price} "
        f"in the last {rule['lookback_seconds']} s ({rule['source']}; {m['excluded']['trades']} "
        f"wash trades left out); enough takes {rule['min_trades']} trades and "
        f"{_usd(rule['min_volume'])} tUSD"
    )


@pool_app.command("loan")
def loan(typer_ctx: typer.Context, node_id: int) -> None:
    """The node's pool loan (from the API's index): state, arrears, cure progress, pledged
    bond, and after a default its loss waterfall and recovery; then its history."""
    ctx = _ctx(typer_ctx)
    pools = ctx.get("/api/v1/pools", node_id=node_id)
    if not pools:
        err_console.print(f"[red]node {node_id} has no indexed revenue pool[/]")
        raise typer.Exit(code=2)
    pool = pools[0]
    history = ctx.get(f"/api/v1/pools/{pool['address']}/loan/history", limit=1000)
    body = {"pool": pool["address"], "node_id": node_id, "loan": pool["loan"], "history": history}
    if ctx.as_json:
        console.print_json(data=body)
        return
    state = pool["loan"]
    if state is None:
        console.print(f"pool {pool['address']} of node {node_id}: no loan (raise not drawn)")
        return
    since = f" since epoch {state['since_epoch']}" if state["since_epoch"] is not None else ""
    console.print(f"pool {pool['address']} of node {node_id}: loan {state['state']}{since}")
    console.print(
        f"  arrears {_usd(state['arrears_micro_usd'])} tUSD (default above "
        f"{_usd(state['default_arrears_threshold_micro_usd'])}); pledged bond "
        f"{_usd(state['pledged_bond_micro_usd'])} tUSD; default due: {state['default_due']}"
    )
    if state["runs"] is not None:
        r = state["runs"]
        console.print(
            f"  clean settlements {r['clean_epochs']}/{r['cure_epochs']} (cure), "
            f"DSCR under {r['default_dscr_floor_bps']} bps {r['low_dscr_epochs']}/"
            f"{r['default_dscr_epochs']} (default)"
        )
    if state["default"] is not None:
        d = state["default"]
        principal = _usd(d["principal_accelerated_micro_usd"])
        console.print(
            f"  default at epoch {d['epoch']}: principal {principal}"
            f" + arrears {_usd(d['arrears_micro_usd'])}; bond seized "
            f"{_usd(d['bond_seized_micro_usd'])}, stakers' loss {_usd(d['stakers_loss_micro_usd'])}"
            f", reserve cover {_usd(d['reserve_cover_micro_usd'])}, holders' loss "
            f"{_usd(d['holders_loss_micro_usd'])}; recovery {_usd(d['recovered_micro_usd'])} of "
            f"{_usd(d['recovery_claim_micro_usd'])} repaid"
        )
    table = Table(title="loan history")
    for column in ("block", "epoch", "event", "change", "amounts tUSD"):
        table.add_column(column)
    for h in history:
        change = f"{h['from_state']} -> {h['to_state']}" if h["to_state"] else ""
        amounts = ", ".join(f"{k} {_usd(v)}" for k, v in h["amounts_micro_usd"].items())
        epoch = "" if h["epoch"] is None else str(h["epoch"])
        table.add_row(str(h["block_number"]), epoch, h["event"], change, amounts)
    console.print(table)
