"""The stress engine's defaults are the deployment's terms (backend/risk/terms.py says why
they are restated there): DeployConfig's production defaults, which scripts/deploy.py sets
on EpochSettlement and PoolLoans (tests/contracts/test_deploy_terms.py holds a deployment
to its config). The split and covenant are the same in every profile; the tests' and the
demo's short epochs keep short covenant counts."""

from __future__ import annotations

from backend.risk import terms as T
from backend.risk.engine import Params
from scripts.deploy import DeployConfig

HOUR, DAY = 3_600, 86_400


def test_split_and_covenant_are_the_deployed_ones() -> None:
    for config in (DeployConfig(), DeployConfig.for_tests(), DeployConfig.for_demo()):
        assert (
            config.settlement_protocol_fee_bps,
            config.settlement_reserve_bps,
            config.settlement_operator_bps,
            config.settlement_covenant_dscr_bps,
            config.settlement_max_ltv_bps,
        ) == (
            T.PROTOCOL_FEE_BPS,
            T.RESERVE_BPS,
            T.OPERATOR_BPS,
            T.COVENANT_DSCR_BPS,
            T.MAX_LTV_BPS,
        )
    p = Params(start_time=0)
    assert (p.protocol_fee_bps, p.reserve_bps, p.operator_bps) == (500, 300, 3_000)
    assert (p.covenant_dscr_bps, p.max_ltv_bps) == (12_500, 8_000)
    # The hub's epoch: what the window and the loan's runs are counted in.
    assert p.epoch_seconds == T.EPOCH_SECONDS == DeployConfig().epoch_length_seconds == HOUR


def test_window_and_loan_terms_are_the_production_deployments() -> None:
    config = DeployConfig()
    p = Params(start_time=0)
    assert (config.settlement_dscr_window_epochs, *config.loan_params()) == (
        T.DSCR_WINDOW_EPOCHS,
        T.PLEDGE_BPS,
        T.DEFAULT_ARREARS_BPS,
        T.DEFAULT_DSCR_BPS,
        T.DEFAULT_DSCR_EPOCHS,
        T.CURE_EPOCHS,
    )
    assert (
        p.dscr_window_epochs,
        p.pledge_bps,
        p.default_arrears_bps,
        p.default_dscr_bps,
        p.default_dscr_epochs,
        p.cure_epochs,
    ) == (720, 5_000, 1_000, 10_000, 720, 168)
    # In time, on hourly epochs: a 30-day DSCR window, default after 30 days under 1.00x,
    # cured after 7 clean days.
    epoch = config.epoch_length_seconds
    assert config.settlement_dscr_window_epochs * epoch == 30 * DAY
    assert config.loan_default_dscr_epochs * epoch == 30 * DAY
    assert config.loan_cure_epochs * epoch == 7 * DAY


def test_tests_and_demo_keep_their_short_counts() -> None:
    """60 s / 30 s epochs: a sweep, its cure and a default within minutes."""
    for config in (DeployConfig.for_tests(), DeployConfig.for_demo()):
        assert config.settlement_dscr_window_epochs == 24
        assert config.loan_params() == (5_000, 1_000, 10_000, 6, 3)
