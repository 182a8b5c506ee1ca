"""GpucapForwarder: gasless operator actions on NodeRegistry through signed ERC-2771 requests."""

import brownie
import pytest
from brownie import ZERO_ADDRESS, chain, web3
from eth_account import Account

from tests.contracts.forwarder_helpers import recover_signer, sign_request
from tests.contracts.node_helpers import ACQUIRED_AT, ACQUISITION_COST, b32
from tests.support.errors import err

CHAIN_ID = 31337


@pytest.fixture
def user():
    """A wallet with no ETH at all: it can only act through the relayer."""
    return Account.create()


def register_call(registry, h100, key_byte: int) -> str:
    key = "0x" + f"{key_byte:02x}" * 20
    return registry.registerNode.encode_input(
        h100, 4, b32("us-east"), ACQUISITION_COST, ACQUIRED_AT, key
    )


def sign(user, forwarder, registry, h100, nonce, key_byte=0x44, deadline=None, chain_id=CHAIN_ID):
    deadline = deadline if deadline is not None else chain.time() + 3600
    return sign_request(
        user,
        forwarder.address,
        chain_id,
        registry.address,
        register_call(registry, h100, key_byte),
        nonce,
        deadline,
    )


class TestExecute:
    def test_relayed_register_node_is_done_for_the_signer(
        self, forwarder, registry, h100, user, relayer
    ):
        request = sign(user, forwarder, registry, h100, nonce=0)
        assert forwarder.verify(request.as_tuple())
        tx = forwarder.execute(request.as_tuple(), {"from": relayer})
        assert dict(tx.events["ExecutedForwardRequest"]) == {
            "signer": user.address,
            "nonce": 0,
            "success": True,
        }
        node_id = tx.events["NodeRegistered"]["nodeId"]
        assert tx.events["NodeRegistered"]["operator"] == user.address
        assert registry.node(node_id)[0] == user.address
        assert forwarder.nonces(user.address) == 1
        assert web3.eth.get_balance(user.address) == 0  # the relayer paid the gas

    def test_replay_is_rejected(self, forwarder, registry, h100, user, relayer):
        request = sign(user, forwarder, registry, h100, nonce=0)
        forwarder.execute(request.as_tuple(), {"from": relayer})
        # Checked against nonce 1 now, the signature recovers to some other address.
        recovered = recover_signer(request, forwarder.address, CHAIN_ID, nonce=1)
        assert not forwarder.verify(request.as_tuple())
        with brownie.reverts(err("ERC2771ForwarderInvalidSigner", recovered, user.address)):
            forwarder.execute(request.as_tuple(), {"from": relayer})

    def test_expired_deadline_is_rejected(self, forwarder, registry, h100, user, relayer):
        deadline = web3.eth.get_block("latest").timestamp - 1
        request = sign(user, forwarder, registry, h100, nonce=0, deadline=deadline)
        with brownie.reverts(err("ERC2771ForwarderExpiredRequest", deadline)):
            forwarder.execute(request.as_tuple(), {"from": relayer})
        assert forwarder.nonces(user.address) == 0

    def test_signature_for_another_chain_is_rejected(
        self, forwarder, registry, h100, user, relayer
    ):
        request = sign(user, forwarder, registry, h100, nonce=0, chain_id=1)
        recovered = recover_signer(request, forwarder.address, CHAIN_ID, nonce=0)
        assert recovered != user.address
        with brownie.reverts(err("ERC2771ForwarderInvalidSigner", recovered, user.address)):
            forwarder.execute(request.as_tuple(), {"from": relayer})

    def test_signature_for_another_forwarder_is_rejected(
        self, forwarder, registry, h100, user, relayer
    ):
        other = "0x" + "55" * 20
        request = sign_request(
            user,
            other,
            CHAIN_ID,
            registry.address,
            register_call(registry, h100, 0x44),
            0,
            chain.time() + 3600,
        )
        recovered = recover_signer(request, forwarder.address, CHAIN_ID, nonce=0)
        with brownie.reverts(err("ERC2771ForwarderInvalidSigner", recovered, user.address)):
            forwarder.execute(request.as_tuple(), {"from": relayer})

    def test_target_that_does_not_trust_the_forwarder_is_rejected(
        self, forwarder, stablecoin, user, relayer
    ):
        data = stablecoin.approve.encode_input(relayer, 1)
        request = sign_request(
            user, forwarder.address, CHAIN_ID, stablecoin.address, data, 0, chain.time() + 3600
        )
        with brownie.reverts(err("ERC2771UntrustfulTarget", stablecoin, forwarder)):
            forwarder.execute(request.as_tuple(), {"from": relayer})

    def test_reverting_call_reverts_and_keeps_the_nonce(self, forwarder, registry, user, relayer):
        data = registry.requestExit.encode_input(999)  # unknown node
        request = sign_request(
            user, forwarder.address, CHAIN_ID, registry.address, data, 0, chain.time() + 3600
        )
        with brownie.reverts(err("FailedCall")):
            forwarder.execute(request.as_tuple(), {"from": relayer})
        assert forwarder.nonces(user.address) == 0

    def test_direct_call_from_forwarder_address_is_not_spoofable(self, registry, h100, relayer):
        """A non-forwarder caller that appends an address to calldata acts as itself."""
        spoofed = register_call(registry, h100, 0x66) + "aa" * 20
        tx = relayer.transfer(registry, 0, data=spoofed)
        assert tx.events["NodeRegistered"]["operator"] == relayer


class TestExecuteBatch:
    def test_batch_of_several_signers(self, forwarder, registry, h100, relayer):
        alice, bob = Account.create(), Account.create()
        requests = [
            sign(alice, forwarder, registry, h100, nonce=0, key_byte=0x71),
            sign(alice, forwarder, registry, h100, nonce=1, key_byte=0x72),
            sign(bob, forwarder, registry, h100, nonce=0, key_byte=0x73),
        ]
        tx = forwarder.executeBatch(
            [r.as_tuple() for r in requests], ZERO_ADDRESS, {"from": relayer}
        )
        operators = [e["operator"] for e in tx.events["NodeRegistered"]]
        assert operators == [alice.address, alice.address, bob.address]
        assert [dict(e) for e in tx.events["ExecutedForwardRequest"]] == [
            {"signer": alice.address, "nonce": 0, "success": True},
            {"signer": alice.address, "nonce": 1, "success": True},
            {"signer": bob.address, "nonce": 0, "success": True},
        ]
        assert forwarder.nonces(alice.address) == 2

    def test_atomic_batch_reverts_on_one_invalid_request(
        self, forwarder, registry, h100, user, relayer
    ):
        good = sign(user, forwarder, registry, h100, nonce=0, key_byte=0x71)
        stale = sign(
            user, forwarder, registry, h100, nonce=0, key_byte=0x72
        )  # same nonce: invalid after `good`
        recovered = recover_signer(stale, forwarder.address, CHAIN_ID, nonce=1)
        with brownie.reverts(err("ERC2771ForwarderInvalidSigner", recovered, user.address)):
            forwarder.executeBatch(
                [good.as_tuple(), stale.as_tuple()], ZERO_ADDRESS, {"from": relayer}
            )
        assert forwarder.nonces(user.address) == 0

    def test_non_atomic_batch_skips_invalid_requests(
        self, forwarder, registry, h100, user, relayer
    ):
        good = sign(user, forwarder, registry, h100, nonce=0, key_byte=0x71)
        replay = good
        expired = sign(
            user,
            forwarder,
            registry,
            h100,
            nonce=1,
            key_byte=0x72,
            deadline=web3.eth.get_block("latest").timestamp - 1,
        )
        tx = forwarder.executeBatch(
            [good.as_tuple(), replay.as_tuple(), expired.as_tuple()], relayer, {"from": relayer}
        )
        assert len(tx.events["NodeRegistered"]) == 1
        assert len(tx.events["ExecutedForwardRequest"]) == 1
        assert forwarder.nonces(user.address) == 1
