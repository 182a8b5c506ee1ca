"""What a deployment must satisfy before its first transaction, without brownie.

scripts/deploy.py runs these inside brownie (``brownie run``); ``python -m
scripts.deploy_to`` runs them first, before it loads the project, so a wrong chain, a
wrong password, a dev key or a stablecoin that is not one is refused in a second, and
then once more through deploy.py. Settings come from the same ``GPUCAP_*`` variables
deploy.py reads.
"""

from __future__ import annotations

import os
from pathlib import Path

from web3 import Web3
from web3.exceptions import Web3Exception

from gpucap import devchain, keystore

# Every amount in gpucap (prices, bonds, the risk model's limits) is in 6-decimal units.
STABLECOIN_DECIMALS = 6
_METADATA_ABI = [
    {
        "type": "function",
        "name": name,
        "inputs": [],
        "outputs": [{"type": kind}],
        "stateMutability": "view",
    }
    for name, kind in (("decimals", "uint8"), ("symbol", "string"))
]


class DeployRefused(RuntimeError):
    """The deployment would not be what was asked for (another chain, a dev key, a missing
    key); nothing was sent."""


def check_chain_id(node_chain_id: int, url: str) -> None:
    """The node is the chain $GPUCAP_DEPLOY_CHAIN_ID names (when set)."""
    expected = os.environ.get("GPUCAP_DEPLOY_CHAIN_ID")
    if expected and int(expected) != node_chain_id:
        raise DeployRefused(
            f"the node at {url} is chain {node_chain_id}, not chain {int(expected)} "
            "(GPUCAP_DEPLOY_CHAIN_ID): nothing was sent"
        )


def deployer_key(chain_id: int) -> str | None:
    """The deployer's key: from the encrypted keystore $GPUCAP_DEPLOYER_KEYSTORE (password
    from the file $GPUCAP_DEPLOYER_KEYSTORE_PASSWORD_FILE, or
    $GPUCAP_DEPLOYER_KEYSTORE_PASSWORD), or the plain $GPUCAP_DEPLOYER_KEY; None when
    neither is set. Off the dev chain, anvil's well-known dev keys are refused."""
    path, plain = os.environ.get("GPUCAP_DEPLOYER_KEYSTORE"), os.environ.get("GPUCAP_DEPLOYER_KEY")
    if path and plain:
        raise DeployRefused("set either GPUCAP_DEPLOYER_KEYSTORE or GPUCAP_DEPLOYER_KEY, not both")
    key = plain or None
    try:
        if path:
            password_file = os.environ.get("GPUCAP_DEPLOYER_KEYSTORE_PASSWORD_FILE")
            password = keystore.read_password(
                password=os.environ.get("GPUCAP_DEPLOYER_KEYSTORE_PASSWORD"),
                password_file=Path(password_file) if password_file else None,
                needed_by=f"the deployer keystore {path}",
            )
            key = keystore.decrypt(Path(path), password)
        if key and chain_id != devchain.CHAIN_ID:
            keystore.refuse_dev_key(key, "the deployer key")
    except keystore.KeystoreError as exc:
        raise DeployRefused(str(exc)) from None
    return key


def refuse_dev_holders(holders: dict[str, str], chain_id: int) -> None:
    """Off the dev chain, no power goes to one of anvil's public dev accounts.
    ``holders``: address by what it holds (``DeployConfig.holders``)."""
    if chain_id == devchain.CHAIN_ID:
        return
    for what, address in holders.items():
        if (index := keystore.dev_account(address)) is not None:
            raise DeployRefused(
                f"the {what} {address} is anvil's well-known dev account {index}:"
                " refused off the dev chain (anyone holds its key)"
            )


def check_stablecoin(w3: Web3, address: str | None, chain_id: int) -> str | None:
    """Off the dev chain gpucap runs on a stablecoin the chain already has (the test token
    is deployed on the dev chain only): ``address`` ($GPUCAP_STABLECOIN_ADDRESS) must hold
    code and answer ``decimals()`` (6) and ``symbol()``. Returns the symbol; None on the
    dev chain with no address given (TestStablecoin is deployed there)."""
    if not address:
        if chain_id == devchain.CHAIN_ID:
            return None
        raise DeployRefused(
            f"chain {chain_id} is not the dev chain: give its stablecoin's address "
            "(--stablecoin-address, $GPUCAP_STABLECOIN_ADDRESS); the test token is deployed "
            "on the dev chain only"
        )
    if not Web3.is_address(address):
        raise DeployRefused(f"the stablecoin address {address!r} is not an address")
    token = w3.eth.contract(address=Web3.to_checksum_address(address), abi=_METADATA_ABI)
    if not w3.eth.get_code(token.address):
        raise DeployRefused(f"the stablecoin {address} has no code on chain {chain_id}")
    try:
        decimals = token.functions.decimals().call()
        symbol = str(token.functions.symbol().call())
    except (Web3Exception, ValueError, OverflowError) as exc:
        raise DeployRefused(
            f"the stablecoin {address} does not answer decimals() and symbol() "
            f"like an ERC-20 ({type(exc).__name__}: {exc})"
        ) from None
    if decimals != STABLECOIN_DECIMALS:
        raise DeployRefused(
            f"the stablecoin {address} ({symbol}) has {decimals} decimals; gpucap's amounts "
            f"are in {STABLECOIN_DECIMALS}-decimal units"
        )
    return symbol
