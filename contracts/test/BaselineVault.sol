// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ERC4626} from "@openzeppelin/contracts/token/ERC20/extensions/ERC4626.sol";

/**
 * @title BaselineVault
 * @notice Benchmark baseline only (bench/): a plain OpenZeppelin ERC-4626 vault over the
 * stablecoin, the reference cost of "move tokens in and book them" that
 * NodeRegistry.depositBond is compared with. Never deployed by scripts/deploy.py.
 */
contract BaselineVault is ERC4626 {
    constructor(IERC20 asset_) ERC20("Baseline Vault", "bVAULT") ERC4626(asset_) {}
}
