// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/**
 * @title RiskModel
 * @notice Pure risk math shared by the settlement and (off-chain) the Python stress
 * engine: depreciated collateral value, LTV, DSCR and the covenant test. The integer
 * formulas and their rounding are those of the shared spec (risk_formulas.md); every
 * function here is `internal pure`, so it is inlined into its caller and costs no call.
 * @dev Units: stablecoin base units (6 decimals) for amounts, bps (10_000 = 100%) for
 * ratios, seconds for time. A month is 30 days.
 */
library RiskModel {
    /// @notice Depreciation curve. StraightLine is the default and the one the Python engine
    /// mirrors; DecliningBalance is the on-chain alternative (see {decliningBalanceValue}).
    enum Curve {
        StraightLine,
        DecliningBalance
    }

    /// @notice What a node's collateral value is computed from (NodeRegistry node + class).
    struct Collateral {
        uint256 acquisitionCost;
        uint64 acquiredAt;
        uint16 economicLifeMonths;
        uint16 residualValueBps;
    }

    uint256 internal constant BPS = 10_000;
    uint256 internal constant MONTH_SECONDS = 2_592_000;
    /// @notice LTV of a debt against zero value, and DSCR with no debt service: "infinite".
    uint256 internal constant INFINITE = type(uint256).max;

    /// @notice Residual value: acquisitionCost × residualValueBps / 10_000, floored.
    function residualValue(Collateral memory c) internal pure returns (uint256) {
        return (c.acquisitionCost * c.residualValueBps) / BPS;
    }

    /// @notice Depreciated value at time `t` on `curve`.
    function value(Curve curve, Collateral memory c, uint256 t) internal pure returns (uint256) {
        if (curve == Curve.DecliningBalance) return decliningBalanceValue(c, t);
        return straightLineValue(c, t);
    }

    /**
     * @notice Straight-line value at `t`:
     * cost - (cost - residual) × min(age, life) / life, the subtracted term floored (so the
     * value rounds up and never falls below the residual). age = max(0, t - acquiredAt);
     * life = economicLifeMonths × 30 days. A zero life means fully depreciated (residual).
     */
    function straightLineValue(Collateral memory c, uint256 t) internal pure returns (uint256) {
        uint256 residual = residualValue(c);
        uint256 life = uint256(c.economicLifeMonths) * MONTH_SECONDS;
        if (life == 0) return residual;
        uint256 age = t > c.acquiredAt ? t - c.acquiredAt : 0;
        if (age > life) age = life;
        return c.acquisitionCost - ((c.acquisitionCost - residual) * age) / life;
    }

    /**
     * @notice Double-declining-balance value at `t` (ON-CHAIN ONLY, not in the shared Python
     * spec): per whole month of age m (capped at life L months), v ← v × (L - 2) / L floored,
     * starting from cost; never below the residual, and the residual from age ≥ life on.
     * Loops at most L ≤ 65_535 times and stops as soon as the residual is reached.
     */
    function decliningBalanceValue(Collateral memory c, uint256 t) internal pure returns (uint256) {
        uint256 residual = residualValue(c);
        uint256 lifeMonths = c.economicLifeMonths;
        uint256 age = t > c.acquiredAt ? t - c.acquiredAt : 0;
        if (lifeMonths == 0 || age >= lifeMonths * MONTH_SECONDS) return residual;
        uint256 months = age / MONTH_SECONDS;
        uint256 keep = lifeMonths > 2 ? lifeMonths - 2 : 0;
        uint256 v = c.acquisitionCost;
        for (uint256 i = 0; i < months && v > residual; ++i) {
            v = (v * keep) / lifeMonths;
        }
        return v > residual ? v : residual;
    }

    /// @notice LTV in bps: debt × 10_000 / value, floored; debt 0 → 0; value 0 → INFINITE.
    function ltvBps(uint256 debt, uint256 collateralValue) internal pure returns (uint256) {
        if (debt == 0) return 0;
        if (collateralValue == 0) return INFINITE;
        return (debt * BPS) / collateralValue;
    }

    /// @notice DSCR in bps: netRevenue × 10_000 / debtService, floored; service 0 → INFINITE.
    function dscrBps(uint256 netRevenue, uint256 debtService) internal pure returns (uint256) {
        if (debtService == 0) return INFINITE;
        return (netRevenue * BPS) / debtService;
    }

    /**
     * @notice The covenant test. `dscrBreach`: DSCR < covenantDscrBps with at least one epoch
     * of scheduled service in the window; `ltvBreach`: LTV > maxLtvBps.
     */
    function covenant(
        uint256 dscr,
        uint256 serviceEpochsInWindow,
        uint256 covenantDscrBps,
        uint256 ltv,
        uint256 maxLtvBps
    ) internal pure returns (bool dscrBreach, bool ltvBreach) {
        dscrBreach = serviceEpochsInWindow > 0 && dscr < covenantDscrBps;
        ltvBreach = ltv > maxLtvBps;
    }

    /// @notice Pool raise cap: maxLtvBps × value / 10_000, floored.
    function raiseCap(uint256 collateralValue, uint256 maxLtvBps) internal pure returns (uint256) {
        return (collateralValue * maxLtvBps) / BPS;
    }
}
