"""The stress engine's defaults are the deployment's terms (backend/risk/terms.py says why
they are restated there): the split, covenant and DSCR window equal DeployConfig's, which
scripts/deploy.py sets on EpochSettlement. The loan terms are held to the deployed
contract in tests/risk/test_onchain_stress.py."""

from __future__ import annotations

from backend.risk import terms as T
from backend.risk.engine import Params
from scripts.deploy import DeployConfig


def test_split_covenant_and_window_are_the_deployed_ones() -> None:
    for config in (DeployConfig(), DeployConfig.for_tests(), DeployConfig.for_demo()):
        assert (
            config.settlement_protocol_fee_bps,
            config.settlement_reserve_bps,
            config.settlement_operator_bps,
            config.settlement_covenant_dscr_bps,
            config.settlement_max_ltv_bps,
            config.settlement_dscr_window_epochs,
        ) == (
            T.PROTOCOL_FEE_BPS,
            T.RESERVE_BPS,
            T.OPERATOR_BPS,
            T.COVENANT_DSCR_BPS,
            T.MAX_LTV_BPS,
            T.DSCR_WINDOW_EPOCHS,
        )
    p = Params(start_time=0)
    assert (p.protocol_fee_bps, p.reserve_bps, p.operator_bps) == (500, 300, 3_000)
    assert (p.covenant_dscr_bps, p.max_ltv_bps, p.dscr_window_epochs) == (12_500, 8_000, 24)
    # The hub's epoch: what the window and the loan's runs are counted in.
    assert p.epoch_seconds == T.EPOCH_SECONDS == DeployConfig().epoch_length_seconds
