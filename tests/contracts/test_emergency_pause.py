"""EmergencyPause on CapacityToken: a guardian stops new offers and buys at once, for a
bounded time, and nothing that lets a user take money or a claim out is ever paused."""

import brownie
import pytest
from brownie import chain

from tests.contracts.capacity_helpers import DAY, NODE_BOND, PRICE, token_id
from tests.contracts.node_helpers import USD
from tests.support.errors import bytes_arg, err

PAUSE = 3 * DAY  # GUARDIAN_PAUSE_SECONDS
MAX_PAUSE = 30 * DAY


def unauthorized(account, role):
    return err("AccessControlUnauthorizedAccount", account, bytes_arg(role))


@pytest.fixture
def guardian(capacity, admin):
    """The deployment's guardian is the deployer (DeployConfig.guardian_address = None)."""
    assert capacity.hasRole(capacity.GUARDIAN_ROLE(), admin)
    return admin


@pytest.fixture
def market(capacity, registry, register_node, h100, operator, buyer, fund):
    node = register_node()
    fund(operator, NODE_BOND, registry)
    registry.depositBond(node, NODE_BOND, {"from": operator})
    tid = token_id(h100, (chain.time() // DAY + 12) * DAY)  # beyond every pause here
    offer = capacity.publishOffer(node, tid, 100, PRICE, {"from": operator}).return_value
    fund(buyer, 1_000 * USD, capacity)
    capacity.buy(offer, 10, {"from": buyer})
    return node, tid, offer


def test_guardian_pause_stops_new_exposure_and_emits(capacity, guardian, market, operator, buyer):
    node, tid, offer = market
    tx = capacity.pause({"from": guardian})
    until = tx.timestamp + PAUSE
    assert dict(tx.events["PauseSet"]) == {"by": guardian, "pausedUntil": until}
    assert capacity.paused() and capacity.pausedUntil() == until
    with brownie.reverts(err("PauseActive", until)):
        capacity.publishOffer(node, tid, 1, PRICE, {"from": operator})
    with brownie.reverts(err("PauseActive", until)):
        capacity.buy(offer, 1, {"from": buyer})
    with brownie.reverts(err("PauseActive", until)):
        capacity.buyWithPermit(offer, 1, 0, 0, b"\x00" * 32, b"\x00" * 32, {"from": buyer})


def test_nothing_that_takes_money_or_a_claim_out_is_paused(
    capacity, registry, guardian, market, operator, buyer
):
    node, tid, offer = market
    capacity.pause({"from": guardian})
    rid = capacity.redeem(tid, 4, node, {"from": buyer}).return_value  # a claim on delivery
    assert capacity.reservation(rid)[3] == 4
    capacity.cancelOffer(offer, {"from": operator})  # frees the operator's bond
    assert registry.bondOf(node)[1] == (10 - 4) * 3 * USD + 4 * 3 * USD
    capacity.safeTransferFrom(buyer, operator, tid, 1, b"", {"from": buyer})  # tokens move


def test_pause_expires_by_itself_and_the_guardian_must_wait_as_long_to_pause_again(
    capacity, guardian, market, buyer
):
    _, _, offer = market
    tx = capacity.pause({"from": guardian})
    until = tx.timestamp + PAUSE
    chain.sleep(PAUSE + 1)
    chain.mine()
    assert not capacity.paused()
    capacity.buy(offer, 1, {"from": buyer})
    with brownie.reverts(err("PauseCoolingDown", until + PAUSE)):
        capacity.pause({"from": guardian})
    chain.sleep(PAUSE)
    chain.mine()
    capacity.pause({"from": guardian})
    assert capacity.paused()


def test_only_the_admin_extends_and_never_beyond_the_bound(capacity, admin, guardian, stranger):
    with brownie.reverts(unauthorized(stranger, capacity.DEFAULT_ADMIN_ROLE())):
        capacity.extendPause(chain.time() + DAY, {"from": stranger})
    for bad in (1, chain.time() + MAX_PAUSE + DAY):  # the past; beyond the bound
        with pytest.raises(brownie.exceptions.VirtualMachineError) as exc:
            capacity.extendPause.call(bad, {"from": admin})
        assert exc.value.revert_msg.startswith(f"PauseInvalidUntil: {bad}, "), exc.value.revert_msg
    until = chain.time() + 10 * DAY
    tx = capacity.extendPause(until, {"from": admin})
    assert dict(tx.events["PauseSet"]) == {"by": admin, "pausedUntil": until}
    assert capacity.pausedUntil() == until
    # The guardian's cool-down starts no earlier than the admin's pause ends.
    chain.sleep(10 * DAY + 1)
    chain.mine()
    capacity.pause({"from": guardian})


def test_unpause_by_guardian_or_admin_only_while_paused(capacity, admin, guardian, stranger):
    with brownie.reverts(err("PauseNotActive")):
        capacity.unpause({"from": admin})
    capacity.pause({"from": guardian})
    with brownie.reverts(unauthorized(stranger, capacity.DEFAULT_ADMIN_ROLE())):
        capacity.unpause({"from": stranger})
    tx = capacity.unpause({"from": guardian})
    assert dict(tx.events["PauseLifted"]) == {"by": guardian}
    assert not capacity.paused()


def test_pause_requires_the_guardian_role(capacity, stranger, guardian):
    with brownie.reverts(unauthorized(stranger, capacity.GUARDIAN_ROLE())):
        capacity.pause({"from": stranger})
    capacity.pause({"from": guardian})
    with brownie.reverts(err("PauseActive", capacity.pausedUntil())):
        capacity.pause({"from": guardian})


def test_a_bound_pool_pauses_new_deposits_and_the_draw_only(
    system, registry, register_node, admin, operator, staker, fund
):
    """The deployment's guardian gets GUARDIAN_ROLE on every pool it binds; a pause stops
    deposits and the draw, never a refund of a failed round nor staking and claims."""
    from scripts.deploy import PoolTerms, deploy_node_pool

    node = register_node()
    pool = deploy_node_pool(
        system, admin, node_id=node, operator=operator.address, terms=PoolTerms(100 * USD)
    )
    assert pool.hasRole(pool.GUARDIAN_ROLE(), system.guardian) and system.guardian == admin
    fund(staker, 100 * USD, pool)
    pool.deposit(60 * USD, staker, {"from": staker})
    until = pool.pause({"from": admin}).timestamp + PAUSE
    with brownie.reverts(err("PauseActive", until)):
        pool.deposit(40 * USD, staker, {"from": staker})
    pool.unpause({"from": admin})
    pool.deposit(40 * USD, staker, {"from": staker})  # the round succeeds
    # The guardian is cooling down now; the admin (the timelock outside the dev chain) pauses.
    with brownie.reverts(err("PauseCoolingDown", until + PAUSE)):
        pool.pause({"from": admin})
    pool.extendPause(chain.time() + DAY, {"from": admin})
    with brownie.reverts(err("PauseActive", pool.pausedUntil())):
        pool.drawRaise({"from": operator})
    pool.stake(pool.balanceOf(staker) // 2, {"from": staker})  # staking is never paused
    assert pool.stakeOf(staker)[0] > 0 or pool.stakeOf(staker)[1] > 0
