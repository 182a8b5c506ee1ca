"""The secondary market as a wallet uses it, shared by the CLI (gpucap/cli_market.py) and
the demo's traders (devnet/market.py).

An order is signed here (EIP-712, the market's domain as ``GET /api/v1/market`` gives
it) and posted to the API's book; a take asks the API to match, signs the Market call
it answers as a forward request and posts it as a fill, relayed gaslessly like a buy; a
cancel is the maker's own ``Market.cancel`` (or ``cancelUpTo``), relayed the same way;
approvals are given without gas (a relayed ``setApprovalForAll`` for GPU-hours, EIP-2612
permits of the stablecoin and pool shares that the relayer submits). Every API refusal
raises ``actions.ApiRejected`` with its code and reason: the caller decides what a
refusal means to it (the CLI exits, the demo logs it and goes on).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_UP, Decimal, localcontext
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3

from gpucap import actions
from gpucap.deployment import Deployment
from gpucap.signing import MarketOrder, sign_order, sign_permit, sign_request

USD = 10**6
UNLIMITED = 2**256 - 1
SHARE_DECIMALS = 18  # a pool share's base units; a capacity token counts whole GPU-hours
# What a limit price may carry (the API's Price pattern): a share's base unit is 1e-18.
PRICE_DECIMALS = 36


def per_base_unit(price: Decimal, decimals: int) -> Decimal:
    """tUSD per whole unit → stablecoin base units per asset base unit."""
    return price * USD / Decimal(10) ** decimals


def quote_for(amount: int, price_per_base_unit: Decimal, *, sell: bool) -> int:
    """What ``amount`` base units cost at ``price_per_base_unit``, rounded in the maker's
    favour as the market rounds its fills (up for a sell, down for a bid)."""
    return int((amount * price_per_base_unit).to_integral_value(ROUND_UP if sell else ROUND_DOWN))


def limit_text(price_per_base_unit: Decimal, *, buy: bool) -> str:
    """A limit price as the API takes it (a plain decimal of at most 36 places), rounded
    so that it never allows more than asked: down for a buy, up for a sell."""
    with localcontext() as ctx:
        ctx.prec = 120  # 60 whole digits and 36 decimals fit, as the API's pattern allows
        step = Decimal(1).scaleb(-PRICE_DECIMALS)
        rounded = price_per_base_unit.quantize(step, ROUND_DOWN if buy else ROUND_UP)
        return format(rounded.normalize(), "f")


def order_nonce() -> int:
    """Milliseconds now: ``cancelUpTo(now)`` cancels every order made before it."""
    return int(time.time() * 1000)


def order_of(placed: dict[str, Any]) -> MarketOrder:
    """The signed order behind an order as the API shows it."""
    return MarketOrder(
        maker=placed["maker"],
        asset=placed["asset"],
        token_id=int(placed["token_id"]),
        sell=placed["sell"],
        amount=int(placed["amount"]),
        quote_amount=int(placed["quote_amount"]),
        nonce=int(placed["nonce"]),
        expiry=placed["expiry"],
    )


def place(api: actions.Api, signer: LocalAccount, order: MarketOrder, info: dict[str, Any]) -> Any:
    """Sign ``order`` with ``signer`` for the market ``info`` (``GET /api/v1/market``)
    describes and post it to the book; the API's view of it (201: new, 200: known)."""
    signature = sign_order(
        order,
        signer.key,
        market=info["domain"]["verifyingContract"],
        chain_id=info["domain"]["chainId"],
    )
    return api.post("/api/v1/market/orders", order_body(order, signature))


def order_body(order: MarketOrder, signature: bytes) -> dict[str, Any]:
    """The JSON body of ``POST /api/v1/market/orders`` carrying a signed order."""
    return {
        "maker": order.maker,
        "asset": order.asset,
        "token_id": str(order.token_id),
        "sell": order.sell,
        "amount": str(order.amount),
        "quote_amount": str(order.quote_amount),
        "nonce": str(order.nonce),
        "expiry": order.expiry,
        "signature": "0x" + signature.hex(),
    }


@dataclass(frozen=True)
class Take:
    matched: dict[str, Any]  # POST /api/v1/market/match's answer: fills, amount, quote
    accepted: dict[str, Any]  # POST /api/v1/market/fills's: the action relaying them


def take(
    api: actions.Api,
    deployment: Deployment,
    signer: LocalAccount,
    *,
    asset: str,
    token_id: int,
    buy: bool,
    amount: int,
    limit_price: str,
) -> Take:
    """Take resting orders for up to ``amount`` base units at ``limit_price`` (stablecoin
    base units per asset base unit) or better: matched by the API, signed here, relayed."""
    matched = api.post(
        "/api/v1/market/match",
        {
            "taker": signer.address,
            "asset": asset,
            "token_id": str(token_id),
            "side": "buy" if buy else "sell",
            "amount": str(amount),
            "limit_price": limit_price,
        },
    )
    signing = actions.signing_of(api, signer.address)
    request = sign_request(
        signer,
        deployment.contracts["GpucapForwarder"].address,
        deployment.chain_id,
        matched["to"],
        matched["data"],
        signing.nonce,
        signing.deadline,
        gas=matched["gas"],
    )
    return Take(matched, api.post("/api/v1/market/fills", request.api_body()))


def cancel_data(
    deployment: Deployment, order: MarketOrder | None = None, *, up_to: int | None = None
) -> str:
    """Calldata of ``Market.cancel(order)``, or of ``cancelUpTo(up_to)`` (every order of
    the sender with a nonce below it)."""
    market = deployment.contract(Web3(), "Market")
    if order is not None:
        return str(market.encode_abi("cancel", args=[order.as_tuple()]))
    if up_to is None:
        raise ValueError("cancel one order or every order up to a nonce")
    return str(market.encode_abi("cancelUpTo", args=[up_to]))


@dataclass
class Approvals:
    """What ``approve`` did: actions to follow (what, action id) and what needed none."""

    pending: list[tuple[str, str]] = field(default_factory=list)
    done: list[dict[str, Any]] = field(default_factory=list)


def approve(
    api: actions.Api,
    deployment: Deployment,
    signer: LocalAccount,
    pools: list[str] | None = None,
    *,
    capacity: bool = True,
    stablecoin: bool = True,
) -> Approvals:
    """Give the market what a trade of ``signer``'s needs, gasless, and only what is
    missing: its GPU-hours (a relayed setApprovalForAll; ``capacity``), the stablecoin
    bids and takes pay with (``stablecoin``) and the named pools' shares (EIP-2612
    permits signed here and submitted by the relayer). Allowances are unlimited and name
    the Market only. Returns the actions to follow; nothing is awaited here."""
    info = api.get(f"/api/v1/market/approvals/{signer.address}", pool=pools or None)
    out = Approvals()
    if capacity and info["capacity_approved"]:
        out.done.append({"what": "GPU-hours", "status": "approved already"})
    elif capacity:
        data = deployment.contract(Web3(), "CapacityToken").encode_abi(
            "setApprovalForAll", args=[info["spender"], True]
        )
        accepted = actions.forward(api, deployment, signer, "CapacityToken", data)
        out.pending.append(("GPU-hours", accepted["action_id"]))
    deadline = info["chain_time"] + actions.DEFAULT_DEADLINE_SECONDS
    for token in info["tokens"]:
        if token["kind"] == "stablecoin" and not stablecoin:
            continue
        what = "tUSD" if token["kind"] == "stablecoin" else f"shares of {token['token']}"
        if int(token["allowance"]) == UNLIMITED:
            out.done.append({"what": what, "status": "approved already"})
            continue
        domain = token["domain"]
        v, r, s = sign_permit(
            signer,
            token_name=domain["name"],
            token_version=domain["version"],
            token=token["token"],
            spender=info["spender"],
            value=UNLIMITED,
            nonce=int(token["nonce"]),
            deadline=deadline,
            chain_id=domain["chainId"],
        )
        accepted = api.post(
            "/api/v1/market/permits",
            {
                "token": token["token"],
                "owner": signer.address,
                "spender": info["spender"],
                "value": str(UNLIMITED),
                "nonce": token["nonce"],
                "deadline": deadline,
                "signature": "0x" + (r + s + bytes([v])).hex(),
            },
        )
        if accepted["action_id"] is None:  # in effect already: someone submitted it
            out.done.append({"what": what, "status": accepted["status"]})
        else:
            out.pending.append((what, accepted["action_id"]))
    return out
