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

This module drives all that (cursor, batches, reorg and reset handling, headers,
pool terms, snapshots). Turning a raw log into (contract, event, args) is
``event_decoding``; folding stored events into the read models is ``read_models``
(which never imports this module: a replay needs the database only).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session, sessionmaker
from web3.exceptions import BlockNotFound, ContractLogicError, Web3RPCError

from backend.db.models import (
    LEAF_TABLES,
    PROJECTIONS,
    ChainEvent,
    IndexedBlock,
    IndexerState,
    PoolTermsRow,
)
from backend.services.chain import Chain, result_of
from backend.services.indexing import governance, pool_index
from backend.services.indexing.event_decoding import (
    EventDecoder,
    as_bytes,
    as_hex,
    as_int,
    checksum,
    named,
)
from backend.services.indexing.leaves import (
    INGEST_RETRY_SECONDS,
    ProofsDirs,
    ingest_attested_leaves,
)
from backend.services.indexing.read_models import (
    apply_event,
    bound_pools,
    keeping_rows,
    preload_balances,
    rebuild_projections,
)
from gpucap.deployment import ManifestError

log = logging.getLogger(__name__)

# Block headers per JSON-RPC batch (nodes cap batch sizes; anvil and geth take 1,000).
HEADER_BATCH = 200


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
        proofs_dir: ProofsDirs | None = None,
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
        self.calls = governance.CallDecoder(chain, self.decoder.pool_abi)

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
        if state.window_seconds is None:
            self._read_schedule(state)
        return state

    def _read_schedule(self, state: IndexerState) -> None:
        """The deployment's immutable window and epoch schedule (no event carries them): the
        load-factor reads (``/nodes/{id}/load``) map windows to epochs with them."""
        capacity = self.chain.contract("CapacityToken")
        hub = self.chain.contract("OracleHub")

        def read() -> tuple[int, int, int]:
            return (
                int(capacity.functions.windowSeconds().call()),
                int(hub.functions.genesisTimestamp().call()),
                int(hub.functions.epochLengthSeconds().call()),
            )

        window, genesis, length = self.chain.call("reading the window and epoch schedule", read)
        state.window_seconds = window
        state.epoch_genesis_timestamp = genesis
        state.epoch_length_seconds = length

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
        self._read_schedule(state)  # a new deployment has its own

    def _rollback(self, session: Session, state: IndexerState, ancestor: int) -> None:
        session.execute(delete(ChainEvent).where(ChainEvent.block_number > ancestor))
        session.execute(delete(IndexedBlock).where(IndexedBlock.number > ancestor))
        # A pool whose PoolSet was undone is unknown again: drop its terms and the
        # logs fetched because of it (older ones included); if PoolSet comes back, the
        # pool is discovered and fetched again from the start.
        bound = {a.lower() for a in bound_pools(session)}
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
                new_terms.append(self._pool_terms(pool, as_int(entry["blockNumber"])))
        if new_terms:
            seen = {(as_int(e["blockNumber"]), as_int(e["logIndex"])) for e in logs}
            for start in range(
                self.chain.deployment.deployed_at_block, to_block + 1, self.batch_blocks
            ):
                end = min(to_block, start + self.batch_blocks - 1)
                for entry in self._logs([t.address for t in new_terms], start, end):
                    if (as_int(entry["blockNumber"]), as_int(entry["logIndex"])) not in seen:
                        logs.append(entry)
        # Timestamps and hashes: one header per block that has logs, plus the range's end
        # (its hash is what the next step checks for a reorg).
        headers = self._headers(sorted({as_int(e["blockNumber"]) for e in logs} | {to_block}))
        rows: list[dict[str, Any]] = []
        for entry in sorted(logs, key=lambda e: (as_int(e["blockNumber"]), as_int(e["logIndex"]))):
            number = as_int(entry["blockNumber"])
            header = headers[number]
            if as_bytes(entry["blockHash"]) != as_bytes(header["hash"]):
                # The block changed between getLogs and getBlock: index it next step.
                raise ReorgDuringBatch(number)
            decoded = self.decoder.decode(entry, known)
            if decoded is None:
                continue
            contract, event, args = decoded
            rows.append(
                {
                    "block_number": number,
                    "log_index": as_int(entry["logIndex"]),
                    "block_hash": as_hex(header["hash"]),
                    "block_timestamp": as_int(header["timestamp"]),
                    "tx_hash": as_hex(entry["transactionHash"]),
                    "contract": contract,
                    "event": event,
                    "args": args,
                    "address": checksum(entry["address"]),
                    "snapshot": self._snapshot(contract, event, args, number, known),
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
                events = [ChainEvent(**row) for row in rows]
                preload_balances(session, events)
                for ev in events:
                    apply_event(session, ev)
            # The range's blocks within the kept window (older ones would be deleted just
            # below; a new pool's older blocks are not part of the reorg window). New to
            # the table, as the events are: one INSERT.
            blocks = [
                {"number": n, "hash": as_hex(h["hash"]), "timestamp": as_int(h["timestamp"])}
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
        self, contract: str, event: str, args: dict[str, Any], block: int, pools: set[str]
    ) -> dict[str, Any] | None:
        """EpochSettlement.nodeRisk(nodeId) at the NodeSettled's block (collateral value,
        arrears, window sums: figures the event does not carry); a timelock's scheduled
        call decoded with its target's ABI (``pools``: bound pools, lowercase); None for
        other events."""
        if (contract, event) == (governance.TIMELOCK, "CallScheduled"):
            return self.calls.decode(args["target"], args["data"], pools)
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
