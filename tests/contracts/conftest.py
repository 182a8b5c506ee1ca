"""Contract unit tests: every test starts from the same deployed system."""

from __future__ import annotations

import pytest

from scripts.deploy import DeployConfig, deploy_system
from tests.contracts.node_helpers import ACQUIRED_AT, ACQUISITION_COST, b32


@pytest.fixture(autouse=True)
def isolation(fn_isolation):
    """Each test runs on a snapshot that is reverted afterwards."""


@pytest.fixture(scope="module")
def system(admin):
    return deploy_system(admin, DeployConfig.for_tests())


@pytest.fixture(scope="module")
def settlement(system):
    return system.settlement


@pytest.fixture(scope="module")
def loans(system):
    """The deployed PoolLoans (created by the settlement): pledge, default, recovery."""
    return system.loans


@pytest.fixture(scope="module")
def hub(system):
    """The deployed OracleHub (modules that need another hub define their own)."""
    return system.oracle_hub


@pytest.fixture(scope="module")
def payer(accounts):
    """The renter billed for usage in the settlement tests."""
    return accounts[9]


@pytest.fixture(scope="module")
def stablecoin(system):
    return system.stablecoin


@pytest.fixture(scope="module")
def registry(system):
    return system.registry


@pytest.fixture(scope="module")
def h100(system):
    """Class id of the H100-SXM-80GB class seeded by the deployment."""
    return system.class_ids["H100-SXM-80GB"]


@pytest.fixture(scope="module")
def forwarder(system):
    return system.forwarder


_node_keys = iter(range(0x1000, 0x100000))


@pytest.fixture(scope="module")
def register_node(registry, h100, operator):
    """Factory: registers a node and returns its id; every call uses a fresh node key."""

    def _register(owner=None, class_id=None, gpu_count=8, key=None):
        key = key or f"0x{next(_node_keys):040x}"
        tx = registry.registerNode(
            class_id or h100,
            gpu_count,
            b32("eu-west"),
            ACQUISITION_COST,
            ACQUIRED_AT,
            key,
            {"from": owner or operator},
        )
        return tx.return_value

    return _register


@pytest.fixture(scope="module")
def fund(stablecoin, admin):
    """Factory: gives `who` `amount` stablecoin from a module-wide treasury and
    approves `spender` (if given) for everything."""
    treasury = 10**9 * 10**6
    stablecoin.configureFaucet(treasury, 3600, {"from": admin})
    stablecoin.drip(admin, {"from": admin})

    def _fund(who, amount, spender=None):
        stablecoin.transfer(who, amount, {"from": admin})
        if spender is not None:
            stablecoin.approve(spender, 2**256 - 1, {"from": who})

    return _fund


@pytest.fixture(scope="module")
def pool_gate(system, registry, h100, operator):
    """What every RevenuePool needs: the deployed settlement as its risk gate, and a node for
    it to finance. 1B USD of GPUs bought now: rounds in these tests stay far below the LTV
    cap (tests of the cap itself use a node worth little)."""
    from brownie import chain

    from tests.contracts.pool_helpers import Gate

    tx = registry.registerNode(
        h100,
        8,
        b32("eu-west"),
        10**9 * 10**6,
        chain[-1].timestamp,
        f"0x{next(_node_keys):040x}",
        {"from": operator},
    )
    return Gate(system.settlement, tx.return_value)


@pytest.fixture(scope="module")
def capacity(system):
    return system.capacity


@pytest.fixture(scope="module")
def hourly_hub(registry, admin):
    """OracleHub with 30-minute epochs, genesis at deploy time (not aligned to any window):
    an hourly delivery window then counts exactly two epochs."""
    from brownie import OracleHub, chain

    from tests.oracle.hub_helpers import ORACLE_KEYS, address_of

    oracles = [address_of(key) for key in ORACLE_KEYS]
    return OracleHub.deploy(
        admin, registry, chain[-1].timestamp, 1_800, oracles, 2, {"from": admin}
    )


@pytest.fixture(scope="module")
def hourly_capacity(admin, registry, hourly_hub, stablecoin, forwarder):
    """A CapacityToken with hourly windows on `hourly_hub`, wired like the deployed one, so a
    redeem → deliver → settle path needs two attested epochs rather than a day's worth."""
    from tests.contracts.capacity_helpers import HOUR, deploy_capacity_token

    capacity = deploy_capacity_token(admin, registry, hourly_hub, stablecoin, forwarder, HOUR)
    registry.grantRole(registry.BOND_LOCKER_ROLE(), capacity, {"from": admin})
    return capacity
