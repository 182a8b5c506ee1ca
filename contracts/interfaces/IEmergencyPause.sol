// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/**
 * @title IEmergencyPause
 * @notice A pause for emergencies that never traps funds. GUARDIAN_ROLE may stop the
 * actions that take on NEW exposure (new offers, buys, pool deposits and draws, trades)
 * at once and without delay; what lets users take their money out (redemptions, refunds,
 * bond withdrawals, claims, unstaking, settlement) is never behind it. A guardian's pause
 * ends by itself after GUARDIAN_PAUSE_SECONDS, and the guardian cannot pause again until
 * as long again has passed: only DEFAULT_ADMIN_ROLE (the timelock outside the dev chain)
 * can keep a contract paused longer, and never more than MAX_PAUSE_SECONDS at a time.
 */
interface IEmergencyPause {
    /// @notice Paused by `by` until `pausedUntil` (unix seconds).
    event PauseSet(address indexed by, uint64 pausedUntil);

    /// @notice `by` lifted the pause.
    event PauseLifted(address indexed by);

    /// @notice The action is paused until `pausedUntil`.
    error PauseActive(uint64 pausedUntil);

    /// @notice A guardian may pause again from `allowedAt`.
    error PauseCoolingDown(uint64 allowedAt);

    /// @notice `until` is in the past or beyond `maxUntil` (now + MAX_PAUSE_SECONDS).
    error PauseInvalidUntil(uint64 until, uint64 maxUntil);

    /// @notice Nothing is paused.
    error PauseNotActive();

    /**
     * @notice Pauses new exposure for GUARDIAN_PAUSE_SECONDS from now.
     * Requirements: GUARDIAN_ROLE; not paused; the guardian cool-down is over.
     */
    function pause() external;

    /**
     * @notice Keeps the contract paused until `until` (or pauses it), at most
     * MAX_PAUSE_SECONDS from now. Requirements: DEFAULT_ADMIN_ROLE; now < until <= max.
     */
    function extendPause(uint64 until) external;

    /// @notice Lifts the pause. Requirements: GUARDIAN_ROLE or DEFAULT_ADMIN_ROLE; paused.
    function unpause() external;

    /// @notice Whether new exposure is paused now.
    function paused() external view returns (bool);

    /// @notice When the pause ends (0 or the past: not paused).
    function pausedUntil() external view returns (uint64);
}
