"""Read models folded from stored events: ``apply_event`` and ``rebuild_projections``.

The read models (``nodes``, ``epochs``, ``offers``, ``sales``, ``reservations``,
``gpu_classes``, balances, through ``pool_index`` the pools and settlements, through
``loan_index`` the pool loans) are derived from ``chain_events`` alone. The indexer
applies each new batch's events here, and replays every stored event here after undoing a
reorg.

Separate from the indexer because it needs only the database: no chain, no indexer
state. It must not import ``backend.services.indexing.indexer`` (the indexer depends on it, not
the other way round).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy import event as sa_event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session

from backend.db.models import (
    PROJECTIONS,
    BalanceRow,
    ChainEvent,
    EpochRow,
    GpuClassRow,
    NodeRow,
    OfferRow,
    ReservationRow,
    SaleRow,
)
from backend.services.indexing import governance, loan_index, market_index, pool_index
from backend.services.indexing.event_decoding import bytes32_text, token_parts

log = logging.getLogger(__name__)

# What the chain's NodeStatus enum values mean (INodeRegistry.NodeStatus).
NODE_STATUS_ACTIVE = "active"


def bound_pools(session: Session) -> list[str]:
    """Pool addresses of the PoolSet events in ``chain_events``."""
    rows = session.scalars(
        select(ChainEvent).where(
            ChainEvent.contract == pool_index.SETTLEMENT, ChainEvent.event == "PoolSet"
        )
    )
    return [row.args["pool"] for row in rows]


def rebuild_projections(session: Session) -> None:
    """Drops every read model and replays ``chain_events`` in chain order."""
    for table in PROJECTIONS:
        session.execute(delete(table))
    session.flush()
    with keeping_rows(session):
        for row in session.scalars(
            select(ChainEvent).order_by(ChainEvent.block_number, ChainEvent.log_index)
        ):
            apply_event(session, row)


@contextmanager
def keeping_rows(session: Session) -> Iterator[None]:
    """Holds every row the session loads meanwhile. The identity map holds unchanged rows
    weakly, so without this a row read by one event (a holder's balance, an offer) is gone
    once flushed, and the next event touching it SELECTs it again. Also lets _move() and
    _merge() look rows up without flushing first (they remember the rows they add
    meanwhile): the block must not delete read-model rows."""
    kept: list[Any] = []

    def keep(_session: Session, instance: Any) -> None:
        kept.append(instance)

    sa_event.listen(session, "loaded_as_persistent", keep)
    sa_event.listen(session, "pending_to_persistent", keep)
    session.info[_NEW_BALANCES] = {}
    session.info[_NEW_ROWS] = {}
    session.info[_ABSENT_BALANCES] = set()
    try:
        yield
    finally:
        del session.info[_NEW_BALANCES]
        del session.info[_NEW_ROWS]
        del session.info[_ABSENT_BALANCES]
        sa_event.remove(session, "loaded_as_persistent", keep)
        sa_event.remove(session, "pending_to_persistent", keep)


# session.info keys: balance rows _move() created, rows _merge() added, in the current
# keeping_rows() block.
_NEW_BALANCES = "gpucap.indexer.new_balances"
_NEW_ROWS = "gpucap.indexer.new_rows"
# Balance keys preload_balances() found no row for (in the current keeping_rows() block).
_ABSENT_BALANCES = "gpucap.indexer.absent_balances"
PRELOAD_CHUNK = 300  # keys per SELECT (3 bound values each; SQLite allows 32,766)


def balance_keys(events: Iterable[ChainEvent]) -> set[tuple[str, str, str]]:
    """The balance rows ``events`` will move (the keys _move gives them)."""
    return {
        _balance_key(holder, asset, token_id)
        for ev in events
        for holder, asset, token_id, delta in _transfer_moves(ev)
        if holder != ZERO and delta != 0
    }


def preload_balances(session: Session, events: Iterable[ChainEvent]) -> None:
    """Inside keeping_rows(): load every balance row ``events`` will move with a few
    SELECTs, and remember which do not exist yet. A batch of relayed buys moved ~4
    balances per buy, each a SELECT by key (most of them for rows that did not exist:
    first-time buyers), which was the largest part of indexing it."""
    keys = sorted(balance_keys(events))
    absent: set[tuple[str, str, str]] = session.info[_ABSENT_BALANCES]
    for start in range(0, len(keys), PRELOAD_CHUNK):
        chunk = keys[start : start + PRELOAD_CHUNK]
        with session.no_autoflush:
            found = session.scalars(
                select(BalanceRow).where(
                    tuple_(BalanceRow.holder, BalanceRow.asset, BalanceRow.token_id).in_(chunk)
                )
            ).all()
        have = {(r.holder, r.asset, r.token_id) for r in found}
        absent.update(k for k in chunk if k not in have)


def _merge(session: Session, row: Any) -> None:
    """``session.merge(row)``; inside keeping_rows() without the autoflush merge starts
    with. That flush is only needed when the row's key is pending (added, unflushed: not
    in the identity map, not in the database yet), and rows of the read models merged here
    are only ever added by this function, which remembers those it added."""
    added: dict[Any, Any] | None = session.info.get(_NEW_ROWS)
    if added is None:
        session.merge(row)
        return
    key = sa_inspect(type(row)).identity_key_from_instance(row)
    if key in added:
        session.merge(row)
        return
    with session.no_autoflush:
        merged = session.merge(row)
    if sa_inspect(merged).pending:
        added[key] = merged


def _apply_gpu_class(session: Session, ev: ChainEvent) -> None:
    a = ev.args
    _merge(
        session,
        GpuClassRow(
            class_id=a["classId"],
            name=bytes32_text(a["name"]),
            reference_power_w=a["referencePowerW"],
            reference_throughput=a["referenceThroughput"],
            economic_life_months=a["economicLifeMonths"],
            residual_value_bps=a["residualValueBps"],
        ),
    )


def _apply_node_registered(session: Session, ev: ChainEvent) -> None:
    a = ev.args
    _merge(
        session,
        NodeRow(
            node_id=a["nodeId"],
            operator=a["operator"],
            class_id=a["classId"],
            gpu_count=a["gpuCount"],
            region=bytes32_text(a["region"]),
            node_key=a["nodeKey"],
            acquisition_cost=a["acquisitionCost"],
            acquired_at=a["acquiredAt"],
            status=NODE_STATUS_ACTIVE,
            bonded=0,
            locked=0,
            slashed=0,
            registered_block=ev.block_number,
        ),
    )


def _node(session: Session, ev: ChainEvent) -> NodeRow | None:
    node = session.get(NodeRow, ev.args["nodeId"])
    if node is None:
        log.error("indexer: %s for unknown node %s", ev.event, ev.args["nodeId"])
    return node


def _apply_node_change(session: Session, ev: ChainEvent) -> None:
    node = _node(session, ev)
    if node is None:
        return
    a = ev.args
    match ev.event:
        case "BondDeposited":
            node.bonded = a["bonded"]
        case "BondLocked" | "BondUnlocked" | "BondLockSettled":
            node.locked = a["locked"]
        case "NodeSlashed":
            # A slash takes free bond, or (settleLock, after its BondLockSettled) bond
            # its locker just released: the locked total is never clipped by it.
            node.bonded -= a["amount"]
            node.slashed += a["amount"]
        case "NodeJailed":
            node.status = "jailed"
        case "NodeUnjailed":
            node.status = NODE_STATUS_ACTIVE
        case "NodeExitRequested":
            node.status = "exiting"
        case "NodeExited":
            node.status = "exited"
            node.bonded = 0
            node.locked = 0


def _apply_epoch(session: Session, ev: ChainEvent) -> None:
    a = ev.args
    _merge(
        session,
        EpochRow(
            epoch=a["epoch"],
            root=a["root"],
            node_count=a["nodeCount"],
            total_energy_joules=a["totalEnergyJoules"],
            total_milli_gpu_hours=a["totalMilliGpuHours"],
            config_version=a["configVersion"],
            transmitter=a["transmitter"],
            block_number=ev.block_number,
            attested_at=ev.block_timestamp,
            tx_hash=ev.tx_hash,
        ),
    )


def _apply_offer(session: Session, ev: ChainEvent) -> None:
    a = ev.args
    class_id, window_start = token_parts(a["tokenId"])
    _merge(
        session,
        OfferRow(
            offer_id=a["offerId"],
            node_id=a["nodeId"],
            token_id=str(a["tokenId"]),
            class_id=class_id,
            window_start=window_start,
            amount=a["amount"],
            sold=0,
            price_per_gpu_hour=a["pricePerGpuHour"],
            bond_locked=a["bondLocked"],
            status="open",
            published_block=ev.block_number,
        ),
    )


def _apply_offer_cancelled(session: Session, ev: ChainEvent) -> None:
    offer = session.get(OfferRow, ev.args["offerId"])
    if offer is not None:
        offer.status = "cancelled"


def _apply_sale(session: Session, ev: ChainEvent) -> None:
    a = ev.args
    class_id, window_start = token_parts(a["tokenId"])
    _merge(
        session,
        SaleRow(
            block_number=ev.block_number,
            log_index=ev.log_index,
            offer_id=a["offerId"],
            node_id=a["nodeId"],
            buyer=a["buyer"],
            token_id=str(a["tokenId"]),
            class_id=class_id,
            window_start=window_start,
            amount=a["amount"],
            cost=a["cost"],
            block_timestamp=ev.block_timestamp,
        ),
    )
    offer = session.get(OfferRow, a["offerId"])
    if offer is not None:
        offer.sold += a["amount"]


def _apply_redeemed(session: Session, ev: ChainEvent) -> None:
    a = ev.args
    class_id, window_start = token_parts(a["tokenId"])
    _merge(
        session,
        ReservationRow(
            reservation_id=a["reservationId"],
            holder=a["holder"],
            node_id=a["nodeId"],
            token_id=str(a["tokenId"]),
            class_id=class_id,
            window_start=window_start,
            amount=a["amount"],
            price_per_gpu_hour=a["pricePerGpuHour"],
            status="reserved",
            refund=None,
            slashed=None,
            uncovered=0,
            shortfall_milli_gpu_hours=None,
        ),
    )


def _apply_settled(session: Session, ev: ChainEvent) -> None:
    r = session.get(ReservationRow, ev.args["reservationId"])
    if r is None:
        return
    r.status = "settled"
    r.refund = ev.args["refund"]
    r.slashed = ev.args["slashed"]
    r.uncovered = ev.args["refund"] - ev.args["slashed"]
    r.shortfall_milli_gpu_hours = int(ev.args["shortfallMilliGpuHours"])


ZERO = "0x" + "0" * 40


def _balance_key(holder: str, asset: str, token_id: int | None) -> tuple[str, str, str]:
    return holder, asset, "" if token_id is None else str(token_id)


def _move(session: Session, holder: str, asset: str, token_id: int | None, delta: int) -> None:
    if holder == ZERO or delta == 0:
        return
    key = _balance_key(holder, asset, token_id)
    new_rows: dict[Any, BalanceRow] | None = session.info.get(_NEW_BALANCES)
    if new_rows is None:
        row = session.get(BalanceRow, key)
    else:
        # Inside keeping_rows(): a row created by an earlier event of the batch is in
        # new_rows (pending rows are not in the identity map), any other one the session
        # has is in the identity map, so nothing needs flushing before this lookup.
        row = new_rows.get(key)
        if row is None and key not in session.info[_ABSENT_BALANCES]:
            with session.no_autoflush:
                row = session.get(BalanceRow, key)
    if row is None:
        class_id, window_start = token_parts(token_id) if token_id is not None else (None, None)
        row = BalanceRow(
            holder=holder,
            asset=asset,
            token_id=key[2],
            class_id=class_id,
            window_start=window_start,
            amount=0,
        )
        session.add(row)
        if new_rows is not None:
            new_rows[key] = row
    row.amount += delta
    if row.amount < 0:  # only possible with events missing: say so loudly
        log.error("indexer: negative %s balance of %s (%s)", asset, holder, key[2])


def _transfer_moves(ev: ChainEvent) -> list[tuple[str, str, int | None, int]]:
    """(holder, asset, token id, delta) for each balance a token transfer event moves;
    none for other events."""
    a = ev.args
    if (ev.contract, ev.event) == ("TestStablecoin", "Transfer"):
        return [
            (a["from"], "stablecoin", None, -a["value"]),
            (a["to"], "stablecoin", None, a["value"]),
        ]
    if ev.contract != "CapacityToken" or ev.event not in ("TransferSingle", "TransferBatch"):
        return []
    if ev.event == "TransferSingle":
        transfers = [(a["id"], a["value"])]
    else:
        transfers = list(zip(a["ids"], a["values"], strict=True))
    moves: list[tuple[str, str, int | None, int]] = []
    for token_id, value in transfers:
        moves += [(a["from"], "capacity", token_id, -value), (a["to"], "capacity", token_id, value)]
    return moves


def _apply_transfer(session: Session, ev: ChainEvent) -> None:
    for holder, asset, token_id, delta in _transfer_moves(ev):
        _move(session, holder, asset, token_id, delta)


_HANDLERS = {
    ("TestStablecoin", "Transfer"): _apply_transfer,
    ("CapacityToken", "TransferSingle"): _apply_transfer,
    ("CapacityToken", "TransferBatch"): _apply_transfer,
    ("NodeRegistry", "GpuClassRegistered"): _apply_gpu_class,
    ("NodeRegistry", "NodeRegistered"): _apply_node_registered,
    **{
        ("NodeRegistry", name): _apply_node_change
        for name in (
            "BondDeposited",
            "BondLocked",
            "BondUnlocked",
            "BondLockSettled",
            "NodeSlashed",
            "NodeJailed",
            "NodeUnjailed",
            "NodeExitRequested",
            "NodeExited",
        )
    },
    ("OracleHub", "EpochAttested"): _apply_epoch,
    ("CapacityToken", "OfferPublished"): _apply_offer,
    ("CapacityToken", "OfferCancelled"): _apply_offer_cancelled,
    ("CapacityToken", "CapacityBought"): _apply_sale,
    ("CapacityToken", "Redeemed"): _apply_redeemed,
    ("CapacityToken", "ReservationSettled"): _apply_settled,
    **pool_index.HANDLERS,
    **governance.HANDLERS,
    **market_index.HANDLERS,
    **loan_index.HANDLERS,
}


def apply_event(session: Session, ev: ChainEvent) -> None:
    """Folds one event into the read models (events no read model uses are only stored)."""
    handler = _HANDLERS.get((ev.contract, ev.event))
    if handler is not None:
        # No flush here: the handlers' reads (session.get, merge, select) autoflush what
        # earlier events changed first, so each still sees every earlier event applied.
        handler(session, ev)


def event_counts(session: Session) -> dict[str, int]:
    """Stored events per name (for the status route and tests)."""
    rows: Iterable[tuple[str, int]] = session.execute(
        select(ChainEvent.event, func.count()).group_by(ChainEvent.event)
    ).all()
    return dict(rows)
