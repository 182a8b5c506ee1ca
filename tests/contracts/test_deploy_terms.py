"""The covenant's counts and the loan terms a deployment leaves on the chain are its
config's (issue #18): production counts in days on hourly epochs (a 30-day DSCR window,
default after 30 days under 1.00x, cure after 7 clean days), the tests' and the demo's in
minutes; a config the contracts would refuse, or (off the dev chain) one whose window or
default run is under a day, is refused before anything is sent."""

from __future__ import annotations

import pytest
from brownie import web3

from scripts.deploy import (
    MAX_DEFAULT_DSCR_BPS,
    MAX_RUN_EPOCHS,
    MAX_WINDOW_EPOCHS,
    DeployConfig,
    DeployRefused,
    deploy_system,
)

LOAN_PARAMS_SET = "0x" + (
    web3.keccak(text="LoanParamsSet(uint16,uint16,uint32,uint16,uint16)").hex().removeprefix("0x")
)
MAINNET = 1


def _loan_params_set(system) -> int:
    """How many LoanParamsSet the deployment's PoolLoans emitted (its constructor's included)."""
    logs = web3.eth.get_logs(
        {
            "address": system.loans.address,
            "fromBlock": system.deployed_at_block,
            "toBlock": "latest",
            "topics": [LOAN_PARAMS_SET],
        }
    )
    return len(logs)


def test_production_config_leaves_its_window_and_loan_terms_on_chain(admin) -> None:
    config = DeployConfig()
    system = deploy_system(admin, config)
    assert int(system.settlement.dscrWindowEpochs()) == config.settlement_dscr_window_epochs == 720
    assert tuple(int(v) for v in system.loans.loanParams()) == config.loan_params()
    assert config.loan_params() == (5_000, 1_000, 10_000, 720, 168)
    # Set while the deployer is still admin (before any hand-over), as an event the index
    # reads: the constructor's, then the deploy's.
    assert _loan_params_set(system) == 2


def test_tests_config_keeps_the_constructors_terms_and_sends_nothing(system) -> None:
    """The module's system is DeployConfig.for_tests()'s: the same 24 / 6 / 3 as before."""
    config = DeployConfig.for_tests()
    assert int(system.settlement.dscrWindowEpochs()) == config.settlement_dscr_window_epochs == 24
    assert tuple(int(v) for v in system.loans.loanParams()) == config.loan_params()
    assert config.loan_params() == (5_000, 1_000, 10_000, 6, 3)
    assert _loan_params_set(system) == 1  # the constructor's only: no setLoanParams sent


def test_the_bounds_checked_before_sending_are_the_contracts(system) -> None:
    assert int(system.settlement.MAX_WINDOW_EPOCHS()) == MAX_WINDOW_EPOCHS
    assert int(system.loans.MAX_RUN_EPOCHS()) == MAX_RUN_EPOCHS
    assert int(system.loans.MAX_DEFAULT_DSCR_BPS()) == MAX_DEFAULT_DSCR_BPS


@pytest.mark.parametrize(
    "change",
    [
        {"settlement_dscr_window_epochs": 0},
        {"settlement_dscr_window_epochs": 721},
        {"loan_default_dscr_epochs": 721},
        {"loan_cure_epochs": 0},
        {"loan_cure_epochs": 721},
        {"loan_pledge_bps": 10_001},
        {"loan_default_arrears_bps": 0},
        {"loan_default_dscr_bps": 50_001},
    ],
)
def test_out_of_bounds_terms_are_refused_before_anything_is_sent(admin, change) -> None:
    nonce = admin.nonce
    with pytest.raises(DeployRefused, match=f"{next(iter(change))} = .* is outside"):
        deploy_system(admin, DeployConfig(**change))
    assert admin.nonce == nonce


def test_off_the_dev_chain_a_covenant_under_a_day_is_refused() -> None:
    DeployConfig().check_terms(MAINNET)  # 720 hourly epochs: 30 days
    DeployConfig(epoch_length_seconds=120).check_terms(MAINNET)  # 720 x 2 min: a day
    for config, name in (
        (DeployConfig.for_demo(), "settlement_dscr_window_epochs"),  # 24 x 30 s
        (DeployConfig(epoch_length_seconds=60), "settlement_dscr_window_epochs"),  # 12 h
        (DeployConfig(loan_default_dscr_epochs=6), "loan_default_dscr_epochs"),  # 6 h
    ):
        with pytest.raises(DeployRefused, match=f"{name} = .* under a day, on chain 1"):
            config.check_terms(MAINNET)
    DeployConfig.for_demo().check_terms(31337)  # the dev chain: minutes are the point
