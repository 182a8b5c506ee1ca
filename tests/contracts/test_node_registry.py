"""NodeRegistry: classes, nodes, bonds, jail, exit, slashing — one group per function."""

import brownie
import pytest
from brownie import ZERO_ADDRESS, NodeRegistry, ObligationSourceStub, ReentrantToken, chain

from tests.contracts.node_helpers import ACQUIRED_AT, ACQUISITION_COST, USD, b32, b32hex
from tests.support.errors import bytes_arg, err

ACTIVE, JAILED, EXITING, EXITED = 1, 2, 3, 4
UNBONDING = 3600  # DeployConfig.for_tests()
BOND = 5_000 * USD


def unauthorized(account, role):
    return err("AccessControlUnauthorizedAccount", account, bytes_arg(role))


@pytest.fixture(scope="module")
def locker(registry, admin, stranger):
    """`stranger` stands in for CapacityToken: it may lock bond."""
    registry.grantRole(registry.BOND_LOCKER_ROLE(), stranger, {"from": admin})
    return stranger


@pytest.fixture(scope="module")
def slasher(registry, admin, staker):
    """`staker` stands in for a delivery-judging contract: it may slash."""
    registry.grantRole(registry.SLASHER_ROLE(), staker, {"from": admin})
    return staker


@pytest.fixture
def node_id(register_node):
    return register_node()


@pytest.fixture
def bonded(registry, node_id, operator, fund):
    fund(operator, BOND, registry)
    registry.depositBond(node_id, BOND, {"from": operator})
    return node_id


def exit_node(registry, node_id, operator):
    registry.requestExit(node_id, {"from": operator})
    chain.sleep(UNBONDING + 1)
    chain.mine()


class TestRegisterGpuClass:
    def test_registers_and_emits(self, registry, admin):
        count = registry.gpuClassCount()
        tx = registry.registerGpuClass(b32("B200"), 1000, 2250, 60, 1500, {"from": admin})
        assert tx.return_value == count + 1
        assert dict(tx.events["GpuClassRegistered"]) == {
            "classId": count + 1,
            "name": b32hex("B200"),
            "referencePowerW": 1000,
            "referenceThroughput": 2250,
            "economicLifeMonths": 60,
            "residualValueBps": 1500,
        }
        assert list(registry.gpuClass(count + 1)) == [b32hex("B200"), 1000, 2250, 60, 1500, True]
        assert registry.gpuClassCount() == count + 1

    @pytest.mark.parametrize(
        "name,power,life,residual",
        [("", 700, 48, 0), ("X", 0, 48, 0), ("X", 700, 0, 0), ("X", 700, 48, 10_001)],
    )
    def test_invalid_parameters_revert(self, registry, admin, name, power, life, residual):
        with brownie.reverts(err("RegistryInvalidClass")):
            registry.registerGpuClass(b32(name), power, 1, life, residual, {"from": admin})

    def test_residual_of_exactly_100_percent_is_valid(self, registry, admin):
        tx = registry.registerGpuClass(b32("X"), 700, 1, 48, 10_000, {"from": admin})
        class_id = tx.return_value
        assert tx.events["GpuClassRegistered"]["residualValueBps"] == 10_000
        assert tuple(registry.gpuClass(class_id)) == (b32hex("X"), 700, 1, 48, 10_000, True)
        assert registry.gpuClassCount() == class_id

    def test_duplicate_name_reverts(self, registry, admin, h100):
        with brownie.reverts(err("RegistryDuplicateClass", bytes_arg(b32("H100-SXM-80GB")), h100)):
            registry.registerGpuClass(b32("H100-SXM-80GB"), 700, 1, 48, 0, {"from": admin})

    def test_requires_class_admin(self, registry, stranger):
        with brownie.reverts(unauthorized(stranger, registry.CLASS_ADMIN_ROLE())):
            registry.registerGpuClass(b32("X"), 700, 1, 48, 0, {"from": stranger})

    def test_unknown_class_view_reverts(self, registry):
        with brownie.reverts(err("RegistryUnknownClass", 999)):
            registry.gpuClass(999)


class TestRegisterNode:
    def test_registers_active_node_and_emits(self, registry, operator, h100):
        key = "0x00000000000000000000000000000000000000aa"
        tx = registry.registerNode(
            h100, 8, b32("eu-west"), ACQUISITION_COST, ACQUIRED_AT, key, {"from": operator}
        )
        node_id = tx.return_value
        assert node_id == registry.nodeCount()
        assert dict(tx.events["NodeRegistered"]) == {
            "nodeId": node_id,
            "operator": operator,
            "classId": h100,
            "gpuCount": 8,
            "region": b32hex("eu-west"),
            "nodeKey": key,
            "acquisitionCost": ACQUISITION_COST,
            "acquiredAt": ACQUIRED_AT,
        }
        assert list(registry.node(node_id)) == [
            operator,
            h100,
            8,
            ACTIVE,
            b32hex("eu-west"),
            key,
            ACQUIRED_AT,
            ACQUISITION_COST,
            0,
        ]
        assert registry.nodeStatus(node_id) == ACTIVE
        assert registry.nodeIdByKey(key) == node_id
        assert list(registry.bondOf(node_id)) == [0, 0]

    def test_ids_increase(self, register_node):
        first = register_node()
        assert register_node() == first + 1

    def test_unknown_class_reverts(self, registry, operator):
        with brownie.reverts(err("RegistryUnknownClass", 77)):
            registry.registerNode(
                77, 8, b32("x"), ACQUISITION_COST, ACQUIRED_AT, "0x" + "11" * 20, {"from": operator}
            )

    @pytest.mark.parametrize("gpus", [0, 4097])
    def test_gpu_count_out_of_range_reverts(self, registry, operator, h100, gpus):
        with brownie.reverts(err("RegistryInvalidGpuCount", gpus, 4096)):
            registry.registerNode(
                h100,
                gpus,
                b32("x"),
                ACQUISITION_COST,
                ACQUIRED_AT,
                "0x" + "11" * 20,
                {"from": operator},
            )

    def test_max_gpu_count_is_valid(self, registry, register_node):
        node_id = register_node(gpu_count=4096)
        assert registry.node(node_id)[2] == 4096 == registry.MAX_GPUS_PER_NODE()
        assert registry.nodeStatus(node_id) == ACTIVE

    @pytest.mark.parametrize("cost,at", [(0, ACQUIRED_AT), (ACQUISITION_COST, 0)])
    def test_invalid_acquisition_reverts(self, registry, operator, h100, cost, at):
        with brownie.reverts(err("RegistryInvalidAcquisition", cost, at)):
            registry.registerNode(h100, 8, b32("x"), cost, at, "0x" + "11" * 20, {"from": operator})

    def test_future_acquisition_date_reverts(self, registry, operator, h100):
        future = chain.time() + 86_400
        with brownie.reverts(err("RegistryInvalidAcquisition", ACQUISITION_COST, future)):
            registry.registerNode(
                h100, 8, b32("x"), ACQUISITION_COST, future, "0x" + "11" * 20, {"from": operator}
            )

    def test_zero_node_key_reverts(self, registry, operator, h100):
        with brownie.reverts(err("RegistryInvalidNodeKey", ZERO_ADDRESS, 0)):
            registry.registerNode(
                h100, 8, b32("x"), ACQUISITION_COST, ACQUIRED_AT, ZERO_ADDRESS, {"from": operator}
            )

    def test_reused_node_key_reverts(self, registry, register_node, operator2, h100):
        key = "0x" + "22" * 20
        node_id = register_node(key=key)
        with brownie.reverts(err("RegistryInvalidNodeKey", key, node_id)):
            registry.registerNode(
                h100, 8, b32("x"), ACQUISITION_COST, ACQUIRED_AT, key, {"from": operator2}
            )

    def test_unknown_node_view_reverts(self, registry):
        with brownie.reverts(err("RegistryUnknownNode", 12345)):
            registry.node(12345)
        assert registry.nodeStatus(12345) == 0


class TestDepositBond:
    def test_posts_bond_and_emits(self, registry, stablecoin, node_id, operator, fund):
        fund(operator, BOND, registry)
        tx = registry.depositBond(node_id, BOND, {"from": operator})
        assert dict(tx.events["BondDeposited"]) == {
            "nodeId": node_id,
            "from": operator,
            "amount": BOND,
            "bonded": BOND,
        }
        assert list(registry.bondOf(node_id)) == [BOND, 0]
        assert registry.freeBond(node_id) == BOND
        assert stablecoin.balanceOf(registry) == BOND
        assert stablecoin.balanceOf(operator) == 0

    def test_top_up_accumulates(self, registry, bonded, operator, fund):
        fund(operator, 7 * USD)
        tx = registry.depositBond(bonded, 7 * USD, {"from": operator})
        assert tx.events["BondDeposited"]["bonded"] == BOND + 7 * USD
        assert list(registry.bondOf(bonded)) == [BOND + 7 * USD, 0]

    @pytest.mark.parametrize("status", ["jailed", "exiting"])
    def test_top_up_allowed_while_jailed_or_exiting(
        self, registry, bonded, operator, admin, fund, status
    ):
        if status == "jailed":
            registry.jail(bonded, b32("downtime"), {"from": admin})
        else:
            registry.requestExit(bonded, {"from": operator})
        fund(operator, USD)
        registry.depositBond(bonded, USD, {"from": operator})
        assert registry.bondOf(bonded)[0] == BOND + USD

    def test_exited_node_reverts(self, registry, node_id, operator, fund):
        exit_node(registry, node_id, operator)
        registry.withdrawBond(node_id, {"from": operator})
        fund(operator, USD, registry)
        with brownie.reverts(err("RegistryInvalidStatus", node_id, EXITED)):
            registry.depositBond(node_id, USD, {"from": operator})

    def test_not_operator_reverts(self, registry, node_id, stranger, fund):
        fund(stranger, USD, registry)
        with brownie.reverts(err("RegistryNotOperator", node_id, stranger)):
            registry.depositBond(node_id, USD, {"from": stranger})

    def test_unknown_node_reverts(self, registry, operator):
        with brownie.reverts(err("RegistryUnknownNode", 999)):
            registry.depositBond(999, USD, {"from": operator})

    def test_zero_amount_reverts(self, registry, node_id, operator):
        with brownie.reverts(err("RegistryZeroAmount")):
            registry.depositBond(node_id, 0, {"from": operator})

    def test_without_allowance_reverts(self, registry, stablecoin, node_id, operator, fund):
        fund(operator, USD)
        with brownie.reverts(err("ERC20InsufficientAllowance", registry, 0, USD)):
            registry.depositBond(node_id, USD, {"from": operator})


class TestLockBond:
    def test_locks_and_emits(self, registry, bonded, locker):
        tx = registry.lockBond(bonded, 2_000 * USD, {"from": locker})
        assert dict(tx.events["BondLocked"]) == {
            "nodeId": bonded,
            "locker": locker,
            "amount": 2_000 * USD,
            "locked": 2_000 * USD,
        }
        assert list(registry.bondOf(bonded)) == [BOND, 2_000 * USD]
        assert registry.freeBond(bonded) == BOND - 2_000 * USD

    def test_lock_beyond_free_bond_reverts(self, registry, bonded, locker):
        registry.lockBond(bonded, BOND - 1, {"from": locker})
        with brownie.reverts(err("RegistryInsufficientBond", 1, 2)):
            registry.lockBond(bonded, 2, {"from": locker})

    def test_whole_bond_can_be_locked(self, registry, bonded, locker):
        registry.lockBond(bonded, BOND, {"from": locker})
        assert registry.freeBond(bonded) == 0

    def test_zero_amount_reverts(self, registry, bonded, locker):
        with brownie.reverts(err("RegistryZeroAmount")):
            registry.lockBond(bonded, 0, {"from": locker})

    def test_unknown_node_reverts(self, registry, locker):
        with brownie.reverts(err("RegistryUnknownNode", 999)):
            registry.lockBond(999, 1, {"from": locker})

    def test_requires_locker_role(self, registry, bonded, operator):
        with brownie.reverts(unauthorized(operator, registry.BOND_LOCKER_ROLE())):
            registry.lockBond(bonded, 1, {"from": operator})


class TestUnlockBond:
    def test_unlocks_and_emits(self, registry, bonded, locker):
        registry.lockBond(bonded, 300 * USD, {"from": locker})
        tx = registry.unlockBond(bonded, 100 * USD, {"from": locker})
        assert dict(tx.events["BondUnlocked"]) == {
            "nodeId": bonded,
            "locker": locker,
            "amount": 100 * USD,
            "locked": 200 * USD,
        }
        assert list(registry.bondOf(bonded)) == [BOND, 200 * USD]

    def test_unlock_beyond_locked_reverts(self, registry, bonded, locker):
        registry.lockBond(bonded, 300, {"from": locker})
        with brownie.reverts(err("RegistryInsufficientLockedBond", 300, 301)):
            registry.unlockBond(bonded, 301, {"from": locker})

    def test_zero_amount_reverts(self, registry, bonded, locker):
        with brownie.reverts(err("RegistryZeroAmount")):
            registry.unlockBond(bonded, 0, {"from": locker})

    def test_unknown_node_reverts(self, registry, locker):
        with brownie.reverts(err("RegistryUnknownNode", 999)):
            registry.unlockBond(999, 1, {"from": locker})

    def test_requires_locker_role(self, registry, bonded, operator):
        with brownie.reverts(unauthorized(operator, registry.BOND_LOCKER_ROLE())):
            registry.unlockBond(bonded, 1, {"from": operator})


class TestSlash:
    EVIDENCE = b32("report-42")

    def test_slashes_to_recipient_and_emits(self, registry, stablecoin, bonded, slasher, buyer):
        tx = registry.slash(bonded, 1_200 * USD, buyer, self.EVIDENCE, {"from": slasher})
        assert dict(tx.events["NodeSlashed"]) == {
            "nodeId": bonded,
            "amount": 1_200 * USD,
            "recipient": buyer,
            "evidence": "0x" + self.EVIDENCE.hex(),
        }
        assert list(registry.bondOf(bonded)) == [BOND - 1_200 * USD, 0]
        assert stablecoin.balanceOf(buyer) == 1_200 * USD
        assert stablecoin.balanceOf(registry) == BOND - 1_200 * USD

    def test_slash_takes_free_bond_only(self, registry, stablecoin, bonded, slasher, locker, buyer):
        """Locked bond backs what the node owes: no slasher can reach it, only its locker."""
        registry.lockBond(bonded, 4_000 * USD, {"from": locker})
        registry.slash(bonded, 500 * USD, buyer, self.EVIDENCE, {"from": slasher})
        assert list(registry.bondOf(bonded)) == [4_500 * USD, 4_000 * USD]
        with brownie.reverts(err("RegistryInsufficientBond", 500 * USD, 500 * USD + 1)):
            registry.slash(bonded, 500 * USD + 1, buyer, self.EVIDENCE, {"from": slasher})
        registry.slash(bonded, 500 * USD, buyer, self.EVIDENCE, {"from": slasher})
        assert list(registry.bondOf(bonded)) == [4_000 * USD, 4_000 * USD]
        with brownie.reverts(err("RegistryInsufficientBond", 0, 1)):
            registry.slash(bonded, 1, buyer, self.EVIDENCE, {"from": slasher})
        assert stablecoin.balanceOf(buyer) == 1_000 * USD

    def test_whole_bond_while_exiting(self, registry, bonded, slasher, operator, buyer):
        registry.requestExit(bonded, {"from": operator})
        registry.slash(bonded, BOND, buyer, self.EVIDENCE, {"from": slasher})
        assert list(registry.bondOf(bonded)) == [0, 0]

    def test_more_than_bond_reverts(self, registry, bonded, slasher, buyer):
        with brownie.reverts(err("RegistryInsufficientBond", BOND, BOND + 1)):
            registry.slash(bonded, BOND + 1, buyer, self.EVIDENCE, {"from": slasher})

    def test_zero_amount_reverts(self, registry, bonded, slasher, buyer):
        with brownie.reverts(err("RegistryZeroAmount")):
            registry.slash(bonded, 0, buyer, self.EVIDENCE, {"from": slasher})

    def test_zero_recipient_reverts(self, registry, bonded, slasher):
        with brownie.reverts(err("RegistryInvalidRecipient")):
            registry.slash(bonded, 1, ZERO_ADDRESS, self.EVIDENCE, {"from": slasher})

    def test_exited_node_reverts(self, registry, node_id, slasher, operator, buyer):
        exit_node(registry, node_id, operator)
        registry.withdrawBond(node_id, {"from": operator})
        with brownie.reverts(err("RegistryInvalidStatus", node_id, EXITED)):
            registry.slash(node_id, 1, buyer, self.EVIDENCE, {"from": slasher})

    def test_unknown_node_reverts(self, registry, slasher, buyer):
        with brownie.reverts(err("RegistryUnknownNode", 999)):
            registry.slash(999, 1, buyer, self.EVIDENCE, {"from": slasher})

    def test_requires_slasher_role(self, registry, bonded, admin, buyer):
        with brownie.reverts(unauthorized(admin, registry.SLASHER_ROLE())):
            registry.slash(bonded, 1, buyer, self.EVIDENCE, {"from": admin})


class TestSettleLock:
    EVIDENCE = b32("reservation-7")

    @pytest.fixture
    def locked(self, registry, bonded, locker):
        registry.lockBond(bonded, 1_000 * USD, {"from": locker})
        return bonded

    def test_pays_from_the_lock_and_frees_the_rest(
        self, registry, stablecoin, locked, locker, buyer
    ):
        tx = registry.settleLock(
            locked, 600 * USD, 450 * USD, buyer, self.EVIDENCE, {"from": locker}
        )
        assert dict(tx.events["BondLockSettled"]) == {
            "nodeId": locked,
            "locker": locker,
            "unlocked": 600 * USD,
            "slashed": 450 * USD,
            "recipient": buyer,
            "evidence": b32hex("reservation-7"),
            "locked": 400 * USD,
        }
        assert dict(tx.events["NodeSlashed"]) == {
            "nodeId": locked,
            "amount": 450 * USD,
            "recipient": buyer,
            "evidence": b32hex("reservation-7"),
        }
        assert list(registry.bondOf(locked)) == [BOND - 450 * USD, 400 * USD]
        assert registry.freeBond(locked) == BOND - 850 * USD
        assert stablecoin.balanceOf(buyer) == 450 * USD

    def test_nothing_slashed_only_unlocks(self, registry, stablecoin, locked, locker):
        tx = registry.settleLock(
            locked, 1_000 * USD, 0, ZERO_ADDRESS, self.EVIDENCE, {"from": locker}
        )
        assert tx.events["BondLockSettled"]["slashed"] == 0
        assert "NodeSlashed" not in tx.events and "Transfer" not in tx.events
        assert list(registry.bondOf(locked)) == [BOND, 0]
        assert stablecoin.balanceOf(registry) == BOND

    def test_cannot_pay_more_than_it_releases(self, registry, locked, locker, buyer):
        with brownie.reverts(err("RegistrySlashExceedsLock", 100, 101)):
            registry.settleLock(locked, 100, 101, buyer, self.EVIDENCE, {"from": locker})

    def test_cannot_release_more_than_locked(self, registry, locked, locker, buyer):
        with brownie.reverts(err("RegistryInsufficientLockedBond", 1_000 * USD, 1_000 * USD + 1)):
            registry.settleLock(locked, 1_000 * USD + 1, 1, buyer, self.EVIDENCE, {"from": locker})

    def test_zero_unlock_reverts(self, registry, locked, locker, buyer):
        with brownie.reverts(err("RegistryZeroAmount")):
            registry.settleLock(locked, 0, 0, buyer, self.EVIDENCE, {"from": locker})

    def test_zero_recipient_of_a_payment_reverts(self, registry, locked, locker):
        with brownie.reverts(err("RegistryInvalidRecipient")):
            registry.settleLock(locked, 10, 1, ZERO_ADDRESS, self.EVIDENCE, {"from": locker})

    def test_unknown_node_reverts(self, registry, locker, buyer):
        with brownie.reverts(err("RegistryUnknownNode", 999)):
            registry.settleLock(999, 1, 0, buyer, self.EVIDENCE, {"from": locker})

    def test_requires_locker_role(self, registry, locked, slasher, buyer):
        with brownie.reverts(unauthorized(slasher, registry.BOND_LOCKER_ROLE())):
            registry.settleLock(locked, 1, 1, buyer, self.EVIDENCE, {"from": slasher})


class TestObligationSources:
    @pytest.fixture
    def source(self, admin):
        return ObligationSourceStub.deploy({"from": admin})

    def test_add_list_remove_and_emit(self, registry, admin, source):
        before = list(registry.obligationSources())
        tx = registry.addObligationSource(source, {"from": admin})
        assert dict(tx.events["ObligationSourceAdded"]) == {"source": source}
        assert list(registry.obligationSources()) == [*before, source]
        tx = registry.removeObligationSource(source, {"from": admin})
        assert dict(tx.events["ObligationSourceRemoved"]) == {"source": source}
        assert list(registry.obligationSources()) == before

    def test_zero_duplicate_unknown_and_full_revert(self, registry, admin, source):
        limit = registry.MAX_OBLIGATION_SOURCES()
        with brownie.reverts(err("RegistryInvalidObligationSource", ZERO_ADDRESS, limit)):
            registry.addObligationSource(ZERO_ADDRESS, {"from": admin})
        with brownie.reverts(err("RegistryInvalidObligationSource", source, limit)):
            registry.removeObligationSource(source, {"from": admin})
        registry.addObligationSource(source, {"from": admin})
        with brownie.reverts(err("RegistryInvalidObligationSource", source, limit)):
            registry.addObligationSource(source, {"from": admin})
        while len(registry.obligationSources()) < limit:
            registry.addObligationSource(
                ObligationSourceStub.deploy({"from": admin}), {"from": admin}
            )
        extra = ObligationSourceStub.deploy({"from": admin})
        with brownie.reverts(err("RegistryInvalidObligationSource", extra, limit)):
            registry.addObligationSource(extra, {"from": admin})

    def test_require_admin(self, registry, stranger, source):
        for fn in (registry.addObligationSource, registry.removeObligationSource):
            with brownie.reverts(unauthorized(stranger, registry.DEFAULT_ADMIN_ROLE())):
                fn(source, {"from": stranger})

    def test_owes_names_what_is_owed(self, registry, admin, bonded, locker, source):
        assert tuple(registry.owes(bonded)) == (False, ZERO_ADDRESS)
        registry.addObligationSource(source, {"from": admin})
        source.setOwing(bonded, True, {"from": admin})
        assert tuple(registry.owes(bonded)) == (True, source)
        registry.lockBond(bonded, 1, {"from": locker})
        assert tuple(registry.owes(bonded)) == (True, registry)


class TestJail:
    def test_jails_and_emits(self, registry, node_id, admin):
        tx = registry.jail(node_id, b32("downtime"), {"from": admin})
        assert dict(tx.events["NodeJailed"]) == {
            "nodeId": node_id,
            "jailer": admin,
            "reason": b32hex("downtime"),
        }
        assert registry.nodeStatus(node_id) == JAILED

    def test_jailed_node_cannot_be_jailed_again(self, registry, node_id, admin):
        registry.jail(node_id, b32("a"), {"from": admin})
        with brownie.reverts(err("RegistryInvalidStatus", node_id, JAILED)):
            registry.jail(node_id, b32("b"), {"from": admin})

    def test_exiting_node_cannot_be_jailed(self, registry, node_id, admin, operator):
        registry.requestExit(node_id, {"from": operator})
        with brownie.reverts(err("RegistryInvalidStatus", node_id, EXITING)):
            registry.jail(node_id, b32("a"), {"from": admin})

    def test_unknown_node_reverts(self, registry, admin):
        with brownie.reverts(err("RegistryUnknownNode", 999)):
            registry.jail(999, b32("a"), {"from": admin})

    def test_requires_jailer_role(self, registry, node_id, stranger):
        with brownie.reverts(unauthorized(stranger, registry.JAILER_ROLE())):
            registry.jail(node_id, b32("a"), {"from": stranger})


class TestUnjail:
    def test_unjails_and_emits(self, registry, node_id, admin):
        registry.jail(node_id, b32("downtime"), {"from": admin})
        tx = registry.unjail(node_id, b32("fixed"), {"from": admin})
        assert dict(tx.events["NodeUnjailed"]) == {
            "nodeId": node_id,
            "jailer": admin,
            "reason": b32hex("fixed"),
        }
        assert registry.nodeStatus(node_id) == ACTIVE

    def test_active_node_reverts(self, registry, node_id, admin):
        with brownie.reverts(err("RegistryInvalidStatus", node_id, ACTIVE)):
            registry.unjail(node_id, b32("a"), {"from": admin})

    def test_unknown_node_reverts(self, registry, admin):
        with brownie.reverts(err("RegistryUnknownNode", 999)):
            registry.unjail(999, b32("a"), {"from": admin})

    def test_requires_jailer_role(self, registry, node_id, admin, stranger):
        registry.jail(node_id, b32("a"), {"from": admin})
        with brownie.reverts(unauthorized(stranger, registry.JAILER_ROLE())):
            registry.unjail(node_id, b32("a"), {"from": stranger})


class TestRequestExit:
    def test_starts_unbonding_and_emits(self, registry, node_id, operator):
        tx = registry.requestExit(node_id, {"from": operator})
        assert dict(tx.events["NodeExitRequested"]) == {
            "nodeId": node_id,
            "withdrawableAt": tx.timestamp + UNBONDING,
        }
        assert registry.nodeStatus(node_id) == EXITING
        assert registry.node(node_id)[8] == tx.timestamp + UNBONDING

    def test_jailed_node_cannot_exit(self, registry, node_id, operator, admin):
        registry.jail(node_id, b32("a"), {"from": admin})
        with brownie.reverts(err("RegistryInvalidStatus", node_id, JAILED)):
            registry.requestExit(node_id, {"from": operator})

    def test_twice_reverts(self, registry, node_id, operator):
        registry.requestExit(node_id, {"from": operator})
        with brownie.reverts(err("RegistryInvalidStatus", node_id, EXITING)):
            registry.requestExit(node_id, {"from": operator})

    def test_not_operator_reverts(self, registry, node_id, operator2):
        with brownie.reverts(err("RegistryNotOperator", node_id, operator2)):
            registry.requestExit(node_id, {"from": operator2})

    def test_unknown_node_reverts(self, registry, operator):
        with brownie.reverts(err("RegistryUnknownNode", 999)):
            registry.requestExit(999, {"from": operator})

    def test_locked_bond_blocks_the_request(self, registry, bonded, operator, locker):
        """Open offers, unreserved sales and unsettled reservations all hold locked bond."""
        registry.lockBond(bonded, 10 * USD, {"from": locker})
        with brownie.reverts(err("RegistryBondLocked", bonded, 10 * USD)):
            registry.requestExit(bonded, {"from": operator})
        registry.unlockBond(bonded, 10 * USD, {"from": locker})
        registry.requestExit(bonded, {"from": operator})
        assert registry.nodeStatus(bonded) == EXITING

    def test_open_obligation_blocks_the_request(self, registry, bonded, operator, admin):
        source = ObligationSourceStub.deploy({"from": admin})
        registry.addObligationSource(source, {"from": admin})
        source.setOwing(bonded, True, {"from": admin})
        with brownie.reverts(err("RegistryObligationOpen", bonded, source)):
            registry.requestExit(bonded, {"from": operator})
        source.setOwing(bonded, False, {"from": admin})
        registry.requestExit(bonded, {"from": operator})
        assert registry.nodeStatus(bonded) == EXITING


class TestWithdrawBond:
    def test_withdraws_after_delay_and_exits(self, registry, stablecoin, bonded, operator):
        exit_node(registry, bonded, operator)
        tx = registry.withdrawBond(bonded, {"from": operator})
        assert dict(tx.events["NodeExited"]) == {"nodeId": bonded, "to": operator, "amount": BOND}
        assert registry.nodeStatus(bonded) == EXITED
        assert list(registry.bondOf(bonded)) == [0, 0]
        assert stablecoin.balanceOf(operator) == BOND
        assert stablecoin.balanceOf(registry) == 0

    def test_empty_bond_exits_without_transfer(self, registry, node_id, operator):
        exit_node(registry, node_id, operator)
        tx = registry.withdrawBond(node_id, {"from": operator})
        assert tx.events["NodeExited"]["amount"] == 0
        assert "Transfer" not in tx.events

    def test_before_delay_reverts(self, registry, bonded, operator):
        tx = registry.requestExit(bonded, {"from": operator})
        with brownie.reverts(err("RegistryUnbonding", bonded, tx.timestamp + UNBONDING)):
            registry.withdrawBond(bonded, {"from": operator})

    def test_locked_bond_blocks_withdrawal(self, registry, bonded, operator, locker):
        exit_node(registry, bonded, operator)
        registry.lockBond(bonded, 10 * USD, {"from": locker})  # a locker acting during unbonding
        with brownie.reverts(err("RegistryBondLocked", bonded, 10 * USD)):
            registry.withdrawBond(bonded, {"from": operator})
        registry.unlockBond(bonded, 10 * USD, {"from": locker})
        registry.withdrawBond(bonded, {"from": operator})

    def test_obligation_opened_during_unbonding_blocks_withdrawal(
        self, registry, stablecoin, bonded, operator, admin
    ):
        source = ObligationSourceStub.deploy({"from": admin})
        registry.addObligationSource(source, {"from": admin})
        exit_node(registry, bonded, operator)
        source.setOwing(bonded, True, {"from": admin})  # e.g. a pool drawn meanwhile
        with brownie.reverts(err("RegistryObligationOpen", bonded, source)):
            registry.withdrawBond(bonded, {"from": operator})
        assert stablecoin.balanceOf(registry) == BOND
        source.setOwing(bonded, False, {"from": admin})
        registry.withdrawBond(bonded, {"from": operator})
        assert stablecoin.balanceOf(operator) == BOND

    @pytest.mark.parametrize("exited", [False, True])
    def test_not_exiting_reverts(self, registry, bonded, operator, exited):
        status = ACTIVE
        if exited:
            exit_node(registry, bonded, operator)
            registry.withdrawBond(bonded, {"from": operator})
            status = EXITED
        with brownie.reverts(err("RegistryInvalidStatus", bonded, status)):
            registry.withdrawBond(bonded, {"from": operator})

    def test_not_operator_reverts(self, registry, bonded, operator, stranger):
        exit_node(registry, bonded, operator)
        with brownie.reverts(err("RegistryNotOperator", bonded, stranger)):
            registry.withdrawBond(bonded, {"from": stranger})


class TestSetUnbondingDelay:
    def test_sets_and_emits(self, registry, admin, node_id, operator):
        tx = registry.setUnbondingDelay(86_400, {"from": admin})
        assert dict(tx.events["UnbondingDelaySet"]) == {"delaySeconds": 86_400}
        assert registry.unbondingDelay() == 86_400
        exit_tx = registry.requestExit(node_id, {"from": operator})
        assert exit_tx.events["NodeExitRequested"]["withdrawableAt"] == exit_tx.timestamp + 86_400

    def test_above_max_reverts(self, registry, admin):
        with brownie.reverts(err("RegistryInvalidUnbondingDelay", 90 * 86_400 + 1, 90 * 86_400)):
            registry.setUnbondingDelay(90 * 86_400 + 1, {"from": admin})

    def test_requires_admin(self, registry, stranger):
        with brownie.reverts(unauthorized(stranger, registry.DEFAULT_ADMIN_ROLE())):
            registry.setUnbondingDelay(1, {"from": stranger})


class TestConstruction:
    def test_wiring(self, registry, stablecoin, forwarder, admin):
        assert registry.bondToken() == stablecoin
        assert registry.isTrustedForwarder(forwarder)
        assert registry.trustedForwarder() == forwarder
        for role in ("DEFAULT_ADMIN_ROLE", "CLASS_ADMIN_ROLE", "JAILER_ROLE"):
            assert registry.hasRole(getattr(registry, role)(), admin)
        assert not registry.hasRole(registry.SLASHER_ROLE(), admin)

    def test_unbonding_delay_above_max_reverts(self, admin, stablecoin, forwarder):
        with brownie.reverts(err("RegistryInvalidUnbondingDelay", 90 * 86_400 + 1, 90 * 86_400)):
            NodeRegistry.deploy(admin, stablecoin, forwarder, 90 * 86_400 + 1, {"from": admin})


class TestReentrancy:
    """A stablecoin that calls back during a payout cannot make the registry pay twice."""

    @pytest.fixture
    def evil(self, admin, h100, forwarder):
        token = ReentrantToken.deploy({"from": admin})
        reg = NodeRegistry.deploy(admin, token, forwarder, 0, {"from": admin})
        reg.registerGpuClass(b32("H100"), 700, 1, 48, 0, {"from": admin})
        # The token contract itself is the operator, so the re-entering call
        # passes the operator check.
        token.execute(
            reg,
            reg.registerNode.encode_input(1, 8, b32("x"), 1, 1, "0x" + "33" * 20),
            {"from": admin},
        )
        token.mint(token, BOND, {"from": admin})
        token.execute(token, token.approve.encode_input(reg, BOND), {"from": admin})
        token.execute(reg, reg.depositBond.encode_input(1, BOND), {"from": admin})
        token.execute(reg, reg.requestExit.encode_input(1), {"from": admin})
        return token, reg

    def test_reentrant_withdraw_reverts(self, evil, admin):
        token, reg = evil
        token.arm(reg, reg.withdrawBond.encode_input(1), {"from": admin})
        with brownie.reverts(err("ReentrancyGuardReentrantCall")):
            token.execute(reg, reg.withdrawBond.encode_input(1), {"from": admin})
        assert token.balanceOf(reg) == BOND
        assert list(reg.bondOf(1)) == [BOND, 0]

    def test_reentrant_slash_reverts(self, evil, admin, buyer):
        token, reg = evil
        reg.grantRole(reg.SLASHER_ROLE(), token, {"from": admin})
        slash = reg.slash.encode_input(1, 1, buyer, b32("e"))
        token.arm(reg, slash, {"from": admin})
        with brownie.reverts(err("ReentrancyGuardReentrantCall")):
            token.execute(reg, slash, {"from": admin})
        assert token.balanceOf(reg) == BOND
