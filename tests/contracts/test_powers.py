"""The table of powers (scripts/powers.py) against the chain: after the hand-over to the
timelock, every role of every contract (the timelock's own, and node pools deployed before
and after the hand-over) is held by exactly whom the table says (read from the contracts'
own RoleGranted/RoleRevoked events), each role holder is refused everything else with the
contract's error, the timelock makes a change wait its delay, and the README shows the same
table."""

from pathlib import Path

import brownie
import pytest
from brownie import ZERO_ADDRESS, RevenuePool, chain, web3
from eth_abi import encode

from scripts.deploy import (
    DeployConfig,
    PoolTerms,
    _relayer_address,
    deploy_node_pool,
    deploy_system,
    hand_over_to_timelock,
    node_pool_args,
    node_pool_bindings,
)
from scripts.powers import (
    ANYONE,
    DEFAULT_ADMIN,
    GUARDIAN,
    NOBODY,
    POOL,
    POWERS,
    PROPOSERS,
    RELAYER,
    TIMELOCK,
    markdown,
)
from tests.support.errors import bytes_arg, err

DELAY = 600
UNAUTHORIZED = web3.keccak(text="AccessControlUnauthorizedAccount(address,bytes32)")[:4]
ROOT = Path(__file__).resolve().parents[2]


def unauthorized(account, role_hex):
    return err("AccessControlUnauthorizedAccount", account, bytes_arg(role_hex))


TERMS = PoolTerms(target_assets=10_000 * 10**6)


def _register_node(system, operator, key: int) -> int:
    tx = system.registry.registerNode(
        system.class_ids["H100-SXM-80GB"],
        8,
        b"eu-west".ljust(32, b"\0"),
        300_000 * 10**6,
        chain[-1].timestamp,
        f"0x{key:040x}",
        {"from": operator},
    )
    return tx.return_value


@pytest.fixture(scope="module")
def handed(admin, operator, accounts):
    """A fresh deployment with one node pool, handed over to a timelock; accounts[10]
    proposes, [11] guards."""
    proposer, guardian = accounts[10], accounts[11]
    start = web3.eth.block_number
    system = deploy_system(admin, DeployConfig.for_tests())
    node_id = _register_node(system, operator, 0xA11CE)
    early_pool = deploy_node_pool(system, admin, node_id=node_id, operator=operator, terms=TERMS)
    timelock = hand_over_to_timelock(
        system,
        admin,
        delay_seconds=DELAY,
        proposers=[proposer.address],
        guardian=guardian.address,
        pools=[early_pool.address],
    )
    names = {
        TIMELOCK: timelock.address,
        GUARDIAN: guardian.address,
        RELAYER: _relayer_address(DeployConfig.for_tests()),
        PROPOSERS: proposer.address,
        ANYONE: ZERO_ADDRESS,
        "CapacityToken": system.capacity.address,
        "EpochSettlement": system.settlement.address,
        "PoolLoans": system.loans.address,
        "ChallengeJail": system.jail.address,
        "deployer": admin.address,
    }
    return system, timelock, proposer, guardian, names, start, early_pool


def _roles_of(contract):
    """Every role the contract declares (its *_ROLE constants) and DEFAULT_ADMIN_ROLE."""
    roles = {DEFAULT_ADMIN: "0x" + "00" * 32}
    for item in contract.abi:
        name = item.get("name", "")
        if item.get("type") == "function" and name.endswith("_ROLE") and not item["inputs"]:
            roles[name] = getattr(contract, name)().hex()
    return {
        name: (value if value.startswith("0x") else "0x" + value) for name, value in roles.items()
    }


def _holders(contract, role_hex: str, start: int) -> set[str]:
    """Who holds ``role_hex`` now, from the contract's own grant and revoke events."""
    held: set[str] = set()
    granted = web3.keccak(text="RoleGranted(bytes32,address,address)")
    revoked = web3.keccak(text="RoleRevoked(bytes32,address,address)")
    logs = web3.eth.get_logs(
        {
            "address": contract.address,
            "fromBlock": start,
            "toBlock": "latest",
            "topics": [[granted, revoked], bytes.fromhex(role_hex.removeprefix("0x"))],
        }
    )
    for log in sorted(logs, key=lambda x: (x["blockNumber"], x["logIndex"])):
        account = web3.to_checksum_address(log["topics"][2][-20:])
        if log["topics"][0] == granted:
            held.add(account)
        else:
            held.discard(account)
    return held


def test_readme_shows_the_published_table():
    assert markdown() in (ROOT / "README.md").read_text()


def _assert_roles_as_published(name, contract, names, start):
    """Every role ``contract`` declares is in the table, held by exactly its holders."""
    table = {(p.contract, p.role): p for p in POWERS}
    for role, role_hex in _roles_of(contract).items():
        power = table.get((name, role))
        assert power is not None, f"{name}.{role} is not in the table of powers"
        expected = {names[h] for h in power.holders if h != NOBODY}
        assert _holders(contract, role_hex, start) == expected, (name, role)
        for address in expected:  # and the chain agrees with the events
            assert contract.hasRole(role_hex, address), (name, role, address)
    # Nothing in the table is missing from the chain.
    for power in POWERS:
        if power.contract == name:
            assert power.role in _roles_of(contract), power


def test_every_role_is_held_by_whom_the_table_says(handed):
    system, _, _, _, names, start, early_pool = handed
    contracts = system.contracts()
    assert "GpucapTimelock" in contracts  # in the manifest: the indexer follows its schedule
    for name, contract in contracts.items():
        if name == "GpucapForwarder":
            continue  # no roles
        _assert_roles_as_published(name, contract, names, start)
    # A pool deployed (and bound) before the hand-over: its admin moved to the timelock.
    _assert_roles_as_published(POOL, early_pool, names, start)
    assert not early_pool.hasRole(b"\x00" * 32, names["deployer"])


def test_a_pool_deployed_after_the_hand_over_is_bound_through_the_timelock(handed, operator, admin):
    """The pool names the timelock its admin; its bindings (roles for the settlement and
    the guardian, EpochSettlement.setPool, the market listing) are one batch the proposer
    schedules and anyone executes once due. Then its roles are the table's."""
    system, timelock, proposer, _, names, _, _ = handed
    node_id = _register_node(system, operator, 0xB0B)
    start = web3.eth.block_number
    args = node_pool_args(
        system,
        node_id=node_id,
        operator=operator.address,
        admin=timelock.address,
        terms=TERMS,
        now=chain[-1].timestamp,
    )
    pool = RevenuePool.deploy(*args, {"from": operator})
    calls = node_pool_bindings(system, pool.address, node_id)
    assert [c.function for c in calls] == [
        "grantRole",
        "grantRole",
        "setPool",
        "grantRole",
        "setPoolListed",
    ]
    with brownie.reverts(unauthorized(admin, "0x" + "00" * 32)):  # the deployer: no more
        system.settlement.setPool(node_id, pool, {"from": admin})
    batch = ([c.to for c in calls], [0] * len(calls), [c.data for c in calls])
    salt = b"\x02" * 32
    timelock.scheduleBatch(*batch, b"\x00" * 32, salt, DELAY, {"from": proposer})
    with brownie.reverts():  # not due yet
        timelock.executeBatch(*batch, b"\x00" * 32, salt, {"from": operator})
    chain.sleep(DELAY + 1)
    chain.mine()
    timelock.executeBatch(*batch, b"\x00" * 32, salt, {"from": operator})
    assert system.settlement.poolOf(node_id) == pool.address
    assert system.market.isPoolListed(pool)
    _assert_roles_as_published(POOL, pool, names, start)


def _zero_args(fn_abi):
    def zero(t):
        if t.endswith("]"):
            return []
        if t == "address":
            return ZERO_ADDRESS
        if t == "bool":
            return False
        if t.startswith("bytes") and t != "bytes":
            return b"\x00" * int(t[5:])
        if t in ("bytes", "string"):
            return b"" if t == "bytes" else ""
        return 0

    return [zero(i["type"]) for i in fn_abi["inputs"]]


def _call_data(contract, function: str):
    fn_abi = next(i for i in contract.abi if i.get("name") == function)
    if any(i["type"].startswith("tuple") for i in fn_abi["inputs"]):
        return None
    selector = web3.keccak(text=f"{function}({','.join(i['type'] for i in fn_abi['inputs'])})")[:4]
    types = [i["type"] for i in fn_abi["inputs"]]
    return selector + encode(types, _zero_args(fn_abi))


def test_each_holder_is_refused_every_other_power(handed, admin):
    """The deployer (after the hand-over), the guardian and the keeper try every role-gated
    function they do not hold: each is refused with AccessControlUnauthorizedAccount."""
    system, _, _, guardian, names, _, early_pool = handed
    contracts = {**system.contracts(), POOL: early_pool}
    callers = [admin.address, guardian.address, names[RELAYER]]
    tried = 0
    for power in POWERS:
        if power.contract not in contracts or power.contract == "TestStablecoin":
            continue
        if ANYONE in power.holders:
            continue  # an open role: nobody is refused it
        contract = contracts[power.contract]
        role_hex = _roles_of(contract)[power.role]
        for caller in callers:
            if contract.hasRole(role_hex, caller):
                continue
            for function in power.functions:
                if function in ("grantRole", "revokeRole"):
                    data = contract.grantRole.encode_input(role_hex, caller)
                else:
                    data = _call_data(contract, function)
                    if data is None:
                        continue
                # grantRole is gated by the role's admin role (DEFAULT_ADMIN_ROLE here).
                needed = "0x" + "00" * 32 if function in ("grantRole", "revokeRole") else role_hex
                with pytest.raises(ValueError) as refused:
                    web3.eth.call({"from": caller, "to": contract.address, "data": data})
                expected = UNAUTHORIZED + encode(
                    ["address", "bytes32"], [caller, bytes.fromhex(needed.removeprefix("0x"))]
                )
                assert refused.value.args[0]["data"] == "0x" + expected.hex(), (
                    power.contract,
                    function,
                    caller,
                )
                tried += 1
    assert tried > 40


def test_the_timelock_makes_a_change_wait_its_delay(handed, admin):
    system, timelock, proposer, _, _, _, _ = handed
    registry = system.registry
    with brownie.reverts(unauthorized(admin, "0x" + "00" * 32)):
        registry.setUnbondingDelay(60, {"from": admin})
    data = registry.setUnbondingDelay.encode_input(60)
    salt = b"\x01" * 32
    tx = timelock.schedule(registry, 0, data, b"\x00" * 32, salt, DELAY, {"from": proposer})
    scheduled = tx.events["CallScheduled"]
    assert (scheduled["target"], scheduled["data"]) == (registry.address, data)
    op = timelock.hashOperation(registry, 0, data, b"\x00" * 32, salt)
    assert timelock.getTimestamp(op) == tx.timestamp + DELAY
    with brownie.reverts():
        timelock.execute(registry, 0, data, b"\x00" * 32, salt, {"from": admin})
    assert registry.unbondingDelay() == 3600
    chain.sleep(DELAY + 1)
    chain.mine()
    timelock.execute(registry, 0, data, b"\x00" * 32, salt, {"from": admin})  # anyone executes
    assert registry.unbondingDelay() == 60
