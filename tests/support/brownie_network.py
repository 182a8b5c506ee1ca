"""Point brownie's ``development`` network at a private anvil.

Runs at import, from tests/conftest.py, which pytest loads before brownie
connects (brownie connects at the end of collection). The change is in memory
only: ~/.brownie/network-config.yaml is left as it is.
"""

import os

from brownie._config import CONFIG

from gpucap import devchain

ANVIL_PORT = devchain.free_port()
# Under pytest-xdist (``make test`` runs two workers) brownie's worker runner adds the
# worker's number to the configured port (PytestBrownieXdistRunner); configure it that
# much lower so every worker's node listens on the free port it picked, ANVIL_PORT.
_XDIST_OFFSET = int(
    "".join(c for c in os.environ.get("PYTEST_XDIST_WORKER", "") if c.isdigit()) or 0
)

_dev = CONFIG.networks["development"]
# brownie picks its node backend by the command's name, so it must stay "anvil":
# put the checkout's anvil first on PATH instead of naming its full path.
os.environ["PATH"] = devchain.env_with_toolchain()["PATH"]
_dev["cmd"] = "anvil"
_dev["cmd_settings"] = {
    **(_dev.get("cmd_settings") or {}),
    "port": ANVIL_PORT - _XDIST_OFFSET,
    "evm_version": devchain.HARDFORK,
    "chain_id": devchain.CHAIN_ID,
    "accounts": 20,
    "base_fee": 0,
}


def tolerate_receipt_race() -> None:
    """Mined transactions are not failed as dropped in anvil's receipt window.

    See scripts/receipt_race.py (foundry-rs/foundry#10944)."""
    from scripts import receipt_race

    receipt_race.install()


def cheap_rpc_caller_check() -> None:
    """brownie's ``chain.sleep``/``mine``/``snapshot``/``revert`` check their caller with
    ``inspect.stack()``, which builds a frame record, source line included, for every
    frame on the stack (~60-100 under pytest and hypothesis) to look at one: a fifth of
    the CPU of the contract tests that move time (py-spy: ``end_epoch`` -> ``chain.sleep``
    -> ``inspect.stack``), and every fn_isolation snapshot and revert pays it too. The
    same check (the caller's ``self`` must be brownie's chain, else brownie's warning),
    on the caller's frame only."""
    import sys
    import warnings

    import brownie.network  # noqa: F401  (loads brownie.network.rpc)

    # The module: ``brownie.network.rpc`` as an attribute is the Rpc instance.
    rpc_module = sys.modules["brownie.network.rpc"]

    for name in ("sleep", "mine", "snapshot", "revert"):
        guarded = getattr(rpc_module.Rpc, name)
        cells = [c.cell_contents for c in guarded.__closure__ or ()]
        fns = [f for f in cells if callable(f) and getattr(f, "__name__", None) == name]
        if len(fns) != 1:  # not brownie's internal() wrapper (a brownie upgrade): leave it
            continue

        def checked(*args, _fn=fns[0], **kwargs):
            if sys._getframe(1).f_locals.get("self", None) != rpc_module.chain:
                warnings.warn(
                    f"rpc.{_fn.__name__} should not be called directly, "
                    f"use chain.{_fn.__name__} instead",
                    FutureWarning,
                    stacklevel=2,
                )
            return _fn(*args, **kwargs)

        checked.__name__ = checked.__qualname__ = name
        setattr(rpc_module.Rpc, name, checked)


def cache_chain_id() -> None:
    """web3's validation middleware asks the node for its chain id before every
    transaction and call it validates (``build_method_validators`` -> ``eth_chainId``):
    a tenth of the contract tests' CPU, one round trip each. A test anvil's chain id never
    changes (``anvil_reset`` and snapshots keep it), so brownie's provider caches that
    one answer; nothing else is cached (block reads would go stale across reverts)."""
    from brownie import network, web3
    from web3.types import RPCEndpoint

    if not network.is_connected():
        return
    provider = web3.provider
    if not hasattr(provider, "cacheable_requests"):  # not one of web3's providers
        return
    provider.cacheable_requests = (RPCEndpoint("eth_chainId"),)
    provider.cache_allowed_requests = True


def skip_proxy_lookup() -> None:
    """Stops requests looking up proxy settings in the environment on every RPC call.

    requests merges ``*_proxy``/``no_proxy`` from ``os.environ`` into each request
    (``trust_env``): ~0.45 ms of Python a call here, a sixth of a state machine's run
    time. The node is a private anvil on localhost, which no proxy may sit in front
    of, so brownie's session (main thread: its receipt thread keeps its own) skips it.
    """
    from brownie import network, web3

    if not network.is_connected():
        return
    provider = web3.provider
    manager = getattr(provider, "_request_session_manager", None)
    if manager is None:  # not web3's HTTPProvider: nothing to tune
        return
    manager.cache_and_return_session(provider.endpoint_uri).trust_env = False
