"""The chain indexer against a real anvil: read models, restarts, reorgs, resets.

Service level (``Indexer.step()`` in this process); the route and worker path
is tested in test_e2e_reads.py. The world is built with brownie transactions.
"""

from __future__ import annotations

import json

import pytest
from brownie import chain
from eth_utils import event_abi_to_log_topic
from hexbytes import HexBytes
from sqlalchemy import event as sa_event
from sqlalchemy import func, select, update
from web3 import Web3

from backend.db.models import (
    BalanceRow,
    ChainEvent,
    EpochRow,
    GpuClassRow,
    IndexedBlock,
    IndexerState,
    MarketFillRow,
    NodeRow,
    OfferRow,
    SaleRow,
)
from backend.services.chain import Chain
from backend.services.indexing.event_decoding import jsonable
from backend.services.indexing.indexer import Indexer
from backend.services.indexing.market_index import WASH_TRADE, WASH_WINDOW_SECONDS
from backend.services.indexing.read_models import apply_event, rebuild_projections, token_parts
from tests.backend.backend_helpers import assert_decoding_matches_web3
from tests.oracle.hub_helpers import ORACLE_KEYS, commitment_for, end_epoch, signatures

USD = 10**6
REGION = b"eu-west".ljust(32, b"\0")


@pytest.fixture(scope="module")
def world(live_deployment, admin, operator, buyer, relayer):
    """A node with a bond, an offer, a sale and an attested epoch."""
    s = live_deployment.system
    h100 = s.class_ids["H100-SXM-80GB"]
    s.stablecoin.configureFaucet(10**6 * USD, 1, {"from": admin})
    for who in (operator, buyer):
        s.stablecoin.drip(who, {"from": who})
    node = s.registry.registerNode(
        h100,
        8,
        REGION,
        240_000 * USD,
        chain[-1].timestamp - 86_400,
        "0x" + "ab" * 20,
        {"from": operator},
    ).events["NodeRegistered"]["nodeId"]
    s.stablecoin.approve(s.registry, 2**256 - 1, {"from": operator})
    s.registry.depositBond(node, 5_000 * USD, {"from": operator})
    window = s.capacity.windowSeconds()
    token = s.capacity.tokenIdFor(h100, (chain[-1].timestamp // window + 2) * window)
    offer = s.capacity.publishOffer(node, token, 100, 2 * USD, {"from": operator}).return_value
    s.stablecoin.approve(s.capacity, 2**256 - 1, {"from": buyer})
    s.capacity.buy(offer, 10, {"from": buyer})
    epoch = end_epoch(s.oracle_hub)
    report = commitment_for(s.oracle_hub, epoch, [node]).report
    s.oracle_hub.attest(
        report.as_tuple(), signatures(s.oracle_hub, report, ORACLE_KEYS[:2]), {"from": relayer}
    )
    return {
        "node": node,
        "offer": offer,
        "token": token,
        "epoch": epoch,
        "h100": h100,
        "capacity": s.capacity,
    }


@pytest.fixture
def indexer(live_deployment, sessions):
    chain_ = Chain.connect(live_deployment.rpc_url, str(live_deployment.manifest_path), 5.0)
    # Small batches, so the catch-up loop and the block-hash window are exercised.
    return Indexer(chain_, sessions, batch_blocks=7, max_batches=1_000, keep_blocks=16)


def _snapshot(sessions):
    """Everything the read models hold, comparable across runs."""
    with sessions() as s:
        return {
            model.__tablename__: sorted(
                tuple(sorted((k, v) for k, v in vars(row).items() if not k.startswith("_")))
                for row in s.scalars(select(model))
            )
            for model in (GpuClassRow, NodeRow, EpochRow, OfferRow, SaleRow)
        }


def test_indexes_the_world_into_read_models(world, indexer, sessions, operator, buyer):
    report = indexer.step()
    assert report.to_block == report.head_block == chain.height
    assert report.events > 0 and not report.reset and report.reorged_to is None
    with sessions() as s:
        node = s.get(NodeRow, world["node"])
        assert (node.operator, node.gpu_count, node.region, node.status) == (
            operator.address,
            8,
            "eu-west",
            "active",
        )
        assert node.bonded == 5_000 * USD
        assert node.locked > 0  # the offer's bond
        assert s.get(GpuClassRow, world["h100"]).name == "H100-SXM-80GB"
        offer = s.get(OfferRow, world["offer"])
        assert (offer.amount, offer.sold, offer.status) == (100, 10, "open")
        assert (offer.class_id, offer.window_start) == token_parts(world["token"])
        (sale,) = s.scalars(select(SaleRow)).all()
        assert (sale.buyer, sale.amount, sale.cost) == (buyer.address, 10, 20 * USD)
        epoch = s.get(EpochRow, world["epoch"])
        assert epoch.node_count == 1
        state = s.scalars(select(IndexerState)).one()
        assert state.next_block == chain.height + 1


def test_balances_match_the_chain(world, indexer, sessions, live_deployment, operator, buyer):
    indexer.step()
    system = live_deployment.system
    with sessions() as s:
        rows = s.scalars(select(BalanceRow)).all()
    coin = {r.holder: r.amount for r in rows if r.asset == "stablecoin"}
    for holder in (
        operator.address,
        buyer.address,
        system.registry.address,
        system.capacity.address,
    ):
        assert coin.get(holder, 0) == system.stablecoin.balanceOf(holder), holder
    held = {(r.holder, r.token_id): r.amount for r in rows if r.asset == "capacity"}
    assert held[(buyer.address, str(world["token"]))] == 10
    assert system.capacity.balanceOf(buyer, world["token"]) == 10


def test_second_step_is_a_no_op_and_restart_resumes(world, indexer, sessions, live_deployment):
    indexer.step()
    before = _snapshot(sessions)
    again = indexer.step()
    assert again.events == 0 and again.to_block == again.from_block - 1
    # A new indexer (a restarted worker) continues from the stored cursor.
    fresh = Indexer(indexer.chain, sessions)
    assert fresh.step().events == 0
    assert _snapshot(sessions) == before


def test_reorg_is_undone_from_stored_events(world, indexer, sessions, operator):
    s_ = world
    indexer.step()
    chain.snapshot()
    try:
        world["capacity"].cancelOffer(s_["offer"], {"from": operator})
        indexer.step()
        with sessions() as s:
            assert s.get(OfferRow, s_["offer"]).status == "cancelled"
        chain.revert()  # the cancel never happened; new blocks take its place
        for _ in range(3):
            chain.mine()
        report = indexer.step()
        assert report.reorged_to is not None and report.reorged_to < report.to_block
        with sessions() as s:
            assert s.get(OfferRow, s_["offer"]).status == "open"
            assert "OfferCancelled" not in {e.event for e in s.scalars(select(ChainEvent))}
            assert s.scalars(select(IndexerState)).one().reorgs == 1
    finally:
        chain.revert()


def test_unrecognisable_history_starts_over(world, indexer, sessions):
    indexer.step()
    before = _snapshot(sessions)
    with sessions.begin() as s:  # as if the node had been reset and rebuilt
        s.execute(update(IndexedBlock).values(hash="0x" + "00" * 32))
    report = indexer.step()
    assert report.reset
    assert _snapshot(sessions) == before
    with sessions() as s:
        assert s.scalars(select(IndexerState)).one().resets == 1


def test_fast_decoding_matches_web3_on_the_worlds_logs(world, indexer):
    seen = assert_decoding_matches_web3(indexer)
    assert {
        ("TestStablecoin", "Transfer"),
        ("CapacityToken", "TransferSingle"),
        ("CapacityToken", "CapacityBought"),
        ("CapacityToken", "OfferPublished"),
        ("NodeRegistry", "GpuClassRegistered"),
        ("NodeRegistry", "NodeRegistered"),
        ("NodeRegistry", "BondLocked"),
        ("OracleHub", "EpochAttested"),
    } <= seen


def _sample(abi_type: str, i: int):
    """A value of ``abi_type`` that exercises its encoding (high bits, non-ASCII text)."""
    if abi_type.endswith("[]"):
        return [_sample(abi_type[:-2], i + k) for k in range(3)]
    if abi_type == "address":
        return Web3.to_checksum_address("0x" + f"{0xA1B2C3 * (i + 7):040x}"[-40:])
    if abi_type == "bool":
        return i % 2 == 0
    if abi_type == "string":
        return f"gpu-\u00e9t\u00e9-{i}"
    if abi_type.startswith("bytes"):
        return bytes((i + k) % 256 for k in range(int(abi_type[5:] or 5)))
    bits = int(abi_type.removeprefix("uint").removeprefix("int") or 256)
    return (1 << (bits - 1)) + i if abi_type.startswith("uint") else -(1 << (bits - 2)) - i


def test_fast_decoding_matches_web3_for_every_event_of_every_abi(indexer):
    """Logs built from each event's ABI (all of the manifest's contracts and RevenuePool):
    the raw-log decoder gives what process_log gives, and for a formatted log too."""
    decoder, codec = indexer.decoder, indexer.chain.w3.codec
    pool_address = "0x" + "5a" * 20
    abis = [
        (ref.address, indexer.chain.contract(name))
        for name, ref in indexer.chain.deployment.contracts.items()
    ] + [(pool_address, indexer.chain.w3.eth.contract(abi=decoder.pool_abi))]
    count = 0
    for address, contract in abis:
        for item in contract.abi:
            if item.get("type") != "event" or item.get("anonymous"):
                continue
            topics = [event_abi_to_log_topic(item)]
            data_types, data_values = [], []
            for i, inp in enumerate(item["inputs"]):
                value = _sample(inp["type"], i)
                if inp.get("indexed"):
                    topics.append(codec.encode([inp["type"]], [value]))
                else:
                    data_types.append(inp["type"])
                    data_values.append(value)
            raw = {
                "address": address.lower(),
                "topics": ["0x" + bytes(t).hex() for t in topics],
                "data": "0x" + codec.encode(data_types, data_values).hex(),
                "blockNumber": "0x10",
                "blockHash": "0x" + "11" * 32,
                "transactionHash": "0x" + "22" * 32,
                "transactionIndex": "0x0",
                "logIndex": "0x3",
                "removed": False,
            }
            formatted = {
                **raw,
                "address": Web3.to_checksum_address(address),
                "topics": [HexBytes(t) for t in raw["topics"]],
                "data": HexBytes(raw["data"]),
                "blockNumber": 16,
                "blockHash": HexBytes(raw["blockHash"]),
                "transactionHash": HexBytes(raw["transactionHash"]),
                "transactionIndex": 0,
                "logIndex": 3,
            }
            expected = jsonable(
                dict(contract.events[item["name"]]().process_log(formatted)["args"])
            )
            for entry in (raw, formatted):
                decoded = decoder.decode(entry, {pool_address})
                assert decoded is not None and decoded[1] == item["name"]
                # decoded by the codec, not process_log's fallback
                assert decoder._layouts[decoded[:2]].decode(codec, entry) is not None
                assert json.dumps(decoded[2]) == json.dumps(expected), item["name"]
            count += 1
    assert count > 50


def test_balances_are_read_a_batch_at_a_time_not_per_event(world, indexer, sessions):
    """Indexing reads the balance rows its transfers move with one SELECT per chunk of
    keys (read_models.preload_balances), not one lookup by key per event."""
    engine = sessions.kw["bind"]
    statements: list[str] = []

    def record(_conn, _cursor, statement, _params, _context, _many):  # type: ignore[no-untyped-def]
        if statement.lstrip().upper().startswith("SELECT") and "FROM balances" in statement:
            statements.append(statement)

    sa_event.listen(engine, "before_cursor_execute", record)
    try:
        indexer.step()
    finally:
        sa_event.remove(engine, "before_cursor_execute", record)
    with sessions() as s:
        transfers = s.scalar(
            select(func.count())
            .select_from(ChainEvent)
            .where(ChainEvent.event.in_(("Transfer", "TransferSingle", "TransferBatch")))
        )
    assert transfers >= 3, transfers  # the world moved tokens: there was work to batch
    assert statements, "no balance was read"
    by_key = [st for st in statements if "WHERE balances.holder = ?" in st]
    assert not by_key, by_key[:1]


# ---------------------------------------------------------------------------
# The market's trades: self-trades and wash trades flagged, folded from stored
# OrderFilled events (the fold the indexer runs live and on a rebuild), so every case,
# the self-trade the Market refuses included, is here without a chain. The e2e market
# test sees a real round trip flagged through the API.
# ---------------------------------------------------------------------------

# Traders A, B, C; two token ids X, Y of one asset. Addresses as the decoder writes them.
MA, MB, MC = ("0x" + c * 40 for c in "ABC")
MX, MY = 7, 8
MASSET = "0x" + "D" * 40


def _market_fill(
    n: int, t: int, *, seller: str, buyer: str, maker_sells: bool = True, token: int = MX
) -> ChainEvent:
    """OrderFilled in block ``n`` at time ``t``: ``seller`` sold one unit to ``buyer``."""
    maker, taker = (seller, buyer) if maker_sells else (buyer, seller)
    return ChainEvent(
        block_number=n,
        log_index=0,
        block_hash="0x" + f"{n:064x}",
        block_timestamp=t,
        tx_hash="0x" + f"{n:064x}",
        contract="Market",
        event="OrderFilled",
        address=MASSET,
        args={
            "orderHash": "0x" + f"{n:064x}",
            "maker": maker,
            "taker": taker,
            "asset": MASSET,
            "tokenId": token,
            "makerSells": maker_sells,
            "amount": 1,
            "quote": 2,
            "makerFee": 0,
            "takerFee": 0,
            "filledTotal": 1,
        },
    )


def _wash_flags(session) -> dict[int, str | None]:
    rows = session.scalars(select(MarketFillRow).order_by(MarketFillRow.block_number))
    return {r.block_number: r.wash_flag for r in rows}


def test_round_trips_within_the_window_and_self_trades_are_flagged(sessions) -> None:
    late = 1_200 + WASH_WINDOW_SECONDS + 1
    events = [
        _market_fill(1, 1_000, seller=MA, buyer=MB),  # A -> B ...
        _market_fill(2, 1_010, seller=MB, buyer=MC),  # B -> C: another pair
        _market_fill(3, 1_020, seller=MC, buyer=MB, token=MY),  # C -> B, but of Y: not back
        _market_fill(4, 1_100, seller=MB, buyer=MA, maker_sells=False),  # ... B -> A: wash
        _market_fill(5, 1_200, seller=MB, buyer=MC),  # B -> C again: the same way, not back
        _market_fill(6, late, seller=MC, buyer=MB),  # C -> B of X, but over an hour later
        _market_fill(7, 9_000, seller=MA, buyer=MA),  # the Market refuses it; flagged anyway
    ]
    with sessions() as session:
        for ev in events:
            session.add(ev)
            apply_event(session, ev)
        session.commit()
        live = _wash_flags(session)
        assert live == {
            1: WASH_TRADE,  # flagged when its reverse leg (4) came
            2: None,
            3: None,
            4: WASH_TRADE,
            5: None,
            6: None,
            7: "self_trade",
        }
        # A rebuild (after a reorg) replays the same events in chain order: same flags.
        rebuild_projections(session)
        session.commit()
        assert _wash_flags(session) == live
