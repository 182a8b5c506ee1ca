// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {RiskModel} from "../libraries/RiskModel.sol";

/// @notice Test-only: exposes the RiskModel library's internal functions.
contract RiskModelHarness {
    function value(uint8 curve, uint256 cost, uint64 acquiredAt, uint16 lifeMonths, uint16 residualBps, uint256 t)
        external
        pure
        returns (uint256)
    {
        return RiskModel.value(RiskModel.Curve(curve), RiskModel.Collateral(cost, acquiredAt, lifeMonths, residualBps), t);
    }

    function ltvBps(uint256 debt, uint256 collateralValue) external pure returns (uint256) {
        return RiskModel.ltvBps(debt, collateralValue);
    }

    function dscrBps(uint256 netRevenue, uint256 debtService) external pure returns (uint256) {
        return RiskModel.dscrBps(netRevenue, debtService);
    }

    function covenant(uint256 dscr, uint256 serviceEpochs, uint256 covenantDscr, uint256 ltv, uint256 maxLtv)
        external
        pure
        returns (bool, bool)
    {
        return RiskModel.covenant(dscr, serviceEpochs, covenantDscr, ltv, maxLtv);
    }

    function raiseCap(uint256 collateralValue, uint256 maxLtvBps) external pure returns (uint256) {
        return RiskModel.raiseCap(collateralValue, maxLtvBps);
    }
}
