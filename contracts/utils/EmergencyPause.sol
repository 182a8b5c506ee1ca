// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

import {IEmergencyPause} from "../interfaces/IEmergencyPause.sol";

/**
 * @title EmergencyPause
 * @notice See {IEmergencyPause}. Why not OpenZeppelin's Pausable: its pause lasts until
 * someone lifts it, so whoever holds the pause can freeze a market forever without the
 * delay every other power waits for; here a guardian's pause expires on its own.
 * @dev Storage: _pausedUntil and _guardianAllowedAt (uint64 each) share one slot.
 */
abstract contract EmergencyPause is AccessControl, IEmergencyPause {
    /// @notice May pause new exposure at once, for GUARDIAN_PAUSE_SECONDS.
    bytes32 public constant GUARDIAN_ROLE = keccak256("GUARDIAN_ROLE");
    /// @notice How long a guardian's pause lasts, and how long it then must wait to pause again.
    uint64 public constant GUARDIAN_PAUSE_SECONDS = 3 days;
    /// @notice The longest the admin can keep a contract paused from now.
    uint64 public constant MAX_PAUSE_SECONDS = 30 days;

    // slither-disable-next-line constable-states (written by the default {_storePausedUntil}; Market overrides it)
    uint64 private _pausedUntil;
    uint64 private _guardianAllowedAt;

    /// @dev Reverts PauseActive while paused.
    modifier whenNotPaused() {
        _requireNotPaused();
        _;
    }

    /// @inheritdoc IEmergencyPause
    function pause() external onlyRole(GUARDIAN_ROLE) {
        _requireNotPaused();
        uint64 now_ = uint64(block.timestamp);
        // slither-disable-next-line timestamp (the cool-down is days long; seconds of drift are harmless)
        if (now_ < _guardianAllowedAt) revert PauseCoolingDown(_guardianAllowedAt);
        uint64 until = now_ + GUARDIAN_PAUSE_SECONDS;
        _storePausedUntil(until);
        _guardianAllowedAt = until + GUARDIAN_PAUSE_SECONDS;
        emit PauseSet(_msgSender(), until);
    }

    /// @inheritdoc IEmergencyPause
    function extendPause(uint64 until) external onlyRole(DEFAULT_ADMIN_ROLE) {
        uint64 maxUntil = uint64(block.timestamp) + MAX_PAUSE_SECONDS;
        // slither-disable-next-line timestamp (pauses are days long; seconds of drift are harmless)
        if (until <= block.timestamp || until > maxUntil) revert PauseInvalidUntil(until, maxUntil);
        _storePausedUntil(until);
        if (_guardianAllowedAt < until) _guardianAllowedAt = until;
        emit PauseSet(_msgSender(), until);
    }

    /// @inheritdoc IEmergencyPause
    function unpause() external {
        address sender = _msgSender();
        if (!hasRole(GUARDIAN_ROLE, sender)) _checkRole(DEFAULT_ADMIN_ROLE, sender);
        if (!paused()) revert PauseNotActive();
        _storePausedUntil(0);
        emit PauseLifted(sender);
    }

    /// @inheritdoc IEmergencyPause
    function paused() public view virtual returns (bool) {
        // slither-disable-next-line timestamp (pauses are days long; seconds of drift are harmless)
        return block.timestamp < _pausedUntil;
    }

    /// @inheritdoc IEmergencyPause
    function pausedUntil() external view virtual returns (uint64) {
        return _pausedUntil;
    }

    function _requireNotPaused() internal view virtual {
        if (paused()) revert PauseActive(_pausedUntil);
    }

    /// @dev Writes the pause's end. An inheriting contract may keep it beside state it reads
    /// on the same path (Market: in its fee slot), overriding this, {paused}, {pausedUntil}
    /// and {_requireNotPaused} together; the others read `_pausedUntil` directly.
    function _storePausedUntil(uint64 until) internal virtual {
        _pausedUntil = until;
    }
}
