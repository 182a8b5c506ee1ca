// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";

import {ITestStablecoin} from "./interfaces/ITestStablecoin.sol";

/**
 * @title TestStablecoin
 * @notice Local-testnet stand-in for USDC: 6 decimals, EIP-2612 permit, and a
 * faucet limited per recipient. Deployments on a real chain use a configured
 * stablecoin address instead and never deploy this contract.
 */
contract TestStablecoin is ERC20, ERC20Permit, AccessControl, ITestStablecoin {
    // Storage: _dripAmount (slot 0 of this contract), _cooldownSeconds (uint64),
    // _nextDripAt mapping. Drip bookkeeping is tiny; no packing needed.
    uint256 private _dripAmount;
    uint64 private _cooldownSeconds;
    mapping(address recipient => uint64 nextDripAt) private _nextDripAt;

    constructor(address admin, uint256 dripAmount_, uint64 cooldownSeconds_)
        ERC20("gpucap Test USD", "tUSD")
        ERC20Permit("gpucap Test USD")
    {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _configureFaucet(dripAmount_, cooldownSeconds_);
    }

    // ------------------------------------------------------------------
    // Faucet
    // ------------------------------------------------------------------

    /// @inheritdoc ITestStablecoin
    function drip(address recipient) external {
        if (recipient == address(0)) revert FaucetInvalidRecipient();
        uint64 nextAt = _nextDripAt[recipient];
        // slither-disable-next-line timestamp (rate limit; seconds of drift are harmless)
        if (block.timestamp < nextAt) revert FaucetCooldown(recipient, nextAt);
        uint64 newNextAt = uint64(block.timestamp) + _cooldownSeconds;
        _nextDripAt[recipient] = newNextAt;
        _mint(recipient, _dripAmount);
        emit Dripped(recipient, _dripAmount, newNextAt);
    }

    /// @inheritdoc ITestStablecoin
    function configureFaucet(uint256 dripAmount_, uint64 cooldownSeconds_)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        _configureFaucet(dripAmount_, cooldownSeconds_);
    }

    /// @inheritdoc ITestStablecoin
    function nextDripAt(address recipient) external view returns (uint64) {
        return _nextDripAt[recipient];
    }

    /// @inheritdoc ITestStablecoin
    function dripAmount() external view returns (uint256) {
        return _dripAmount;
    }

    /// @inheritdoc ITestStablecoin
    function cooldownSeconds() external view returns (uint64) {
        return _cooldownSeconds;
    }

    // ------------------------------------------------------------------
    // ERC-20
    // ------------------------------------------------------------------

    /// @notice USDC-like: 6 decimals.
    function decimals() public pure override returns (uint8) {
        return 6;
    }

    // ------------------------------------------------------------------
    // Internal
    // ------------------------------------------------------------------

    function _configureFaucet(uint256 dripAmount_, uint64 cooldownSeconds_) private {
        if (dripAmount_ == 0 || cooldownSeconds_ == 0) {
            revert FaucetInvalidConfig(dripAmount_, cooldownSeconds_);
        }
        _dripAmount = dripAmount_;
        _cooldownSeconds = cooldownSeconds_;
        emit FaucetConfigured(dripAmount_, cooldownSeconds_);
    }
}
