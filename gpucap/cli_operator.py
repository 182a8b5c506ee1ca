"""CLI commands of a node operator: register a node and bond it (offers: cli.publish-offer).

Registering and bonding are relayed through the API (``/api/v1/forward``), like
every capacity action, so they get its validation and error codes. The bond's
stablecoin allowance is the one step the relayer cannot make for a wallet (the
stablecoin is not relayable): ``bond`` sends that approval itself, simulated first.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from eth_utils import to_checksum_address

from gpucap import actions
from gpucap.cli import USD, DevAccount, Keystore, _ctx, app, console, err_console, relay, wallet
from gpucap.gpu_ids import gpu_id


def _rejected(exc: actions.TxRejected) -> None:
    err_console.print(f"[red]rejected:[/] {exc}")
    raise typer.Exit(code=2)


@app.command("register-node")
def register_node(
    typer_ctx: typer.Context,
    gpu_class: Annotated[str, typer.Argument(help="GPU class name, e.g. H100-SXM-80GB")],
    gpus: Annotated[int, typer.Argument(help="GPUs in the node")],
    region: Annotated[str, typer.Argument(help="region code, e.g. eu-west")],
    cost: Annotated[float, typer.Option(help="what the GPUs cost, in tUSD")],
    node_key: Annotated[str, typer.Option(help="address the node's agent signs with")],
    acquired_days_ago: Annotated[int, typer.Option(help="age of the GPUs, in days")] = 0,
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Register a node you operate (it starts Pending: bond it to make it Active)."""
    ctx = _ctx(typer_ctx)
    signer = wallet(dev_account, keystore)
    classes = ctx.deployment.gpu_classes
    if gpu_class not in classes:
        raise typer.BadParameter(f"unknown GPU class {gpu_class!r}; known: {', '.join(classes)}")
    if len(region.encode()) > 32:
        raise typer.BadParameter("region must fit in 32 bytes")
    try:
        key = to_checksum_address(node_key)
    except ValueError as exc:
        raise typer.BadParameter(f"node key {node_key!r} is not an address") from exc
    acquired_at = int(time.time()) - acquired_days_ago * 86_400 - 60
    data = ctx.contract("NodeRegistry").encode_abi(
        "registerNode",
        args=[
            classes[gpu_class],
            gpus,
            region.encode().ljust(32, b"\0"),
            round(cost * USD),
            acquired_at,
            key,
        ],
    )
    relay(ctx, signer, "NodeRegistry", data)


@app.command()
def bond(
    typer_ctx: typer.Context,
    node_id: int,
    amount: Annotated[float, typer.Argument(help="tUSD to add to the node's bond")],
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Add stablecoin to your node's bond (approves the registry for it first if needed)."""
    ctx = _ctx(typer_ctx)
    signer = wallet(dev_account, keystore)
    units = round(amount * USD)
    coin = ctx.deployment.contract(ctx.w3, "TestStablecoin")
    registry = ctx.deployment.contracts["NodeRegistry"].address
    if coin.functions.allowance(signer.address, registry).call() < units:
        try:
            sent = actions.send_call(ctx.w3, signer, coin.functions.approve(registry, units))
        except actions.TxRejected as exc:
            _rejected(exc)
        console.print(f"approved the registry for {amount:,.2f} tUSD (tx {sent.tx_hash})")
    data = ctx.contract("NodeRegistry").encode_abi("depositBond", args=[node_id, units])
    relay(ctx, signer, "NodeRegistry", data)


@app.command("exit-node")
def exit_node(
    typer_ctx: typer.Context,
    node_id: int,
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Start your node's exit: refused while it owes anything (bond locked behind offers, sales
    or reservations: RegistryBondLocked; a pool loan: RegistryObligationOpen)."""
    _relay_registry(typer_ctx, "requestExit", node_id, dev_account, keystore)


@app.command("withdraw-bond")
def withdraw_bond(
    typer_ctx: typer.Context,
    node_id: int,
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Withdraw your exiting node's whole bond once the unbonding delay has passed (still
    refused while anything is owed)."""
    _relay_registry(typer_ctx, "withdrawBond", node_id, dev_account, keystore)


GpuUuids = Annotated[
    list[str], typer.Argument(help="GPU UUIDs as NVML reports them (nvidia-smi -L): GPU-…")
]


@app.command("bind-gpus")
def bind_gpus(
    typer_ctx: typer.Context,
    node_id: int,
    uuids: GpuUuids,
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Bind your node's GPUs in the registry: the oracles count an agent's readings and
    challenge answers only for GPUs bound to its node (refused for a GPU bound to another
    node: RegistryGpuAlreadyBound; beyond the node's GPU count: RegistryTooManyGpus)."""
    _relay_gpus(typer_ctx, "bindGpus", node_id, uuids, dev_account, keystore)


@app.command("unbind-gpus")
def unbind_gpus(
    typer_ctx: typer.Context,
    node_id: int,
    uuids: GpuUuids,
    dev_account: DevAccount = None,
    keystore: Keystore = None,
) -> None:
    """Release GPUs from your node (a GPU replaced or moved to another node)."""
    _relay_gpus(typer_ctx, "unbindGpus", node_id, uuids, dev_account, keystore)


def _relay_gpus(
    typer_ctx: typer.Context,
    function: str,
    node_id: int,
    uuids: list[str],
    dev_account: int | None,
    keystore: Path | None,
) -> None:
    try:
        ids = [gpu_id(u) for u in uuids]
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from exc
    ctx = _ctx(typer_ctx)
    signer = wallet(dev_account, keystore)
    data = ctx.contract("NodeRegistry").encode_abi(function, args=[node_id, ids])
    relay(ctx, signer, "NodeRegistry", data)


def _relay_registry(
    typer_ctx: typer.Context,
    function: str,
    node_id: int,
    dev_account: int | None,
    keystore: Path | None,
) -> None:
    ctx = _ctx(typer_ctx)
    signer = wallet(dev_account, keystore)
    data = ctx.contract("NodeRegistry").encode_abi(function, args=[node_id])
    relay(ctx, signer, "NodeRegistry", data)
