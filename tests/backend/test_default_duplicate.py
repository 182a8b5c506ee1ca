"""A declaration someone else made first: the keeper's action is refused by the contract with
LoanNoDefault and counts as done (never retried, nothing declared twice). In-process parts
on anvil: the real indexer, the keeper's planner and the backend's relayer (no worker, so
nothing declares before the test's own caller)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from backend.app.loan_views import loan_public
from backend.db.models import Action, ActionKind, PoolRow
from backend.services.chain import Chain
from backend.services.indexing.indexer import Indexer
from backend.services.indexing.loan_index import STATES
from backend.services.keepers.defaults import NOT_DUE_ERROR, plan_defaults
from backend.services.relaying.relay import relay_action
from backend.worker.kinds import REQUEST_BUILDERS
from tests.backend.backend_helpers import service_relayer
from tests.backend.loan_helpers import DEFAULTED, defaulting_pool


@pytest.fixture(scope="module")
def world(live_deployment, admin, operator, staker):
    return defaulting_pool(live_deployment.system, admin, operator, staker, "d1")


def test_a_duplicate_refused_by_the_contract_counts_as_done(
    world: dict[str, Any], live_deployment, sessions, redis_server, stranger
) -> None:
    s, node = world["system"], world["node"]
    chain = Chain.connect(live_deployment.rpc_url, str(live_deployment.manifest_path), 5.0)
    Indexer(chain, sessions, max_batches=10_000).step()
    with sessions() as session:
        # Before the default: the index's loan is the contract's, runs and all.
        pool = session.get(PoolRow, world["pool"].address)
        assert pool is not None
        view = loan_public(session, pool)
        on_chain = s.loans.loanOf(node)
        assert view is not None and view.runs is not None and view.default is None
        assert view.state == STATES[on_chain["state"]]
        assert view.pledged_bond_micro_usd == on_chain["pledged"] > 0
        assert (view.runs.clean_epochs, view.runs.low_dscr_epochs) == (
            on_chain["cleanRun"],
            on_chain["lowDscrRun"],
        )
        assert view.arrears_micro_usd == s.settlement.nodeRisk(node)["arrears"]
        assert view.default_due is True
        first = plan_defaults(session, chain, retry_after_seconds=0)
    assert len(first.actions) == 1 and not first.done
    # Anyone may declare: a stranger does it before the keeper's transaction goes out.
    s.loans.declareDefault(node, {"from": stranger})
    assert s.loans.loanOf(node)["state"] == DEFAULTED
    with service_relayer(live_deployment, redis_server.url) as relayer:
        status = relay_action(
            sessions=sessions,
            relayer=relayer,
            action_id=first.actions[0],
            builders=REQUEST_BUILDERS,
        )
    with sessions() as session:
        row = session.get(Action, first.actions[0])
        assert row is not None
        assert (status, row.status, row.error_code) == ("failed", "failed", NOT_DUE_ERROR)
        again = plan_defaults(session, chain, retry_after_seconds=0)
        assert again.actions == [] and again.waiting == []
        assert again.done == [f"node {node}: {row.id} refused as a duplicate ({NOT_DUE_ERROR})"]
        rows = session.scalars(
            select(Action).where(Action.kind == ActionKind.DECLARE_DEFAULT.value)
        ).all()
        assert [r.id for r in rows] == [row.id]
