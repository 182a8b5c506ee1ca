"""A mined executeBatch read from the node's raw receipt: eth_abi encoding of the batch
matches web3's, and each request's outcome (confirmed, its call's decoded revert,
skipped as expired or for a used nonce) is decoded from the raw JSON-RPC receipt the
same as from web3's formatted one; a relay task whose row is in a batch another task
drives returns at once. Real anvil and Redis, in-process."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from typing import Any

import pytest
from brownie import web3
from eth_account import Account
from sqlalchemy.orm import Session, sessionmaker

from backend.redis_embedded import EmbeddedRedis
from backend.services.errors import TransactionReverted, WrongChain
from backend.services.relaying import actions, batching, forward
from backend.services.relaying.batch_sizing import BatchLimits
from backend.services.relaying.forward import ForwardParams, RequestOutcome
from backend.services.relaying.relayer import Relayer, TxRequest
from gpucap.signing import SignedRequest, sign_request
from tests.backend.backend_helpers import new_forward_action, service_relayer

ZERO = "0x" + "00" * 20


@pytest.fixture(scope="module")
def relayer(live_deployment: Any, redis_server: EmbeddedRedis) -> Iterator[Relayer]:
    with service_relayer(live_deployment, redis_server.url) as r:
        yield r


def _params(req: SignedRequest, function: str) -> dict[str, Any]:
    return ForwardParams(
        sender=req.sender,
        to=req.to,
        value=req.value,
        gas=req.gas,
        nonce=req.nonce,
        deadline=req.deadline,
        data="0x" + req.data.hex(),
        signature="0x" + req.signature.hex(),
        contract="CapacityToken",
        function=function,
    ).as_params()


def _approval(s: Any, relayer: Relayer, operator: str, *, deadline: int) -> SignedRequest:
    wallet = Account.create()
    data = s.capacity.setApprovalForAll.encode_input(operator, True)
    chain_id = relayer.chain.deployment.chain_id
    return sign_request(
        wallet, s.forwarder.address, chain_id, s.capacity.address, data, 0, deadline
    )


def test_batch_encoding_matches_web3(relayer: Relayer, live_deployment: Any) -> None:
    s = live_deployment.system
    now = web3.eth.get_block("latest")["timestamp"]
    reqs = [_approval(s, relayer, s.registry.address, deadline=now + 3_600) for _ in range(3)]
    tx = forward.batch_tx(
        relayer.chain, [_params(r, "setApprovalForAll") for r in reqs], relayer.sender
    )
    expected = relayer.chain.contract(forward.FORWARDER).encode_abi(
        "executeBatch", args=[[r.as_tuple() for r in reqs], relayer.sender]
    )
    assert tx.data == expected
    assert tx.to == s.forwarder.address and tx.value == 0


def test_each_request_of_a_mined_batch_gets_its_outcome(
    relayer: Relayer, live_deployment: Any, admin: Any
) -> None:
    s = live_deployment.system
    now = web3.eth.get_block("latest")["timestamp"]
    ok = _approval(s, relayer, s.registry.address, deadline=now + 3_600)
    reverts = _approval(s, relayer, ZERO, deadline=now + 3_600)  # ERC1155InvalidOperator
    expires = _approval(s, relayer, s.registry.address, deadline=now + 100)
    sidestepped = _approval(s, relayer, s.registry.address, deadline=now + 3_600)
    s.forwarder.execute(sidestepped.as_tuple(), {"from": admin})  # its nonce is used
    params = [_params(r, "setApprovalForAll") for r in (ok, reverts, expires, sidestepped)]
    batch = forward.batch_tx(relayer.chain, params, relayer.sender)
    web3.provider.make_request("evm_increaseTime", [200])  # `expires` is past its deadline
    with relayer.nonces.locked():
        signed = relayer.sign(TxRequest(to=batch.to, data=batch.data, gas=3_000_000))
        relayer.broadcast(signed)
    mined = relayer.wait_mined(signed.tx_hash)
    assert mined.tx_hash == signed.tx_hash and mined.block_number
    assert mined.receipt is not None and mined.receipt["transactionHash"] == signed.tx_hash

    raw = forward.batch_outcomes(relayer.chain, mined.receipt, params)
    assert raw[0] == RequestOutcome(success=True)
    assert (raw[1].success, raw[1].code) == (False, "ERC1155InvalidOperator"), raw[1]
    assert (raw[2].success, raw[2].code) == (False, "RequestExpired"), raw[2]
    assert (raw[3].success, raw[3].code) == (False, "InvalidNonce"), raw[3]
    assert all(o.reason for o in raw[1:])
    # web3's formatted receipt (HexBytes, ints) decodes the same.
    formatted = relayer.receipt(signed.tx_hash)
    assert forward.batch_outcomes(relayer.chain, formatted, params) == raw
    assert s.capacity.isApprovedForAll(ok.sender, s.registry.address)
    assert s.forwarder.nonces(reverts.sender) == 1  # ran (and failed): nonce used
    assert s.forwarder.nonces(expires.sender) == 0  # skipped


def test_raw_receipt_of_an_unknown_hash_is_none(relayer: Relayer) -> None:
    unknown = "0x" + "ab" * 32
    assert relayer.raw_receipt(unknown) is None
    assert not relayer.is_mined(unknown)
    assert not relayer.is_known(unknown)


def test_a_task_whose_batch_another_task_drives_returns_at_once(
    relayer: Relayer, sessions: sessionmaker[Session], live_deployment: Any
) -> None:
    s = live_deployment.system
    ids = [new_forward_action(relayer, sessions, s) for _ in range(2)]
    limits = BatchLimits()
    nonce = web3.eth.get_transaction_count(relayer.sender, "pending")
    claim = f"gpucap:batch:{relayer.sender.lower()}:{nonce}"
    client = relayer.nonces.client
    web3.provider.make_request("evm_setAutomine", [False])
    try:
        assert client.set(claim, "another task", nx=True, px=30_000)  # it drives the batch
        start = time.monotonic()
        for action_id in ids:  # the first sends the batch; neither waits for it
            assert (
                batching.relay_forward(
                    sessions=sessions, relayer=relayer, action_id=action_id, limits=limits
                )
                == "submitted"
            )
        assert time.monotonic() - start < relayer.receipt_timeout
        with sessions() as session:
            rows = [actions.get_action(session, i) for i in ids]
        assert {(r.nonce, r.tx_hash) for r in rows} == {(nonce, rows[0].tx_hash)}
        web3.provider.make_request("evm_mine", [])
        client.delete(claim)  # the other task died: the next task for any row drives it
        assert (
            batching.relay_forward(
                sessions=sessions, relayer=relayer, action_id=ids[1], limits=limits
            )
            == "confirmed"
        )
    finally:
        web3.provider.make_request("evm_setAutomine", [True])
    with sessions() as session:
        assert {actions.get_action(session, i).status for i in ids} == {"confirmed"}
    # A task for a finished row stops after reading it.
    assert (
        batching.relay_forward(sessions=sessions, relayer=relayer, action_id=ids[0], limits=limits)
        == "confirmed"
    )


@pytest.mark.parametrize(
    ("signed_gas", "refunds"),
    [(120_000, False), (500_000, False), (2_000_000, False), (120_000, True)],
)
def test_searched_gas_limit_is_the_lowest_the_batch_runs_with(
    relayer: Relayer, live_deployment: Any, signed_gas: int, refunds: bool
) -> None:
    """The limit from one eth_simulateV1 run is at least the node's own eth_estimateGas
    (the lowest limit the batch succeeds with; several runs), whatever gas each request
    carries and with refunds (each wallet approves, then revokes in the same batch: the
    slot goes back to zero and the simulation reports gas after the refund), and a
    batch sent with it runs every request."""
    s = live_deployment.system
    deadline = web3.eth.get_block("latest")["timestamp"] + 3_600
    chain_id = relayer.chain.deployment.chain_id
    reqs = []
    for _ in range(12):
        wallet = Account.create()
        for nonce, approved in enumerate([True, False] if refunds else [True]):
            data = s.capacity.setApprovalForAll.encode_input(s.registry.address, approved)
            reqs.append(
                sign_request(
                    wallet,
                    s.forwarder.address,
                    chain_id,
                    s.capacity.address,
                    data,
                    nonce,
                    deadline,
                    gas=signed_gas,
                )
            )
    batch = forward.batch_tx(
        relayer.chain, [_params(r, "setApprovalForAll") for r in reqs], relayer.sender
    )
    block_gas = relayer.block_gas_limit()
    need = relayer.gas_need(batch, forwarded_gas=signed_gas, simulate_gas=block_gas)
    limit = need.limit
    minimum = int(
        web3.eth.estimate_gas({"from": relayer.sender, "to": batch.to, "data": batch.data})
    )
    # The node's estimate stops within 1.5% above the lowest limit; the search within
    # 1% of the gas used above it; the limit is 3% more than what the search found.
    assert minimum * 985 // 1000 <= need.lowest_limit <= minimum + need.used // 100, (need, minimum)
    assert limit == need.lowest_limit * 103 // 100
    if refunds:  # the lowest limit covers the run before refunds, the gas used does not
        assert need.lowest_limit > need.used * 105 // 100, need
    # Less than the lowest limit by more than the search's precision: the batch fails
    # (the forwarder's check that a request got all its gas, or out of gas).
    with pytest.raises(ValueError, match="InvalidFEOpcode|OOG|OutOfGas"):
        web3.eth.call(
            {
                "from": relayer.sender,
                "to": batch.to,
                "data": batch.data,
                "gas": need.lowest_limit - need.used // 100 - 1,
            }
        )

    with relayer.nonces.locked():
        signed = relayer.sign(TxRequest(to=batch.to, data=batch.data, gas=limit))
        relayer.broadcast(signed)
    mined = relayer.wait_mined(signed.tx_hash)
    params = [_params(r, "setApprovalForAll") for r in reqs]
    outcomes = forward.batch_outcomes(relayer.chain, mined.receipt, params)
    assert outcomes == [RequestOutcome(success=True)] * len(reqs), outcomes


def test_validation_reads_the_chains_identity_in_its_round_trip(
    relayer: Relayer, live_deployment: Any
) -> None:
    """The identity an accepted action is stored with comes from the validation's own
    JSON-RPC batch, and is the chain's; a node on another chain than the manifest's is
    refused as such, before the request's own checks (whose signature, for the node's
    chain, would not verify against the manifest's)."""
    s = live_deployment.system
    deadline = web3.eth.get_block("latest")["timestamp"] + 3_600
    req = _approval(s, relayer, s.registry.address, deadline=deadline)
    params, identity = forward.validate_with_identity(relayer.chain, req)
    assert identity == relayer.chain.identity()
    assert params == forward.validate(relayer.chain, req)

    elsewhere = dataclasses.replace(
        relayer.chain, deployment=dataclasses.replace(relayer.chain.deployment, chain_id=1)
    )
    with pytest.raises(WrongChain):
        forward.validate_with_identity(elsewhere, req)


def test_simulated_revert_is_decoded_and_out_of_gas_asks_for_more(
    relayer: Relayer, live_deployment: Any
) -> None:
    s = live_deployment.system
    bad_value = TxRequest(  # executeBatch with value but no request to carry it
        to=s.forwarder.address,
        data=s.forwarder.executeBatch.encode_input([], relayer.sender),
        value=1,
    )
    with pytest.raises(TransactionReverted) as caught:
        relayer.gas_need(bad_value, forwarded_gas=0, simulate_gas=1_000_000)
    assert caught.value.code == "ERC2771ForwarderMismatchedValue", caught.value

    deadline = web3.eth.get_block("latest")["timestamp"] + 3_600
    req = _approval(s, relayer, s.registry.address, deadline=deadline)
    one = forward.batch_tx(relayer.chain, [_params(req, "setApprovalForAll")], relayer.sender)
    short = relayer.gas_need(one, forwarded_gas=req.gas, simulate_gas=30_000)
    assert short.lowest_limit > 30_000 and short.limit > 30_000


def test_a_good_hint_finds_the_lowest_limit_in_two_runs(
    relayer: Relayer, live_deployment: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The search starts at hint × gas used: a like batch's ratio ends it in two runs
    beyond the first; a hint far too low or none still ends at the same limit."""
    s = live_deployment.system
    deadline = web3.eth.get_block("latest")["timestamp"] + 3_600
    reqs = [_approval(s, relayer, s.registry.address, deadline=deadline) for _ in range(8)]
    batch = forward.batch_tx(
        relayer.chain, [_params(r, "setApprovalForAll") for r in reqs], relayer.sender
    )
    runs: list[int] = []
    simulate = relayer._simulate

    def counted(request: TxRequest, gas: int) -> Any:
        runs.append(gas)
        return simulate(request, gas)

    monkeypatch.setattr(relayer, "_simulate", counted)
    block_gas = relayer.block_gas_limit()
    fresh = relayer.gas_need(batch, forwarded_gas=reqs[0].gas, simulate_gas=block_gas)
    without_hint = len(runs)
    precision = fresh.used // 100
    for hint, most_runs in [(fresh.ratio, 3), (1.0, None), (3.0, None)]:
        runs.clear()
        need = relayer.gas_need(batch, forwarded_gas=reqs[0].gas, simulate_gas=block_gas, hint=hint)
        assert abs(need.lowest_limit - fresh.lowest_limit) <= precision, (hint, need, fresh)
        assert need.used == fresh.used
        if most_runs is not None:
            assert len(runs) <= most_runs < without_hint, (runs, without_hint)


def test_batches_are_sized_so_that_per_block_of_them_fill_a_block(
    relayer: Relayer, sessions: sessionmaker[Session], live_deployment: Any
) -> None:
    """A node fills a block while the gas its transactions used plus the next one's gas
    limit fits: a backlog goes out in batches of which ``per_block`` fit one block, and
    the block takes that many (with no room for the next one)."""
    s = live_deployment.system
    limits = BatchLimits(per_block=4)
    block_gas, usual = 2_000_000, web3.eth.get_block("latest")["gasLimit"]
    web3.provider.make_request("evm_setBlockGasLimit", [hex(block_gas)])
    web3.provider.make_request("evm_mine", [])
    ids = [new_forward_action(relayer, sessions, s) for _ in range(40)]
    first_nonce = web3.eth.get_transaction_count(relayer.sender, "pending")
    client = relayer.nonces.client
    claims = [f"gpucap:batch:{relayer.sender.lower()}:{first_nonce + i}" for i in range(40)]
    web3.provider.make_request("evm_setAutomine", [False])
    try:
        for claim in claims:  # another task drives each batch: sending returns at once
            client.set(claim, "another task", px=60_000)
        for action_id in ids:  # each row not yet in a batch sends one
            batching.relay_forward(
                sessions=sessions, relayer=relayer, action_id=action_id, limits=limits
            )
        with sessions() as session:
            rows = [actions.get_action(session, i) for i in ids]
        batches = sorted({r.nonce for r in rows if r.nonce is not None})
        assert len(batches) > limits.per_block and all(r.tx_hash for r in rows)
        sizes = [sum(r.nonce == n for r in rows) for n in batches]
        assert max(sizes) > 1, sizes
        web3.provider.make_request("evm_mine", [])
        block = web3.eth.get_block("latest", full_transactions=True)
        ours = [tx for tx in block["transactions"] if tx["from"] == relayer.sender]
        assert len(ours) == limits.per_block, (len(ours), sizes)
        pending = web3.eth.get_transaction(
            next(r.tx_hash for r in rows if r.nonce == batches[limits.per_block])
        )
        # Full: the next batch did not fit (what it used plus that batch's limit).
        assert block["gasUsed"] + pending["gas"] > block_gas, (block["gasUsed"], pending["gas"])
        assert block["gasUsed"] + pending["gas"] > block_gas * 9 // 10
    finally:
        for claim in claims:
            client.delete(claim)
        # The limit back, and the pending batches mined, before automine: set after
        # it, with batches pending, anvil's next blocks kept the 2M limit.
        web3.provider.make_request("evm_setBlockGasLimit", [hex(usual)])
        web3.provider.make_request("evm_mine", [])
        web3.provider.make_request("evm_setAutomine", [True])
    assert web3.eth.get_block("latest")["gasLimit"] == usual
    for action_id in ids:  # the next task for any row drives its batch to the end
        batching.relay_forward(
            sessions=sessions, relayer=relayer, action_id=action_id, limits=limits
        )
    with sessions() as session:
        assert {actions.get_action(session, i).status for i in ids} == {"confirmed"}
