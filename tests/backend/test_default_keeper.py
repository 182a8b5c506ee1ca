"""The default keeper through real parts: anvil, the deployed system, Redis, a worker process
(beat → indexer + settlement keeper → relayer) and the API over HTTP.

The world: a node with a bond and a drawn pool (300 USD of 1_200 staked) bills the admin;
three settled epochs bring 100, 0 and 0 USD of usage, so arrears pass the default threshold
(10% of the drawn principal). The keeper must declare the default exactly once, the
waterfall events follow in its transaction; a reorg that takes that transaction away makes
the keeper send the same action again, still one row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from brownie import web3
from sqlalchemy import select

from backend.db.models import Action, ActionKind
from backend.db.session import get_sessionmaker
from backend.services.health import KEEPER_KEY
from tests.backend.backend_helpers import ROOT, Stack, reorg_away, running_stack, wait_for
from tests.backend.loan_helpers import BOND, DEFAULTED, USD, defaulting_pool


@pytest.fixture(scope="module")
def world(live_deployment, admin, operator, staker):
    return defaulting_pool(live_deployment.system, admin, operator, staker, "d0")


@pytest.fixture(scope="module")
def stack(world, live_deployment, tmp_path_factory) -> Iterator[Stack]:
    env = {
        "GPUCAP_INDEX_INTERVAL_SECONDS": "0.5",
        "GPUCAP_EPOCH_SETTLE_INTERVAL_SECONDS": "0.5",
        "GPUCAP_EPOCH_SETTLE_RETRY_SECONDS": "3600",
    }
    with running_stack(tmp_path_factory.mktemp("defaults"), live_deployment, env) as s:
        yield s


def _declarations(stack: Stack) -> list[Action]:
    with get_sessionmaker(stack.env["GPUCAP_DATABASE_URL"])() as session:
        return list(
            session.scalars(
                select(Action).where(Action.kind == ActionKind.DECLARE_DEFAULT.value)
            ).all()
        )


def _keeper_ran_after(stack: Stack, moment: float) -> bool:
    raw = redis.Redis.from_url(stack.redis.url).get(KEEPER_KEY)
    return raw is not None and json.loads(raw)["at"] > moment


def _confirmed(stack: Stack) -> Action:
    def done() -> Action | None:
        rows = _declarations(stack)
        return rows[0] if rows and rows[0].status == "confirmed" else None

    return wait_for(done, 60, "the keeper's default declaration to be mined")


def _waterfall(tx_hash: str, world: dict[str, Any]) -> dict[str, Any]:
    receipt = web3.eth.get_transaction_receipt(tx_hash)
    loans = web3.eth.contract(address=world["system"].loans.address, abi=world["system"].loans.abi)
    events = {
        name: getattr(loans.events, name)().process_receipt(receipt)
        for name in ("LoanStateChanged", "LoanDefaulted", "LossWaterfall")
    }
    assert all(len(found) == 1 for found in events.values()), events
    return {name: dict(found[0]["args"]) for name, found in events.items()}


def test_keeper_declares_the_default_once_and_the_waterfall_follows(stack, world):
    s, node = world["system"], world["node"]
    action = _confirmed(stack)
    assert action.params == {"node_id": node, "pool": world["pool"].address}
    assert s.loans.loanOf(node)["state"] == DEFAULTED
    assert not s.loans.defaultDue(node)
    found = _waterfall(action.tx_hash, world)
    assert found["LoanStateChanged"]["nodeId"] == node
    assert found["LoanStateChanged"]["to"] == DEFAULTED
    loss = found["LossWaterfall"]
    claim = found["LoanDefaulted"]["principal"] + found["LoanDefaulted"]["arrears"]
    assert loss["bond"] == BOND // 2  # DeployConfig's pledge: half the bond
    assert loss["stakers"] == 300 * USD
    assert loss["reserve"] == world["reserve"] - s.settlement.reserveHeld() > 0
    assert loss["bond"] + loss["stakers"] + loss["reserve"] + loss["holders"] == claim
    # Exactly once: the keeper ran again after the default was mined and indexed, and
    # planned nothing more.
    after = time.time()
    wait_for(lambda: _keeper_ran_after(stack, after), 30, "another keeper run")
    assert [a.id for a in _declarations(stack)] == [action.id]


def _loan_api(stack: Stack, world: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The pool's loan and its history from the API, once the index holds the default."""
    pool = world["pool"].address

    def indexed() -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
        body = stack.get(f"/api/v1/pools/{pool}").json()
        history = stack.get(f"/api/v1/pools/{pool}/loan/history").json()
        loan = body.get("loan")
        events = [h["event"] for h in history]
        done = loan and loan["default"] and "LossWaterfall" in events
        return (loan, history) if done else None

    return wait_for(indexed, 30, "the default in the API")


def test_the_api_shows_the_loan_and_its_history(stack, world):
    s, node = world["system"], world["node"]
    action = _confirmed(stack)
    found = _waterfall(action.tx_hash, world)
    loan, history = _loan_api(stack, world)
    loss, defaulted = found["LossWaterfall"], found["LoanDefaulted"]
    assert loan["state"] == "defaulted" and loan["since_epoch"] == defaulted["epoch"]
    assert loan["default_due"] is False and loan["runs"] is None
    assert loan["pledged_bond_micro_usd"] == 0  # seized
    d = loan["default"]
    assert d == {
        "epoch": defaulted["epoch"],
        "principal_accelerated_micro_usd": defaulted["principal"],
        "arrears_micro_usd": defaulted["arrears"],
        "bond_seized_micro_usd": loss["bond"],
        "stakers_loss_micro_usd": loss["stakers"],
        "reserve_cover_micro_usd": loss["reserve"],
        "holders_loss_micro_usd": loss["holders"],
        "recovery_claim_micro_usd": defaulted["recoveryClaim"],
        "recovered_micro_usd": 0,
        "recovery_outstanding_micro_usd": s.loans.loanOf(node)["recoveryClaim"],
        "tx_hash": action.tx_hash,
    }
    # The history: the pledge at the first settlement after the draw, a cash sweep when the
    # covenant broke (if it did), then the default's three events in one transaction.
    events = [h["event"] for h in history]
    assert events[0] == "BondPledged"
    assert history[0]["amounts_micro_usd"] == {"pledged": BOND // 2}
    assert events[-3:] == ["LoanStateChanged", "LoanDefaulted", "LossWaterfall"]
    assert history[-3]["to_state"] == "defaulted"
    assert {h["tx_hash"] for h in history[-3:]} == {action.tx_hash}
    assert history[-1]["amounts_micro_usd"] == {
        k: loss[k] for k in ("bond", "stakers", "reserve", "holders")
    }


def _cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpucap", "--api", stack.api_url, *args],
        env={**os.environ, "COLUMNS": "200"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_cli_pool_loan(stack, world):
    loan, history = _loan_api(stack, world)
    shown = _cli(stack, "--json", "pool", "loan", str(world["node"]))
    assert shown.returncode == 0, shown.stderr
    body = json.loads(shown.stdout)
    assert (body["loan"], body["history"]) == (loan, history)
    text = _cli(stack, "pool", "loan", str(world["node"]))
    assert text.returncode == 0, text.stderr
    assert "loan defaulted since epoch" in text.stdout and "LossWaterfall" in text.stdout
    missing = _cli(stack, "pool", "loan", str(world["node"] + 1000))
    assert missing.returncode == 2 and "no indexed revenue pool" in missing.stderr


def test_a_reorged_declaration_is_sent_again(stack, world):
    s, node = world["system"], world["node"]
    first = _confirmed(stack)
    # The declaration's block is gone: the loan is due again (at the reorged head; the
    # keeper may have declared it again on a later block already).
    head = reorg_away(first.block_number)
    assert s.loans.defaultDue(node, block_identifier=head)

    def mined_again() -> Action | None:
        rows = _declarations(stack)
        again = rows[0]
        gone = again.block_number is None or again.block_number < first.block_number
        return again if again.status == "confirmed" and not gone and len(rows) == 1 else None

    wait_for(
        lambda: mined_again() if s.loans.loanOf(node)["state"] == DEFAULTED else None,
        60,
        "the declaration to be mined again after the reorg",
    )
    assert [a.id for a in _declarations(stack)] == [first.id]
    assert not s.loans.defaultDue(node)
    # The index undid the first default and folded the second: one default in the history.
    again = _confirmed(stack)

    def one_default() -> list[dict[str, Any]] | None:
        _, history = _loan_api(stack, world)
        waterfalls = [h for h in history if h["event"] == "LossWaterfall"]
        return history if [w["tx_hash"] for w in waterfalls] == [again.tx_hash] else None

    wait_for(one_default, 30, "the index to hold the re-mined default only")
