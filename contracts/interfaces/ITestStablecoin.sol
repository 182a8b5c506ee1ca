// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/**
 * @title ITestStablecoin
 * @notice The USDC-like stablecoin of gpucap's local testnet: 6 decimals,
 * EIP-2612 permit, and a rate-limited faucet so anyone can fund a wallet.
 */
interface ITestStablecoin {
    /// @notice `amount` (6 decimals) was dripped to `recipient`; the next drip is possible at `nextDripAt`.
    event Dripped(address indexed recipient, uint256 amount, uint64 nextDripAt);

    /// @notice The faucet parameters changed.
    event FaucetConfigured(uint256 dripAmount, uint64 cooldownSeconds);

    /// @notice `recipient` asked again before its cooldown ended at `nextDripAt`.
    error FaucetCooldown(address recipient, uint64 nextDripAt);

    /// @notice The zero address cannot receive a drip.
    error FaucetInvalidRecipient();

    /// @notice A zero drip amount or cooldown was configured.
    error FaucetInvalidConfig(uint256 dripAmount, uint64 cooldownSeconds);

    /**
     * @notice Mints `dripAmount()` to `recipient`, at most once per `cooldownSeconds()` per recipient.
     * @dev Anyone may call it for anyone (the backend relays drips); the limit is per recipient.
     * Requirements: `recipient` is not zero and its cooldown has passed.
     */
    function drip(address recipient) external;

    /// @notice Time from which `recipient` can receive its next drip (0 if never dripped).
    function nextDripAt(address recipient) external view returns (uint64);

    /// @notice Amount minted per drip, in 6-decimal units.
    function dripAmount() external view returns (uint256);

    /// @notice Seconds a recipient waits between two drips.
    function cooldownSeconds() external view returns (uint64);

    /**
     * @notice Changes the drip amount and cooldown.
     * Requirements: caller has DEFAULT_ADMIN_ROLE; both values are non-zero.
     */
    function configureFaucet(uint256 dripAmount_, uint64 cooldownSeconds_) external;
}
