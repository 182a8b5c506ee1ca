// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IObligationSource} from "./IObligationSource.sol";
import {IRevenuePool} from "./IRevenuePool.sol";

/**
 * @title IPoolLoans
 * @notice The loan of each node's pool: its lifecycle (Performing → CashSweep → Performing, or
 * Defaulted), the pledge of part of the node's bond, the default with acceleration and the loss
 * waterfall, and the recovery of the claim from later revenue. The epoch split itself stays in
 * EpochSettlement ({ILoanLedger}); it asks this contract how to route an epoch's debt service
 * ({serviceRule}) and reports the epoch's covenant outcome back ({bookEpoch}).
 */
interface IPoolLoans is IObligationSource {
    /// @notice Where a node's loan stands.
    enum LoanState {
        Performing,
        CashSweep,
        Defaulted
    }

    /// @notice A node's loan. Storage: state + pledgeTaken + lowDscrRun + cleanRun + pledged
    /// (slot 0: 1 + 1 + 2 + 2 + 16 bytes) | recoveryClaim + recovered (slot 1). The runs count
    /// EPOCHS (each settlement adds the epochs its range covers), saturating at 65_535.
    struct Loan {
        LoanState state;
        bool pledgeTaken;
        uint16 lowDscrRun;
        uint16 cleanRun;
        uint128 pledged;
        uint128 recoveryClaim;
        uint128 recovered;
    }

    /// @notice The loss waterfall of a default, per class (stablecoin units). One slot each pair.
    struct DefaultLosses {
        uint128 bond;
        uint128 stakers;
        uint128 reserve;
        uint128 holders;
    }

    /// @notice Loan terms, one slot: pledge share of the bond, default triggers, cure length
    /// (`defaultDscrEpochs`, `cureEpochs`: epochs covered by settlements in a row).
    struct LoanParams {
        uint16 pledgeBps;
        uint16 defaultArrearsBps;
        uint32 defaultDscrBps;
        uint16 defaultDscrEpochs;
        uint16 cureEpochs;
    }

    event LoanParamsSet(
        uint16 pledgeBps, uint16 defaultArrearsBps, uint32 defaultDscrBps, uint16 defaultDscrEpochs, uint16 cureEpochs
    );
    /// @notice Node `nodeId`'s loan went from `from` to `to` at its settled epoch `epoch`.
    event LoanStateChanged(uint256 indexed nodeId, uint64 indexed epoch, LoanState from, LoanState to);
    /// @notice `amount` of node `nodeId`'s bond was pledged to its pool (locked by this contract).
    event BondPledged(uint256 indexed nodeId, address indexed pool, uint256 amount);
    /// @notice Node `nodeId`'s pledge `amount` was released: nothing is owed any more.
    event PledgeReleased(uint256 indexed nodeId, uint256 amount);
    /// @notice Node `nodeId` defaulted after epoch `epoch`: `principal` accelerated plus
    /// `arrears` is the claim; `recoveryClaim` is what later revenue still owes the pool.
    event LoanDefaulted(
        uint256 indexed nodeId, uint64 indexed epoch, uint256 principal, uint256 arrears, uint256 recoveryClaim
    );
    /// @notice The loss waterfall of node `nodeId`'s default, per class (stablecoin units):
    /// the seized `bond`, the `stakers`' booked loss, the `reserve` paid in, the `holders`' rest.
    event LossWaterfall(uint256 indexed nodeId, uint256 bond, uint256 stakers, uint256 reserve, uint256 holders);

    error LoanInvalidParams(LoanParams params);
    /// @notice Node `nodeId` does not meet the default condition (its loan is `state`): see
    /// {defaultDue}, {loanOf} and EpochSettlement.nodeRisk for its arrears and low-DSCR run.
    error LoanNoDefault(uint256 nodeId, LoanState state);
    /// @notice Node `nodeId` has no drawn pool to pledge to, or its pledge was already taken.
    error LoanNoPledge(uint256 nodeId);
    /// @notice Node `nodeId` still owes its pool: its pledge stays.
    error LoanPledgeHeld(uint256 nodeId);
    /// @notice {bookEpoch} answers the settlement alone; `caller` is not it.
    error LoanOnlySettlement(address caller);

    /**
     * @notice Sets the loan terms: pledge (bps of the bond, <= 10_000), arrears default
     * threshold (bps of the drawn principal, 1..10_000), DSCR default floor (<= 50_000 bps, the
     * covenant's bound) and its run (1..720 epochs), cure run (1..720 epochs), each run counted
     * in epochs covered by consecutive settlements (a range of k epochs adds k). Applies from the
     * next settlement / pledge / default. Requirements: DEFAULT_ADMIN_ROLE.
     */
    function setLoanParams(LoanParams calldata params) external;

    /// @notice Pledges (locks) `pledgeBps` of node `nodeId`'s bond, capped at its free bond,
    /// once its bound pool is drawn. Anyone. Reverts LoanNoPledge if not drawn or already taken.
    function pledgeBond(uint256 nodeId) external;

    /**
     * @notice Declares node `nodeId` in default: accelerates the outstanding principal, seizes
     * the pledged bond into the pool, books the rest against the staked shares, then the
     * insurance reserve; the remainder is the unstaked holders' loss. Anyone.
     * Requirements: the default condition holds ({defaultDue}), LoanNoDefault otherwise; the
     * pool grants this contract SLASHER_ROLE (RevenuePool.bookLoss).
     */
    function declareDefault(uint256 nodeId) external;

    /// @notice Releases node `nodeId`'s pledge once it owes nothing (no arrears, no principal
    /// after its last settled epoch, no recovery claim). Anyone. LoanPledgeHeld otherwise.
    function releasePledge(uint256 nodeId) external;

    /**
     * @notice The settlement's report of node `nodeId`'s settlement at `epoch`, covering
     * `epochs` epochs (its range; its pool `pool` succeeded): the covenant outcome (`flagged`,
     * the window's `dscrBps`) moves the lifecycle (unless defaulted), each run growing by
     * `epochs`; `debtPaid` lowers a defaulted loan's recovery claim, and the pledge is taken on
     * the first settlement after the draw. Requirements: the settlement only
     * (LoanOnlySettlement).
     */
    function bookEpoch(
        uint256 nodeId,
        uint64 epoch,
        IRevenuePool pool,
        bool flagged,
        uint256 dscrBps,
        uint256 debtPaid,
        uint256 epochs
    ) external;

    /// @notice How node `nodeId`'s next epoch services its debt: `state` (CashSweep: the
    /// operator's share also pays what net revenue leaves owed; Defaulted: net, then the
    /// operator's share, repay `recoveryClaim`, and no schedule applies).
    function serviceRule(uint256 nodeId) external view returns (LoanState state, uint256 recoveryClaim);

    /// @notice Node `nodeId`'s loan (state, pledge, runs, recovery).
    function loanOf(uint256 nodeId) external view returns (Loan memory);

    /// @notice The loan terms.
    function loanParams() external view returns (LoanParams memory);

    /// @notice True once node `nodeId` may be declared in default ({declareDefault}).
    function defaultDue(uint256 nodeId) external view returns (bool);
}

/**
 * @title ILoanLedger
 * @notice What PoolLoans reads from and asks of EpochSettlement, which keeps each node's
 * settlement book (last settled epoch, arrears), its pool binding and the insurance reserve.
 */
interface ILoanLedger {
    /// @notice Node `nodeId`'s bound pool (zero if none), last settled epoch and arrears.
    function loanBook(uint256 nodeId) external view returns (IRevenuePool pool, uint64 lastSettledEpoch, uint256 arrears);

    /// @notice The insurance reserve held (stablecoin units).
    function reserveHeld() external view returns (uint256);

    /**
     * @notice A default's book and cash: node `nodeId`'s arrears are cleared (the claim took
     * them), `reserveAssets` leaves the insurance reserve, and `bondAssets` (the seized bond,
     * already paid to the settlement by the registry) plus `reserveAssets` are distributed to
     * the node's pool for `epoch` (its last settled one). Requirements: the loan contract only.
     */
    function bookDefault(uint256 nodeId, uint64 epoch, uint256 bondAssets, uint256 reserveAssets) external;
}
