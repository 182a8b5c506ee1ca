"""Test catalogue shared by every test group.

brownie launches the chain: before it connects (at the end of collection), its
``development`` network is pointed at the checkout's anvil on a free port with
the hardfork pinned beside ``evm_version``, so tests never touch a node or port
someone else uses. Nothing is written to ~/.brownie's network config.
"""

from __future__ import annotations

import gc

import pytest

# Imported for its effect, before brownie connects. (brownie hashes the source
# of every module a conftest imports from inside the project, and the project's
# .venv holds compiled brownie modules: so brownie internals are only touched
# from this helper module, never imported here directly.)
import tests.support.brownie_network  # noqa: F401
import tests.support.profiles  # noqa: F401  (hypothesis profiles: $GPUCAP_TEST_PROFILE)
from tests.support.schedule import file_rank


def pytest_report_header(config: pytest.Config) -> str:
    """One line: whether the backend tests also run on PostgreSQL + redis-server."""
    from tests.support.backends import POSTGRES_ADMIN, REDIS_SERVER, servers_unreachable

    why = servers_unreachable()
    if why is None:
        return f"backend back ends: embedded and servers ({POSTGRES_ADMIN}, {REDIS_SERVER})"
    return f"backend back ends: embedded only; {why}"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first (tests/support/schedule.py); each file's tests stay together
    and in their order (the sort is stable), so module fixtures are set up once."""
    items.sort(key=lambda item: file_rank(item.nodeid))


@pytest.fixture(scope="session", autouse=True)
def _brownie_session_tuning():
    """brownie's RPC session skips the per-call proxy lookup (see skip_proxy_lookup), asks
    the chain id once (see cache_chain_id), its chain moves check their caller cheaply
    (see cheap_rpc_caller_check), and its confirmation wait rides out anvil's receipt
    race (see tolerate_receipt_race)."""
    tests.support.brownie_network.skip_proxy_lookup()
    tests.support.brownie_network.cache_chain_id()
    tests.support.brownie_network.cheap_rpc_caller_check()
    tests.support.brownie_network.tolerate_receipt_race()


# ---------------------------------------------------------------------------
# Accounts by role (anvil's pre-funded development accounts)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def admin(accounts):
    return accounts[0]


@pytest.fixture(scope="session")
def operator(accounts):
    return accounts[1]


@pytest.fixture(scope="session")
def operator2(accounts):
    return accounts[2]


@pytest.fixture(scope="session")
def buyer(accounts):
    return accounts[3]


@pytest.fixture(scope="session")
def staker(accounts):
    return accounts[4]


@pytest.fixture(scope="session")
def stranger(accounts):
    return accounts[5]


@pytest.fixture(scope="session")
def oracles(accounts):
    """Three oracle signers: accounts 6, 7, 8."""
    return [accounts[6], accounts[7], accounts[8]]


@pytest.fixture(scope="session")
def relayer(accounts):
    """The backend's relayer key (account 9); its private key is devchain.dev_private_key(9)."""
    return accounts[9]


# ---------------------------------------------------------------------------
# A deployed system for tests that run off-chain parts (backend, oracle)
# against the chain. Such tests must NOT use fn_isolation: their worker
# processes act on the chain while the test runs, and a snapshot revert would
# pull state from under them.
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live_deployment(admin, tmp_path_factory):
    """Deploys the system once per module; yields (System, manifest_path, rpc_url)."""
    from scripts.deploy import DeployConfig, deploy_system, write_manifest
    from tests.support.brownie_network import ANVIL_PORT

    system = deploy_system(admin, DeployConfig.for_tests())
    manifest = write_manifest(system, tmp_path_factory.mktemp("deployment") / "manifest.json")
    return LiveDeployment(
        system=system, manifest_path=manifest, rpc_url=f"http://127.0.0.1:{ANVIL_PORT}"
    )


class LiveDeployment:
    def __init__(self, system, manifest_path, rpc_url):
        self.system = system
        self.manifest_path = manifest_path
        self.rpc_url = rpc_url


def pytest_collection_finish(session: pytest.Session) -> None:
    """Freeze everything alive after collection out of the garbage collector's scans.

    brownie reverts the chain after every test (fn_isolation) and each revert runs a full
    ``gc.collect()`` (``brownie.network.state._notify_registry``) to drop dead contract
    objects before notifying the live ones. A full collection walks every tracked object:
    web3, brownie, hypothesis, FastAPI/pydantic models, every compiled ABI, every test
    function: about 0.2 s per test here, most of a contract test's time (measured: the
    node registry's 93 tests 42.6 s -> 13.7 s). Objects frozen now are the imports and
    the collected tests, alive until the worker exits anyway; what tests create later
    (deployed contracts included) is still collected as before."""
    gc.collect()
    gc.freeze()
