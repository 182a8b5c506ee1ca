"""Figure 8: matched market fills per second end to end, against the same fills sent raw.

Runs inside figure 3's process (bench/stack.py), on its anvil and its backend, so the
two figures compare on one machine state. Setup (automine, before the measured part):
up to 50 capacity tokens of one class (one per future window), each with one maker
who holds enough of it, approved the Market and signs one-unit sell orders at one
price: the instrument's share of the fills for the book, as many kept back for the
raw run. Takers hold stablecoin and have permitted the Market (the admin submits the
permits); the relayed run's never held ETH, the raw run's do.

- relayed: the book's orders are posted to ``POST /api/v1/market/orders`` (their rate
  is reported too, as ``orders``). Then one client per instrument, each of its takers
  in turn, asks ``POST /api/v1/market/match`` for one unit at the book's price, signs
  the Market call it answers as a forward request and posts it to
  ``/api/v1/market/fills``; the worker relays the fills in ``executeBatch``
  transactions. A fill is done when its action is confirmed and the index holds its
  OrderFilled with the taker (bench/stack.py ``follow_actions``). fills/s = count /
  (last done - first match request). A 503 DatabaseBusy ("retry shortly") is retried
  after a pause, and a fill refused as OrderTaken is matched again, as a wallet would;
  both are counted. One client per instrument: a taker matched while another's fill
  of the same order is not yet posted would be refused (``OrderTaken``) and match
  again; one at a time per instrument measures the path, not that race. Across
  instruments they run at once, as figure 3's 50 clients do.
- raw: the same fills (one unit of a maker's order each) as ``Market.fill``
  transactions pre-signed by takers with ETH, sent back to back; fills/s = count /
  (last inclusion seen - first send), as figure 3's raw baselines.

The wallet's EIP-712 signing happens inside the measured run (the load generator's
CPU), as a wallet would sign after seeing the match.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import time
from typing import Any

import aiohttp
from eth_account import Account
from web3 import Web3

from bench.loadgen import percentile
from bench.stack import (
    POST_CONNECTIONS,
    PRICE,
    Sender,
    Stack,
    follow_actions,
    send_and_measure,
    signed_tx,
)
from gpucap import devchain
from gpucap.signing import MarketOrder, sign_order, sign_permit, sign_request
from gpucap.trading import order_body

MAX_UINT = 2**256 - 1
BUSY_RETRIES = 12  # a 503 DatabaseBusy is retried after 0.05, 0.1, … up to 1 s
REMATCHES = 3  # a fill refused as OrderTaken is matched again this many times at most
# Longer than figure 3's: under load the book's fills are far slower than buys (bench
# results), and a figure cut short says nothing.
FOLLOW_TIMEOUT_S = 900.0
FIRST_WINDOW_AHEAD = 3  # figure 3's offer is for the window two ahead: these come after it


def setup(rpc_url: str, market: dict[str, Any], *, fills: int) -> dict[str, Any]:
    """Makers, their signed orders, and the takers of both runs (automine, brownie)."""
    from brownie import accounts, chain

    s = market["system"]
    cap, coin, mkt = s.capacity, s.stablecoin, s.market
    admin, operator = accounts[0], accounts[1]
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    send = Sender(w3)
    instruments = min(POST_CONNECTIONS, fills)
    per = math.ceil(fills / instruments)
    h100, node = s.class_ids["H100-SXM-80GB"], market["nodes"][0]
    window = cap.windowSeconds()
    now = chain[-1].timestamp
    tokens = [
        cap.tokenIdFor(h100, (now // window + FIRST_WINDOW_AHEAD + k) * window)
        for k in range(instruments)
    ]
    # Each window's supply: the big node offers it, the admin buys it for the maker.
    first_offer = cap.offerCount() + 1
    send.many(
        operator.address,
        [("publishOffer", cap, (node, token, 2 * per, PRICE)) for token in tokens],
    )
    send(admin.address, coin, "approve", cap.address, MAX_UINT)
    send.many(
        admin.address,
        [("buy", cap, (first_offer + k, 2 * per)) for k in range(instruments)],
    )
    makers = [Account.create() for _ in tokens]
    send.many(
        admin.address,
        [("eth", m.address, 10**17) for m in makers]
        + [
            ("safeTransferFrom", cap, (admin.address, m.address, token, 2 * per, b""))
            for m, token in zip(makers, tokens, strict=True)
        ],
    )
    for maker in makers:
        send.signed(maker, cap, "setApprovalForAll", mkt.address, True)
    expiry = now + 7 * 86_400
    orders = [
        [
            _signed_order(mkt.address, maker, cap.address, token, nonce, expiry)
            for nonce in range(2 * per)
        ]
        for maker, token in zip(makers, tokens, strict=True)
    ]
    deadline = now + 7 * 86_400
    relayed = [Account.create() for _ in range(fills)]
    raw = [Account.create() for _ in range(fills)]
    budget = 10 * PRICE  # a unit and its taker fee, with room
    send.many(
        admin.address,
        [("transfer", coin, (w.address, budget)) for w in relayed + raw]
        + [("eth", w.address, 10**16) for w in raw]
        + [("permit", coin, _permit(coin, w, mkt.address, deadline)) for w in relayed + raw],
    )
    return {
        "market": mkt,
        "forwarder": s.forwarder,
        "capacity": cap.address,
        "tokens": [str(t) for t in tokens],
        # The first half of each maker's orders go to the book, the rest to the raw run.
        "book": [o[:per] for o in orders],
        "kept": [o[per:] for o in orders],
        "relayed_takers": relayed,
        "raw_takers": raw,
        "fills": fills,
        "deadline": deadline,
    }


def _signed_order(
    market: str, maker: Any, asset: str, token: int, nonce: int, expiry: int
) -> tuple[MarketOrder, bytes]:
    order = MarketOrder(maker.address, asset, token, True, 1, PRICE, nonce, expiry)
    return order, sign_order(order, maker.key, market=market, chain_id=devchain.CHAIN_ID)


def _permit(coin: Any, owner: Any, spender: str, deadline: int) -> tuple[Any, ...]:
    v, r, sig_s = sign_permit(
        owner,
        token_name=coin.name(),
        token=coin.address,
        spender=spender,
        value=MAX_UINT,
        nonce=0,
        deadline=deadline,
        chain_id=devchain.CHAIN_ID,
    )
    return (owner.address, spender, MAX_UINT, deadline, v, r, sig_s)


async def _post(session: aiohttp.ClientSession, path: str, body: Any) -> tuple[int, bytes, int]:
    """POST, again after a pause while the API says its database is busy (503
    DatabaseBusy: "retry shortly"), as a wallet would: (status, answer, retries)."""
    for attempt in range(BUSY_RETRIES):
        async with session.post(path, json=body) as resp:
            status, answer = resp.status, await resp.read()
        if status != 503 or attempt == BUSY_RETRIES - 1:
            return status, answer, attempt
        await asyncio.sleep(min(1.0, 0.05 * 2**attempt))
    raise AssertionError("unreachable: the last attempt returns")


async def _place(api: str, fills: dict[str, Any]) -> dict[str, Any]:
    """The book's orders, one client per maker (the API serialises one maker's orders)."""
    errors: list[str] = []
    placed = retries = 0

    async def client(orders: list[tuple[MarketOrder, bytes]]) -> None:
        nonlocal placed, retries
        timeout = aiohttp.ClientTimeout(total=60)
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(api, connector=connector, timeout=timeout) as session:
            for order, signature in orders:
                body = order_body(order, signature)
                status, answer, retried = await _post(session, "/api/v1/market/orders", body)
                retries += retried
                if status == 201:
                    placed += 1
                else:
                    errors.append(f"{status} {answer[:200]!r}")

    t0 = time.perf_counter()
    await asyncio.gather(*(client(orders) for orders in fills["book"]))
    wall = time.perf_counter() - t0
    return {
        "orders": placed,
        "errors": errors[:5],
        "busy_retries": retries,
        "wall_s": round(wall, 3),
        "orders_per_s": round(placed / wall, 1),
    }


def relayed_fills(stack: Stack, w3: Web3, fills: dict[str, Any]) -> dict[str, Any]:
    """Orders into the book, then every taker matched, signed and relayed; followed to
    confirmed and indexed."""
    out: dict[str, Any] = {"orders": asyncio.run(_place(stack.api_url, fills))}
    stack.wait_indexed(w3.eth.block_number)
    takers = fills["relayed_takers"]
    queues = [takers[k :: len(fills["tokens"])] for k in range(len(fills["tokens"]))]
    forwarder = fills["forwarder"].address
    deadline = fills["deadline"]

    timings: list[tuple[float, float]] = []  # per fill: (match, fill acceptance) seconds
    retries: list[int] = []
    rematches = 0

    async def post(session: aiohttp.ClientSession, path: str, body: Any) -> tuple[int, bytes]:
        status, answer, retried = await _post(session, path, body)
        retries.append(retried)
        return status, answer

    async def take(
        session: aiohttp.ClientSession, token: str, taker: Any
    ) -> tuple[bytes, float] | str:
        """Match one unit, sign, post the fill: (the API's acceptance, when the match was
        answered), or what went wrong. A fill refused as OrderTaken (its order was taken
        between the match and the fill) is matched again, as a wallet would."""
        nonlocal rematches
        for _ in range(REMATCHES + 1):
            ask = {
                "taker": taker.address,
                "asset": fills["capacity"],
                "token_id": token,
                "side": "buy",
                "amount": "1",
                "limit_price": str(PRICE),
            }
            status, found = await post(session, "/api/v1/market/match", ask)
            if status != 200:
                return f"match {status} {found[:200]!r}"
            matched_at = time.perf_counter()
            matched = json.loads(found)
            request = sign_request(
                taker,
                forwarder,
                devchain.CHAIN_ID,
                matched["to"],
                matched["data"],
                0,
                deadline,
                gas=matched["gas"],
            )
            status, answer = await post(session, "/api/v1/market/fills", request.api_body())
            if status in (200, 202):
                return answer, matched_at
            if status != 409 or b"OrderTaken" not in answer:
                break
            rematches += 1
        return f"fill {status} {answer[:200]!r}"

    def client(token: str, queue: list[Any]) -> Any:
        async def run(accepted: dict[str, dict[str, Any]], errors: list[str]) -> None:
            timeout = aiohttp.ClientTimeout(total=60)
            connector = aiohttp.TCPConnector(limit=1)
            async with aiohttp.ClientSession(
                stack.api_url, connector=connector, timeout=timeout
            ) as session:
                for taker in queue:
                    t0 = time.perf_counter()
                    took = await take(session, token, taker)
                    if isinstance(took, str):
                        errors.append(took)
                        continue
                    answer, t1 = took
                    t2 = time.perf_counter()
                    timings.append((t1 - t0, t2 - t1))
                    accepted[json.loads(answer)["action_id"]] = {
                        "t0": t0,
                        "accepted": t2 - t0,
                        "holder": taker.address,
                    }

        return run

    load_before = os.getloadavg()[0]
    cpu = stack.cpu_meter()
    followed = asyncio.run(
        follow_actions(
            stack.database_url,
            [client(t, q) for t, q in zip(fills["tokens"], queues, strict=True)],
            ("SELECT taker FROM market_fills", ()),
            timeout=FOLLOW_TIMEOUT_S,
        )
    )
    if timings:
        # Where a fill's API time goes: the match (a read of the book, the makers' funds
        # on the chain) and the fill's acceptance (checks, simulation, one row).
        for i, name in enumerate(("match", "fill_accept")):
            values = [t[i] for t in timings]
            followed[f"{name}_p50_ms"] = round(1000 * statistics.median(values), 1)
            followed[f"{name}_p99_ms"] = round(1000 * percentile(values, 99), 1)
    followed["busy_retries"] = sum(retries)
    followed["rematches"] = rematches
    followed["cpu_s"] = cpu.seconds()
    receipts = [w3.eth.get_transaction_receipt(h) for h in followed.pop("actions_per_tx")]
    if receipts and followed.get("accepted"):
        # Gas per fill, the executeBatch transactions' base cost included.
        followed["gas_per_fill"] = round(sum(r["gasUsed"] for r in receipts) / followed["accepted"])
    if followed.get("completed"):
        followed["cpu_ms_per_fill"] = {
            k: round(1000 * v / followed["completed"], 2) for k, v in followed["cpu_s"].items()
        }
    followed["fills"] = len(takers)
    followed["fills_per_s"] = followed.pop("actions_per_s", None)
    followed["load_avg_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    return {**out, **followed}


def raw_fills(stack: Stack, w3: Web3, fills: dict[str, Any]) -> dict[str, Any]:
    """The same fills as ``Market.fill`` transactions the takers sign and send."""
    market = fills["market"]
    kept = [o for orders in fills["kept"] for o in orders]
    signed = [
        signed_tx(taker, market.address, market.fill.encode_input(order.as_tuple(), sig, 1), 0)
        for taker, (order, sig) in zip(fills["raw_takers"], kept, strict=False)
    ]
    return send_and_measure(w3, signed, stack.cpu_meter())


def measure(stack: Stack, w3: Web3, fills: dict[str, Any]) -> dict[str, Any]:
    """Figure 8: relayed first (the book is fresh), then raw."""
    relayed = relayed_fills(stack, w3, fills)
    raw = raw_fills(stack, w3, fills)
    out: dict[str, Any] = {
        "instruments": len(fills["tokens"]),
        "fills": fills["fills"],
        "price": PRICE,
        "relayed": relayed,
        "raw": raw,
    }
    if relayed.get("fills_per_s") and raw.get("tx_per_s"):
        out["relayed_to_raw_ratio"] = round(relayed["fills_per_s"] / raw["tx_per_s"], 4)
    return out
