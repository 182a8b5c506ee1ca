"""tests/support/brownie_network.py's tuning keeps brownie's behaviour: the chain moves
work, and still warn when called on the RPC object directly (brownie warns on some of
its own calls too, e.g. chain.snapshot(): unchanged)."""

from __future__ import annotations

import sys

import pytest
from brownie import chain

# Looked up, not imported by name: brownie hashes the sources a test module imports
# from (to skip unchanged tests), and chokes on its own package's path.
rpc_module = sys.modules["brownie.network.rpc"]


def test_chain_moves_still_move_the_chain() -> None:
    height = chain.height
    stamp = chain[-1].timestamp
    chain.sleep(5)
    chain.mine()
    mined = chain[-1]
    assert (mined.number, mined.timestamp >= stamp + 5) == (height + 1, True)


def test_calling_the_rpc_object_directly_still_warns() -> None:
    rpc = rpc_module.Rpc()
    with pytest.warns(FutureWarning, match="rpc.sleep should not be called directly"):
        rpc.sleep(0)
    assert rpc_module.Rpc.sleep.__name__ == "sleep"
    # The check looks at the caller's frame only (not inspect.stack()).
    assert "inspect" not in rpc_module.Rpc.sleep.__code__.co_names


def test_the_chain_id_is_asked_once_and_nothing_else_is_cached() -> None:
    from brownie import web3

    sent: list[str] = []  # what reached the node (the cache sits before this)
    provider = web3.provider
    real = provider._make_request

    def counting(method, params):
        sent.append(method)
        return real(method, params)

    web3.eth.chain_id  # noqa: B018  (cached from here on)
    provider._make_request = counting
    try:
        for _ in range(3):
            assert web3.eth.chain_id == chain.id
            web3.eth.get_block("latest")
    finally:
        del provider._make_request
    assert sent.count("eth_chainId") == 0
    assert sent.count("eth_getBlockByNumber") == 3  # blocks are never cached
