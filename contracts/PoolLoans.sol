// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {INodeRegistry} from "./interfaces/INodeRegistry.sol";
import {IObligationSource} from "./interfaces/IObligationSource.sol";
import {ILoanLedger, IPoolLoans} from "./interfaces/IPoolLoans.sol";
import {IRevenuePool} from "./interfaces/IRevenuePool.sol";
import {RevenuePool} from "./RevenuePool.sol";

/**
 * @title PoolLoans
 * @notice The loan of each node's pool, beside EpochSettlement (which creates it and is its
 * immutable {settlement}): the settlement splits every epoch and asks here how the debt is
 * serviced; this contract keeps the loan's state, pledge and recovery.
 *
 * Design decisions:
 * - Why a contract of its own: EpochSettlement reached the EIP-170 code size limit with the
 *   lifecycle inside it. The boundary costs a settlement two calls (one view, {serviceRule},
 *   before the split; one write, {bookEpoch}, after the settlement's own writes and transfers),
 *   only for nodes whose pool succeeded.
 * - Lifecycle (per node with a drawn pool; {loanOf}): Performing → CashSweep when a settlement
 *   flags the node; back to Performing after `cureEpochs` epochs of settlements in a row
 *   unflagged; Defaulted once arrears exceed `defaultArrearsBps` of the drawn principal or DSCR
 *   stayed under `defaultDscrBps` for `defaultDscrEpochs` epochs of settlements in a row. Runs
 *   count epochs, not settlements: a settlement of a range of k epochs adds k, so the keeper's
 *   cadence does not change when a loan cures or defaults. Sweep and cure are
 *   booked by the settlement that meets their condition ({bookEpoch}); default by
 *   {declareDefault}, which anyone may call once its condition holds (LoanStateChanged on every
 *   transition). In CashSweep, the operator's share of an epoch also services the debt (due +
 *   arrears) where net revenue falls short; what the debt does not need stays the operator's
 *   (the settlement applies it, {serviceRule}).
 * - Collateral: `pledgeBps` of the node's bond is locked by this contract (BOND_LOCKER_ROLE)
 *   once its pool is drawn ({pledgeBond}, anyone, or the node's next settlement), so it cannot
 *   be withdrawn or locked by offers while the loan is outstanding; {releasePledge} frees it
 *   once nothing is owed. At default the outstanding principal is accelerated: claim =
 *   principal outstanding after the last settled epoch + arrears. Waterfall: the pledged bond
 *   is seized (paid by the registry to the settlement, which distributes it with the reserve's
 *   part to the pool: recovery cash for the lenders); the rest is booked against the staked
 *   shares at the share price (first loss, RevenuePool.bookLoss, SLASHER_ROLE: the shares are
 *   retired into the pool); what staked value does not cover is paid from the settlement's
 *   insurance reserve into the pool; the remainder is the unstaked holders' loss. The claim
 *   less the cash recovered (bond + reserve) stays owed: every later settlement of the node
 *   sends its net revenue and, where that falls short, its operator's share to the pool until
 *   it is met.
 * - Obligations: the registry asks this contract ({hasOpenObligations}) before a node exits.
 */
contract PoolLoans is AccessControl, ReentrancyGuardTransient, IPoolLoans {
    using SafeCast for uint256;

    uint256 private constant BPS = 10_000;
    /// @notice Bounds of the DSCR default floor and of the runs (EpochSettlement's covenant
    /// bound and DSCR window bound).
    uint256 public constant MAX_DEFAULT_DSCR_BPS = 50_000;
    uint256 public constant MAX_RUN_EPOCHS = 720;

    /// @notice The settlement that created this contract: its book, pools and reserve.
    ILoanLedger public immutable settlement;
    INodeRegistry public immutable registry;

    LoanParams private _loanParams;
    // slither-disable-next-line uninitialized-state (written through storage pointers: _bookPledge, bookEpoch, declareDefault)
    mapping(uint256 nodeId => Loan) private _loans;

    /**
     * @param admin DEFAULT_ADMIN_ROLE (loan terms, roles); the timelock after the hand-over.
     * @param registry_ The node registry (the pledge: BOND_LOCKER_ROLE there).
     * @dev Created by EpochSettlement's constructor: `msg.sender` is the settlement.
     */
    constructor(address admin, INodeRegistry registry_) {
        settlement = ILoanLedger(msg.sender);
        registry = registry_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _setLoanParams(LoanParams(5_000, 1_000, 10_000, 6, 3));
    }

    // ------------------------------------------------------------------
    // Parameters
    // ------------------------------------------------------------------

    /// @inheritdoc IPoolLoans
    function setLoanParams(LoanParams calldata params) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setLoanParams(params);
    }

    // ------------------------------------------------------------------
    // The settlement's hook
    // ------------------------------------------------------------------

    /// @inheritdoc IPoolLoans
    function bookEpoch(
        uint256 nodeId,
        uint64 epoch,
        IRevenuePool pool,
        bool flagged,
        uint256 dscrBps,
        uint256 debtPaid,
        uint256 epochs
    ) external {
        if (msg.sender != address(settlement)) revert LoanOnlySettlement(msg.sender);
        Loan storage loan = _loans[nodeId];
        if (loan.state == LoanState.Defaulted) {
            // The schedule was accelerated: what the settlement paid repays the claim.
            uint256 paid = debtPaid; // at most the claim (serviceRule)
            loan.recoveryClaim -= paid.toUint128();
            loan.recovered += paid.toUint128();
        } else {
            _advanceLoan(loan, nodeId, epoch, epochs, flagged, dscrBps < _loanParams.defaultDscrBps);
        }
        // The first settlement after the draw takes the pledge (trusted registry, after the writes).
        (, uint256 pledge) = _bookPledge(nodeId, pool);
        if (pledge != 0) registry.lockBond(nodeId, pledge);
    }

    // ------------------------------------------------------------------
    // Pledge, default, release (anyone, once the condition holds)
    // ------------------------------------------------------------------

    /// @inheritdoc IPoolLoans
    function pledgeBond(uint256 nodeId) external nonReentrant {
        // slither-disable-next-line unused-return (the pledge needs the pool only)
        (IRevenuePool pool,,) = settlement.loanBook(nodeId);
        if (address(pool) == address(0)) revert LoanNoPledge(nodeId);
        (bool taken, uint256 amount) = _bookPledge(nodeId, pool);
        if (!taken) revert LoanNoPledge(nodeId);
        if (amount != 0) registry.lockBond(nodeId, amount); // trusted registry, after the writes
    }

    /// @inheritdoc IPoolLoans
    function declareDefault(uint256 nodeId) external nonReentrant {
        Loan storage loan = _loans[nodeId];
        (IRevenuePool pool, uint64 epoch, uint256 arrears) = settlement.loanBook(nodeId);
        if (!_defaultDue(loan, pool, arrears)) revert LoanNoDefault(nodeId, loan.state);
        // A draw nobody pledged yet: the pledge is taken now (locked below, then seized).
        (, uint256 lockNow) = _bookPledge(nodeId, pool);
        uint256 pledged = loan.pledged;
        DefaultLosses memory l = _bookDefault(loan, nodeId, pool, epoch, arrears, pledged);
        // Interactions: the trusted registry pays the seized bond to the settlement, which
        // clears the arrears, takes the reserve's part and pays both into the pool; then the
        // pool books the stakers' loss (admin-bound pool; guarded).
        if (lockNow != 0) registry.lockBond(nodeId, lockNow);
        if (pledged != 0) {
            registry.settleLock(nodeId, pledged, l.bond, address(settlement), keccak256("default"));
        }
        settlement.bookDefault(nodeId, epoch, l.bond, l.reserve);
        // slither-disable-next-line unused-return (the shares taken follow from the assets)
        if (l.stakers != 0) pool.bookLoss(l.stakers, address(pool));
    }

    /// @inheritdoc IPoolLoans
    function releasePledge(uint256 nodeId) external nonReentrant {
        Loan storage loan = _loans[nodeId];
        uint256 pledged = loan.pledged;
        if (pledged == 0 || _owes(nodeId)) revert LoanPledgeHeld(nodeId);
        loan.pledged = 0;
        emit PledgeReleased(nodeId, pledged);
        registry.unlockBond(nodeId, pledged);
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @inheritdoc IPoolLoans
    function serviceRule(uint256 nodeId) external view returns (LoanState state, uint256 recoveryClaim) {
        Loan storage loan = _loans[nodeId];
        state = loan.state;
        if (state == LoanState.Defaulted) recoveryClaim = loan.recoveryClaim;
    }

    /// @inheritdoc IPoolLoans
    function loanOf(uint256 nodeId) external view returns (Loan memory) {
        return _loans[nodeId];
    }

    /// @inheritdoc IPoolLoans
    function loanParams() external view returns (LoanParams memory) {
        return _loanParams;
    }

    /// @inheritdoc IPoolLoans
    function defaultDue(uint256 nodeId) external view returns (bool) {
        // slither-disable-next-line unused-return (the default condition needs no epoch)
        (IRevenuePool pool,, uint256 arrears) = settlement.loanBook(nodeId);
        return _defaultDue(_loans[nodeId], pool, arrears);
    }

    /**
     * @inheritdoc IObligationSource
     * @dev True while node `nodeId`'s bound pool has principal outstanding or the node owes
     * arrears (a defaulted loan: while its recovery claim is unpaid). Principal is read after the
     * node's LAST SETTLED epoch, not the current one: instalments of epochs not yet settled (the
     * keeper behind, epochs without a leaf) are not in arrears yet, but they are owed all the
     * same (the next settlement books them), so a node whose schedule has run out in time but
     * not in settlements still has obligations. The last settled epoch is always before the
     * hub's current epoch, so this is true whenever `pool.debtOutstanding(hub.currentEpoch())`
     * is. A pool whose round succeeded but was not drawn yet counts too (the operator can still
     * draw it); one still funding or failed does not.
     */
    function hasOpenObligations(uint256 nodeId) external view returns (bool) {
        return _owes(nodeId);
    }

    // ------------------------------------------------------------------
    // Internal
    // ------------------------------------------------------------------

    /// @dev Books the settlement's covenant outcome into the loan: flagged → CashSweep (the run
    /// of clean epochs restarts); `cureEpochs` clean epochs in a row → Performing; the run of
    /// epochs with DSCR under the default floor (`lowDscr`). A settlement adds the `epochs` of
    /// its range to a run.
    function _advanceLoan(Loan storage loan, uint256 nodeId, uint64 epoch, uint256 epochs, bool flagged, bool lowDscr)
        internal
    {
        uint16 low = loan.lowDscrRun;
        uint16 clean = loan.cleanRun;
        // Saturating: a run past 65_535 epochs is as long as any threshold (<= 720) needs.
        if (!lowDscr) low = 0;
        else low = _addRun(low, epochs);
        if (flagged) clean = 0;
        else clean = _addRun(clean, epochs);
        LoanState state = loan.state;
        LoanState next = state;
        if (flagged) next = LoanState.CashSweep;
        else if (state == LoanState.CashSweep && clean >= _loanParams.cureEpochs) next = LoanState.Performing;
        loan.lowDscrRun = low;
        loan.cleanRun = clean;
        if (next != state) {
            loan.state = next;
            emit LoanStateChanged(nodeId, epoch, state, next);
        }
    }

    /// @dev `run` + `epochs`, saturating at type(uint16).max.
    function _addRun(uint16 run, uint256 epochs) internal pure returns (uint16) {
        uint256 sum = uint256(run) + epochs;
        return sum < type(uint16).max ? uint16(sum) : type(uint16).max;
    }

    /// @dev Books the pledge of `pledgeBps` of the node's bond (at most its free bond) once
    /// `pool` is drawn; the caller locks `amount` in the registry after its own state writes.
    /// `taken` false if not drawn or already taken.
    function _bookPledge(uint256 nodeId, IRevenuePool pool) internal returns (bool taken, uint256 amount) {
        Loan storage loan = _loans[nodeId];
        if (loan.pledgeTaken) return (false, 0);
        // slither-disable-next-line unused-return (only whether the raise was drawn matters)
        (bool drawn,,) = pool.draw();
        if (!drawn) return (false, 0);
        amount = (uint256(registry.bondOf(nodeId).bonded) * _loanParams.pledgeBps) / BPS;
        uint256 free = registry.freeBond(nodeId);
        if (amount > free) amount = free;
        loan.pledgeTaken = true;
        loan.pledged = amount.toUint128();
        emit BondPledged(nodeId, address(pool), amount);
        taken = true;
    }

    /// @dev declareDefault's state: the claim (principal outstanding after the last settled
    /// epoch `epoch`, accelerated, + arrears), the waterfall, the recovery claim; events.
    function _bookDefault(
        Loan storage loan,
        uint256 nodeId,
        IRevenuePool pool,
        uint64 epoch,
        uint256 arrears,
        uint256 pledged
    ) internal returns (DefaultLosses memory l) {
        uint256 principal = pool.debtOutstanding(epoch);
        uint256 claim = principal + arrears;
        l = _waterfall(pool, claim, pledged);
        uint256 recoveryClaim = claim - l.bond - l.reserve;
        LoanState from = loan.state;
        loan.state = LoanState.Defaulted;
        loan.pledged = 0;
        loan.recoveryClaim = recoveryClaim.toUint128();
        emit LoanStateChanged(nodeId, epoch, from, LoanState.Defaulted);
        emit LoanDefaulted(nodeId, epoch, principal, arrears, recoveryClaim);
        emit LossWaterfall(nodeId, l.bond, l.stakers, l.reserve, l.holders);
    }

    /// @dev The default's loss per class: the pledged bond first, then the staked shares' value
    /// at the share price, then the settlement's insurance reserve; the unstaked holders bear
    /// the rest.
    function _waterfall(IRevenuePool pool, uint256 claim, uint256 pledged)
        internal
        view
        returns (DefaultLosses memory l)
    {
        l.bond = uint128(pledged < claim ? pledged : claim); // pledged is a uint128
        uint256 rest = claim - l.bond;
        // slither-disable-next-line unused-return (only the share price matters here)
        (,,,, uint256 sharePrice,,,) = RevenuePool(address(pool)).terms();
        uint256 stakedValue = (pool.totals().stakedShares * sharePrice) / 1e18;
        l.stakers = (rest < stakedValue ? rest : stakedValue).toUint128();
        rest -= l.stakers;
        uint256 reserve = settlement.reserveHeld();
        l.reserve = (rest < reserve ? rest : reserve).toUint128();
        l.holders = (rest - l.reserve).toUint128();
    }

    /// @dev Whether the loan may be declared in default: arrears over `defaultArrearsBps` of
    /// the drawn principal, or `defaultDscrEpochs` epochs of settlements in a row under the DSCR floor.
    function _defaultDue(Loan storage loan, IRevenuePool pool, uint256 arrears) internal view returns (bool) {
        if (loan.state == LoanState.Defaulted || address(pool) == address(0)) return false;
        // slither-disable-next-line unused-return (the draw epoch does not matter here)
        (bool drawn,, uint256 drawnAssets) = pool.draw();
        if (!drawn) return false;
        LoanParams memory p = _loanParams;
        return arrears > (drawnAssets * p.defaultArrearsBps) / BPS || loan.lowDscrRun >= p.defaultDscrEpochs;
    }

    /// @dev {hasOpenObligations}; a defaulted loan owes its recovery claim and nothing else.
    function _owes(uint256 nodeId) internal view returns (bool) {
        Loan storage loan = _loans[nodeId];
        if (loan.state == LoanState.Defaulted) return loan.recoveryClaim != 0;
        (IRevenuePool pool, uint64 last, uint256 arrears) = settlement.loanBook(nodeId);
        if (arrears != 0) return true;
        if (address(pool) == address(0)) return false;
        // A round that succeeded and was not drawn yet: the operator can still draw it (the
        // investors' money is committed to this node), so the node must not exit first.
        // slither-disable-next-line unused-return (only whether the raise was drawn matters)
        (bool drawn,,) = pool.draw();
        if (!drawn) return pool.roundStatus() == IRevenuePool.RoundStatus.Succeeded;
        return pool.debtOutstanding(last) != 0;
    }

    function _setLoanParams(LoanParams memory p) internal {
        if (
            p.pledgeBps > BPS || p.defaultArrearsBps == 0 || p.defaultArrearsBps > BPS
                || p.defaultDscrBps > MAX_DEFAULT_DSCR_BPS || p.defaultDscrEpochs == 0
                || p.defaultDscrEpochs > MAX_RUN_EPOCHS || p.cureEpochs == 0 || p.cureEpochs > MAX_RUN_EPOCHS
        ) revert LoanInvalidParams(p);
        _loanParams = p;
        emit LoanParamsSet(p.pledgeBps, p.defaultArrearsBps, p.defaultDscrBps, p.defaultDscrEpochs, p.cureEpochs);
    }
}
