"""The operator/wallet CLI (``python -m gpucap``) against the real API, worker and chain."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from brownie import chain

from gpucap import devchain
from tests.backend.backend_helpers import ROOT, Stack, wait_for

USD = 10**6
WALLET_INDEX = 4  # tests/conftest.py `staker`: tUSD from the admin, no approvals


def cli(
    stack: Stack,
    *args: str,
    api: str | None = None,
    rpc_url: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gpucap",
            "--api",
            api or stack.api_url,
            "--manifest",
            str(stack.deployment.manifest_path),
            "--rpc-url",
            rpc_url or stack.deployment.rpc_url,
            *args,
        ],
        # COLUMNS: usage errors' boxes stay one line a message.
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def offer(stack: Stack, admin, operator, staker):
    s = stack.deployment.system
    h100 = s.class_ids["H100-SXM-80GB"]
    s.stablecoin.configureFaucet(10**6 * USD, 1, {"from": admin})
    for who in (admin, operator):
        s.stablecoin.drip(who, {"from": who})
    s.stablecoin.transfer(staker, 50 * USD, {"from": admin})
    node = s.registry.registerNode(
        h100,
        8,
        b"ap-south".ljust(32, b"\0"),
        240_000 * USD,
        chain[-1].timestamp - 3_600,
        "0x" + "77" * 20,
        {"from": operator},
    ).events["NodeRegistered"]["nodeId"]
    s.stablecoin.approve(s.registry, 2**256 - 1, {"from": operator})
    s.registry.depositBond(node, 5_000 * USD, {"from": operator})
    window = s.capacity.windowSeconds()
    token = s.capacity.tokenIdFor(h100, (chain[-1].timestamp // window + 2) * window)
    offer_id = s.capacity.publishOffer(node, token, 50, 3 * USD, {"from": operator}).return_value
    wait_for(
        lambda: stack.get(f"/api/v1/offers/{offer_id}").status_code == 200, 30, "offer indexed"
    )
    return {"id": offer_id, "token": token, "node": node, "system": s}


def test_buy_then_portfolio(stack: Stack, offer, staker) -> None:
    done = cli(stack, "buy", str(offer["id"]), "4", "--dev-account", str(WALLET_INDEX))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "confirmed" in done.stdout
    assert offer["system"].capacity.balanceOf(staker, offer["token"]) == 4

    def holdings():
        shown = cli(stack, "--json", "portfolio", staker.address)
        assert shown.returncode == 0, shown.stderr
        return json.loads(shown.stdout)["capacity"]

    held = wait_for(holdings, 30, "the purchase in the portfolio")
    assert [(h["token_id"], h["amount"]) for h in held] == [(str(offer["token"]), 4)]


def test_signing_nonces_carry_the_chain_time_deadlines_count_from(stack: Stack, staker) -> None:
    before = chain[-1].timestamp
    got = stack.get(f"/api/v1/accounts/{staker.address}/nonces").json()
    assert before <= got["chain_time"] <= chain[-1].timestamp
    assert got["chain_id"] == chain.id and got["forwarder"] >= 0


def test_rejection_exits_2_with_the_contract_error(stack: Stack, offer) -> None:
    too_many = cli(stack, "buy", str(offer["id"]), "40", "--dev-account", str(WALLET_INDEX))
    assert too_many.returncode == 2
    assert "ERC20InsufficientBalance" in too_many.stderr


def test_reads_render(stack: Stack, offer) -> None:
    listed = cli(stack, "--json", "offers")
    assert listed.returncode == 0, listed.stderr
    assert offer["id"] in [o["offer_id"] for o in json.loads(listed.stdout)]
    table = cli(stack, "nodes")
    assert table.returncode == 0 and "ap-south" in table.stdout


def test_no_wallet_is_a_usage_error(stack: Stack, offer) -> None:
    env_free = cli(stack, "buy", str(offer["id"]), "1")
    assert env_free.returncode == 2
    assert "no wallet" in env_free.stderr


OPERATOR2_INDEX = 2  # tests/conftest.py `operator2`


def test_operator_registers_and_bonds_a_node(stack: Stack, offer, admin, operator2) -> None:
    s = offer["system"]
    s.stablecoin.transfer(operator2, 300 * USD, {"from": admin})
    key = "0x" + "78" * 20
    registered = cli(
        stack,
        "register-node",
        "A100-SXM-80GB",
        "4",
        "eu-north",
        "--cost",
        "60000",
        "--node-key",
        key,
        "--acquired-days-ago",
        "30",
        "--dev-account",
        str(OPERATOR2_INDEX),
    )
    assert registered.returncode == 0, registered.stdout + registered.stderr
    node_id = s.registry.nodeIdByKey(key)
    assert s.registry.node(node_id)[0] == operator2.address  # the signer, not the relayer
    bonded = cli(stack, "bond", str(node_id), "250", "--dev-account", str(OPERATOR2_INDEX))
    assert bonded.returncode == 0, bonded.stdout + bonded.stderr
    assert s.registry.bondOf(node_id)[0] == 250 * USD
    # Same validation as the API: an unknown class is refused before anything is signed,
    # a duplicate node key by the contract, through the API's simulation.
    unknown = cli(stack, "register-node", "Z9", "1", "x", "--cost", "1", "--node-key", key,
                  "--dev-account", str(OPERATOR2_INDEX))  # fmt: skip
    assert unknown.returncode == 2 and "unknown GPU class" in unknown.stderr
    again = cli(stack, "register-node", "A100-SXM-80GB", "4", "eu-north", "--cost", "60000",
                "--node-key", key, "--dev-account", str(OPERATOR2_INDEX))  # fmt: skip
    assert again.returncode == 2 and "rejected" in again.stderr


def test_operator_exit_is_refused_while_the_node_owes_and_then_withdraws(
    stack: Stack, offer, admin, operator2
) -> None:
    """exit-node and withdraw-bond, relayed like every capacity action: the contract's own
    error reaches the operator while the node owes anything."""
    s = offer["system"]
    s.stablecoin.transfer(operator2, 100 * USD, {"from": admin})
    key = "0x" + "79" * 20
    node = s.registry.registerNode(
        s.class_ids["A100-SXM-80GB"], 4, b"eu-north".ljust(32, b"\0"), 60_000 * USD,
        chain[-1].timestamp - 3_600, key, {"from": operator2},
    ).events["NodeRegistered"]["nodeId"]  # fmt: skip
    s.stablecoin.approve(s.registry, 2**256 - 1, {"from": operator2})
    s.registry.depositBond(node, 100 * USD, {"from": operator2})
    window = s.capacity.windowSeconds()
    token = s.capacity.tokenIdFor(
        s.class_ids["A100-SXM-80GB"], (chain[-1].timestamp // window + 2) * window
    )
    offer_id = s.capacity.publishOffer(node, token, 3, USD, {"from": operator2}).return_value
    as_op = ("--dev-account", str(OPERATOR2_INDEX))
    owed = cli(stack, "exit-node", str(node), *as_op)
    assert owed.returncode == 2, owed.stdout + owed.stderr
    assert "RegistryBondLocked" in owed.stderr
    s.capacity.cancelOffer(offer_id, {"from": operator2})
    left = cli(stack, "exit-node", str(node), *as_op)
    assert left.returncode == 0, left.stdout + left.stderr
    assert s.registry.nodeStatus(node) == 3  # Exiting
    early = cli(stack, "withdraw-bond", str(node), *as_op)
    assert early.returncode == 2 and "RegistryUnbonding" in early.stderr
    chain.sleep(s.registry.unbondingDelay() + 1)
    chain.mine()
    before = s.stablecoin.balanceOf(operator2)
    out = cli(stack, "withdraw-bond", str(node), *as_op)
    assert out.returncode == 0, out.stdout + out.stderr
    assert s.stablecoin.balanceOf(operator2) - before == 100 * USD
    assert s.registry.nodeStatus(node) == 4  # Exited


def test_operator_binds_and_unbinds_gpus(stack: Stack, offer, operator2) -> None:
    """bind-gpus / unbind-gpus, relayed: a GPU bound to another node is refused with the
    contract's error."""
    from gpucap.gpu_ids import gpu_id

    s = offer["system"]
    node = s.registry.registerNode(
        s.class_ids["A100-SXM-80GB"], 4, b"eu-north".ljust(32, b"\0"), 60_000 * USD,
        chain[-1].timestamp - 3_600, "0x" + "7a" * 20, {"from": operator2},
    ).events["NodeRegistered"]["nodeId"]  # fmt: skip
    gpus = [f"GPU-0000cafe-0000-4000-8000-00000000000{i}" for i in range(2)]
    as_op = ("--dev-account", str(OPERATOR2_INDEX))
    out = cli(stack, "bind-gpus", str(node), *gpus, *as_op)
    assert out.returncode == 0, out.stdout + out.stderr
    assert [s.registry.gpuNode(gpu_id(u)) for u in gpus] == [node, node]
    taken = cli(stack, "bind-gpus", str(offer["node"]), gpus[0], "--dev-account", "1")
    assert taken.returncode == 2 and "RegistryGpuAlreadyBound" in taken.stderr
    out = cli(stack, "unbind-gpus", str(node), gpus[1], *as_op)
    assert out.returncode == 0, out.stdout + out.stderr
    assert s.registry.gpuNode(gpu_id(gpus[1])) == 0 and s.registry.boundGpuCount(node) == 1


def test_pool_deposit_stake_and_list(stack: Stack, offer, admin, operator, staker) -> None:
    from scripts.deploy import PoolTerms, deploy_node_pool

    s = offer["system"]
    pool = deploy_node_pool(
        s, admin, node_id=offer["node"], operator=operator.address,
        terms=PoolTerms(target_assets=10 * USD),
    )  # fmt: skip
    assert s.settlement.poolOf(offer["node"]) == pool.address
    nothing = cli(stack, "pool", "stake", str(offer["node"]), "--dev-account", str(WALLET_INDEX))
    assert nothing.returncode == 2 and "PoolRoundNotSucceeded" in nothing.stderr
    deposited = cli(
        stack, "pool", "deposit", str(offer["node"]), "10", "--dev-account", str(WALLET_INDEX)
    )
    assert deposited.returncode == 0, deposited.stdout + deposited.stderr
    staked = cli(stack, "pool", "stake", str(offer["node"]), "--dev-account", str(WALLET_INDEX))
    assert staked.returncode == 0, staked.stdout + staked.stderr
    assert pool.stakeOf(staker)[1] == 10 * 10**18  # warming up until the next full epoch

    def listed():
        shown = cli(stack, "--json", "pool", "list", staker.address)
        assert shown.returncode == 0, shown.stderr
        rows = [r for r in json.loads(shown.stdout) if r["pool"] == pool.address]
        return rows if rows and rows[0]["staked"] else None

    [row] = wait_for(listed, 30, "the stake in the pool index")
    assert (row["round"], row["raised"], row["staked"]) == ("succeeded", 10 * USD, 10 * 10**18)


def _one_clear_line(done: subprocess.CompletedProcess[str], *expected: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr and 'File "' not in done.stderr, done.stderr
    for text in expected:
        assert text in done.stderr, done.stderr


def test_an_api_that_is_down_is_a_message_not_a_traceback(stack: Stack, offer) -> None:
    dead = f"http://127.0.0.1:{devchain.free_port()}"
    wallet = ("--dev-account", str(WALLET_INDEX))
    bought = cli(stack, "buy", str(offer["id"]), "1", *wallet, api=dead)
    _one_clear_line(bought, "cannot reach the API at", dead)
    for args in (("nodes",), ("faucet", *wallet), ("--json", "portfolio", "0x" + "00" * 20)):
        _one_clear_line(cli(stack, *args, api=dead), "cannot reach the API")


def test_a_node_that_is_down_is_a_message_not_a_traceback(stack: Stack, offer) -> None:
    dead = f"http://127.0.0.1:{devchain.free_port()}"
    deposited = cli(
        stack, "pool", "deposit", str(offer["node"]), "1", "--dev-account", str(WALLET_INDEX),
        rpc_url=dead,
    )  # fmt: skip
    _one_clear_line(deposited, "cannot reach the chain node", dead)


def test_an_out_of_range_dev_account_is_refused_before_anything_is_sent(
    stack: Stack, offer
) -> None:
    refused = cli(stack, "buy", str(offer["id"]), "1", "--dev-account", "999")
    _one_clear_line(refused, "999 is not a dev account", "0 to 19")
    assert cli(stack, "faucet", "--dev-account", "-1").returncode == 2


def test_a_misaligned_window_says_which_windows_there_are(stack: Stack, offer) -> None:
    window = offer["system"].capacity.windowSeconds()
    start = (chain[-1].timestamp // window + 3) * window
    refused = cli(
        stack, "publish-offer", str(offer["node"]), "1", str(start + 7), "1", "2",
        "--dev-account", "1",
    )  # fmt: skip
    _one_clear_line(refused, "not the start of a delivery window", f"{start} and {start + window}")


def test_flags_are_shown_as_flags() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "gpucap", "offers", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "120", "NO_COLOR": "1"},
    )
    assert shown.returncode == 0, shown.stderr
    assert "--all" in shown.stdout and "--class-id" in shown.stdout
    assert "<bool>" not in shown.stdout and "<int>" in shown.stdout
