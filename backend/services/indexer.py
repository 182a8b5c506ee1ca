"""Chain indexer: gpucap's events since the deployment block, into the database.

Why this shape:
- Raw events first (``chain_events``), read models second (``nodes``, ``epochs``,
  ``offers``, ``sales``, ``reservations``, ``gpu_classes``) derived from those
  events alone. Undoing a reorg is then "delete the events above the common
  ancestor, rebuild the read models from the events left", with no chain reads.
- A batch (events + read models + cursor + block hashes) commits in one database
  transaction: a crash or a killed worker resumes from the last committed batch,
  never half of one, and re-indexing a batch is idempotent.
- Revenue pools are not in the manifest: each is found through EpochSettlement's
  PoolSet, its immutable terms are read once (``pool_terms``), and its logs are
  fetched from the deployment block on (a round may fill before the pool is bound),
  then with every later batch. Figures an event lacks are read once at the event's
  block and stored with it (``ChainEvent.snapshot``: nodeRisk at NodeSettled).
- Reorgs (and an anvil that was restarted or reset under us) are detected by
  comparing the hashes of recently indexed blocks with the node's. Within the
  kept window the indexer rolls back to the common ancestor; if nothing in the
  window matches, or the manifest points at another deployment, it starts over
  from the deployment block.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import event_abi_to_log_topic, to_checksum_address
from hexbytes import HexBytes
from sqlalchemy import delete, func, insert, select
from sqlalchemy import event as sa_event
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.orm import Session, sessionmaker
from web3.exceptions import BlockNotFound, ContractLogicError, Web3RPCError

from backend.db.models import (
    LEAF_TABLES,
    PROJECTIONS,
    BalanceRow,
    ChainEvent,
    EpochRow,
    GpuClassRow,
    IndexedBlock,
    IndexerState,
    NodeRow,
    OfferRow,
    PoolTermsRow,
    ReservationRow,
    SaleRow,
)
from backend.services import pool_index
from backend.services.chain import Chain, result_of
from backend.services.leaves import INGEST_RETRY_SECONDS, ingest_attested_leaves
from gpucap.deployment import ManifestError

log = logging.getLogger(__name__)

# Block headers per JSON-RPC batch (nodes cap batch sizes; anvil and geth take 1,000).
HEADER_BATCH = 200

# What the chain's NodeStatus enum values mean (INodeRegistry.NodeStatus).
NODE_STATUS_ACTIVE = "active"


@dataclass(frozen=True)
class IndexReport:
    """What one ``Indexer.step()`` did."""

    from_block: int
    to_block: int  # last block indexed (from_block - 1 when there was nothing new)
    head_block: int
    events: int
    reorged_to: int | None = None  # common ancestor, when a reorg was undone
    reset: bool = False  # everything was dropped and indexing restarted
    leaves: int = 0  # verified leaves of attested epochs stored (metrics history)

    @property
    def lag_blocks(self) -> int:
        return max(0, self.head_block - self.to_block)


def token_parts(token_id: int) -> tuple[int, int]:
    """(class id, window start) of a CapacityToken id = (classId << 64) | windowStart."""
    return token_id >> 64, token_id & ((1 << 64) - 1)


def bytes32_text(value: Any) -> str:
    """A bytes32 label (GPU class name, region) as text; hex if it is not UTF-8."""
    raw = bytes(HexBytes(value)).rstrip(b"\0")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + raw.hex()


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | HexBytes):
        return "0x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _topics(abi: list[dict[str, Any]]) -> dict[bytes, str]:
    return {
        bytes(event_abi_to_log_topic(item)): item["name"]
        for item in abi
        if item.get("type") == "event" and not item.get("anonymous")
    }


def named(outputs: list[dict[str, Any]], value: Any) -> dict[str, Any]:
    """A call's result as {output name: value}, structs (tuples) by component names."""
    if len(outputs) == 1 and outputs[0]["type"] == "tuple":
        outputs, value = outputs[0]["components"], value
    elif len(outputs) == 1:
        value = (value,)
    result: dict[str, Any] = {}
    for out, item in zip(outputs, value, strict=True):
        if out["type"] == "tuple":
            item = named(out["components"], item)
        result[out["name"]] = _jsonable(item)
    return result


class EventDecoder:
    """Decodes any log of the manifest's contracts (address + topic0 → the event's ABI),
    and of revenue pools (one ABI, RevenuePool's build artifact, for every pool).

    Logs are decoded with the codec directly (one ``_EventLayout`` per event: indexed
    inputs from the topics, the rest from the data), giving what web3's ``process_log``
    gives after ``_jsonable``; events whose inputs this does not cover (structs) and any
    log that does not fit its event's layout go through ``process_log`` as before."""

    def __init__(self, chain: Chain) -> None:
        self._by_address: dict[str, tuple[str, Any, dict[bytes, str]]] = {}
        self._codec = chain.w3.codec
        self._layouts: dict[tuple[str, str], _EventLayout | None] = {}
        for name, ref in chain.deployment.contracts.items():
            self._by_address[ref.address.lower()] = (name, chain.contract(name), _topics(ref.abi))
            self._add_layouts(name, ref.abi)
        self.pool_abi = _pool_abi(chain)
        self._pool = (
            pool_index.POOL,
            chain.w3.eth.contract(abi=self.pool_abi),
            _topics(self.pool_abi),
        )
        self._add_layouts(pool_index.POOL, self.pool_abi)

    def _add_layouts(self, contract: str, abi: list[dict[str, Any]]) -> None:
        for item in abi:
            if item.get("type") == "event" and not item.get("anonymous"):
                self._layouts[(contract, item["name"])] = _EventLayout.of(item)

    @property
    def addresses(self) -> list[str]:
        return list(self._by_address)

    def is_pool_set(self, entry: Any) -> bool:
        """Whether ``entry`` is EpochSettlement's PoolSet (without decoding it)."""
        found = self._by_address.get(str(entry["address"]).lower())
        return (
            found is not None
            and found[0] == pool_index.SETTLEMENT
            and bool(entry["topics"])
            and found[2].get(_to_bytes(entry["topics"][0])) == "PoolSet"
        )

    def decode(
        self, entry: Any, pools: Iterable[str] = ()
    ) -> tuple[str, str, dict[str, Any]] | None:
        """(contract name, event name, args) or None for a log no ABI describes.
        ``pools``: the addresses (lowercase) of the pools known so far. ``entry``: a log
        as web3 formats it or as the node sends it (hex strings)."""
        address = str(entry["address"]).lower()
        found = self._by_address.get(address)
        if found is None and address in pools:
            found = self._pool
        if found is None or not entry["topics"]:
            return None
        contract_name, contract, topics = found
        event = topics.get(_to_bytes(entry["topics"][0]))
        if event is None:
            return None
        layout = self._layouts.get((contract_name, event))
        if layout is not None:
            args = layout.decode(self._codec, entry)
            if args is not None:
                return contract_name, event, args
        data = contract.events[event]().process_log(_web3_log(entry))
        return contract_name, event, _jsonable(dict(data["args"]))


def _to_bytes(value: Any) -> bytes:
    """A log field (topic, data, hash) as bytes: web3 gives HexBytes, the node hex text."""
    if isinstance(value, str):
        return bytes.fromhex(value[2:] if value[:2] in ("0x", "0X") else value)
    return bytes(value)


def _hex(value: Any) -> str:
    """A hash (block, transaction) as lowercase 0x-hex, as it is stored."""
    return "0x" + _to_bytes(value).hex()


def _int(value: Any) -> int:
    """A quantity (block number, log index, timestamp): web3 gives int, the node hex."""
    return int(value, 16) if isinstance(value, str) else int(value)


def _web3_log(entry: Any) -> Any:
    """A raw log as web3's ``get_logs`` formats it (for ``process_log``)."""
    if not isinstance(entry["data"], str):
        return entry
    return {
        **entry,
        "address": checksum(entry["address"]),
        "topics": [HexBytes(t) for t in entry["topics"]],
        "data": HexBytes(entry["data"]),
        "blockHash": HexBytes(entry["blockHash"]),
        "transactionHash": HexBytes(entry["transactionHash"]),
        "blockNumber": _int(entry["blockNumber"]),
        "logIndex": _int(entry["logIndex"]),
        "transactionIndex": _int(entry["transactionIndex"]),
    }


_CHECKSUMS: dict[str, str] = {}


def checksum(address: str) -> str:
    """``to_checksum_address``, remembered (the same few thousand addresses recur)."""
    key = address.lower()
    found = _CHECKSUMS.get(key)
    if found is None:
        if len(_CHECKSUMS) > 100_000:
            _CHECKSUMS.clear()
        found = _CHECKSUMS[key] = to_checksum_address(key)
    return found


def _normalizer(abi_type: str) -> Callable[[Any], Any] | None:
    """What process_log + ``_jsonable`` make of a decoded value of ``abi_type`` (None:
    a type this decoder leaves to process_log)."""
    if abi_type.startswith("tuple") or "(" in abi_type:
        return None
    if abi_type.endswith("]"):
        inner = _normalizer(abi_type[: abi_type.rindex("[")])
        if inner is None:
            return None
        return lambda values: [inner(v) for v in values]
    if abi_type == "address":
        return checksum
    if abi_type.startswith("bytes"):
        return lambda value: "0x" + bytes(value).hex()
    if abi_type == "bool" or abi_type == "string" or abi_type.startswith(("uint", "int")):
        return lambda value: value
    return None


@dataclass(frozen=True)
class _EventLayout:
    """One event's decoding: its topic inputs (after topic0) and data inputs, in ABI
    order of each; ``names``: every input in process_log's order (topics, then data)."""

    topic_types: tuple[str, ...]
    topic_norms: tuple[Callable[[Any], Any], ...]
    data_types: tuple[str, ...]
    data_norms: tuple[Callable[[Any], Any], ...]
    names: tuple[str, ...]

    @classmethod
    def of(cls, abi: dict[str, Any]) -> _EventLayout | None:
        topic_types: list[str] = []
        data_types: list[str] = []
        topic_names: list[str] = []
        data_names: list[str] = []
        for item in abi["inputs"]:
            abi_type = item["type"]
            if item.get("indexed"):
                if abi_type in ("string", "bytes"):
                    abi_type = "bytes32"  # a dynamic value is indexed as its hash
                elif "[" in abi_type:
                    return None  # indexed arrays: as process_log has them
                topic_types.append(abi_type)
                topic_names.append(item["name"])
            else:
                data_types.append(abi_type)
                data_names.append(item["name"])
        names = (*topic_names, *data_names)
        if len(set(names)) != len(names) or "" in names:
            return None  # process_log renames or refuses these
        topic_norms = [_normalizer(t) for t in topic_types]
        data_norms = [_normalizer(t) for t in data_types]
        if any(n is None for n in (*topic_norms, *data_norms)):
            return None
        return cls(
            tuple(topic_types),
            tuple(n for n in topic_norms if n is not None),
            tuple(data_types),
            tuple(n for n in data_norms if n is not None),
            names,
        )

    def decode(self, codec: Any, entry: Any) -> dict[str, Any] | None:
        """The log's args, or None if it does not fit this layout (process_log decides)."""
        topics = entry["topics"]
        if len(topics) != len(self.topic_types) + 1:
            return None
        try:
            values = [
                norm(codec.decode((t,), _to_bytes(topic))[0])
                for t, norm, topic in zip(
                    self.topic_types, self.topic_norms, topics[1:], strict=True
                )
            ]
            if self.data_types:
                decoded = codec.decode(self.data_types, _to_bytes(entry["data"]))
                values += [norm(v) for norm, v in zip(self.data_norms, decoded, strict=True)]
            elif _to_bytes(entry["data"]):
                return None
        except Exception:  # noqa: BLE001 - malformed: process_log raises its own error
            return None
        return dict(zip(self.names, values, strict=True))


def _pool_abi(chain: Chain) -> list[dict[str, Any]]:
    """RevenuePool's ABI from the build artifacts the manifest's ABIs come from."""
    ref = chain.deployment.contracts.get(pool_index.SETTLEMENT)
    if ref is None:
        raise ManifestError(f"{pool_index.SETTLEMENT} is not in {chain.deployment.path}")
    path = ref.abi_path.parent / f"{pool_index.POOL}.json"
    try:
        abi: list[dict[str, Any]] = json.loads(path.read_text())["abi"]
    except (OSError, KeyError, ValueError) as exc:
        raise ManifestError(f"cannot read the RevenuePool ABI from {path}: {exc}") from exc
    return abi


class Indexer:
    def __init__(
        self,
        chain: Chain,
        sessions: sessionmaker[Session],
        *,
        confirmations: int = 0,
        batch_blocks: int = 2_000,
        keep_blocks: int = 256,
        max_batches: int = 10,
        proofs_dir: Path | None = None,
        leaf_retry_seconds: float = INGEST_RETRY_SECONDS,
    ) -> None:
        self.chain = chain
        self.sessions = sessions
        self.confirmations = confirmations
        self.batch_blocks = batch_blocks
        self.keep_blocks = keep_blocks
        self.max_batches = max_batches
        # Where the oracle publishes epoch proofs; None: no metrics history is kept.
        self.proofs_dir = proofs_dir
        self.leaf_retry_seconds = leaf_retry_seconds
        self.decoder = EventDecoder(chain)

    # ------------------------------------------------------------------ driving

    def step(self) -> IndexReport:
        """Catch up by at most ``max_batches`` batches; undo a reorg or reset first."""
        chain_id = self.chain.check_chain_id()
        head = self.chain.call("eth_blockNumber", lambda: self.chain.w3.eth.block_number)
        safe_head = head - self.confirmations
        reorged_to: int | None = None
        reset = False
        with self.sessions.begin() as session:
            state = self._state(session, chain_id)
            start = state.next_block
            if state.deployment_block != self.chain.deployment.deployed_at_block:
                log.warning(
                    "indexer: manifest now deploys at block %d (indexed from %d): starting over",
                    self.chain.deployment.deployed_at_block,
                    state.deployment_block,
                )
                self._reset(session, state)
                reset = True
            else:
                ancestor = self._check_continuity(session, state, head)
                if ancestor == -1:
                    self._reset(session, state)
                    reset = True
                elif ancestor is not None:
                    self._rollback(session, state, ancestor)
                    reorged_to = ancestor
            start = state.next_block
        events = 0
        last = start - 1
        for _ in range(self.max_batches):
            if last >= safe_head:
                break
            to_block = min(safe_head, last + self.batch_blocks)
            events += self._index_range(chain_id, last + 1, to_block, head)
            last = to_block
        if last < start:  # nothing new: still record the head (lag reporting)
            with self.sessions.begin() as session:
                self._state(session, chain_id).head_block = head
        leaves = 0
        if self.proofs_dir is not None:
            leaves = ingest_attested_leaves(
                self.sessions, self.proofs_dir, retry_seconds=self.leaf_retry_seconds
            ).leaves
        return IndexReport(start, last, head, events, reorged_to, reset, leaves)

    # ------------------------------------------------------------------ state

    def _state(self, session: Session, chain_id: int) -> IndexerState:
        state = session.get(IndexerState, chain_id)
        if state is None:
            first = self.chain.deployment.deployed_at_block
            state = IndexerState(
                chain_id=chain_id,
                deployment_block=first,
                next_block=first,
                head_block=0,
                reorgs=0,
                resets=0,
            )
            session.add(state)
            session.flush()
        return state

    def _block(self, number: int) -> Any:
        return self.chain.call("eth_getBlockByNumber", lambda: self.chain.w3.eth.get_block(number))

    def _check_continuity(self, session: Session, state: IndexerState, head: int) -> int | None:
        """None if the indexed blocks are still canonical; else the common ancestor's
        number (a reorg), or -1 when no kept block matches (reset or deep reorg)."""
        kept = session.scalars(select(IndexedBlock).order_by(IndexedBlock.number.desc())).all()
        if not kept:
            return None
        newest = kept[0]
        if newest.number <= head and self._hash_at(newest.number) == newest.hash:
            return None
        for block in kept[1:]:
            if block.number <= head and self._hash_at(block.number) == block.hash:
                log.warning(
                    "indexer: reorg below block %d; common ancestor %d", newest.number, block.number
                )
                return block.number
        # Nothing kept is canonical. If the kept window reaches the deployment block,
        # nothing we indexed survives; deeper than the window, we cannot tell where.
        log.warning(
            "indexer: none of the %d kept blocks (%d..%d) is canonical any more "
            "(node reset or a reorg deeper than the window): re-indexing from block %d",
            len(kept),
            kept[-1].number,
            newest.number,
            state.deployment_block,
        )
        return -1

    def _hash_at(self, number: int) -> str:
        return "0x" + bytes(self._block(number)["hash"]).hex()

    def _reset(self, session: Session, state: IndexerState) -> None:
        session.execute(delete(ChainEvent))
        session.execute(delete(IndexedBlock))
        session.execute(delete(PoolTermsRow))
        for table in (*PROJECTIONS, *LEAF_TABLES):
            session.execute(delete(table))
        state.deployment_block = self.chain.deployment.deployed_at_block
        state.next_block = state.deployment_block
        state.resets += 1

    def _rollback(self, session: Session, state: IndexerState, ancestor: int) -> None:
        session.execute(delete(ChainEvent).where(ChainEvent.block_number > ancestor))
        session.execute(delete(IndexedBlock).where(IndexedBlock.number > ancestor))
        # A pool whose PoolSet was undone is unknown again: drop its terms and the
        # logs fetched because of it (older ones included); if PoolSet comes back, the
        # pool is discovered and fetched again from the start.
        bound = {a.lower() for a in _bound_pools(session)}
        for terms in session.scalars(select(PoolTermsRow)).all():
            if terms.address.lower() not in bound:
                session.execute(delete(ChainEvent).where(ChainEvent.address == terms.address))
                session.delete(terms)
        session.flush()
        rebuild_projections(session)
        state.next_block = ancestor + 1
        state.reorgs += 1

    # ------------------------------------------------------------------ indexing

    def _index_range(self, chain_id: int, from_block: int, to_block: int, head: int) -> int:
        with self.sessions() as session:
            known = {t.address.lower() for t in session.scalars(select(PoolTermsRow))}
        logs = self._logs(self.decoder.addresses + sorted(known), from_block, to_block)
        # Pools bound in this range: read their terms, fetch their logs from the start.
        new_terms: list[PoolTermsRow] = []
        for entry in logs:
            if not self.decoder.is_pool_set(entry):
                continue
            decoded = self.decoder.decode(entry)
            if decoded is None or decoded[:2] != (pool_index.SETTLEMENT, "PoolSet"):
                continue
            pool = decoded[2]["pool"]
            if pool.lower() not in known:
                known.add(pool.lower())
                new_terms.append(self._pool_terms(pool, _int(entry["blockNumber"])))
        if new_terms:
            seen = {(_int(e["blockNumber"]), _int(e["logIndex"])) for e in logs}
            for start in range(
                self.chain.deployment.deployed_at_block, to_block + 1, self.batch_blocks
            ):
                end = min(to_block, start + self.batch_blocks - 1)
                for entry in self._logs([t.address for t in new_terms], start, end):
                    if (_int(entry["blockNumber"]), _int(entry["logIndex"])) not in seen:
                        logs.append(entry)
        # Timestamps and hashes: one header per block that has logs, plus the range's end
        # (its hash is what the next step checks for a reorg).
        headers = self._headers(sorted({_int(e["blockNumber"]) for e in logs} | {to_block}))
        rows: list[dict[str, Any]] = []
        for entry in sorted(logs, key=lambda e: (_int(e["blockNumber"]), _int(e["logIndex"]))):
            number = _int(entry["blockNumber"])
            header = headers[number]
            if _to_bytes(entry["blockHash"]) != _to_bytes(header["hash"]):
                # The block changed between getLogs and getBlock: index it next step.
                raise ReorgDuringBatch(number)
            decoded = self.decoder.decode(entry, known)
            if decoded is None:
                continue
            contract, event, args = decoded
            rows.append(
                {
                    "block_number": number,
                    "log_index": _int(entry["logIndex"]),
                    "block_hash": _hex(header["hash"]),
                    "block_timestamp": _int(header["timestamp"]),
                    "tx_hash": _hex(entry["transactionHash"]),
                    "contract": contract,
                    "event": event,
                    "args": args,
                    "address": checksum(entry["address"]),
                    "snapshot": self._snapshot(contract, event, args, number),
                }
            )
        with self.sessions.begin() as session:
            state = self._state(session, chain_id)
            if state.next_block != from_block:
                # Another indexer moved the cursor meanwhile: let it own this range.
                raise ConcurrentIndexer(state.next_block, from_block)
            for terms in new_terms:
                session.merge(terms)
            session.flush()
            # One multi-row INSERT, no per-event lookup: every event here is new to the
            # table. Those at or above from_block: the cursor (checked above, in this
            # transaction) is only ever set past stored events, and a rollback or reset
            # deletes the events above where it sets it. A new pool's older ones: a pool's
            # events are stored only while its terms are (they are deleted together), and
            # it had none.
            if rows:
                session.execute(insert(ChainEvent), rows)
            # In chain order. A new pool's older logs come first here, after later events
            # of other contracts were applied by earlier batches: its read models depend
            # only on its own events and terms, so the result is the replay's.
            with keeping_rows(session):
                for row in rows:
                    apply_event(session, ChainEvent(**row))
            # The range's blocks within the kept window (older ones would be deleted just
            # below; a new pool's older blocks are not part of the reorg window). New to
            # the table, as the events are: one INSERT.
            blocks = [
                {"number": n, "hash": _hex(h["hash"]), "timestamp": _int(h["timestamp"])}
                for n, h in headers.items()
                if n >= from_block and n > to_block - self.keep_blocks
            ]
            if blocks:
                session.execute(insert(IndexedBlock), blocks)
            session.execute(
                delete(IndexedBlock).where(IndexedBlock.number <= to_block - self.keep_blocks)
            )
            state.next_block = to_block + 1
            state.head_block = head
        if rows:
            log.info("indexer: blocks %d..%d, %d events", from_block, to_block, len(rows))
        return len(rows)

    def _logs(self, addresses: list[str], from_block: int, to_block: int) -> list[Any]:
        """The node's logs as it sends them (hex strings): web3's result formatters cost
        more than decoding them."""
        query = {
            "fromBlock": hex(from_block),
            "toBlock": hex(to_block),
            "address": [checksum(a) for a in addresses],
        }
        return list(self.chain.raw("eth_getLogs", "eth_getLogs", [query]))

    def _headers(self, numbers: list[int]) -> dict[int, dict[str, Any]]:
        """The blocks' headers (raw: hex strings), HEADER_BATCH to a JSON-RPC batch."""
        headers: dict[int, dict[str, Any]] = {}
        for i in range(0, len(numbers), HEADER_BATCH):
            chunk = numbers[i : i + HEADER_BATCH]
            answers = self.chain.batch(
                "eth_getBlockByNumber", [("eth_getBlockByNumber", [hex(n), False]) for n in chunk]
            )
            if len(answers) != len(chunk):
                raise Web3RPCError(f"eth_getBlockByNumber: {len(answers)} answers to {len(chunk)}")
            # (web3 puts a batch's answers in request order)
            for number, answer in zip(chunk, answers, strict=True):
                header = result_of(answer, f"eth_getBlockByNumber({number})")
                if header is None:
                    raise BlockNotFound(f"Block with id: '{number}' not found.")
                headers[number] = header
        return headers

    def _pool_terms(self, address: str, block: int) -> PoolTermsRow:
        """A newly bound pool's immutable terms (eth_calls at its PoolSet block)."""
        pool = self.chain.w3.eth.contract(
            address=self.chain.w3.to_checksum_address(address), abi=self.decoder.pool_abi
        )

        def read() -> tuple[str, str, Any, Any]:
            f = pool.functions
            return (
                f.name().call(block_identifier=block),
                f.symbol().call(block_identifier=block),
                f.terms().call(block_identifier=block),
                f.epochSchedule().call(block_identifier=block),
            )

        name, symbol, terms, schedule = self.chain.call(f"reading pool {address}", read)
        # terms(): (stablecoin, operator, nodeId, targetAssets, sharePrice, fundingDeadline,
        # tenorEpochs, rateBps); epochSchedule(): (genesis, epochLength, cooldownEpochs).
        if len(terms) != 8 or len(schedule) != 3:
            raise ManifestError(
                f"RevenuePool.terms()/epochSchedule() of {address} returned {len(terms)}/"
                f"{len(schedule)} values; the indexer reads 8/3: update pool terms decoding"
            )
        coin, operator, node_id, target, price, deadline, tenor, rate = terms
        genesis, length, cooldown = schedule
        return PoolTermsRow(
            address=pool.address,
            node_id=int(node_id),
            name=str(name),
            symbol=str(symbol),
            stablecoin=str(coin),
            operator=str(operator),
            target_assets=int(target),
            share_price=int(price),
            funding_deadline=int(deadline),
            tenor_epochs=int(tenor),
            rate_bps=int(rate),
            genesis_timestamp=int(genesis),
            epoch_length_seconds=int(length),
            cooldown_epochs=int(cooldown),
            pool_set_block=block,
        )

    def _snapshot(
        self, contract: str, event: str, args: dict[str, Any], block: int
    ) -> dict[str, Any] | None:
        """EpochSettlement.nodeRisk(nodeId) at the NodeSettled's block (collateral value,
        arrears, window sums: figures the event does not carry); None for other events."""
        if (contract, event) != (pool_index.SETTLEMENT, "NodeSettled"):
            return None
        settlement = self.chain.contract(pool_index.SETTLEMENT)
        fn = settlement.functions.nodeRisk(int(args["nodeId"]))
        try:
            value = self.chain.call("reading nodeRisk", lambda: fn.call(block_identifier=block))
        except (ContractLogicError, Web3RPCError) as exc:
            # E.g. a node that prunes old state: the settlement is still indexed, the
            # snapshot's figures are then unknown (null in the API), never guessed.
            log.error("indexer: nodeRisk(%s) at block %d failed: %s", args["nodeId"], block, exc)
            return None
        outputs = next(
            item["outputs"]
            for item in settlement.abi
            if item.get("type") == "function" and item.get("name") == "nodeRisk"
        )
        return {"block": block, **named(outputs, value)}


class ReorgDuringBatch(RuntimeError):
    """A block's hash changed while its batch was being read; the next step handles it."""


class ConcurrentIndexer(RuntimeError):
    """The cursor moved under this batch (two indexers ran at once); nothing was written."""


# ---------------------------------------------------------------------------
# Read models
# ---------------------------------------------------------------------------


def _bound_pools(session: Session) -> list[str]:
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
    try:
        yield
    finally:
        del session.info[_NEW_BALANCES]
        del session.info[_NEW_ROWS]
        sa_event.remove(session, "loaded_as_persistent", keep)
        sa_event.remove(session, "pending_to_persistent", keep)


# session.info keys: balance rows _move() created, rows _merge() added, in the current
# keeping_rows() block.
_NEW_BALANCES = "gpucap.indexer.new_balances"
_NEW_ROWS = "gpucap.indexer.new_rows"


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
        case "BondLocked" | "BondUnlocked":
            node.locked = a["locked"]
        case "NodeSlashed":
            node.bonded -= a["amount"]
            node.slashed += a["amount"]
            node.locked = min(node.locked, node.bonded)
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
            total_energy_wh=a["totalEnergyWh"],
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


ZERO = "0x" + "0" * 40


def _move(session: Session, holder: str, asset: str, token_id: int | None, delta: int) -> None:
    if holder == ZERO or delta == 0:
        return
    key = (holder, asset, "" if token_id is None else str(token_id))
    new_rows: dict[Any, BalanceRow] | None = session.info.get(_NEW_BALANCES)
    if new_rows is None:
        row = session.get(BalanceRow, key)
    else:
        # Inside keeping_rows(): a row created by an earlier event of the batch is in
        # new_rows (pending rows are not in the identity map), any other one the session
        # has is in the identity map, so nothing needs flushing before this lookup.
        row = new_rows.get(key)
        if row is None:
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


def _apply_erc20_transfer(session: Session, ev: ChainEvent) -> None:
    a = ev.args
    _move(session, a["from"], "stablecoin", None, -a["value"])
    _move(session, a["to"], "stablecoin", None, a["value"])


def _apply_erc1155_transfer(session: Session, ev: ChainEvent) -> None:
    a = ev.args
    if ev.event == "TransferSingle":
        moves = [(a["id"], a["value"])]
    else:
        moves = list(zip(a["ids"], a["values"], strict=True))
    for token_id, value in moves:
        _move(session, a["from"], "capacity", token_id, -value)
        _move(session, a["to"], "capacity", token_id, value)


_HANDLERS = {
    ("TestStablecoin", "Transfer"): _apply_erc20_transfer,
    ("CapacityToken", "TransferSingle"): _apply_erc1155_transfer,
    ("CapacityToken", "TransferBatch"): _apply_erc1155_transfer,
    ("NodeRegistry", "GpuClassRegistered"): _apply_gpu_class,
    ("NodeRegistry", "NodeRegistered"): _apply_node_registered,
    **{
        ("NodeRegistry", name): _apply_node_change
        for name in (
            "BondDeposited",
            "BondLocked",
            "BondUnlocked",
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
