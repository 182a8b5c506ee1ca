"""The timelock's schedule of admin changes: calls decoded, and their read models.

Every admin power over users' money sits behind the GpucapTimelock (scripts/powers.py):
a change is announced by CallScheduled (target, calldata, delay), may carry a salt
(CallSalt), and ends executed (CallExecuted, once due) or cancelled (Cancelled).
``CallDecoder`` turns a scheduled call's calldata into (contract, function, args) with
the ABI of its target: a contract of the manifest (the timelock's own included) or a
bound node pool. The indexer stores that decoding with the CallScheduled event
(``ChainEvent.snapshot``), so folding the events here needs the database only, and a
replay after a reorg gives the live path's rows.

Separate from ``read_models`` (which only dispatches to ``HANDLERS``): one subsystem's
events, one module, as ``pool_index`` is for pools.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from eth_abi.exceptions import DecodingError
from eth_utils import function_abi_to_4byte_selector
from eth_utils.abi import get_abi_input_types
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.db.models import ChainEvent, GovernanceChangeRow, GovernanceDelayRow, IndexedBlock
from backend.services.chain import Chain
from backend.services.indexing.event_decoding import as_bytes, jsonable
from gpucap.addresses import checksum

log = logging.getLogger(__name__)

TIMELOCK = "GpucapTimelock"
POOL = "RevenuePool"
PENDING, READY, EXECUTED, CANCELLED = "pending", "ready", "executed", "cancelled"
STATUSES = (PENDING, READY, EXECUTED, CANCELLED)
ZERO32 = "0x" + "00" * 32
# Integers beyond what a JSON reader (JavaScript) holds exactly are given as decimal text.
JSON_SAFE_INT = 2**53 - 1

_Function = tuple[str, list[dict[str, Any]], list[str]]  # name, inputs, input types


class CallDecoder:
    """Calldata of a call to a gpucap contract → {contract, function, args}."""

    def __init__(self, chain: Chain, pool_abi: list[dict[str, Any]]) -> None:
        self._codec = chain.w3.codec
        self._by_address: dict[str, tuple[str, dict[bytes, _Function]]] = {
            ref.address.lower(): (name, _functions(ref.abi))
            for name, ref in chain.deployment.contracts.items()
        }
        self._pool = (POOL, _functions(pool_abi))
        # Any gpucap function by selector, for a target not known yet (a pool scheduled to
        # be bound in the same batch): the call is decoded, its contract left unnamed.
        self._any: dict[bytes, _Function] = {}
        for _, functions in [*self._by_address.values(), self._pool]:
            for selector, function in functions.items():
                self._any.setdefault(selector, function)

    def decode(self, target: str, data: str, pools: Iterable[str] = ()) -> dict[str, Any] | None:
        """``contract`` names the target when it is a manifest contract or one of ``pools``
        (bound pools, lowercase), else None with the call decoded by any gpucap function of
        its selector; None when no gpucap function fits the calldata."""
        found = self._by_address.get(target.lower())
        if found is None and target.lower() in pools:
            found = self._pool
        raw = as_bytes(data)
        if len(raw) < 4:
            return None
        contract: str | None = None
        if found is not None:
            contract, functions = found
            function = functions.get(raw[:4])
        else:
            function = self._any.get(raw[:4])
        if function is None:
            return None
        name, inputs, types = function
        try:
            values = self._codec.decode(types, raw[4:])
        except (DecodingError, ValueError, OverflowError):
            log.warning("indexer: calldata for %s.%s does not decode", contract, name)
            return None
        args = {
            item["name"] or f"arg{i}": _arg(item, v)
            for i, (item, v) in enumerate(zip(inputs, values, strict=True))
        }
        return {"contract": contract, "function": name, "args": args}


def _functions(abi: list[dict[str, Any]]) -> dict[bytes, _Function]:
    return {
        bytes(function_abi_to_4byte_selector(item)): (
            item["name"],
            item["inputs"],
            list(get_abi_input_types(item)),
        )
        for item in abi
        if item.get("type") == "function"
    }


def _arg(item: dict[str, Any], value: Any) -> Any:
    """A decoded argument as JSON: structs by component names, addresses checksummed,
    bytes as 0x-hex, integers beyond 2^53 as decimal text."""
    abi_type: str = item["type"]
    if abi_type.endswith("]"):
        inner = {**item, "type": abi_type[: abi_type.rindex("[")]}
        return [_arg(inner, v) for v in value]
    if abi_type == "tuple":
        return {
            c["name"] or f"arg{i}": _arg(c, v)
            for i, (c, v) in enumerate(zip(item["components"], value, strict=True))
        }
    if abi_type == "address":
        return checksum(value)
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > JSON_SAFE_INT:
        return str(value)
    return jsonable(value)


# ------------------------------------------------------------------ read models


def chain_time(session: Session) -> int:
    """The chain's clock as far as it is indexed (the newest indexed block's time): a
    pending change is ready once this reaches its ``eta``. 0 before any block."""
    return int(session.scalar(select(func.max(IndexedBlock.timestamp))) or 0)


def status_of(row: GovernanceChangeRow, now: int) -> str:
    if row.status == PENDING and row.eta <= now:
        return READY
    return row.status


def _pending(session: Session, operation_id: str) -> list[GovernanceChangeRow]:
    return list(
        session.scalars(
            select(GovernanceChangeRow).where(
                GovernanceChangeRow.operation_id == operation_id,
                GovernanceChangeRow.status == PENDING,
            )
        )
    )


def _apply_scheduled(session: Session, ev: ChainEvent) -> None:
    a = ev.args
    decoded = ev.snapshot or {}
    session.add(
        GovernanceChangeRow(
            block_number=ev.block_number,
            log_index=ev.log_index,
            operation_id=a["id"],
            call_index=int(a["index"]),
            target=a["target"],
            value=int(a["value"]),
            data=a["data"],
            predecessor=a["predecessor"],
            salt=ZERO32,
            delay_seconds=int(a["delay"]),
            scheduled_at=ev.block_timestamp,
            eta=ev.block_timestamp + int(a["delay"]),
            scheduled_tx=ev.tx_hash,
            contract=decoded.get("contract"),
            function=decoded.get("function"),
            args=decoded.get("args"),
            status=PENDING,
        )
    )


def _apply_salt(session: Session, ev: ChainEvent) -> None:
    # Emitted right after the operation's CallScheduled events: every call of it.
    for row in _pending(session, ev.args["id"]):
        row.salt = ev.args["salt"]


def _apply_executed(session: Session, ev: ChainEvent) -> None:
    index = int(ev.args["index"])
    rows = [r for r in _pending(session, ev.args["id"]) if r.call_index == index]
    if not rows:
        log.error("indexer: CallExecuted for unknown call %s #%d", ev.args["id"], index)
    for row in rows:
        row.status, row.executed_at, row.executed_tx = EXECUTED, ev.block_timestamp, ev.tx_hash


def _apply_cancelled(session: Session, ev: ChainEvent) -> None:
    for row in _pending(session, ev.args["id"]):
        row.status, row.cancelled_at, row.cancelled_tx = CANCELLED, ev.block_timestamp, ev.tx_hash


def _apply_delay(session: Session, ev: ChainEvent) -> None:
    session.add(
        GovernanceDelayRow(
            block_number=ev.block_number,
            log_index=ev.log_index,
            block_timestamp=ev.block_timestamp,
            tx_hash=ev.tx_hash,
            old_delay_seconds=int(ev.args["oldDuration"]),
            new_delay_seconds=int(ev.args["newDuration"]),
        )
    )


HANDLERS: dict[tuple[str, str], Callable[[Session, ChainEvent], None]] = {
    (TIMELOCK, "CallScheduled"): _apply_scheduled,
    (TIMELOCK, "CallSalt"): _apply_salt,
    (TIMELOCK, "CallExecuted"): _apply_executed,
    (TIMELOCK, "Cancelled"): _apply_cancelled,
    (TIMELOCK, "MinDelayChange"): _apply_delay,
}
