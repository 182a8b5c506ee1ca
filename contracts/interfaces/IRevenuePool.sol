// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IRiskGate} from "./IRiskGate.sol";

/**
 * @title IRevenuePool
 * @notice A node's revenue-share pool: a funding round that sells transferable
 * shares for stablecoin, the raise recorded as the operator's debt, and staking
 * of the shares to earn the node's revenue per epoch and to stand as first-loss
 * buffer after the operator's bond.
 *
 * Epochs: epoch `e` covers `[genesis + (e - 1) * epochLength, genesis + e * epochLength)`
 * (numbered from 1, like OracleHub; the deployment passes the hub's schedule).
 *
 * Staking timeline of a stake made during epoch `c`:
 * - warm-up: it earns only revenue of epochs `>= c + 1` (epochs it was staked for
 *   in full), so staking just before a payout earns nothing from it;
 * - it bears losses from the moment it is staked;
 * - an unstake request made during epoch `u` stops earning at once, keeps bearing
 *   losses, and can be withdrawn from epoch `u + 1 + cooldownEpochs` (at least one
 *   full epoch in between).
 */
interface IRevenuePool {
    /// @notice Funding round state. Funding: open for deposits. Failed: the deadline
    /// passed below target (refunds open). Succeeded: the target was met (staking open,
    /// the operator may draw the raise once).
    enum RoundStatus {
        Funding,
        Failed,
        Succeeded
    }

    /// @notice Construction parameters (a struct keeps the constructor readable).
    /// @param name ERC-20 name of the share. @param symbol ERC-20 symbol of the share.
    /// @param stablecoin Token of the raise and of revenue (6 decimals in gpucap).
    /// @param operator The node's operator: draws the raise, owes the debt.
    /// @param admin Holder of DEFAULT_ADMIN_ROLE (grants DISTRIBUTOR_ROLE / SLASHER_ROLE).
    /// @param trustedForwarder ERC-2771 forwarder for gasless user actions (zero: none).
    /// @param nodeId NodeRegistry id of the financed node.
    /// @param targetAssets Raise target and cap, in stablecoin units.
    /// @param fundingDeadline Deposits are accepted strictly before this timestamp.
    /// @param sharePrice Stablecoin units per whole share (1e18 share units).
    /// @param genesisTimestamp Start of epoch 1. @param epochLengthSeconds Epoch length.
    /// @param cooldownEpochs Full epochs between an unstake request and its withdrawal (>= 1).
    /// @param tenorEpochs Debt amortisation period, in epochs after the draw.
    /// @param rateBps Annual interest rate on the outstanding principal, in bps.
    /// @param riskGate The risk side (EpochSettlement) whose `raiseCap(nodeId)` caps the round;
    /// required (non-zero) and immutable, so every pool is bound by the LTV cap.
    struct PoolConfig {
        string name;
        string symbol;
        address stablecoin;
        address operator;
        address admin;
        address trustedForwarder;
        uint256 nodeId;
        uint256 targetAssets;
        uint64 fundingDeadline;
        uint256 sharePrice;
        uint64 genesisTimestamp;
        uint64 epochLengthSeconds;
        uint64 cooldownEpochs;
        uint64 tenorEpochs;
        uint16 rateBps;
        address riskGate;
    }

    /// @notice One account's staking position, in shares (the view converts units).
    /// @param earningShares Staked and earning revenue now.
    /// @param pendingShares Staked, in warm-up until `activationEpoch` is distributed.
    /// @param coolingShares Unstake requested; withdrawable from `unlockEpoch`.
    /// @param claimableAssets Revenue earned and not claimed (whole stablecoin units).
    /// @param claimableFractionScaled The account's earned fraction below one unit, × 1e36
    /// (kept for it, paid once it adds up to a whole unit).
    /// @param claimedAssets Revenue claimed so far.
    /// @param principalShares Shares put at stake and not yet withdrawn, at face value.
    /// @param lossShares Part of `principalShares` taken by booked losses.
    /// @param releasedShares Stake returned by a release (see {StakeReleased}) and not yet
    /// withdrawn: no longer at stake, withdrawable at once with {withdraw}.
    struct StakeInfo {
        uint256 earningShares;
        uint256 pendingShares;
        uint256 coolingShares;
        uint64 activationEpoch;
        uint64 unlockEpoch;
        uint256 claimableAssets;
        uint256 claimableFractionScaled;
        uint256 claimedAssets;
        uint256 principalShares;
        uint256 lossShares;
        uint256 releasedShares;
    }

    /// @notice Pool-wide accounting, for dashboards and invariant checks.
    /// @param raisedAssets Deposited in the round. @param refundedAssets Paid back after a failure.
    /// @param drawnAssets Drawn by the operator. @param revenueInAssets Revenue pushed in.
    /// @param revenuePaidAssets Revenue claimed out.
    /// @param undistributedAssets Revenue not yet allocated to any unit (carried to the next
    /// distribution; whole stablecoin units, rounded down).
    /// @param undistributedScaled The same, exactly, × 1e36.
    /// @param stakedShares Shares in custody for stakers (earning, pending and cooling).
    /// @param earningUnits Stake units that earn revenue. @param totalUnits All stake units.
    /// @param lossShares Shares seized by booked losses. @param lossAssets Losses booked.
    /// @param releasedShares Shares released from stake (see {StakeReleased}) not yet withdrawn
    /// (including the rounding dust of the release that belongs to no account).
    struct PoolTotals {
        uint256 raisedAssets;
        uint256 refundedAssets;
        uint256 drawnAssets;
        uint256 revenueInAssets;
        uint256 revenuePaidAssets;
        uint256 undistributedAssets;
        uint256 undistributedScaled;
        uint256 stakedShares;
        uint256 earningUnits;
        uint256 totalUnits;
        uint256 lossShares;
        uint256 lossAssets;
        uint256 releasedShares;
    }

    // ------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------

    /// @notice `caller` deposited `assets` in the round; `receiver` got `shares`.
    event Deposited(address indexed caller, address indexed receiver, uint256 assets, uint256 shares);

    /// @notice `owner` burnt `shares` of a failed round; `receiver` got `assets` back.
    event Refunded(address indexed owner, address indexed receiver, uint256 shares, uint256 assets);

    /// @notice The operator drew the raise; debt service starts with epoch `drawEpoch + 1`.
    event RaiseDrawn(address indexed operator, uint256 assets, uint64 drawEpoch);

    /// @notice `account` staked `shares` as `units`; they earn from epoch `activationEpoch`.
    event Staked(address indexed account, uint256 shares, uint256 units, uint64 activationEpoch);

    /// @notice Pending stake of `account` (`units`) moved its warm-up to `activationEpoch`
    /// because the account staked again before the earlier warm-up was activated.
    event WarmupRestarted(address indexed account, uint256 units, uint64 activationEpoch);

    /// @notice `account` asked to unstake `shares` (`units`); withdrawable from `unlockEpoch`.
    event UnstakeRequested(address indexed account, uint256 shares, uint256 units, uint64 unlockEpoch);

    /// @notice `account` withdrew `shares` (its `units` of cooled-down stake).
    event Unstaked(address indexed account, uint256 shares, uint256 units);

    /// @notice Stake in warm-up for `activationEpoch` (`units`) started earning.
    event CohortActivated(uint64 indexed activationEpoch, uint256 units);

    /// @notice Revenue `assets` of `epoch` was pushed; `revenueIndex` is the new accumulator
    /// over `earningUnits`. From {activateCohorts}, `assets` is 0 and `epoch` the last
    /// distributed one: revenue carried earlier was credited.
    event RevenueDistributed(uint64 indexed epoch, uint256 assets, uint256 earningUnits, uint256 revenueIndex);

    /// @notice Revenue `assets` of `epoch` was carried, not credited: warm-up cohorts due by
    /// `epoch` were left unactivated by the per-call bound. {activateCohorts} (or the next
    /// distribution) activates them and credits it.
    event RevenueDeferred(uint64 indexed epoch, uint256 assets);

    /// @notice `account` claimed `assets` of revenue, paid to `receiver`.
    event RevenueClaimed(address indexed account, address indexed receiver, uint256 assets);

    /// @notice A loss of `assets` seized `shares` of staked shares (pro-rata), sent to `recipient`.
    event LossBooked(uint256 assets, uint256 shares, address indexed recipient, uint256 stakedSharesAfter);

    /// @notice A loss took every staked share: all stake units are void; era `newEra` begins.
    event StakeWipedOut(uint64 newEra);

    /// @notice A loss left so few shares behind so many units (more than MAX_UNITS_PER_SHARE
    /// units a share) that the unit rate was reset: the `shares` still staked were released
    /// to their stakers at their exact value (withdrawable at once) and era `newEra` begins.
    event StakeReleased(uint64 newEra, uint256 shares);

    /// @notice `account` withdrew `shares` of stake released by a rate reset.
    event ReleasedStakeWithdrawn(address indexed account, uint256 shares);

    // ------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------

    /// @notice A required address (stablecoin, operator, admin, risk gate, recipient) is zero.
    error PoolZeroAddress();

    /// @notice Target, share price or deadline is zero / in the past.
    error PoolInvalidFunding(uint256 targetAssets, uint256 sharePrice, uint64 fundingDeadline);

    /// @notice Epoch length zero or above a year, or genesis zero.
    error PoolInvalidEpochSchedule(uint64 genesisTimestamp, uint64 epochLengthSeconds);

    /// @notice Cooldown must be at least one full epoch.
    error PoolInvalidCooldown(uint64 cooldownEpochs);

    /// @notice Tenor zero, or rate above 100% a year.
    error PoolInvalidDebtTerms(uint64 tenorEpochs, uint16 rateBps);

    /// @notice An amount (assets or shares) is zero, or converts to zero.
    error PoolZeroAmount();

    /// @notice Deposits are closed: the round is `status`.
    error PoolRoundNotOpen(RoundStatus status);

    /// @notice Refunds need a failed round; it is `status`.
    error PoolRoundNotFailed(RoundStatus status);

    /// @notice Drawing, staking and revenue need a succeeded round; it is `status`.
    error PoolRoundNotSucceeded(RoundStatus status);

    /// @notice Depositing `assets` would pass the target; only `remainingAssets` are left.
    error PoolFundingCapExceeded(uint256 assets, uint256 remainingAssets);

    /// @notice Only the operator may do this; `caller` is not it.
    error PoolNotOperator(address caller);

    /// @notice The raise was already drawn.
    error PoolAlreadyDrawn();

    /// @notice The account has `availableShares` at stake (earning + pending), asked for `requestedShares`.
    error PoolInsufficientStake(uint256 availableShares, uint256 requestedShares);

    /// @notice The account has no stake cooling down.
    error PoolNothingCooling();

    /// @notice Cooling stake unlocks at epoch `unlockEpoch`; it is epoch `currentEpoch`.
    error PoolCooldownActive(uint64 unlockEpoch, uint64 currentEpoch);

    /// @notice The account has no revenue to claim.
    error PoolNothingToClaim();

    /// @notice Revenue of `epoch` cannot be pushed before it ends (it is epoch `currentEpoch`).
    error PoolEpochNotEnded(uint64 epoch, uint64 currentEpoch);

    /// @notice Revenue epochs never go back: `epoch` is 0 or before `lastDistributedEpoch`.
    error PoolEpochOutOfOrder(uint64 epoch, uint64 lastDistributedEpoch);

    /// @notice A loss needs staked shares to absorb it; none are staked.
    error PoolNothingStaked();

    /// @notice A deposit of `assets` would raise more than the risk gate allows (`cap`, the
    /// LTV cap on the node's depreciated value; 0 while the node is flagged).
    error PoolRaiseCapExceeded(uint256 assets, uint256 raisedAssets, uint256 cap);

    /// @notice The raise cannot be drawn: node `nodeId` is flagged by the risk gate (DSCR under
    /// covenant or LTV over the cap at its last settlement).
    error PoolNodeFlagged(uint256 nodeId);

    /// @notice The raise cannot be drawn: `raisedAssets` is above the node's raise cap `cap` at
    /// draw time (its collateral depreciated, or the LTV cap lowered, since the deposits).
    error PoolDrawOverCap(uint256 raisedAssets, uint256 cap);

    // ------------------------------------------------------------------
    // Funding round
    // ------------------------------------------------------------------

    /**
     * @notice Deposits `assets` stablecoin in the round; `receiver` gets
     * `assets * 1e18 / sharePrice` shares (rounded down, in the pool's favour).
     * @dev Requirements: round Funding; `assets` > 0 and within the target; the raise after it
     * at most `riskGate().raiseCap(nodeId)` (PoolRaiseCapExceeded); caller approved the pool.
     */
    function deposit(uint256 assets, address receiver) external returns (uint256 shares);

    /**
     * @notice After a failed round, burns `shares` of the caller and pays `receiver`
     * their pro-rata part of the escrow left (the last refund takes the remainder exactly).
     * @dev Requirements: round Failed; `shares` > 0 and held by the caller.
     */
    function refund(uint256 shares, address receiver) external returns (uint256 assets);

    /**
     * @notice The operator takes the whole raise; it becomes debt amortised over
     * `tenorEpochs` epochs starting with the next one.
     * @dev Requirements: caller is the operator; round Succeeded; not drawn before; the node
     * not flagged by the risk gate now (PoolNodeFlagged) and the raise within its raise cap
     * now (PoolDrawOverCap): the cap was checked at each deposit, but the collateral keeps
     * depreciating and a covenant may break between the last deposit and the draw.
     */
    function drawRaise() external returns (uint256 assets);

    // ------------------------------------------------------------------
    // Staking
    // ------------------------------------------------------------------

    /**
     * @notice Moves `shares` of the caller into the pool's custody as stake. It
     * earns revenue of epochs from the next one on; it bears losses at once. Staking
     * again while earlier stake is still in warm-up moves that stake to the new warm-up.
     * @dev Requirements: round Succeeded; `shares` > 0 and held by the caller.
     */
    function stake(uint256 shares) external;

    /**
     * @notice Stops `shares` of the caller's stake from earning (warm-up stake first)
     * and starts their cooldown; a new request restarts the cooldown of all cooling stake.
     * @dev Requirements: `shares` > 0 and at most the caller's earning + pending stake.
     */
    function requestUnstake(uint256 shares) external;

    /**
     * @notice Returns the caller's cooled-down stake (after losses) and any released stake
     * (see {StakeReleased}) to the caller.
     * @dev Requirements: released stake, or cooling stake whose cooldown is over.
     */
    function withdraw() external returns (uint256 shares);

    /**
     * @notice Pays the caller's earned revenue to `receiver`, in whole stablecoin units (a
     * fraction below one unit stays accrued for the caller).
     * @dev Requirements: at least one whole unit to claim.
     */
    function claim(address receiver) external returns (uint256 assets);

    // ------------------------------------------------------------------
    // Settlement hooks
    // ------------------------------------------------------------------

    /**
     * @notice Pulls `assets` stablecoin from the caller as the stakers' revenue of
     * `epoch` and credits it pro-rata to stake that was earning for the whole epoch.
     * If nothing earns, the revenue waits for the next distribution (never lost).
     * @dev Gas: first activates the warm-up cohorts of epochs up to `epoch` — one per epoch
     * that saw new stake since the last distribution (one or two when settlement runs every
     * epoch), at most MAX_COHORTS_PER_CALL. If that leaves cohorts due by `epoch` unactivated,
     * the revenue is carried whole ({RevenueDeferred}) rather than credited to an incomplete
     * set of earning units; see {activateCohorts}.
     * Requirements: DISTRIBUTOR_ROLE; round Succeeded; `assets` > 0; `epoch` has
     * ended and is not before the last distributed epoch; caller approved the pool.
     */
    function distribute(uint64 epoch, uint256 assets) external;

    /**
     * @notice Activates up to `maxCount` warm-up cohorts due by the last distributed epoch
     * (activation <= {lastDistributedEpoch}) and, once none is left, credits the revenue
     * carried meanwhile to the earning units ({RevenueDistributed} with `assets` 0). Anyone
     * may call it: it only does what the next distribution would, without waiting for it.
     * Stake still in warm-up for a later epoch is not activated.
     * @dev Requirements: `maxCount` > 0. Emits {CohortActivated} per cohort.
     * @return complete Whether no cohort due by the last distributed epoch is left.
     */
    function activateCohorts(uint256 maxCount) external returns (bool complete);

    /**
     * @notice Books a loss beyond the operator's bond: seizes `assets` worth of staked
     * shares at the round's share price (rounded up, capped at everything staked) pro-rata
     * from every staker (earning, pending and cooling) and sends them to `recipient`.
     * @dev Requirements: SLASHER_ROLE; `assets` > 0; `recipient` non-zero; something staked.
     */
    function bookLoss(uint256 assets, address recipient) external returns (uint256 shares);

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @notice The round's state now.
    function roundStatus() external view returns (RoundStatus);

    /// @notice The epoch the current block is in (0 before genesis).
    function currentEpoch() external view returns (uint64);

    /// @notice The staking position of `account`.
    function stakeOf(address account) external view returns (StakeInfo memory);

    /// @notice Pool-wide accounting.
    function totals() external view returns (PoolTotals memory);

    /// @notice Debt service scheduled for `epoch`: straight-line principal plus interest
    /// on the principal outstanding before it (both zero outside the tenor or before the draw).
    function debtServiceDue(uint64 epoch) external view returns (uint256 principalAssets, uint256 interestAssets);

    /**
     * @notice Debt service scheduled for the epochs `fromEpoch..toEpoch` (inclusive), summed:
     * exactly Σ principal + interest of {debtServiceDue} over the range (0 for an empty range).
     * @dev O(log) whatever the range: the principal is a difference of outstanding balances and
     * the interest, a sum of floors of an arithmetic progression, is summed in closed form.
     * The settlement uses it to put the service of epochs it never settled into arrears.
     */
    function debtServiceBetween(uint64 fromEpoch, uint64 toEpoch) external view returns (uint256 serviceAssets);

    /// @notice The draw: whether the raise was drawn, the epoch of the draw, the assets drawn.
    function draw() external view returns (bool drawn, uint64 drawEpoch, uint256 drawnAssets);

    /// @notice The risk gate every deposit asks (immutable, never zero).
    function riskGate() external view returns (IRiskGate);

    /// @notice Principal still scheduled to be outstanding after `epoch`'s payment.
    function debtOutstanding(uint64 epoch) external view returns (uint256 principalAssets);

    /// @notice The last epoch whose revenue was distributed (0: none).
    function lastDistributedEpoch() external view returns (uint64);
}
