"""The protocol's deployed terms, as the stress engine's defaults: one list, held to the chain.

Why here and not imported from ``scripts/deploy.py``: that script imports brownie and the
compiled project, which runtime code never loads (STYLE: brownie stays in scripts/ and
tests/). So the figures are restated once, here, and tests hold them equal to the source
the deployment uses: ``DeployConfig``'s production defaults (tests/risk/test_terms.py;
tests/contracts/test_deploy_terms.py holds a deployment to its config). Whoever changes
one changes the other, or a test fails. These are defaults only: the risk API runs on
the terms the chain has (the indexed events and the settlement's window, read from the
chain), so the demo chain's short counts are projected as its own.

Energy defaults (the operating cost, which the chain does not see: the operator pays it
from its share) are market figures, overridable per operator and per node.
"""

from __future__ import annotations

# EpochSettlement's split of each node-epoch's gross, bps (DeployConfig.settlement_*).
PROTOCOL_FEE_BPS = 500
RESERVE_BPS = 300  # the insurance reserve
OPERATOR_BPS = 3_000  # pays power and hosting; the rest is net revenue (debt, then stakers)
# The hub's epoch (DeployConfig.epoch_length_seconds): what the window and runs count.
EPOCH_SECONDS = 3_600
# Covenant (EpochSettlement.setRiskParams at deploy) and the DSCR window in settled epochs
# (DeployConfig.settlement_dscr_window_epochs, immutable: 30 days of hourly epochs).
COVENANT_DSCR_BPS = 12_500
MAX_LTV_BPS = 8_000
DSCR_WINDOW_EPOCHS = 720
# The loan (PoolLoans.LoanParams: DeployConfig.loan_*, which the deploy sets on the PoolLoans
# EpochSettlement creates). Runs in hourly epochs: 720 = 30 days, 168 = 7 days.
PLEDGE_BPS = 5_000  # share of the operator's bond pledged to the pool at the draw
DEFAULT_ARREARS_BPS = 1_000  # default once arrears exceed this share of the drawn principal
DEFAULT_DSCR_BPS = 10_000  # ... or DSCR stays under this floor
DEFAULT_DSCR_EPOCHS = 720  # ... for this many epochs of settlements in a row
CURE_EPOCHS = 168  # clean epochs of settlements in a row that end a cash sweep

# Operating cost: energy x electricity price x PUE. US industrial power, late 2025, and a
# typical air-cooled colocation PUE; a node's energy per GPU-hour defaults to its class's
# board power (gpucap/gpu_classes.py referencePowerW), attested energy overrides it.
ELECTRICITY_PRICE_PER_KWH = 100_000  # stablecoin base units (0.10 USD)
PUE_BPS = 13_000  # 1.30
