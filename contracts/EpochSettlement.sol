// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {ICapacityToken} from "./interfaces/ICapacityToken.sol";
import {INodeRegistry} from "./interfaces/INodeRegistry.sol";
import {IOracleHub} from "./interfaces/IOracleHub.sol";
import {ILoanLedger, IPoolLoans} from "./interfaces/IPoolLoans.sol";
import {IRevenuePool} from "./interfaces/IRevenuePool.sol";
import {IRiskGate} from "./interfaces/IRiskGate.sol";
import {RiskModel} from "./libraries/RiskModel.sol";
import {PoolLoans} from "./PoolLoans.sol";
import {RevenuePool} from "./RevenuePool.sol";

/**
 * @title EpochSettlement
 * @notice Settles nodes' epochs: one transaction, many nodes, one epoch E. Per node it proves
 * the node's attested leaf of E against the OracleHub root and settles the whole range of
 * epochs since the node's last settled one, (last, E], at a cost independent of the range's
 * length: it bills the renter for the usage of the range (the difference of the leaf's
 * cumulative counter and the one last settled), collects the node's held capacity sale
 * proceeds, and splits the total:
 * protocol fee → insurance reserve → operator share → debt service to the node's pool →
 * remainder to the pool's stakers. It records the node's trailing net revenue and
 * scheduled debt service so DSCR is a view, and flags nodes that break their covenant.
 * Invariant: every epoch of a node after its first settled one is billed and owes its service
 * exactly once, in the settlement whose range holds it.
 *
 * Design decisions:
 * - Usage is priced per node: `pricePerGpuHour` (stablecoin units per delivered GPU-hour)
 *   × the range's milli-GPU-hours / 1000, floored, pulled from the node's registered payer
 *   (renter escrow) by allowance, under the terms in force for the range's epochs (see
 *   "Terms are a function of the epoch"). Why not an amount the caller states: the bill is a
 *   function of the attested leaf and of terms the payer agreed to, so neither the keeper nor
 *   the operator can over- or under-bill. A payer that prefers EIP-2612 signs a permit to
 *   this contract; anyone can submit it to the token first.
 * - Payer consent: TERMS_ROLE names a node's payer and price, but only the payer can agree
 *   to pay it: `approveUsage(nodeId, maxPricePerGpuHour)`, sent by the payer, records the
 *   most it accepts per GPU-hour for that node. A range's usage is billed only if the
 *   price of the terms in force for it is at most the maximum its payer had agreed to when
 *   those terms took hold (0 = never agreed, or withdrawn); otherwise the range's usage is not billed (UsageNotBilled says why) and the
 *   rest of the settlement (proceeds, debt, window) goes on. Why a maximum and not the
 *   price itself: TERMS_ROLE may lower a price without asking; raising it past what the
 *   payer agreed to stops billing until the payer agrees again. Consent is per (node, payer):
 *   naming another payer needs that payer's own consent. An allowance alone is not consent:
 *   a renter may approve this contract for all its nodes at once.
 * - Terms are a function of the epoch: each change ({setUsageTerms}; {approveUsage} by the
 *   node's newest payer) takes effect from `fromEpoch` = the hub's current epoch + 1 (the
 *   first epoch starting after it: the running epoch stays under the old terms) and is kept
 *   in a short per-node log of {TermsChange}s that snapshot payer, price and the payer's
 *   consent at that moment (a change with the newest entry's fromEpoch overwrites it; a
 *   consent change by an address that is not the newest payer writes no entry: consent is
 *   snapshotted when terms name that payer). A settlement never crosses a change: the range
 *   (last, E] is billed under the one entry in force for all its usage, and an item whose
 *   range holds a change after usage reverts (SettlementTermsChangeInRange) — the keeper
 *   settles up to the change first. Exempt, since no usage lies before the change: a range
 *   whose epochs before the change were all passed over by the oracles (no root; a hole
 *   below an attested epoch is final, at most MAX_TERMS_GAP_EPOCHS scanned), and a range
 *   with no usage before its leaf's own epoch (cum - milliGpuHours == settled cum). So a
 *   payer named mid-range is billed from its fromEpoch only, a price change is never
 *   retroactive, and consent withdrawn before settlement still bills the epochs before.
 *   Invariant: each epoch's usage is billed under the entry in force for that epoch.
 *   Griefing bound: a payer toggling consent every epoch forces one settlement per change
 *   (its own gas per toggle, the keeper's gas per piece), nothing more.
 * - Capacity proceeds: CapacityToken holds sale proceeds per node, not per epoch or window;
 *   a settlement collects everything the node holds at that moment, including sales of
 *   windows not yet delivered. Why that is safe, and where it is not: a buyer's refund for
 *   an undelivered window is never paid from proceeds, only from the bond the offer locked
 *   (CapacityToken.settleReservation pays it out of the reservation's own lock). A
 *   reservation's refund is at most refundPrice × (1 + shortfallPenaltyBps) per GPU-hour
 *   short, and its lock is ceil(refundPrice × bondCoverageBps) per GPU-hour, so while
 *   bondCoverageBps >= 10_000 + shortfallPenaltyBps (deployment: 12_000 >= 10_000 + 2_000)
 *   every refund is paid in full from the bond and collected proceeds never have to come
 *   back; no other slash reaches a lock, and a node cannot exit while one is open. The
 *   exposure left: a refund the lock does not cover — the penalty raised or the coverage
 *   lowered after the offers — is recorded as
 *   CapacityToken.uncoveredShortfall(node), a claim on the operator, while the proceeds of
 *   that window were already split (fee, reserve, operator, pool). Restricting collection to
 *   settled windows needs proceeds held per window in CapacityToken (not done).
 * - Split (all bps of the settlement's gross = usage + proceeds, floored): fee, reserve,
 *   operator share. What is left is the node's NET revenue (what services the debt; the
 *   operator share pays for power and hosting). Debt service = min(due + arrears, net), to
 *   the pool; the rest goes to the stakers. Both reach the pool in ONE
 *   `RevenuePool.distribute`, because the stakers are the lenders. Unpaid service carries
 *   as arrears. A node without a pool, or whose round has not succeeded, has no stakers:
 *   their part goes to the operator. Nothing is rounded away:
 *   gross == fee + reserve + operatorShare + debtPaid + stakersShare, to the unit (event).
 * - Fees, reserve and operator shares are held here and withdrawn (pull), so one bad
 *   recipient cannot block a batch. Invariant: stablecoin held == fees + reserve +
 *   operator credits not yet withdrawn (plus any donation).
 * - A node's epochs settle in strictly increasing order (RevenuePool.distribute needs that
 *   anyway): settling a settled epoch, or one before the last settled, reverts. Settling is
 *   SETTLER_ROLE only: the keeper chooses each node's cadence (a range per settlement).
 * - One bad item does not block a batch: each item settles all-or-nothing in its own call
 *   frame, and an item that reverts is skipped with SettlementItemSkipped (its node, epoch and
 *   revert data); a batch whose every item reverts reverts as its first item did.
 * - Ranges: the leaf's `cumMilliGpuHours` is chained by the oracles over every attested epoch
 *   since the node's registration (epochs where the node has no leaf included), so the usage
 *   of (last, E] is leaf.cumMilliGpuHours - settledCumMilli (the cum of the last settled leaf):
 *   one proof, one subtraction, whatever the range. A node's first settlement bills that
 *   epoch's own `milliGpuHours` only (the payer agreed to no earlier usage; the keeper picks the
 *   first billable epoch). A leaf whose usage before its own epoch would be negative
 *   (cum - milliGpuHours < settledCumMilli: the counters went back) reverts
 *   (SettlementCumulativeBelowSettled). The range's debt is not forgiven: from the pool's draw
 *   on, the service scheduled for every epoch of (last, E] is owed at once
 *   (RevenuePool.debtServiceBetween, exact and O(1)), plus the arrears; what net revenue does
 *   not pay carries as arrears. NodeSettled names the range (fromEpoch..epoch).
 *   A pool is only bound if no epoch already settled for the node had service due (setPool).
 * - DSCR window: a ring of settlement records {net, scheduled service, epochs covered}. The
 *   window is the fewest trailing records that cover at least `dscrWindowEpochs` epochs (all
 *   of them while fewer are recorded); a record counts at most `dscrWindowEpochs` epochs. Each
 *   settlement pushes its record and evicts the oldest while the rest still cover the window,
 *   so every record is evicted once (amortised O(1)) and at most `dscrWindowEpochs` are live.
 *   DSCR = window net / window service; `serviceEpochs` (epochs of window records with
 *   service > 0) tells RiskModel.covenant whether any service was scheduled in the window.
 * - Covenant (RiskModel): flagged when DSCR < covenantDscrBps with scheduled service in
 *   the window, or LTV > maxLtvBps, LTV = pool.debtOutstanding(epoch) / value at the
 *   epoch's end. Re-evaluated at every settlement; events on change.
 * - The loan of each node's pool lives in PoolLoans ({loans}, created here, so both sides hold
 *   each other immutably): before the split a settlement asks it how the epoch services the
 *   debt (IPoolLoans.serviceRule: in CashSweep the operator's share also pays what net revenue
 *   leaves owed; in Defaulted net, then the operator's share, repay the recovery claim and no
 *   schedule applies), and after its own writes and transfers it reports the covenant outcome
 *   and what was paid (IPoolLoans.bookEpoch: lifecycle, recovery, the pledge). A default
 *   (PoolLoans.declareDefault) comes back through {bookDefault}: the arrears are cleared and the
 *   seized bond and the reserve's part of the loss are distributed to the pool from here.
 */
contract EpochSettlement is AccessControl, ReentrancyGuardTransient, IRiskGate, ILoanLedger {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

    /// @notice One node's part of a batch: its attested leaf and the Merkle proof.
    struct SettleItem {
        IOracleHub.NodeLeaf leaf;
        bytes32[] proof;
    }

    /// @notice Who pays for a node's usage and at what price per delivered GPU-hour.
    struct UsageTerms {
        address payer;
        uint96 pricePerGpuHour;
    }

    /// @notice One entry of a node's terms log: the billing terms in force from `fromEpoch`
    /// until the next entry's (`nextFromEpoch`, 0 while this is the newest). `maxPricePerGpuHour`
    /// is the payer's consent when the entry was written; usage is billed iff payer != 0 and
    /// pricePerGpuHour <= maxPricePerGpuHour.
    /// @dev Two slots: payer (20) | pricePerGpuHour (12); maxPricePerGpuHour (12) | fromEpoch
    /// (8) | nextFromEpoch (8). The link lives in the entry a settlement reads anyway, so the
    /// common path (no change) reads the same two slots the terms and consent took before.
    struct TermsChange {
        address payer;
        uint96 pricePerGpuHour;
        uint96 maxPricePerGpuHour;
        uint64 fromEpoch;
        uint64 nextFromEpoch;
    }

    /// @notice The figures of one settlement of a node's range (also the event's payload):
    /// the split of its gross, and `service`, the debt service scheduled over the range;
    /// `payer`: who pays `usage` (zero when not billed).
    struct Split {
        address payer;
        uint256 usage;
        uint256 proceeds;
        uint256 fee;
        uint256 reserve;
        uint256 operatorShare;
        uint256 debtPaid;
        uint256 stakers;
        uint256 service;
    }

    /// @notice Everything the dashboard shows for a node, in one call. The DSCR window is the
    /// fewest trailing settlements covering at least dscrWindowEpochs epochs: `windowEpochs` is
    /// how many epochs it covers (each settlement counting at most dscrWindowEpochs), and
    /// `serviceEpochsInWindow` how many of them belong to settlements with service scheduled.
    struct NodeRisk {
        uint256 collateralValue;
        uint256 debtOutstanding;
        uint256 ltvBps;
        uint256 dscrBps;
        uint256 raiseCap;
        uint256 windowNetRevenue;
        uint256 windowDebtService;
        uint64 windowEpochs;
        uint64 serviceEpochsInWindow;
        uint64 lastSettledEpoch;
        bool flagged;
        bool dscrBreach;
        bool ltvBreach;
        uint256 arrears;
        uint256 grossRevenue;
        uint256 debtPaid;
        uint256 bonded;
        address pool;
    }

    /// @dev Per-node book, four slots, each written at most once per settlement.
    /// slot 0: lastSettledEpoch (u64) | settledCount (u32: records ever pushed) | windowStart
    /// (u32: index of the window's oldest record) | windowEpochs (u32: epochs the window covers)
    /// | serviceEpochs (u32: epochs of window records with service > 0) | dscrBreach | ltvBreach
    /// | termsHead (u32: index of the terms-log entry in force for the next unsettled epoch)
    /// = 30 bytes; slot 1: window net + window service (u128 each); slot 2: arrears + lifetime
    /// debt paid (u128 each); slot 3: settledCumMilli (u64: cumMilliGpuHours of the last settled
    /// leaf) | lifetime gross (u192).
    struct Book {
        uint64 lastSettledEpoch;
        uint32 settledCount;
        uint32 windowStart;
        uint32 windowEpochs;
        uint32 serviceEpochs;
        bool dscrBreach;
        bool ltvBreach;
        uint32 termsHead;
        uint128 windowNet;
        uint128 windowService;
        uint128 arrears;
        uint128 debtPaid;
        uint64 settledCumMilli;
        uint192 gross;
    }

    /// @dev One settlement in the DSCR ring (one slot): its net revenue, its scheduled debt
    /// service, and the epochs it covered (at most dscrWindowEpochs).
    struct Record {
        uint112 net;
        uint112 service;
        uint32 epochs;
    }

    /// @notice May settle epochs (the keeper).
    bytes32 public constant SETTLER_ROLE = keccak256("SETTLER_ROLE");
    /// @notice May set a node's usage payer and price.
    bytes32 public constant TERMS_ROLE = keccak256("TERMS_ROLE");
    /// @notice May withdraw protocol fees and the insurance reserve.
    bytes32 public constant TREASURER_ROLE = keccak256("TREASURER_ROLE");

    uint256 private constant BPS = 10_000;
    /// @notice Upper bounds of the split parameters.
    uint256 public constant MAX_PROTOCOL_FEE_BPS = 2_000;
    uint256 public constant MAX_RESERVE_BPS = 2_000;
    /// @notice Bounds of the covenant parameters: DSCR covenant 1.00x..5.00x, LTV cap ≤ 100%.
    uint256 public constant MIN_COVENANT_DSCR_BPS = 10_000;
    uint256 public constant MAX_COVENANT_DSCR_BPS = 50_000;
    uint256 public constant MAX_WINDOW_EPOCHS = 720;
    /// @notice The most epochs before a terms change a settlement checks for having been passed
    /// over by the oracles (one hub slot each); a longer stretch reverts
    /// SettlementTermsChangeInRange like one with an attested epoch.
    uint64 public constant MAX_TERMS_GAP_EPOCHS = 64;

    IERC20 public immutable stablecoin;
    INodeRegistry public immutable registry;
    IOracleHub public immutable hub;
    ICapacityToken public immutable capacity;
    /// @notice N of "DSCR over the trailing settlements that cover at least N epochs".
    uint64 public immutable dscrWindowEpochs;
    /// @notice The loan book of every node's pool (created by this contract's constructor).
    IPoolLoans public immutable loans;

    uint16 public protocolFeeBps;
    uint16 public reserveBps;
    uint16 public operatorBps;
    uint16 public maxLtvBps;
    uint32 public covenantDscrBps;
    RiskModel.Curve public curve;

    uint256 public feesHeld;
    uint256 public reserveHeld;
    uint256 public operatorCreditsHeld;
    /// @notice Lifetime totals: everything that came in, and what went to pools.
    uint256 public totalIn;
    uint256 public totalToPools;

    /// @dev Per node, its terms log: entry 0 is "no terms" (never written but for its link),
    /// entries 1.._termsTail[node] the changes, oldest first (see TermsChange).
    // slither-disable-next-line uninitialized-state (written through a storage pointer: _writeTerms)
    mapping(uint256 nodeId => mapping(uint256 index => TermsChange)) private _termsLog;
    mapping(uint256 nodeId => uint256) private _termsTail;
    /// @dev The most each payer agreed to pay per GPU-hour of each node (0: no consent).
    mapping(uint256 nodeId => mapping(address payer => uint96 maxPricePerGpuHour)) private _usageConsent;
    mapping(uint256 nodeId => IRevenuePool) private _pools;
    // slither-disable-next-line uninitialized-state (written through storage pointers: _settleOne, _record)
    mapping(uint256 nodeId => Book) private _books;
    // slither-disable-next-line uninitialized-state (written through storage pointers: _settleOne, _record)
    mapping(uint256 nodeId => mapping(uint256 slot => Record)) private _ring;
    mapping(address operator => uint256) public operatorCredit;

    /// @notice Node `nodeId`'s epochs `fromEpoch..epoch` were settled as one range (fromEpoch ==
    /// epoch: one epoch, or the node's first settlement) with this split of its gross
    /// (usage + proceeds == fee + reserve + operatorShare + debtPaid + stakers).
    /// `serviceAssets`: the debt service scheduled over the range (every instalment after
    /// the last settled epoch up to `epoch`; 0 without a succeeded pool or once defaulted),
    /// owed with the arrears; what `debtPaid` left of both is the node's arrears.
    event NodeSettled(
        uint256 indexed nodeId,
        uint64 indexed epoch,
        uint64 fromEpoch,
        uint256 usage,
        uint256 proceeds,
        uint256 fee,
        uint256 reserve,
        uint256 operatorShare,
        uint256 debtPaid,
        uint256 stakers,
        uint256 serviceAssets
    );
    event CovenantStatus(
        uint256 indexed nodeId, uint64 indexed epoch, bool flagged, bool dscrBreach, bool ltvBreach, uint256 dscrBps, uint256 ltvBps
    );
    event SplitSet(uint16 protocolFeeBps, uint16 reserveBps, uint16 operatorBps);
    event RiskParamsSet(uint32 covenantDscrBps, uint16 maxLtvBps, RiskModel.Curve curve);
    /// @notice Node `nodeId`'s usage is billed from epoch `fromEpoch` on to `payer` at
    /// `pricePerGpuHour`, within the payer's consent `maxPricePerGpuHour` snapshotted now (see
    /// TermsChange). Emitted for every entry of the terms log written ({setUsageTerms}, or
    /// {approveUsage} by the node's newest payer); one with the newest entry's fromEpoch
    /// replaces it.
    event UsageTermsSet(
        uint256 indexed nodeId,
        address indexed payer,
        uint96 pricePerGpuHour,
        uint96 maxPricePerGpuHour,
        uint64 fromEpoch
    );
    event PoolSet(uint256 indexed nodeId, address indexed pool);
    /// @notice `payer` agreed to pay at most `maxPricePerGpuHour` per GPU-hour of node `nodeId`
    /// (0: consent withdrawn).
    event UsageApproved(uint256 indexed nodeId, address indexed payer, uint96 maxPricePerGpuHour);
    /// @notice Node `nodeId`'s usage of the range settled at `epoch` was not billed: its price `pricePerGpuHour` is
    /// above the `maxPricePerGpuHour` its payer `payer` agreed to (0: the payer never agreed).
    event UsageNotBilled(
        uint256 indexed nodeId,
        uint64 indexed epoch,
        address indexed payer,
        uint96 pricePerGpuHour,
        uint96 maxPricePerGpuHour
    );
    /// @notice Node `nodeId`'s item of a {settle} batch for `epoch` reverted with `reason` (the
    /// revert data, e.g. a custom error) and was skipped: none of its changes were applied and
    /// the node's epoch stays unsettled.
    event SettlementItemSkipped(uint256 indexed nodeId, uint64 indexed epoch, bytes reason);
    event OperatorWithdrawn(address indexed operator, address indexed to, uint256 amount);
    event FeesWithdrawn(address indexed to, uint256 amount);
    event ReserveWithdrawn(address indexed to, uint256 amount);

    error SettlementZeroAddress();
    error SettlementInvalidWindow(uint64 windowEpochs);
    error SettlementFeeTooHigh(uint256 feeBps, uint256 maxBps);
    error SettlementReserveTooHigh(uint256 reserveBps, uint256 maxBps);
    error SettlementSplitOverWhole(uint256 totalBps);
    error SettlementInvalidCovenant(uint256 covenantDscrBps, uint256 maxLtvBps);
    error SettlementEmptyBatch();
    /// @notice {settleItem} is this contract's own entry point (from {settle}); `caller` is not it.
    error SettlementOnlySelf(address caller);
    error SettlementEpochMismatch(uint256 nodeId, uint64 leafEpoch, uint64 epoch);
    error SettlementAlreadySettled(uint256 nodeId, uint64 epoch, uint64 lastSettledEpoch);
    /// @notice Node `nodeId`'s leaf of `epoch` counts `cumMilliGpuHours` with `milliGpuHours` of
    /// its own epoch, below `settledCumMilli` (the cumulative usage already settled) plus it:
    /// the range before `epoch` would have negative usage.
    error SettlementCumulativeBelowSettled(
        uint256 nodeId, uint64 epoch, uint64 cumMilliGpuHours, uint64 milliGpuHours, uint64 settledCumMilli
    );
    /// @notice Node `nodeId`'s terms change from `fromEpoch`, inside the range being settled,
    /// after usage in it (or after more than MAX_TERMS_GAP_EPOCHS epochs before the change):
    /// settle up to an epoch before `fromEpoch` first.
    error SettlementTermsChangeInRange(uint256 nodeId, uint64 fromEpoch);
    error SettlementPoolAlreadySet(uint256 nodeId, address pool);
    error SettlementPoolMismatch(uint256 nodeId, address pool);
    /// @notice `pool` finances node `poolNodeId`, not `nodeId`.
    error SettlementPoolNodeMismatch(uint256 nodeId, address pool, uint256 poolNodeId);
    /// @notice `pool`'s operator (who draws the raise and owes the debt) is `poolOperator`, not
    /// node `nodeId`'s operator `nodeOperator`: the debt would not stand behind the node's bond.
    error SettlementPoolOperatorMismatch(
        uint256 nodeId, address pool, address poolOperator, address nodeOperator
    );
    /// @notice `pool`'s risk gate is `gate`, not this settlement: its round escapes the LTV cap.
    error SettlementPoolGateMismatch(address pool, address gate);
    /// @notice `pool` was drawn in `drawEpoch`, before node `nodeId`'s last settled epoch
    /// `lastSettledEpoch`: service of epochs already settled would never be owed.
    error SettlementPoolServiceMissed(uint256 nodeId, uint64 drawEpoch, uint64 lastSettledEpoch);
    error SettlementZeroAmount();
    /// @notice {bookDefault} answers the loan contract alone; `caller` is not it.
    error SettlementOnlyLoans(address caller);
    error SettlementUnknownNode(uint256 nodeId);
    error SettlementInsufficient(uint256 available, uint256 requested);

    /**
     * @param admin DEFAULT_ADMIN_ROLE (parameters, pools, roles), here and in the PoolLoans this
     * constructor creates ({loans}).
     * @param windowEpochs N of the trailing DSCR window (1..MAX_WINDOW_EPOCHS).
     */
    constructor(
        address admin,
        IERC20 stablecoin_,
        INodeRegistry registry_,
        IOracleHub hub_,
        ICapacityToken capacity_,
        uint64 windowEpochs
    ) {
        if (
            admin == address(0) || address(stablecoin_) == address(0) || address(registry_) == address(0)
                || address(hub_) == address(0) || address(capacity_) == address(0)
        ) revert SettlementZeroAddress();
        if (windowEpochs == 0 || windowEpochs > MAX_WINDOW_EPOCHS) revert SettlementInvalidWindow(windowEpochs);
        stablecoin = stablecoin_;
        registry = registry_;
        hub = hub_;
        capacity = capacity_;
        dscrWindowEpochs = windowEpochs;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        covenantDscrBps = 12_500;
        maxLtvBps = 8_000;
        emit RiskParamsSet(12_500, 8_000, RiskModel.Curve.StraightLine);
        loans = new PoolLoans(admin, registry_);
    }

    // ------------------------------------------------------------------
    // Parameters
    // ------------------------------------------------------------------

    /// @notice Sets the split (bps of gross). fee ≤ MAX_PROTOCOL_FEE_BPS, reserve ≤
    /// MAX_RESERVE_BPS, fee + reserve + operator ≤ 10_000. Applies to later settlements.
    function setSplit(uint16 feeBps, uint16 reserveBps_, uint16 operatorBps_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (feeBps > MAX_PROTOCOL_FEE_BPS) revert SettlementFeeTooHigh(feeBps, MAX_PROTOCOL_FEE_BPS);
        if (reserveBps_ > MAX_RESERVE_BPS) revert SettlementReserveTooHigh(reserveBps_, MAX_RESERVE_BPS);
        uint256 total = uint256(feeBps) + reserveBps_ + operatorBps_;
        if (total > BPS) revert SettlementSplitOverWhole(total);
        protocolFeeBps = feeBps;
        reserveBps = reserveBps_;
        operatorBps = operatorBps_;
        emit SplitSet(feeBps, reserveBps_, operatorBps_);
    }

    /// @notice Sets the covenant: DSCR floor in [1.00x, 5.00x], LTV cap in (0, 100%], curve.
    function setRiskParams(uint32 covenantDscrBps_, uint16 maxLtvBps_, RiskModel.Curve curve_)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        if (
            covenantDscrBps_ < MIN_COVENANT_DSCR_BPS || covenantDscrBps_ > MAX_COVENANT_DSCR_BPS || maxLtvBps_ == 0
                || maxLtvBps_ > BPS
        ) revert SettlementInvalidCovenant(covenantDscrBps_, maxLtvBps_);
        covenantDscrBps = covenantDscrBps_;
        maxLtvBps = maxLtvBps_;
        curve = curve_;
        emit RiskParamsSet(covenantDscrBps_, maxLtvBps_, curve_);
    }

    /**
     * @notice Sets who pays node `nodeId`'s usage and the price per delivered GPU-hour
     * (payer zero = usage not billed), from the epoch after the current one on (earlier
     * epochs keep their terms, settled or not). Billed only while the payer's consent
     * ({approveUsage}), snapshotted now, covers the price.
     * Requirements: TERMS_ROLE; the node is registered (SettlementUnknownNode).
     * Emits {UsageTermsSet} with the fromEpoch.
     */
    function setUsageTerms(uint256 nodeId, address payer, uint96 pricePerGpuHour) external onlyRole(TERMS_ROLE) {
        _requireNode(nodeId);
        _writeTerms(nodeId, payer, pricePerGpuHour, _usageConsent[nodeId][payer]);
    }

    /**
     * @notice The caller, as payer, agrees to pay for node `nodeId`'s usage at most
     * `maxPricePerGpuHour` stablecoin units per delivered GPU-hour (0 withdraws consent).
     * Usage is billed to the caller only while the caller is the node's payer, the terms'
     * price is at most this maximum, and the caller's allowance covers the bill. If the
     * caller is the node's newest payer, the change takes effect from the epoch after the
     * current one (a new terms entry, {UsageTermsSet}): epochs up to the current one stay
     * billed under the consent they had, even if settled later. Otherwise it is only
     * recorded, and snapshotted when terms name the caller. Griefing bound: each change is
     * one more settlement of the node (the keeper's gas), at the caller's own gas.
     * Requirements: the node is registered (SettlementUnknownNode). Emits {UsageApproved}.
     */
    function approveUsage(uint256 nodeId, uint96 maxPricePerGpuHour) external {
        _requireNode(nodeId);
        _usageConsent[nodeId][msg.sender] = maxPricePerGpuHour;
        emit UsageApproved(nodeId, msg.sender, maxPricePerGpuHour);
        TermsChange storage newest = _termsLog[nodeId][_termsTail[nodeId]];
        if (newest.payer == msg.sender) _writeTerms(nodeId, msg.sender, newest.pricePerGpuHour, maxPricePerGpuHour);
    }

    /**
     * @notice Binds node `nodeId` to its RevenuePool, once. The pool must finance this node
     * (SettlementPoolNodeMismatch), be owed by the node's operator
     * (SettlementPoolOperatorMismatch: whoever draws the raise must be the operator whose bond
     * and exit answer for it), be capped by this contract as its immutable risk gate
     * (SettlementPoolGateMismatch: a pool whose round escaped the LTV cap is never bound, so
     * it never receives a node's revenue), be in this stablecoin on the hub's epoch schedule
     * (SettlementPoolMismatch), not have been drawn before the node's last settled epoch
     * (SettlementPoolServiceMissed), and grant this contract DISTRIBUTOR_ROLE.
     */
    function setPool(uint256 nodeId, address pool) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (pool == address(0)) revert SettlementZeroAddress();
        address current = address(_pools[nodeId]);
        if (current != address(0)) revert SettlementPoolAlreadySet(nodeId, current);
        _requireNode(nodeId);
        _checkPoolTerms(nodeId, pool);
        address gate = address(IRevenuePool(pool).riskGate());
        if (gate != address(this)) revert SettlementPoolGateMismatch(pool, gate);
        // slither-disable-next-line unused-return (the cooldown does not matter here)
        (uint64 genesis, uint64 length,) = RevenuePool(pool).epochSchedule();
        if (genesis != hub.genesisTimestamp() || length != hub.epochLengthSeconds()) {
            revert SettlementPoolMismatch(nodeId, pool);
        }
        // slither-disable-next-line unused-return (the drawn amount does not matter here)
        (bool drawn, uint64 drawEpoch,) = IRevenuePool(pool).draw();
        uint64 last = _books[nodeId].lastSettledEpoch;
        if (drawn && drawEpoch < last) revert SettlementPoolServiceMissed(nodeId, drawEpoch, last);
        _pools[nodeId] = IRevenuePool(pool);
        emit PoolSet(nodeId, pool);
    }

    // ------------------------------------------------------------------
    // Settlement
    // ------------------------------------------------------------------

    /**
     * @notice Settles, for every node in `items`, the range of its epochs from its last
     * settled one to `epoch` (see the contract notes): one leaf of `epoch` and its proof each.
     * Each item settles all-or-nothing in its own call frame ({settleItem}): an item that
     * reverts — its leaf not for `epoch` or not proven (SettlementEpochMismatch,
     * OracleInvalidProof / OracleLeafOutOfRange), its epoch already settled
     * (SettlementAlreadySettled), its counter below the one settled
     * (SettlementCumulativeBelowSettled), its range holding a terms change after usage
     * (SettlementTermsChangeInRange), its payer's allowance or balance short, its pool refusing
     * the revenue — is skipped with {SettlementItemSkipped} (node, epoch, revert data) and
     * changes nothing; its epoch stays unsettled for a later batch. The other items settle.
     * A batch in which every item reverts reverts itself, with the first item's revert data:
     * a batch of one behaves as a plain call, and nobody pays for a batch that did nothing.
     * Requirements: SETTLER_ROLE; non-empty.
     * @return settled How many items settled (the others emitted {SettlementItemSkipped}); a
     * keeper simulating the call learns from it whether a batch would skip anything.
     */
    function settle(uint64 epoch, SettleItem[] calldata items)
        external
        onlyRole(SETTLER_ROLE)
        nonReentrant
        returns (uint256 settled)
    {
        if (items.length == 0) revert SettlementEmptyBatch();
        bytes memory firstReason;
        for (uint256 i = 0; i < items.length; ++i) {
            // An external self-call, so that a revert undoes this item only. Re-entry stays
            // closed: `settle` holds the guard, and settleItem only answers this contract.
            // slither-disable-next-line calls-loop (a self-call per item, by design; a revert skips the item)
            try this.settleItem(epoch, items[i]) {
                ++settled;
            } catch (bytes memory reason) {
                if (i == 0) firstReason = reason;
                emit SettlementItemSkipped(items[i].leaf.nodeId, epoch, reason);
            }
        }
        if (settled == 0) {
            // Every item reverted: so does the batch, as its first item did.
            assembly ("memory-safe") {
                revert(add(firstReason, 0x20), mload(firstReason))
            }
        }
    }

    /**
     * @notice One item of a {settle} batch, settled in its own call frame so that its revert
     * undoes its own state changes only. Callable by this contract alone (from {settle},
     * under its SETTLER_ROLE check and re-entrancy guard): SettlementOnlySelf otherwise.
     */
    function settleItem(uint64 epoch, SettleItem calldata item) external {
        if (msg.sender != address(this)) revert SettlementOnlySelf(msg.sender);
        _settleOne(epoch, item);
    }

    /// @notice Pays the caller's (operator's) accumulated share to `to`.
    function withdrawOperatorShare(address to) external nonReentrant returns (uint256 amount) {
        if (to == address(0)) revert SettlementZeroAddress();
        amount = operatorCredit[msg.sender];
        if (amount == 0) revert SettlementZeroAmount();
        operatorCredit[msg.sender] = 0;
        operatorCreditsHeld -= amount;
        emit OperatorWithdrawn(msg.sender, to, amount);
        stablecoin.safeTransfer(to, amount);
    }

    /// @notice Pays `amount` of the protocol fees to `to`.
    function withdrawFees(address to, uint256 amount) external onlyRole(TREASURER_ROLE) nonReentrant {
        if (to == address(0)) revert SettlementZeroAddress();
        if (amount == 0) revert SettlementZeroAmount();
        uint256 held = feesHeld;
        if (amount > held) revert SettlementInsufficient(held, amount);
        feesHeld = held - amount;
        emit FeesWithdrawn(to, amount);
        stablecoin.safeTransfer(to, amount);
    }

    /// @notice Pays `amount` of the insurance reserve to `to` (e.g. to cover a loss).
    function withdrawReserve(address to, uint256 amount) external onlyRole(TREASURER_ROLE) nonReentrant {
        if (to == address(0)) revert SettlementZeroAddress();
        if (amount == 0) revert SettlementZeroAmount();
        uint256 held = reserveHeld;
        if (amount > held) revert SettlementInsufficient(held, amount);
        reserveHeld = held - amount;
        emit ReserveWithdrawn(to, amount);
        stablecoin.safeTransfer(to, amount);
    }

    // ------------------------------------------------------------------
    // Loans: a default's book and cash (PoolLoans)
    // ------------------------------------------------------------------

    /// @inheritdoc ILoanLedger
    function bookDefault(uint256 nodeId, uint64 epoch, uint256 bondAssets, uint256 reserveAssets)
        external
        nonReentrant
    {
        if (msg.sender != address(loans)) revert SettlementOnlyLoans(msg.sender);
        IRevenuePool pool = _pools[nodeId];
        _books[nodeId].arrears = 0;
        reserveHeld -= reserveAssets;
        uint256 cash = bondAssets + reserveAssets;
        if (cash != 0) {
            // The bond arrived from the registry in this transaction; the admin-bound pool takes both.
            stablecoin.forceApprove(address(pool), cash);
            pool.distribute(epoch, cash);
        }
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @notice Node `nodeId`'s newest usage payer and price (in force from
    /// `termsChanges(nodeId)`'s last entry's fromEpoch; zero if never set).
    function usageTerms(uint256 nodeId) external view returns (UsageTerms memory) {
        TermsChange storage newest = _termsLog[nodeId][_termsTail[nodeId]];
        return UsageTerms(newest.payer, newest.pricePerGpuHour);
    }

    /**
     * @notice Node `nodeId`'s terms log from the entry in force for its next unsettled epoch
     * on (spent entries left out), oldest first: `changes[0]` bills that epoch (its fromEpoch 0
     * and payer zero: no terms yet), each later entry from its fromEpoch. A keeper settles
     * a range ending before the next entry's fromEpoch (or the whole range if no usage
     * lies before it). The view may still list an entry the next settlement finds spent.
     */
    function termsChanges(uint256 nodeId) external view returns (TermsChange[] memory changes) {
        uint256 head = _books[nodeId].termsHead;
        uint256 tail = _termsTail[nodeId];
        changes = new TermsChange[](tail - head + 1);
        for (uint256 i = head; i <= tail; ++i) {
            changes[i - head] = _termsLog[nodeId][i];
        }
        if (head == 0 && tail != 0) changes[0].nextFromEpoch = changes[1].fromEpoch; // entry 0's link
    }

    /// @notice The most `payer` agreed to pay per GPU-hour of node `nodeId` (0: no consent).
    function usageConsent(uint256 nodeId, address payer) external view returns (uint96) {
        return _usageConsent[nodeId][payer];
    }

    /// @notice Node `nodeId`'s pool (zero if none).
    function poolOf(uint256 nodeId) external view returns (address) {
        return address(_pools[nodeId]);
    }

    /// @inheritdoc IRiskGate
    function isFlagged(uint256 nodeId) public view returns (bool) {
        Book storage b = _books[nodeId];
        return b.dscrBreach || b.ltvBreach;
    }

    /// @inheritdoc IRiskGate
    function raiseCap(uint256 nodeId) external view returns (uint256) {
        if (isFlagged(nodeId)) return 0;
        INodeRegistry.Node memory n = registry.node(nodeId);
        return RiskModel.raiseCap(RiskModel.value(curve, _collateral(n), block.timestamp), maxLtvBps);
    }

    /// @inheritdoc ILoanLedger
    function loanBook(uint256 nodeId)
        external
        view
        returns (IRevenuePool pool, uint64 lastSettledEpoch_, uint256 arrears)
    {
        Book storage b = _books[nodeId];
        return (_pools[nodeId], b.lastSettledEpoch, b.arrears);
    }

    /// @notice Node `nodeId`'s last settled epoch (0 = never).
    function lastSettledEpoch(uint256 nodeId) external view returns (uint64) {
        return _books[nodeId].lastSettledEpoch;
    }

    /**
     * @notice Everything the dashboard needs about a node. Value and LTV are live (block time,
     * debt outstanding in the hub's current epoch); DSCR is over the trailing window of
     * settlement records (see NodeRisk); the flags are those set at the last settlement.
     */
    function nodeRisk(uint256 nodeId) external view returns (NodeRisk memory r) {
        INodeRegistry.Node memory n = registry.node(nodeId);
        Book memory b = _books[nodeId];
        IRevenuePool pool = _pools[nodeId];
        r.collateralValue = RiskModel.value(curve, _collateral(n), block.timestamp);
        if (address(pool) != address(0)) r.debtOutstanding = pool.debtOutstanding(hub.currentEpoch());
        r.ltvBps = RiskModel.ltvBps(r.debtOutstanding, r.collateralValue);
        r.dscrBps = RiskModel.dscrBps(b.windowNet, b.windowService);
        r.raiseCap = RiskModel.raiseCap(r.collateralValue, maxLtvBps);
        r.windowNetRevenue = b.windowNet;
        r.windowDebtService = b.windowService;
        r.windowEpochs = b.windowEpochs;
        r.serviceEpochsInWindow = b.serviceEpochs;
        r.lastSettledEpoch = b.lastSettledEpoch;
        r.dscrBreach = b.dscrBreach;
        r.ltvBreach = b.ltvBreach;
        r.flagged = b.dscrBreach || b.ltvBreach;
        r.arrears = b.arrears;
        r.grossRevenue = b.gross;
        r.debtPaid = b.debtPaid;
        r.bonded = registry.bondOf(nodeId).bonded;
        r.pool = address(pool);
    }

    // ------------------------------------------------------------------
    // Internal
    // ------------------------------------------------------------------

    function _settleOne(uint64 epoch, SettleItem calldata item) internal {
        uint256 nodeId = item.leaf.nodeId;
        if (item.leaf.epoch != epoch) revert SettlementEpochMismatch(nodeId, item.leaf.epoch, epoch);
        Book storage b = _books[nodeId];
        Split memory s;
        uint64 epochs; // the range (last, epoch]; a first settlement covers its own epoch only
        {
            uint64 last = b.lastSettledEpoch;
            if (epoch <= last) revert SettlementAlreadySettled(nodeId, epoch, last);
            // A view on the immutable hub: reverts unless the leaf is in the epoch's attested root.
            // slither-disable-next-line calls-loop (immutable trusted hub; a bad proof reverts the item)
            hub.requireLeaf(item.leaf, item.proof);
            uint256 milli = _rangeMilli(b, item.leaf, last);
            s = _bill(nodeId, epoch, milli, _rangeTerms(b, nodeId, item.leaf, last));
            epochs = last == 0 ? 1 : epoch - last;
        }
        IRevenuePool pool = _pools[nodeId];
        // records the settlement in the window; `live`: a succeeded pool
        bool live = _serviceDebt(b, nodeId, pool, epoch, s);

        b.lastSettledEpoch = epoch;
        b.settledCumMilli = item.leaf.cumMilliGpuHours;
        b.gross += (s.usage + s.proceeds).toUint192();
        b.debtPaid += s.debtPaid.toUint128();
        bool flagged;
        uint256 dscr;
        {
            // slither-disable-next-line calls-loop (immutable trusted registry, a view)
            INodeRegistry.Node memory n = registry.node(nodeId);
            (flagged, dscr) = _flag(b, nodeId, epoch, n, pool);
            uint256 toPool = _credit(nodeId, epoch, epoch - epochs + 1, n.operator, s);

            // Interactions last; the guard blocks re-entry through a hostile token or pool.
            if (s.usage > 0) {
                // slither-disable-next-line arbitrary-send-erc20 (the payer's own on-chain consent; amount from the leaf)
                stablecoin.safeTransferFrom(s.payer, address(this), s.usage);
            }
            // slither-disable-next-line calls-loop (immutable trusted CapacityToken)
            if (s.proceeds > 0) capacity.collectProceeds(nodeId, s.proceeds, address(this));
            if (toPool > 0) {
                stablecoin.forceApprove(address(pool), toPool);
                // slither-disable-next-line calls-loop (admin-bound pool, checked in setPool; guarded)
                pool.distribute(epoch, toPool);
            }
        }
        // The loan books the range last (lifecycle, recovery, the first pledge): the immutable
        // PoolLoans this contract created (it calls the trusted registry and the pool's views).
        // slither-disable-next-line calls-loop (immutable trusted loan book; guarded)
        if (live) loans.bookEpoch(nodeId, epoch, pool, flagged, dscr, s.debtPaid, epochs);
    }

    /// @dev Books the split's held parts and lifetime totals and emits NodeSettled; returns
    /// what goes to the pool (debt service + stakers).
    function _credit(uint256 nodeId, uint64 epoch, uint64 fromEpoch, address operator, Split memory s)
        internal
        returns (uint256 toPool)
    {
        feesHeld += s.fee;
        reserveHeld += s.reserve;
        operatorCredit[operator] += s.operatorShare;
        operatorCreditsHeld += s.operatorShare;
        totalIn += s.usage + s.proceeds;
        toPool = s.debtPaid + s.stakers;
        totalToPools += toPool;
        emit NodeSettled(
            nodeId,
            epoch,
            fromEpoch,
            s.usage,
            s.proceeds,
            s.fee,
            s.reserve,
            s.operatorShare,
            s.debtPaid,
            s.stakers,
            s.service
        );
    }

    /// @dev The milli-GPU-hours of the range (last, leaf.epoch]: the leaf's cumulative counter
    /// less the one last settled; the leaf's own epoch for a first settlement (last == 0).
    function _rangeMilli(Book storage b, IOracleHub.NodeLeaf calldata leaf, uint64 last)
        internal
        view
        returns (uint256)
    {
        if (last == 0) return leaf.milliGpuHours;
        uint64 settledCum = b.settledCumMilli;
        uint64 cum = leaf.cumMilliGpuHours;
        // The hub checked cum >= milliGpuHours; before its own epoch the range has used cum - milli.
        if (cum - leaf.milliGpuHours < settledCum) {
            revert SettlementCumulativeBelowSettled(leaf.nodeId, leaf.epoch, cum, leaf.milliGpuHours, settledCum);
        }
        return cum - settledCum;
    }

    /// @dev The terms-log entry that bills the range (last, leaf.epoch]: the node's head entry,
    /// unless a later entry takes effect by the range's end (then {_advanceTerms}).
    function _rangeTerms(Book storage b, uint256 nodeId, IOracleHub.NodeLeaf calldata leaf, uint64 last)
        internal
        returns (TermsChange storage t)
    {
        uint256 head = b.termsHead;
        t = _termsLog[nodeId][head];
        uint64 next = _nextFromEpoch(nodeId, head, t);
        if (next != 0 && next <= leaf.epoch) t = _advanceTerms(b, nodeId, leaf, last, head);
    }

    /// @dev When the entry after `head` (`t`) takes effect (0: none yet). Entry 0 ("no terms")
    /// keeps no link (its slots stay zero: the first change costs no write there), so its
    /// successor is read directly; the same one cold slot either way.
    function _nextFromEpoch(uint256 nodeId, uint256 head, TermsChange storage t) internal view returns (uint64) {
        return head == 0 ? _termsLog[nodeId][1].fromEpoch : t.nextFromEpoch;
    }

    /**
     * @dev Moves node `nodeId`'s head from `head` to the entry in force at the range's end and
     * returns it. Entries taking effect at or before the first epoch with usage are spent
     * (each is passed once: the loop is bounded by the entries). The first epoch with usage is
     * last + 1, or the leaf's own epoch for a first settlement or a range with no usage before
     * that epoch. An entry taking effect after it reverts SettlementTermsChangeInRange unless
     * every epoch from the first one to before it was passed over by the oracles (at most
     * MAX_TERMS_GAP_EPOCHS of them, one hub slot each; the range's own leaf is attested, so a
     * hole below it is final): then no usage lies before the change either.
     */
    function _advanceTerms(
        Book storage b,
        uint256 nodeId,
        IOracleHub.NodeLeaf calldata leaf,
        uint64 last,
        uint256 head
    ) internal returns (TermsChange storage t) {
        mapping(uint256 index => TermsChange) storage log = _termsLog[nodeId];
        uint64 epoch = leaf.epoch;
        // _rangeMilli checked cum - milliGpuHours >= settledCumMilli (when last != 0)
        uint64 first =
            last == 0 || leaf.cumMilliGpuHours - leaf.milliGpuHours == b.settledCumMilli ? epoch : last + 1;
        uint64 holesFrom = first; // epochs [first, holesFrom) were found passed over
        t = log[head];
        uint64 next = _nextFromEpoch(nodeId, head, t);
        while (next != 0 && next <= epoch) {
            if (next > first) {
                // slither-disable-next-line calls-loop (immutable trusted hub, a view)
                if (next - first > MAX_TERMS_GAP_EPOCHS || hub.newestAttestedIn(holesFrom, next - 1) != 0) {
                    revert SettlementTermsChangeInRange(nodeId, next);
                }
                holesFrom = next;
            }
            t = log[++head];
            next = t.nextFromEpoch;
        }
        b.termsHead = uint32(head); // <= the node's entries, at most one per epoch: < 2^32
    }

    /// @dev The range's bill: usage from the range's terms entry and `milliGpuHours` (if the
    /// consent it snapshotted covers the price; UsageNotBilled otherwise), held proceeds, the
    /// bps cuts.
    function _bill(uint256 nodeId, uint64 epoch, uint256 milliGpuHours, TermsChange storage terms)
        internal
        returns (Split memory s)
    {
        address payer = terms.payer;
        if (payer != address(0)) {
            uint96 price = terms.pricePerGpuHour;
            uint96 maxPrice = terms.maxPricePerGpuHour;
            if (price <= maxPrice) {
                s.usage = (uint256(price) * milliGpuHours) / 1000;
                s.payer = payer;
            } else {
                emit UsageNotBilled(nodeId, epoch, payer, price, maxPrice);
            }
        }
        // slither-disable-next-line calls-loop (immutable trusted CapacityToken, a view)
        s.proceeds = capacity.heldProceeds(nodeId);
        uint256 gross = s.usage + s.proceeds;
        s.fee = (gross * protocolFeeBps) / BPS;
        s.reserve = (gross * reserveBps) / BPS;
        s.operatorShare = (gross * operatorBps) / BPS;
    }

    /// @dev Debt service from the range's net revenue (gross less fee, reserve and operator
    /// share): min(the range's scheduled service + arrears, net) to the pool, the rest to
    /// stakers; without a succeeded pool everything net goes to the operator. Records the
    /// settlement (net, scheduled service, epochs covered) in the DSCR window. Called before
    /// `lastSettledEpoch` advances to `epoch`.
    function _serviceDebt(Book storage b, uint256 nodeId, IRevenuePool pool, uint64 epoch, Split memory s)
        internal
        returns (bool live)
    {
        uint64 last = b.lastSettledEpoch;
        uint256 epochs = last == 0 ? 1 : epoch - last; // the range (last, epoch]; a first: 1
        uint256 net = s.usage + s.proceeds - s.fee - s.reserve - s.operatorShare;
        // slither-disable-next-line calls-loop (admin-bound pool, a view)
        if (address(pool) == address(0) || pool.roundStatus() != IRevenuePool.RoundStatus.Succeeded) {
            s.operatorShare += net; // no stakers and no debt yet: the operator owns the node's net
            _record(b, nodeId, net, 0, epochs);
            return false;
        }
        // slither-disable-next-line calls-loop (immutable trusted loan book, a view)
        (IPoolLoans.LoanState state, uint256 claim) = loans.serviceRule(nodeId);
        if (state == IPoolLoans.LoanState.Defaulted) {
            // The schedule was accelerated: net, then the operator's share, repay the claim
            // (PoolLoans.bookEpoch lowers it by what is paid here).
            _payFrom(s, net, claim, true);
            _record(b, nodeId, net, 0, epochs);
            return true;
        }
        // Every instalment of (last, epoch] from the draw on, in one O(1) view: the pool counts
        // instalments after its draw epoch only (a first settlement owes every one up to epoch).
        // slither-disable-next-line calls-loop (admin-bound pool, a view)
        uint256 service = pool.debtServiceBetween(last + 1, epoch);
        s.service = service;
        uint256 owed = service + b.arrears;
        uint256 paid = _payFrom(s, net, owed, state == IPoolLoans.LoanState.CashSweep);
        b.arrears = (owed - paid).toUint128();
        _record(b, nodeId, net, service, epochs);
        return true;
    }

    /// @dev Pays `owed` from `net`, then (if `sweep`) from the operator's share: sets debtPaid,
    /// stakers (net left over) and lowers the operator's share by what it paid.
    function _payFrom(Split memory s, uint256 net, uint256 owed, bool sweep) internal pure returns (uint256 paid) {
        uint256 available = sweep ? net + s.operatorShare : net;
        paid = owed < available ? owed : available;
        s.debtPaid = paid;
        if (paid > net) {
            s.operatorShare -= paid - net;
            s.stakers = 0;
        } else {
            s.stakers = net - paid;
        }
    }

    /// @dev Pushes the record (net, service, epochs capped at the window) into the node's DSCR
    /// ring, then evicts the oldest records while the others still cover `dscrWindowEpochs`
    /// epochs. Each record is evicted once: amortised O(1). After it at most `dscrWindowEpochs`
    /// records are live (every record but the oldest covers fewer epochs in all), so the slot
    /// `count % window` written here never holds a live record.
    function _record(Book storage b, uint256 nodeId, uint256 net, uint256 service, uint256 epochs) internal {
        uint256 window = dscrWindowEpochs;
        if (epochs > window) epochs = window;
        uint256 count = b.settledCount;
        uint256 start = b.windowStart;
        uint256 windowEpochs = b.windowEpochs + epochs;
        uint256 serviceEpochs = b.serviceEpochs;
        uint256 windowNet = uint256(b.windowNet) + net;
        uint256 windowService = uint256(b.windowService) + service;
        if (service > 0) serviceEpochs += epochs;
        mapping(uint256 slot => Record) storage ring = _ring[nodeId];
        while (start < count) {
            Record memory old = ring[start % window];
            if (windowEpochs - old.epochs < window) break;
            windowEpochs -= old.epochs;
            windowNet -= old.net;
            windowService -= old.service;
            if (old.service > 0) serviceEpochs -= old.epochs;
            ++start;
        }
        ring[count % window] = Record(net.toUint112(), service.toUint112(), uint32(epochs)); // epochs <= 720
        // Bounds: windowEpochs, serviceEpochs < 2 * window <= 1_440; count + 1 < 2^32 settlements.
        b.settledCount = (count + 1).toUint32();
        b.windowStart = uint32(start);
        b.windowEpochs = uint32(windowEpochs);
        b.serviceEpochs = uint32(serviceEpochs);
        b.windowNet = windowNet.toUint128();
        b.windowService = windowService.toUint128();
    }

    /// @dev The covenant flags at `epoch` (CovenantStatus while flagged or on change).
    function _flag(Book storage b, uint256 nodeId, uint64 epoch, INodeRegistry.Node memory n, IRevenuePool pool)
        internal
        returns (bool flagged, uint256 dscr)
    {
        // slither-disable-next-line calls-loop (admin-bound pool, a view)
        uint256 debt = address(pool) == address(0) ? 0 : pool.debtOutstanding(epoch);
        // slither-disable-next-line calls-loop,unused-return (immutable hub, a view; the value IS used)
        uint256 collateralValue = RiskModel.value(curve, _collateral(n), hub.epochEnd(epoch));
        uint256 ltv = RiskModel.ltvBps(debt, collateralValue);
        dscr = RiskModel.dscrBps(b.windowNet, b.windowService);
        (bool dscrBreach, bool ltvBreach) = RiskModel.covenant(dscr, b.serviceEpochs, covenantDscrBps, ltv, maxLtvBps);
        bool was = b.dscrBreach || b.ltvBreach;
        if (dscrBreach != b.dscrBreach || ltvBreach != b.ltvBreach) {
            b.dscrBreach = dscrBreach;
            b.ltvBreach = ltvBreach;
        }
        flagged = dscrBreach || ltvBreach;
        if (was || flagged) emit CovenantStatus(nodeId, epoch, flagged, dscrBreach, ltvBreach, dscr, ltv);
    }

    /// @dev Writes node `nodeId`'s terms from the epoch after the current one: a new log entry,
    /// or the newest one if it starts then too (not yet in force for any ended epoch).
    function _writeTerms(uint256 nodeId, address payer, uint96 pricePerGpuHour, uint96 maxPricePerGpuHour) internal {
        uint64 fromEpoch = hub.currentEpoch() + 1;
        uint256 tail = _termsTail[nodeId];
        mapping(uint256 index => TermsChange) storage log = _termsLog[nodeId];
        TermsChange storage newest = log[tail];
        if (newest.fromEpoch == fromEpoch) {
            newest.payer = payer;
            newest.pricePerGpuHour = pricePerGpuHour;
            newest.maxPricePerGpuHour = maxPricePerGpuHour;
        } else {
            // entry 0's fromEpoch is 0 (never matches) and it keeps no link (_nextFromEpoch)
            if (tail != 0) newest.nextFromEpoch = fromEpoch;
            log[++tail] = TermsChange(payer, pricePerGpuHour, maxPricePerGpuHour, fromEpoch, 0);
            _termsTail[nodeId] = tail;
        }
        emit UsageTermsSet(nodeId, payer, pricePerGpuHour, maxPricePerGpuHour, fromEpoch);
    }

    /// @dev setPool's checks of the pool's terms: its node, its operator (the node's), its coin.
    function _checkPoolTerms(uint256 nodeId, address pool) internal view {
        // slither-disable-next-line unused-return (only the stablecoin, operator and node id matter here)
        (address coin, address poolOperator, uint256 poolNode,,,,,) = RevenuePool(pool).terms();
        if (poolNode != nodeId) revert SettlementPoolNodeMismatch(nodeId, pool, poolNode);
        address nodeOperator = registry.node(nodeId).operator;
        if (poolOperator != nodeOperator) {
            revert SettlementPoolOperatorMismatch(nodeId, pool, poolOperator, nodeOperator);
        }
        if (coin != address(stablecoin)) revert SettlementPoolMismatch(nodeId, pool);
    }

    function _requireNode(uint256 nodeId) internal view {
        if (registry.nodeStatus(nodeId) == INodeRegistry.NodeStatus.None) revert SettlementUnknownNode(nodeId);
    }

    function _collateral(INodeRegistry.Node memory n) internal view returns (RiskModel.Collateral memory c) {
        // slither-disable-next-line calls-loop (immutable trusted registry, a view)
        INodeRegistry.GpuClass memory cls = registry.gpuClass(n.classId);
        c = RiskModel.Collateral(n.acquisitionCost, n.acquiredAt, cls.economicLifeMonths, cls.residualValueBps);
    }
}
