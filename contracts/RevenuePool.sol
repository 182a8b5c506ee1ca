// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC2771Context} from "@openzeppelin/contracts/metatx/ERC2771Context.sol";
import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {ERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/ERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Context} from "@openzeppelin/contracts/utils/Context.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {IRevenuePool} from "./interfaces/IRevenuePool.sol";
import {IRiskGate} from "./interfaces/IRiskGate.sol";
import {EmergencyPause} from "./utils/EmergencyPause.sol";

/**
 * @title RevenuePool
 * @notice The revenue-share pool of ONE node: its funding round, its shares (this
 * ERC-20), the operator's debt from the raise, and the staking that pays the node's
 * revenue out per epoch and absorbs losses beyond the operator's bond.
 *
 * Why one pool per node rather than per operator fleet: everything that prices the
 * financing is per node — the collateral (that node's GPUs, depreciated by its class),
 * the attested revenue that services the debt (OracleHub leaves are per node), the
 * bond that stands before the stakers, and the settlement split. A fleet pool would
 * cross-subsidise: a healthy node's revenue would silently cover a failing node's debt
 * and investors could not see which GPUs their money bought. An operator who wants
 * fleet exposure for investors can list several node pools; the reverse (splitting a
 * fleet pool per node) is not possible after the fact.
 *
 * Emergency pause ({EmergencyPause}): GUARDIAN_ROLE (granted to the deployment's guardian
 * when the pool is bound) can stop new deposits and the draw for a bounded time; refunds,
 * staking, unstaking, withdrawals, claims and distributions are never paused.
 *
 * Accounting (no loop over holders anywhere):
 * - Stake is held as units; `stakedShares / totalUnits` is the shares-per-unit rate. A
 *   booked loss removes shares and leaves units alone, so every staker loses the same
 *   fraction — the rate is the (multiplicative) loss accumulator. An additive
 *   loss-per-share accumulator would over-charge once the base it divides by has shrunk
 *   under earlier losses; the rate is exact under any sequence. A loss that takes every
 *   staked share voids all units and starts a new era.
 * - The rate is bounded: units per staked share never exceed MAX_UNITS_PER_SHARE (1e9).
 *   Stake and withdrawals never raise it (both round in the pool's favour); only a loss
 *   can, and a loss that would leave more than 1e9 units a share (its era's first stakers
 *   have lost all but a billionth, e.g. repeated 99.99% losses) ends the era instead: the
 *   shares still staked are RELEASED — each position gets its exact value at the final
 *   rate (units × shares / units, floored), withdrawable at once, no longer at stake — and
 *   the next stake starts a fresh era at one unit a share. Why: without a bound, repeated
 *   near-total losses followed by new stake multiply the units a share is worth until
 *   unit arithmetic overflows (a Panic that would block stake, withdrawals and losses), and
 *   long before that the revenue index stops moving (revenue × 1e36 < earning units), so
 *   stakers' revenue would pile up undistributed. With the bound, units <= 1e9 × shares
 *   <= 1e9 × 2^128 × 1e18 and one stablecoin unit moves the index of up to 1e27 shares.
 * - Revenue: `revenueIndex` accumulates assets × SCALE per earning unit. SCALE = 1e36
 *   because units have 18 decimals and revenue 6: with 1e36 one stablecoin unit spread
 *   over 1e27 units (a billion shares) still moves the index. The division remainder is
 *   kept scaled (`_remainderScaled`) and enters the next distribution, and accounts
 *   accrue scaled too (no per-account rounding), so exactly:
 *   SCALE × revenue in == SCALE × paid + Σ accounts' scaled accruals + `_remainderScaled`.
 *   A claim pays whole units only; nothing is paid that did not come in, and every
 *   fraction is tracked and owned (see {stakeOf}, {totals}). A direct token transfer to
 *   the pool changes nothing here.
 * - Warm-up: stake made in epoch c joins a cohort activating at c + 1; a distribution
 *   for epoch E first activates the cohorts with activation <= E, then credits
 *   earning units. Cohorts form a queue, so activation is amortised O(1) per stake.
 * - Activation is bounded: one call activates at most MAX_COHORTS_PER_CALL cohorts, so a
 *   pool that saw stake in many epochs without a distribution can still be distributed to
 *   (and its node settled). A distribution that leaves cohorts due (activation <= E) not
 *   yet activated does not credit its revenue to the incomplete set of earning units: it
 *   carries it whole (RevenueDeferred), as it does when nothing earns. The next distribution
 *   continues the activation, and anyone may call {activateCohorts} to activate the due
 *   cohorts and then credit what was carried, so no staker loses revenue to the bound.
 */
contract RevenuePool is
    ERC20,
    ERC20Permit,
    AccessControl,
    EmergencyPause,
    ERC2771Context,
    ReentrancyGuardTransient,
    IRevenuePool
{
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

    /// @dev A cohort: the stake whose warm-up ends at one activation epoch (within an era).
    /// Storage: units (slot 0) | indexAtFold (slot 1) | era (uint64) + queued + folded (slot 2).
    struct Cohort {
        uint256 units;
        uint256 indexAtFold;
        uint64 era;
        bool queued;
        bool folded;
    }

    /// @dev One account's stake. Storage: units | pendingUnits | coolingUnits | revenueIndex |
    /// accruedScaled (slots 0-4) | principalShares (uint128) + claimed (uint64) + era (uint64)
    /// (slot 5) | lostShares (uint128) + activationEpoch + unlockEpoch (uint64 each) (slot 6).
    /// Units stay uint256: after a near-total loss one share may be worth very many units.
    /// Revenue accrues scaled by SCALE (never rounded per account): the fraction below one
    /// stablecoin unit stays the account's and is paid once whole.
    struct Position {
        uint256 units;
        uint256 pendingUnits;
        uint256 coolingUnits;
        uint256 revenueIndex;
        uint256 accruedScaled;
        uint128 principalShares;
        uint64 claimed;
        uint64 era;
        uint128 lostShares;
        uint64 activationEpoch;
        uint64 unlockEpoch;
    }

    /// @dev A released era's final rate: its positions are worth units × shares / units.
    struct Release {
        uint256 shares;
        uint256 units;
    }

    /// @notice May push epoch revenue ({distribute}); held by the settlement contract.
    bytes32 public constant DISTRIBUTOR_ROLE = keccak256("DISTRIBUTOR_ROLE");
    /// @notice May book losses ({bookLoss}); held by the settlement / risk contract.
    bytes32 public constant SLASHER_ROLE = keccak256("SLASHER_ROLE");

    /// @notice The most stake units a staked share may stand for (see the contract notes).
    uint256 public constant MAX_UNITS_PER_SHARE = 1e9;

    /// @notice The most warm-up cohorts one {distribute} activates (see the contract notes):
    /// bounds its gas (about 20k a cohort) whatever the number of epochs that saw stake since
    /// the last one. A pool distributed every epoch has one or two due; one far behind catches
    /// up by at least 15 cohorts a distribution (stake adds at most one per epoch), or at once
    /// through {activateCohorts}. Small enough that the stateful test reaches it.
    uint256 public constant MAX_COHORTS_PER_CALL = 16;

    uint256 private constant SCALE = 1e36;
    uint256 private constant ONE_SHARE = 1e18;
    uint256 private constant BPS = 10_000;
    uint256 private constant YEAR_SECONDS = 365 days;

    /// @notice Asked by every {deposit}: the round may never have raised more than
    /// `riskGate.raiseCap(nodeId)` (the LTV cap on the node's depreciated collateral; 0 while
    /// the node is flagged). Set at construction, never zero and never changed: no pool can
    /// escape the cap, and EpochSettlement.setPool only binds a pool whose gate is itself.
    IRiskGate public immutable riskGate;

    IERC20 private immutable _stablecoin;
    address private immutable _operator;
    uint256 private immutable _nodeId;
    uint256 private immutable _targetAssets;
    uint256 private immutable _sharePrice;
    uint64 private immutable _fundingDeadline;
    uint64 private immutable _genesisTimestamp;
    uint64 private immutable _epochLengthSeconds;
    uint64 private immutable _cooldownEpochs;
    uint64 private immutable _tenorEpochs;
    uint16 private immutable _rateBps;

    // Round: raised, refunded, drawn (slots); drawEpoch + drawn flag share one slot.
    uint256 private _raisedAssets;
    uint256 private _refundedAssets;
    uint256 private _drawnAssets;
    uint64 private _drawEpoch;
    bool private _drawn;

    // Staking totals.
    uint256 private _stakedShares;
    uint256 private _totalUnits;
    uint256 private _earningUnits;
    uint256 private _revenueIndex;
    uint256 private _remainderScaled;
    uint256 private _revenueIn;
    uint256 private _revenuePaid;
    uint256 private _lossShares;
    uint256 private _lossAssets;
    // era + lastDistributedEpoch share one slot.
    uint64 private _era;
    uint64 private _lastDistributedEpoch;

    mapping(uint64 activationEpoch => Cohort) private _cohorts;
    uint64[] private _cohortQueue;
    uint256 private _cohortHead;
    mapping(uint64 era => uint256 revenueIndex) private _eraEndIndex;
    mapping(address account => Position) private _positions;
    // Release (see the contract notes): shares set aside and not yet withdrawn, each released
    // era's final (stakedShares, totalUnits), and what each account has had settled to it.
    uint256 private _releasedShares;
    mapping(uint64 era => Release) private _eraRelease;
    mapping(address account => uint256 shares) private _releasedOf;

    /**
     * @param config See {IRevenuePool.PoolConfig}.
     */
    constructor(PoolConfig memory config)
        ERC20(config.name, config.symbol)
        ERC20Permit(config.name)
        ERC2771Context(config.trustedForwarder)
    {
        if (
            config.stablecoin == address(0) || config.operator == address(0) || config.admin == address(0)
                || config.riskGate == address(0)
        ) revert PoolZeroAddress();
        // targetAssets <= 2^128 bounds every debt figure (see {debtServiceBetween}).
        bool badTarget = config.targetAssets == 0 || config.targetAssets > type(uint128).max;
        // slither-disable-next-line timestamp (a deadline in the past is a config error; drift is seconds)
        if (badTarget || config.sharePrice == 0 || config.fundingDeadline <= block.timestamp) {
            revert PoolInvalidFunding(config.targetAssets, config.sharePrice, config.fundingDeadline);
        }
        if (config.genesisTimestamp == 0 || config.epochLengthSeconds == 0 || config.epochLengthSeconds > 365 days) {
            revert PoolInvalidEpochSchedule(config.genesisTimestamp, config.epochLengthSeconds);
        }
        if (config.cooldownEpochs == 0) revert PoolInvalidCooldown(config.cooldownEpochs);
        if (config.tenorEpochs == 0 || config.rateBps > BPS) {
            revert PoolInvalidDebtTerms(config.tenorEpochs, config.rateBps);
        }
        riskGate = IRiskGate(config.riskGate);
        _stablecoin = IERC20(config.stablecoin);
        _operator = config.operator;
        _nodeId = config.nodeId;
        _targetAssets = config.targetAssets;
        _sharePrice = config.sharePrice;
        _fundingDeadline = config.fundingDeadline;
        _genesisTimestamp = config.genesisTimestamp;
        _epochLengthSeconds = config.epochLengthSeconds;
        _cooldownEpochs = config.cooldownEpochs;
        _tenorEpochs = config.tenorEpochs;
        _rateBps = config.rateBps;
        _grantRole(DEFAULT_ADMIN_ROLE, config.admin);
    }

    // ------------------------------------------------------------------
    // Funding round
    // ------------------------------------------------------------------

    /// @inheritdoc IRevenuePool
    function deposit(uint256 assets, address receiver) external nonReentrant whenNotPaused returns (uint256 shares) {
        RoundStatus status = roundStatus();
        if (status != RoundStatus.Funding) revert PoolRoundNotOpen(status);
        if (assets == 0) revert PoolZeroAmount();
        uint256 raised = _raisedAssets;
        uint256 remaining = _targetAssets - raised;
        if (assets > remaining) revert PoolFundingCapExceeded(assets, remaining);
        // A view on the immutable gate (the settlement), before any state write.
        uint256 cap = riskGate.raiseCap(_nodeId);
        if (raised + assets > cap) revert PoolRaiseCapExceeded(assets, raised, cap);
        shares = Math.mulDiv(assets, ONE_SHARE, _sharePrice);
        if (shares == 0) revert PoolZeroAmount();
        address sender = _msgSender();
        _raisedAssets += assets;
        _mint(receiver, shares);
        emit Deposited(sender, receiver, assets, shares);
        // External call after the state writes: pulling the deposit is the only interaction.
        // slither-disable-next-line arbitrary-send-erc20 (from is the caller, via ERC-2771 when relayed)
        _stablecoin.safeTransferFrom(sender, address(this), assets);
    }

    /// @inheritdoc IRevenuePool
    function refund(uint256 shares, address receiver) external nonReentrant returns (uint256 assets) {
        RoundStatus status = roundStatus();
        if (status != RoundStatus.Failed) revert PoolRoundNotFailed(status);
        if (shares == 0) revert PoolZeroAmount();
        if (receiver == address(0)) revert PoolZeroAddress();
        // Pro-rata of what is left, against the supply before this burn: the last refund
        // (shares == supply) takes the escrow exactly, so nothing is stranded.
        assets = Math.mulDiv(shares, _raisedAssets - _refundedAssets, totalSupply());
        address owner = _msgSender();
        _burn(owner, shares);
        _refundedAssets += assets;
        emit Refunded(owner, receiver, shares, assets);
        _stablecoin.safeTransfer(receiver, assets);
    }

    /// @inheritdoc IRevenuePool
    function drawRaise() external nonReentrant whenNotPaused returns (uint256 assets) {
        if (_msgSender() != _operator) revert PoolNotOperator(_msgSender());
        _requireSucceeded();
        if (_drawn) revert PoolAlreadyDrawn();
        assets = _raisedAssets;
        // Views on the immutable gate (the settlement), before any state write: the cap and the
        // flags of the node as they stand at the draw, not as they stood at the deposits.
        if (riskGate.isFlagged(_nodeId)) revert PoolNodeFlagged(_nodeId);
        uint256 cap = riskGate.raiseCap(_nodeId);
        if (assets > cap) revert PoolDrawOverCap(assets, cap);
        uint64 drawEpoch = currentEpoch();
        _drawn = true;
        _drawEpoch = drawEpoch;
        _drawnAssets = assets;
        emit RaiseDrawn(_operator, assets, drawEpoch);
        _stablecoin.safeTransfer(_operator, assets);
    }

    // ------------------------------------------------------------------
    // Staking
    // ------------------------------------------------------------------

    /// @inheritdoc IRevenuePool
    function stake(uint256 shares) external {
        _requireSucceeded();
        if (shares == 0) revert PoolZeroAmount();
        address account = _msgSender();
        Position memory p = _settle(account);
        uint256 units = _toUnits(shares);
        if (units == 0) revert PoolZeroAmount();
        uint64 activation = currentEpoch() + 1;
        if (p.pendingUnits != 0 && p.activationEpoch != activation) {
            // Earlier stake still in warm-up (its cohort not activated): one pending cohort per
            // account keeps positions O(1), so it joins the new, later cohort.
            _cohorts[p.activationEpoch].units -= p.pendingUnits;
            _addToCohort(activation, p.pendingUnits);
            emit WarmupRestarted(account, p.pendingUnits, activation);
        }
        _addToCohort(activation, units);
        p.pendingUnits += units;
        p.activationEpoch = activation;
        p.principalShares += shares.toUint128();
        _positions[account] = p;
        _totalUnits += units;
        _stakedShares += shares;
        _transfer(account, address(this), shares);
        emit Staked(account, shares, units, activation);
    }

    /// @inheritdoc IRevenuePool
    function requestUnstake(uint256 shares) external {
        if (shares == 0) revert PoolZeroAmount();
        address account = _msgSender();
        Position memory p = _settle(account);
        uint256 units = _toUnitsRoundUp(shares);
        uint256 available = p.units + p.pendingUnits;
        if (units > available) revert PoolInsufficientStake(_toShares(available), shares);
        uint256 fromPending = Math.min(units, p.pendingUnits);
        if (fromPending != 0) {
            _cohorts[p.activationEpoch].units -= fromPending;
            p.pendingUnits -= fromPending;
            if (p.pendingUnits == 0) p.activationEpoch = 0;
        }
        uint256 fromEarning = units - fromPending;
        if (fromEarning != 0) {
            p.units -= fromEarning;
            _earningUnits -= fromEarning;
        }
        uint64 unlock = currentEpoch() + 1 + _cooldownEpochs;
        p.coolingUnits += units;
        p.unlockEpoch = unlock;
        _positions[account] = p;
        emit UnstakeRequested(account, shares, units, unlock);
    }

    /// @inheritdoc IRevenuePool
    function withdraw() external returns (uint256 shares) {
        address account = _msgSender();
        (Position memory p, uint256 released) = _settled(account);
        released += _releasedOf[account];
        uint256 units = p.coolingUnits;
        uint64 epoch = currentEpoch();
        bool unlocked = units != 0 && epoch >= p.unlockEpoch;
        if (!unlocked && released == 0) {
            if (units == 0) revert PoolNothingCooling();
            revert PoolCooldownActive(p.unlockEpoch, epoch);
        }
        if (unlocked) {
            shares = _toShares(units);
            // The withdrawn part's face value: its share of the account's principal.
            uint128 principalPart =
                Math.mulDiv(p.principalShares, units, p.units + p.pendingUnits + units).toUint128();
            if (principalPart > shares) p.lostShares += principalPart - shares.toUint128();
            p.principalShares -= principalPart;
            p.coolingUnits = 0;
            p.unlockEpoch = 0;
            _totalUnits -= units;
            _stakedShares -= shares;
            emit Unstaked(account, shares, units);
        }
        _positions[account] = p;
        if (released != 0) {
            _releasedOf[account] = 0;
            _releasedShares -= released;
            shares += released;
            emit ReleasedStakeWithdrawn(account, released);
        }
        _transfer(address(this), account, shares);
    }

    /// @inheritdoc IRevenuePool
    function claim(address receiver) external nonReentrant returns (uint256 assets) {
        if (receiver == address(0)) revert PoolZeroAddress();
        address account = _msgSender();
        Position memory p = _settle(account);
        assets = p.accruedScaled / SCALE;
        if (assets == 0) revert PoolNothingToClaim();
        // slither-disable-next-line divide-before-multiply (keeps the fraction below one unit accrued)
        p.accruedScaled -= assets * SCALE;
        p.claimed += assets.toUint64();
        _positions[account] = p;
        _revenuePaid += assets;
        emit RevenueClaimed(account, receiver, assets);
        _stablecoin.safeTransfer(receiver, assets);
    }

    // ------------------------------------------------------------------
    // Settlement hooks
    // ------------------------------------------------------------------

    /// @inheritdoc IRevenuePool
    function distribute(uint64 epoch, uint256 assets) external onlyRole(DISTRIBUTOR_ROLE) nonReentrant {
        _requireSucceeded();
        if (assets == 0) revert PoolZeroAmount();
        uint64 now_ = currentEpoch();
        if (epoch >= now_) revert PoolEpochNotEnded(epoch, now_);
        uint64 last = _lastDistributedEpoch;
        if (epoch == 0 || epoch < last) revert PoolEpochOutOfOrder(epoch, last);
        _lastDistributedEpoch = epoch;
        bool complete = _activateThrough(epoch, MAX_COHORTS_PER_CALL);
        uint256 earning = _earningUnits;
        uint256 numerator = assets * SCALE + _remainderScaled;
        uint256 index = _revenueIndex;
        if (earning == 0 || !complete) {
            // Nobody earns yet, or not everyone who should (cohorts still due): carried whole
            // to the next distribution or {activateCohorts}.
            _remainderScaled = numerator;
            if (!complete) emit RevenueDeferred(epoch, assets);
        } else {
            uint256 increment = numerator / earning;
            // slither-disable-next-line divide-before-multiply (the remainder of that division, kept on purpose)
            _remainderScaled = numerator - increment * earning;
            index += increment;
            _revenueIndex = index;
        }
        _revenueIn += assets;
        emit RevenueDistributed(epoch, assets, earning, index);
        address sender = _msgSender();
        // External call after the state writes: pulling the revenue is the only interaction.
        // slither-disable-next-line arbitrary-send-erc20 (from is the caller, via ERC-2771 when relayed)
        _stablecoin.safeTransferFrom(sender, address(this), assets);
    }

    /// @inheritdoc IRevenuePool
    function activateCohorts(uint256 maxCount) external returns (bool complete) {
        if (maxCount == 0) revert PoolZeroAmount();
        uint64 epoch = _lastDistributedEpoch;
        complete = _activateThrough(epoch, maxCount);
        uint256 earning = _earningUnits;
        uint256 remainder = _remainderScaled;
        // Revenue carried while cohorts were due (or nobody earned) goes to the earning units
        // once every cohort due by the last distributed epoch is among them.
        if (!complete || earning == 0 || remainder < earning) return complete;
        uint256 increment = remainder / earning;
        // slither-disable-next-line divide-before-multiply (the remainder of that division, kept on purpose)
        _remainderScaled = remainder - increment * earning;
        uint256 index = _revenueIndex + increment;
        _revenueIndex = index;
        emit RevenueDistributed(epoch, 0, earning, index);
    }

    /// @inheritdoc IRevenuePool
    function bookLoss(uint256 assets, address recipient) external onlyRole(SLASHER_ROLE) returns (uint256 shares) {
        if (assets == 0) revert PoolZeroAmount();
        if (recipient == address(0)) revert PoolZeroAddress();
        uint256 staked = _stakedShares;
        if (staked == 0) revert PoolNothingStaked();
        shares = Math.min(Math.mulDiv(assets, ONE_SHARE, _sharePrice, Math.Rounding.Ceil), staked);
        staked -= shares;
        _stakedShares = staked;
        _lossShares += shares;
        _lossAssets += assets;
        // No overflow: staked <= supply <= 2^128 × 1e18 (the target is bounded).
        if (staked == 0 || _totalUnits > staked * MAX_UNITS_PER_SHARE) {
            _endEra(staked);
            staked = 0;
        }
        _transfer(address(this), recipient, shares);
        emit LossBooked(assets, shares, recipient, staked);
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @inheritdoc IRevenuePool
    function roundStatus() public view returns (RoundStatus) {
        if (_raisedAssets >= _targetAssets) return RoundStatus.Succeeded;
        // slither-disable-next-line timestamp (deadline of a days-long round; drift is seconds)
        if (block.timestamp >= _fundingDeadline) return RoundStatus.Failed;
        return RoundStatus.Funding;
    }

    /// @inheritdoc IRevenuePool
    function currentEpoch() public view returns (uint64) {
        // slither-disable-next-line timestamp (epochs are minutes to hours; drift is seconds)
        if (block.timestamp < _genesisTimestamp) return 0;
        return uint64((block.timestamp - _genesisTimestamp) / _epochLengthSeconds) + 1;
    }

    /// @inheritdoc IRevenuePool
    function stakeOf(address account) external view returns (StakeInfo memory info) {
        (Position memory p, uint256 released) = _settled(account);
        info.releasedShares = _releasedOf[account] + released;
        info.earningShares = _toShares(p.units);
        info.pendingShares = _toShares(p.pendingUnits);
        info.coolingShares = _toShares(p.coolingUnits);
        info.activationEpoch = p.activationEpoch;
        info.unlockEpoch = p.unlockEpoch;
        info.claimableAssets = p.accruedScaled / SCALE;
        info.claimableFractionScaled = p.accruedScaled % SCALE;
        info.claimedAssets = p.claimed;
        info.principalShares = p.principalShares;
        uint256 value = _toShares(p.units + p.pendingUnits + p.coolingUnits);
        info.lossShares = p.lostShares + (p.principalShares > value ? p.principalShares - value : 0);
    }

    /// @inheritdoc IRevenuePool
    function totals() external view returns (PoolTotals memory t) {
        t.raisedAssets = _raisedAssets;
        t.refundedAssets = _refundedAssets;
        t.drawnAssets = _drawnAssets;
        t.revenueInAssets = _revenueIn;
        t.revenuePaidAssets = _revenuePaid;
        t.undistributedAssets = _remainderScaled / SCALE;
        t.undistributedScaled = _remainderScaled;
        t.stakedShares = _stakedShares;
        t.earningUnits = _earningUnits;
        t.totalUnits = _totalUnits;
        t.lossShares = _lossShares;
        t.lossAssets = _lossAssets;
        t.releasedShares = _releasedShares;
    }

    /// @inheritdoc IRevenuePool
    function debtServiceDue(uint64 epoch) external view returns (uint256 principalAssets, uint256 interestAssets) {
        uint64 drawEpoch = _drawEpoch;
        if (!_drawn || epoch <= drawEpoch || epoch > drawEpoch + _tenorEpochs) return (0, 0);
        uint256 n = epoch - drawEpoch; // 1..tenor
        uint256 perEpoch = _drawnAssets / _tenorEpochs;
        // slither-disable-next-line divide-before-multiply (straight-line instalments; the last takes the rest)
        uint256 outstandingBefore = _drawnAssets - perEpoch * (n - 1);
        principalAssets = n == _tenorEpochs ? outstandingBefore : perEpoch;
        interestAssets = Math.mulDiv(outstandingBefore, uint256(_rateBps) * _epochLengthSeconds, BPS * YEAR_SECONDS);
    }

    /// @inheritdoc IRevenuePool
    function debtServiceBetween(uint64 fromEpoch, uint64 toEpoch) external view returns (uint256 serviceAssets) {
        if (!_drawn) return 0;
        uint256 drawEpoch = _drawEpoch;
        uint256 tenor = _tenorEpochs;
        // Instalment numbers n (epoch = drawEpoch + n, 1 <= n <= tenor) inside the range.
        uint256 first = fromEpoch > drawEpoch ? fromEpoch - drawEpoch : 1;
        uint256 last = toEpoch > drawEpoch ? Math.min(toEpoch - drawEpoch, tenor) : 0;
        if (first > last) return 0;
        uint256 drawn = _drawnAssets;
        uint256 perEpoch = drawn / tenor;
        // Principal: outstanding before instalment `first` less outstanding after `last`.
        // slither-disable-next-line divide-before-multiply (straight-line instalments; the last takes the rest)
        uint256 principal = (drawn - perEpoch * (first - 1)) - (last == tenor ? 0 : drawn - perEpoch * last);
        // Interest: Σ_{n=first..last} floor((drawn - perEpoch·(n-1))·r / d), r = rateBps·epochLength,
        // d = BPS·YEAR — with j = last - n, Σ_{j=0..k-1} floor((perEpoch·r·j + (drawn - perEpoch·(last-1))·r) / d).
        // No overflow: drawn <= 2^128 (constructor) and r < 2^39.
        uint256 r = uint256(_rateBps) * _epochLengthSeconds;
        // slither-disable-next-line divide-before-multiply (whole instalments, exactly as debtServiceDue)
        uint256 interest = _floorSum(last - first + 1, BPS * YEAR_SECONDS, perEpoch * r, (drawn - perEpoch * (last - 1)) * r);
        serviceAssets = principal + interest;
    }

    /// @inheritdoc IRevenuePool
    function debtOutstanding(uint64 epoch) external view returns (uint256 principalAssets) {
        if (!_drawn) return 0;
        uint64 drawEpoch = _drawEpoch;
        if (epoch <= drawEpoch) return _drawnAssets;
        uint256 n = epoch - drawEpoch;
        if (n >= _tenorEpochs) return 0;
        // slither-disable-next-line divide-before-multiply (straight-line instalments; the last takes the rest)
        return _drawnAssets - (_drawnAssets / _tenorEpochs) * n;
    }

    /// @inheritdoc IRevenuePool
    function lastDistributedEpoch() external view returns (uint64) {
        return _lastDistributedEpoch;
    }

    /// @notice Round and debt terms: (stablecoin, operator, nodeId, targetAssets, sharePrice,
    /// fundingDeadline, tenorEpochs, rateBps).
    function terms()
        external
        view
        returns (address, address, uint256, uint256, uint256, uint64, uint64, uint16)
    {
        return (
            address(_stablecoin),
            _operator,
            _nodeId,
            _targetAssets,
            _sharePrice,
            _fundingDeadline,
            _tenorEpochs,
            _rateBps
        );
    }

    /// @notice Epoch schedule: (genesisTimestamp, epochLengthSeconds, cooldownEpochs).
    function epochSchedule() external view returns (uint64, uint64, uint64) {
        return (_genesisTimestamp, _epochLengthSeconds, _cooldownEpochs);
    }

    /// @inheritdoc IRevenuePool
    function draw() external view returns (bool, uint64, uint256) {
        return (_drawn, _drawEpoch, _drawnAssets);
    }

    // ------------------------------------------------------------------
    // Internal
    // ------------------------------------------------------------------

    function _requireSucceeded() internal view {
        RoundStatus status = roundStatus();
        if (status != RoundStatus.Succeeded) revert PoolRoundNotSucceeded(status);
    }

    /// @dev {_settled}, written back where it cannot be recomputed later: stake released from
    /// an ended era is credited to the account (the position then moves to the current era).
    function _settle(address account) internal returns (Position memory p) {
        uint256 released;
        (p, released) = _settled(account);
        if (released != 0) _releasedOf[account] += released;
    }

    /// @dev The account's position brought up to date (revenue accrued, activated warm-up
    /// moved to earning, an ended era cleared), without writing it. `released`: the shares a
    /// release of the position's era gives back (0 unless that era ended in a release).
    function _settled(address account) internal view returns (Position memory p, uint256 released) {
        p = _positions[account];
        uint256 index = _revenueIndex;
        if (p.era != _era) {
            // The era ended: earnings up to its end stay claimable; the stake is gone (wiped
            // out) or comes back at the era's final rate (released).
            uint256 endIndex = _eraEndIndex[p.era];
            uint256 earned = _earned(p.units, endIndex - p.revenueIndex);
            if (p.pendingUnits != 0) {
                Cohort storage old = _cohorts[p.activationEpoch];
                if (old.folded && old.era == p.era) earned += _earned(p.pendingUnits, endIndex - old.indexAtFold);
            }
            p.accruedScaled += earned;
            Release memory rel = _eraRelease[p.era];
            if (rel.units != 0) {
                released = Math.mulDiv(p.units + p.pendingUnits + p.coolingUnits, rel.shares, rel.units);
            }
            // released <= the position's value <= principal (stake rounds in the pool's favour).
            uint256 principal = p.principalShares;
            p.lostShares += (principal - Math.min(principal, released)).toUint128();
            p.principalShares = 0;
            p.units = 0;
            p.pendingUnits = 0;
            p.coolingUnits = 0;
            p.activationEpoch = 0;
            p.unlockEpoch = 0;
            p.era = _era;
            p.revenueIndex = index;
            return (p, released);
        }
        uint256 accrued = _earned(p.units, index - p.revenueIndex);
        if (p.pendingUnits != 0) {
            Cohort storage cohort = _cohorts[p.activationEpoch];
            if (cohort.folded) {
                accrued += _earned(p.pendingUnits, index - cohort.indexAtFold);
                p.units += p.pendingUnits;
                p.pendingUnits = 0;
                p.activationEpoch = 0;
            }
        }
        p.accruedScaled += accrued;
        p.revenueIndex = index;
    }

    /// @dev Ends the staking era: every unit is void. Shares still staked (`staked` > 0, a
    /// release) are set aside for the era's positions at its final rate.
    function _endEra(uint256 staked) internal {
        uint64 era = _era;
        _eraEndIndex[era] = _revenueIndex;
        if (staked != 0) {
            _eraRelease[era] = Release(staked, _totalUnits);
            _releasedShares += staked;
            _stakedShares = 0;
            emit StakeReleased(era + 1, staked);
        } else {
            emit StakeWipedOut(era + 1);
        }
        _era = era + 1;
        _totalUnits = 0;
        _earningUnits = 0;
        _cohortHead = _cohortQueue.length;
    }

    function _addToCohort(uint64 activation, uint256 units) internal {
        Cohort storage cohort = _cohorts[activation];
        if (cohort.era != _era || !cohort.queued) {
            // A fresh cohort (or one left from a wiped era): reset and queue it.
            cohort.units = 0;
            cohort.indexAtFold = 0;
            cohort.era = _era;
            cohort.queued = true;
            cohort.folded = false;
            _cohortQueue.push(activation);
        }
        cohort.units += units;
    }

    /// @dev Activates up to `maxCount` queued cohorts whose warm-up ended by `epoch`
    /// (activation <= epoch). Cohorts are queued in activation order and each is activated
    /// once. `complete`: no cohort due by `epoch` is left unactivated.
    function _activateThrough(uint64 epoch, uint256 maxCount) internal returns (bool complete) {
        uint256 head = _cohortHead;
        uint256 length = _cohortQueue.length;
        if (head == length) return true;
        uint256 index = _revenueIndex;
        uint256 earning = _earningUnits;
        uint256 end = length - head > maxCount ? head + maxCount : length;
        while (head < end) {
            uint64 activation = _cohortQueue[head];
            if (activation > epoch) break;
            Cohort storage cohort = _cohorts[activation];
            cohort.folded = true;
            cohort.queued = false;
            cohort.indexAtFold = index;
            earning += cohort.units;
            emit CohortActivated(activation, cohort.units);
            ++head;
        }
        _cohortHead = head;
        _earningUnits = earning;
        complete = head == length || _cohortQueue[head] > epoch;
    }

    /// @dev Revenue of `units` over an index move, scaled by SCALE. No overflow: units that
    /// earned over the move were part of every divisor, so this is at most SCALE x revenue in.
    function _earned(uint256 units, uint256 indexDelta) internal pure returns (uint256) {
        return units * indexDelta;
    }

    /// @dev Shares → units at the current rate, rounded down (1:1 when no unit exists).
    function _toUnits(uint256 shares) internal view returns (uint256) {
        uint256 totalUnits = _totalUnits;
        if (totalUnits == 0) return shares;
        return Math.mulDiv(shares, totalUnits, _stakedShares);
    }

    /// @dev Shares → units, rounded up: what an unstake request of `shares` must take.
    function _toUnitsRoundUp(uint256 shares) internal view returns (uint256) {
        uint256 totalUnits = _totalUnits;
        if (totalUnits == 0) return shares;
        return Math.mulDiv(shares, totalUnits, _stakedShares, Math.Rounding.Ceil);
    }

    /// @dev Units → shares at the current rate, rounded down.
    function _toShares(uint256 units) internal view returns (uint256) {
        uint256 totalUnits = _totalUnits;
        if (totalUnits == 0) return 0;
        return Math.mulDiv(units, _stakedShares, totalUnits);
    }

    /// @dev Σ_{i=0..n-1} floor((a·i + b) / m), exactly, in O(log m) steps (the Euclid-like
    /// reduction of AtCoder Library's floor_sum). Requires n >= 1, m >= 1; every intermediate
    /// is at most a·n + b of the first step.
    function _floorSum(uint256 n, uint256 m, uint256 a, uint256 b) private pure returns (uint256 sum) {
        while (true) {
            if (a >= m) {
                // n·(n-1) is even: the halving is exact.
                // slither-disable-next-line divide-before-multiply (exact halving, then whole quotients)
                sum += (n * (n - 1) / 2) * (a / m);
                a %= m;
            }
            if (b >= m) {
                // slither-disable-next-line divide-before-multiply (the floor of each term, by design)
                sum += n * (b / m);
                b %= m;
            }
            uint256 yMax = a * n + b;
            if (yMax < m) return sum;
            (n, b) = (yMax / m, yMax % m);
            (m, a) = (a, m);
        }
    }

    function _msgSender() internal view override(Context, ERC2771Context) returns (address) {
        return ERC2771Context._msgSender();
    }

    function _msgData() internal view override(Context, ERC2771Context) returns (bytes calldata) {
        return ERC2771Context._msgData();
    }

    function _contextSuffixLength() internal view override(Context, ERC2771Context) returns (uint256) {
        return ERC2771Context._contextSuffixLength();
    }
}
