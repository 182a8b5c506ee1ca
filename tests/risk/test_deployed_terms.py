"""The DSCR window a risk run uses is the deployed settlement's (an immutable no event
carries), read from the chain the API talks to: a chain deployed with another window is
projected with its own; where the chain cannot say, the run keeps the deployment default
and says so (terms_source ``deploy_default``)."""

from __future__ import annotations

import dataclasses

import pytest

from backend.app.deps import ChainProvider
from backend.app.routers.risk import _deployed_terms
from backend.config import Settings
from backend.risk import terms as T
from backend.risk.indexed import deployed_terms
from backend.services.chain import Chain, JsonRpc, make_web3
from backend.services.errors import ChainUnavailable
from backend.services.rpc_endpoints import RpcEndpoints
from gpucap import devchain
from scripts.deploy import DeployConfig, deploy_system, write_manifest
from tests.support.brownie_network import ANVIL_PORT

RPC = f"http://127.0.0.1:{ANVIL_PORT}"


@pytest.fixture(scope="module")
def manifest_48(admin, tmp_path_factory):
    """A deployment whose window is neither the tests' (24) nor production's (720)."""
    config = dataclasses.replace(DeployConfig.for_tests(), settlement_dscr_window_epochs=48)
    system = deploy_system(admin, config)
    assert int(system.settlement.dscrWindowEpochs()) == 48
    return write_manifest(system, tmp_path_factory.mktemp("window48") / "manifest.json")


def test_each_deployment_is_read_with_its_own_window(live_deployment, manifest_48) -> None:
    tests_chain = Chain.connect(RPC, str(live_deployment.manifest_path), 5.0)
    other_chain = Chain.connect(RPC, str(manifest_48), 5.0)
    assert deployed_terms(tests_chain) == {"dscr_window_epochs": 24}
    assert deployed_terms(other_chain) == {"dscr_window_epochs": 48}
    assert T.DSCR_WINDOW_EPOCHS == 720  # neither is the default


def test_the_window_is_read_once_per_chain(manifest_48) -> None:
    chain = Chain.connect(RPC, str(manifest_48), 5.0)
    assert deployed_terms(chain) == {"dscr_window_epochs": 48}
    # The same Chain's cache over a node that answers nothing (and no contract built for
    # the live one): the immutable is still known, nothing is asked.
    down = RpcEndpoints(f"http://127.0.0.1:{devchain.free_port()}")
    cut_off = dataclasses.replace(
        chain, w3=make_web3(down, 1.0), rpc=JsonRpc(down, 1.0), _contracts={}
    )
    with pytest.raises(ChainUnavailable):
        cut_off.check_chain_id()
    assert deployed_terms(cut_off) == {"dscr_window_epochs": 48}


def test_unknown_window_keeps_the_default(manifest_48, tmp_path) -> None:
    down = f"http://127.0.0.1:{devchain.free_port()}"
    with pytest.raises(ChainUnavailable):
        deployed_terms(Chain.connect(down, str(manifest_48), 1.0))
    # Through the route's reader: nothing from the chain, so terms_source says deploy_default.
    unreachable = Settings(rpc_url=down, manifest_path=manifest_48, rpc_timeout_seconds=1.0)
    assert _deployed_terms(ChainProvider(unreachable)) == {}
    no_manifest = Settings(rpc_url=RPC, manifest_path=tmp_path / "none.json")
    assert _deployed_terms(ChainProvider(no_manifest)) == {}
