"""Deploy gpucap on any EVM chain in one command:

    python -m scripts.deploy_to --rpc-url https://node.example --chain-id 8453 \\
        --keystore deployer.json --password-file deployer.pw \\
        --relayer-address 0x… --oracle-address 0x… --oracle-address 0x… \\
        --oracle-address 0x… --stablecoin-address 0x… --confirmations 3 \\
        --manifest deployments/base.json

It runs scripts/deploy.py's ``main`` (what ``brownie run scripts/deploy.py --network
NAME`` runs) with the network given by the options instead of an entry in
~/.brownie/network-config.yaml, and the options turned into the ``GPUCAP_*`` variables
deploy.py reads (``DeployConfig.from_env``, ``_deployer``, ``check_target``), so both
ways deploy the same system. Before the first transaction: the node must be chain
``--chain-id``, the deployer key comes from an encrypted keystore and is not one of
anvil's public dev keys, no power goes to a dev account, and off the dev chain
``--stablecoin-address`` is a token there (code, ``decimals()`` 6, ``symbol()``) that
gpucap uses: the test token is never deployed there. Fees are EIP-1559, from
the node (brownie's live settings: priority fee from ``eth_maxPriorityFeePerGas``, max
fee twice the base fee plus it; gas limits estimated, +10%). The manifest is written
once the last transaction is ``--confirmations`` blocks deep and every contract has
code. Exit status 2, with the reason, when it refuses.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import requests
import typer
from web3 import Web3

from gpucap import devchain
from scripts.deploy_checks import DeployRefused, check_chain_id, check_stablecoin, deployer_key

NETWORK_ID = "gpucap-deploy-target"
app = typer.Typer(add_completion=False, help=__doc__)


@app.command()
def deploy_to(
    rpc_url: Annotated[str, typer.Option(help="the chain's JSON-RPC endpoint")],
    chain_id: Annotated[int, typer.Option(help="the chain id the node must report")],
    keystore: Annotated[Path, typer.Option(help="the deployer's encrypted keystore")],
    manifest: Annotated[Path, typer.Option(help="where to write the deployment manifest")],
    password_file: Annotated[
        Path | None,
        typer.Option(help="keystore password file (else $GPUCAP_DEPLOYER_KEYSTORE_PASSWORD)"),
    ] = None,
    confirmations: Annotated[
        int, typer.Option(min=1, help="blocks on top of the last transaction before done")
    ] = 2,
    relayer_address: Annotated[
        str | None, typer.Option(help="the backend's relayer (gets SETTLER_ROLE)")
    ] = None,
    oracle_address: Annotated[
        list[str] | None, typer.Option(help="an OracleHub signer (repeat for each)")
    ] = None,
    oracle_quorum: Annotated[int | None, typer.Option(help="signatures per attestation")] = None,
    guardian_address: Annotated[
        str | None, typer.Option(help="holds the emergency pauses (default: the deployer)")
    ] = None,
    timelock_proposer: Annotated[
        list[str] | None,
        typer.Option(help="may schedule timelocked calls (repeat; default: the deployer)"),
    ] = None,
    timelock_delay_seconds: Annotated[
        int | None, typer.Option(help="the timelock's delay (default: 2 days)")
    ] = None,
    stablecoin_address: Annotated[
        str | None,
        typer.Option(help="the chain's stablecoin (required off the dev chain: 6 decimals)"),
    ] = None,
    market_fee_recipient: Annotated[
        str | None, typer.Option(help="receives the market's fees (default: the deployer)")
    ] = None,
) -> None:
    """Deploy the whole system on the chain at --rpc-url and write its manifest."""
    settings = {
        "GPUCAP_DEPLOY_PROFILE": "production",
        "GPUCAP_DEPLOY_CHAIN_ID": str(chain_id),
        "GPUCAP_DEPLOY_CONFIRMATIONS": str(confirmations),
        "GPUCAP_DEPLOYER_KEYSTORE": str(keystore),
        "GPUCAP_DEPLOYER_KEYSTORE_PASSWORD_FILE": str(password_file) if password_file else "",
        "GPUCAP_MANIFEST": str(manifest.resolve()),
        "GPUCAP_RELAYER_ADDRESS": relayer_address or "",
        "GPUCAP_ORACLE_ADDRESSES": ",".join(oracle_address or []),
        "GPUCAP_ORACLE_QUORUM": str(oracle_quorum or ""),
        "GPUCAP_GUARDIAN_ADDRESS": guardian_address or "",
        "GPUCAP_TIMELOCK_PROPOSERS": ",".join(timelock_proposer or []),
        "GPUCAP_TIMELOCK_DELAY_SECONDS": str(timelock_delay_seconds or ""),
        "GPUCAP_MARKET_FEE_RECIPIENT": market_fee_recipient or "",
        "GPUCAP_STABLECOIN_ADDRESS": stablecoin_address or "",
    }
    os.environ.pop("GPUCAP_DEPLOYER_KEY", None)  # the keystore, and only it
    os.environ.update(settings)
    try:
        # In a second, before brownie loads the project: scripts/deploy.py checks again.
        node_chain_id = _chain_id(rpc_url)
        check_chain_id(node_chain_id, rpc_url)
        deployer_key(node_chain_id)
        w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
        check_stablecoin(w3, stablecoin_address, node_chain_id)
        _connect(rpc_url, chain_id)

        from scripts.deploy import main

        main()
    except DeployRefused as exc:
        typer.echo(f"deploy refused: {exc}", err=True)
        raise typer.Exit(2) from None


def _chain_id(rpc_url: str) -> int:
    body = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
    try:
        return int(requests.post(rpc_url, json=body, timeout=30).json()["result"], 16)
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise DeployRefused(f"no chain id from the node at {rpc_url} ({exc})") from None


def _connect(rpc_url: str, chain_id: int) -> None:
    """brownie connected to ``rpc_url`` as a live network (its settings: EIP-1559 fees
    from the node, estimated gas), the project loaded as ``brownie run`` loads it."""
    os.environ["PATH"] = devchain.env_with_toolchain()["PATH"]
    os.environ.setdefault("SOLCX_BINARY_PATH", str(devchain.REPO_ROOT / ".toolchain" / "solcx"))
    from brownie import network, project
    from brownie._config import CONFIG

    # In memory only: nothing is written to ~/.brownie/network-config.yaml.
    CONFIG.networks[NETWORK_ID] = {
        "id": NETWORK_ID,
        "name": f"chain {chain_id}",
        "host": rpc_url,
        "chainid": chain_id,
        "timeout": 60,
    }
    _skip_brownie_deployment_records()
    loaded = project.load(devchain.REPO_ROOT, name="GpucapProject")
    loaded.load_config()
    loaded._add_to_main_namespace()  # `from brownie import CapacityToken`, as `brownie run` does
    network.connect(NETWORK_ID)


def _skip_brownie_deployment_records() -> None:
    """brownie records each contract deployed on a live network (build/deployments/ and a
    database under ~/.brownie); in brownie 1.22 both fail (a TypeError in
    ``_add_deployment``; int chain ids that ``map.json`` cannot sort beside its str keys),
    and in a background thread, so a contract's handle goes missing. The manifest
    scripts/deploy.py writes is the record, so brownie's are not made."""
    from brownie.network import contract

    contract._add_deployment = lambda *args, **kwargs: None
    contract.ProjectContract._deployment_path = lambda self: None  # no file, no map entry


if __name__ == "__main__":
    app()
