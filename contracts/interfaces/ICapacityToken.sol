// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IOracleHub} from "./IOracleHub.sol";

/**
 * @title ICapacityToken
 * @notice ERC-1155 capacity units: 1 token = 1 GPU-hour of one GPU class,
 * deliverable inside one delivery window. Token id = (classId << 64) | windowStart,
 * so the same class and window is the same fungible id whichever operator sold it.
 *
 * Primary market: an operator publishes an offer (node, token id, amount, price
 * per GPU-hour) for a future window; the offer is capped by what the node can
 * deliver (gpuCount × window hours × commitRatioBps / 10_000) and the bond that
 * covers it is locked in the NodeRegistry. Buyers buy from the offer in the
 * stablecoin, which mints the tokens to them; the price paid is held here, per
 * node, until settlement collects it.
 *
 * Redemption and delivery: before the window opens, a holder burns tokens with
 * {redeem}, naming a node that sold that token id and still has unreserved sold
 * capacity; this creates a reservation on that node priced at the highest price the
 * node asked for that token id, backed by that id's bond per GPU-hour. After the window ends, anyone proves the node's attested delivery
 * ({proveDelivery}: OracleHub leaves of the epochs that END inside the window) and
 * settles each reservation ({settleReservation}) once all those epochs are proven
 * or the settlement grace period has passed. A shortfall of the node's delivered
 * GPU-hours against everything reserved on it for the window is shared pro rata
 * by its reservations; each holder is refunded price × shortfall × (1 + penalty)
 * out of the operator's bond (NodeRegistry slashing). Sold capacity nobody
 * redeemed expires when the window opens: the operator owes nothing for it, and
 * {releaseExpired} unlocks its bond.
 */
interface ICapacityToken {
    /// @notice An operator's offer of capacity.
    /// @dev Storage packing (3 slots):
    ///   slot 0: tokenId (32 B)
    ///   slot 1: nodeId (8 B) | remaining (8 B) | sold (8 B) | open (1 B)
    ///   slot 2: pricePerGpuHour (16 B) | bondPerGpuHour (16 B)
    struct Offer {
        uint256 tokenId;
        uint64 nodeId;
        uint64 remaining;
        uint64 sold;
        bool open;
        uint128 pricePerGpuHour;
        uint128 bondPerGpuHour;
    }

    /// @notice How much of a node's capacity in one window is promised (offered, unsold or sold) and sold.
    /// @dev Storage packing: promised (16 B) | sold (16 B) in one slot.
    struct Commitment {
        uint128 promised;
        uint128 sold;
    }

    /// @notice What a node owes for one token id (class + window), beyond the window's Commitment.
    /// @dev Storage packing (2 slots):
    ///   slot 0: unreserved (8 B) | reserved (8 B) | deliveredMilliGpuHours (8 B) | provenEpochs (4 B) | finalized (1 B)
    ///   slot 1: refundPricePerGpuHour (16 B) | bondPerGpuHour (16 B)
    /// `unreserved`: sold GPU-hours not (yet) redeemed and not expired.
    /// `refundPricePerGpuHour`: the highest price the node asked for this id (any offer); a
    /// reservation made now is refunded at it. `bondPerGpuHour`: the bond locked for EVERY
    /// GPU-hour of this id the node has on offer or sold unreserved (the highest
    /// ceil(price × bondCoverageBps / 10_000) of its offers); neither ever decreases. Every
    /// hour of an id is backed alike because the tokens are fungible: an hour sold cheap is
    /// indistinguishable from one sold dear, so a cheap sale must not be able to claim the
    /// bond a dear one brought (see {redeem}).
    struct Obligation {
        uint64 unreserved;
        uint64 reserved;
        uint64 deliveredMilliGpuHours;
        uint32 provenEpochs;
        bool finalized;
        uint128 refundPricePerGpuHour;
        uint128 bondPerGpuHour;
    }

    /// @notice A holder's redeemed capacity, owed by one node.
    /// @dev Storage packing (4 slots):
    ///   slot 0: holder (20 B) | nodeId (8 B)
    ///   slot 1: tokenId (32 B)
    ///   slot 2: amount (8 B) | pricePerGpuHour (16 B) | shortfallPenaltyBps (2 B) | settled (1 B)
    ///   slot 3: bondLocked (16 B) | uncovered (16 B)
    struct Reservation {
        address holder;
        uint64 nodeId;
        uint256 tokenId;
        uint64 amount;
        uint128 pricePerGpuHour;
        uint16 shortfallPenaltyBps;
        bool settled;
        uint128 bondLocked;
        uint128 uncovered;
    }

    // ------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------

    /// @notice Offer `offerId` of `amount` GPU-hours of `tokenId` at `pricePerGpuHour` was published for
    /// node `nodeId`; `bondLocked` of its bond now backs it.
    event OfferPublished(
        uint256 indexed offerId,
        uint256 indexed nodeId,
        uint256 indexed tokenId,
        uint256 amount,
        uint256 pricePerGpuHour,
        uint256 bondLocked
    );

    /// @notice Offer `offerId` was closed; its `unsoldAmount` GPU-hours were withdrawn and `bondUnlocked` released.
    event OfferCancelled(uint256 indexed offerId, uint256 unsoldAmount, uint256 bondUnlocked);

    /// @notice `buyer` bought `amount` GPU-hours of `tokenId` from offer `offerId` for `cost`.
    event CapacityBought(
        uint256 indexed offerId, address indexed buyer, uint256 indexed tokenId, uint256 nodeId, uint256 amount, uint256 cost
    );

    /// @notice `amount` of node `nodeId`'s held sale proceeds was paid to `to`.
    event ProceedsCollected(uint256 indexed nodeId, address indexed to, uint256 amount);

    /// @notice Offers are now refused for nodes `gate` flags (zero: no gate).
    event RiskGateSet(address indexed gate);

    /// @notice `holder` burnt `amount` of `tokenId` into reservation `reservationId` on node `nodeId`,
    /// priced at `pricePerGpuHour`, backed by `bondLocked` of the node's bond.
    event Redeemed(
        uint256 indexed reservationId,
        address indexed holder,
        uint256 indexed nodeId,
        uint256 tokenId,
        uint256 amount,
        uint256 pricePerGpuHour,
        uint256 bondLocked
    );

    /// @notice `epochs` more attested epochs of node `nodeId` were counted for `tokenId`'s window,
    /// adding `milliGpuHours`; `provenEpochs` and `deliveredMilliGpuHours` are the new totals.
    event DeliveryProven(
        uint256 indexed nodeId,
        uint256 indexed tokenId,
        uint256 epochs,
        uint256 milliGpuHours,
        uint256 provenEpochs,
        uint256 deliveredMilliGpuHours
    );

    /// @notice Node `nodeId`'s delivery for `tokenId`'s window was frozen: `reservedGpuHours` were owed,
    /// `deliveredMilliGpuHours` proven over `provenEpochs` of `windowEpochs` epochs; `shortfallMilliGpuHours` short.
    event DeliveryFinalized(
        uint256 indexed nodeId,
        uint256 indexed tokenId,
        uint256 reservedGpuHours,
        uint256 deliveredMilliGpuHours,
        uint256 provenEpochs,
        uint256 windowEpochs,
        uint256 shortfallMilliGpuHours
    );

    /// @notice Reservation `reservationId` was settled: its share of the shortfall was
    /// `shortfallMilliGpuHours`; `refund` was owed to its holder, `slashed` of it taken from the bond,
    /// and `bondUnlocked` of the bond released.
    event ReservationSettled(
        uint256 indexed reservationId,
        uint256 indexed nodeId,
        address indexed holder,
        uint256 shortfallMilliGpuHours,
        uint256 refund,
        uint256 slashed,
        uint256 bondUnlocked
    );

    /// @notice The bond could not cover `uncovered` of reservation `reservationId`'s refund.
    event ShortfallUncovered(
        uint256 indexed reservationId, uint256 indexed nodeId, address indexed holder, uint256 uncovered
    );

    /// @notice Node `nodeId`'s `amount` unredeemed sold GPU-hours of `tokenId` expired; `bondUnlocked` released.
    event CapacityExpired(uint256 indexed nodeId, uint256 indexed tokenId, uint256 amount, uint256 bondUnlocked);

    /// @notice Node `nodeId`'s terms for `tokenId` rose with a new offer: reservations made from now
    /// on are refunded at `refundPricePerGpuHour`, every hour on offer or sold unreserved is backed
    /// by `bondPerGpuHour`, and `bondToppedUp` more bond was locked for the hours already there.
    event ObligationTermsRaised(
        uint256 indexed nodeId,
        uint256 indexed tokenId,
        uint256 refundPricePerGpuHour,
        uint256 bondPerGpuHour,
        uint256 bondToppedUp
    );

    /// @notice The shortfall penalty for reservations made from now on changed to `shortfallPenaltyBps`.
    event ShortfallPenaltySet(uint16 shortfallPenaltyBps);

    /// @notice The commit ratio changed to `commitRatioBps`.
    event CommitRatioSet(uint16 commitRatioBps);

    /// @notice The bond coverage changed to `bondCoverageBps`.
    event BondCoverageSet(uint32 bondCoverageBps);

    // ------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------

    /// @notice `tokenId` does not encode a class id and an aligned window start.
    error CapacityInvalidTokenId(uint256 tokenId);

    /// @notice `windowStart` is not a multiple of the window length `windowSeconds`.
    error CapacityMisalignedWindow(uint64 windowStart, uint64 windowSeconds);

    /// @notice The window starting at `windowStart` has already opened (now is `nowTimestamp`).
    error CapacityWindowStarted(uint64 windowStart, uint256 nowTimestamp);

    /// @notice The node is of class `nodeClassId`, the token of class `tokenClassId`.
    error CapacityClassMismatch(uint32 nodeClassId, uint32 tokenClassId);

    /// @notice `caller` is not the operator of node `nodeId`.
    error CapacityNotOperator(uint256 nodeId, address caller);

    /// @notice Node `nodeId` is not Active (its status is `status`), so it cannot back new capacity.
    error CapacityNodeNotActive(uint256 nodeId, uint8 status);

    /// @notice The node can promise only `available` more GPU-hours in this window, not `requested`.
    error CapacityExceeded(uint256 available, uint256 requested);

    /// @notice A zero amount or price was given.
    error CapacityZeroAmount();

    /// @notice Node `nodeId` is flagged by the risk gate (covenant broken): no new offers.
    error CapacityNodeFlagged(uint256 nodeId);

    /// @notice No offer has id `offerId`.
    error CapacityUnknownOffer(uint256 offerId);

    /// @notice Offer `offerId` is closed.
    error CapacityOfferClosed(uint256 offerId);

    /// @notice Offer `offerId` has only `remaining` GPU-hours left, less than `requested`.
    error CapacityOfferInsufficient(uint256 offerId, uint256 remaining, uint256 requested);

    /// @notice Node `nodeId` holds only `held` proceeds, less than `requested`.
    error CapacityInsufficientProceeds(uint256 nodeId, uint256 held, uint256 requested);

    /// @notice The zero address cannot receive proceeds.
    error CapacityInvalidRecipient();

    /// @notice A configuration value is out of range.
    error CapacityInvalidConfig(uint256 value);

    /// @notice The window length `windowSeconds` is not a whole number of `epochLengthSeconds` oracle epochs.
    error CapacityWindowNotEpochAligned(uint64 windowSeconds, uint64 epochLengthSeconds);

    /// @notice Node `nodeId` has only `unreserved` unreserved sold GPU-hours of `tokenId`, less than `requested`.
    error CapacityNotRedeemable(uint256 nodeId, uint256 tokenId, uint256 unreserved, uint256 requested);

    /// @notice The window of `tokenId` ends at `windowEnd`; now is `nowTimestamp`.
    error CapacityWindowNotEnded(uint256 tokenId, uint256 windowEnd, uint256 nowTimestamp);

    /// @notice The window of `tokenId` has not opened yet (it opens at `windowStart`).
    error CapacityWindowNotStarted(uint256 tokenId, uint64 windowStart);

    /// @notice A leaf is for node `leafNodeId`, not the node `nodeId` being proven.
    error CapacityLeafNodeMismatch(uint256 nodeId, uint256 leafNodeId);

    /// @notice Epoch `epoch` does not end inside the window of `tokenId` (epochs `firstEpoch`..`lastEpoch` do).
    error CapacityEpochOutsideWindow(uint64 epoch, uint64 firstEpoch, uint64 lastEpoch);

    /// @notice Epoch `epoch` of node `nodeId` was already counted.
    error CapacityEpochAlreadyProven(uint256 nodeId, uint64 epoch);

    /// @notice A range's first leaf is of epoch `firstLeafEpoch`, after its last leaf's `lastLeafEpoch`.
    error CapacityRangeReversed(uint64 firstLeafEpoch, uint64 lastLeafEpoch);

    /// @notice The last leaf's cumulative delivery `lastCumulative` is below `before`, the first
    /// leaf's before its epoch: the two leaves are not of one chain of counters.
    error CapacityCumulativeMismatch(uint64 before, uint64 lastCumulative);

    /// @notice `leaves` and `proofs` differ in length, or are empty.
    error CapacityProofLengthMismatch(uint256 leaves, uint256 proofs);

    /// @notice Node `nodeId`'s delivery for `tokenId` is final; no more proofs are taken.
    error CapacityDeliveryFinalized(uint256 nodeId, uint256 tokenId);

    /// @notice Only `provenEpochs` of the window's `windowEpochs` epochs are proven and the grace
    /// period runs until `graceEnd`.
    error CapacitySettlementTooEarly(uint256 provenEpochs, uint256 windowEpochs, uint256 graceEnd);

    /// @notice No reservation has id `reservationId`.
    error CapacityUnknownReservation(uint256 reservationId);

    /// @notice Reservation `reservationId` is already settled.
    error CapacityReservationSettled(uint256 reservationId);

    /// @notice Node `nodeId` has no unredeemed sold capacity of `tokenId` left to expire.
    error CapacityNothingToRelease(uint256 nodeId, uint256 tokenId);

    // ------------------------------------------------------------------
    // Token ids
    // ------------------------------------------------------------------

    /// @notice Token id of GPU class `classId` in the window starting at `windowStart` (must be aligned).
    function tokenIdFor(uint32 classId, uint64 windowStart) external view returns (uint256);

    /// @notice GPU class and window start encoded in `tokenId`; reverts if it is not a valid encoding.
    function decodeTokenId(uint256 tokenId) external view returns (uint32 classId, uint64 windowStart);

    /// @notice Length of every delivery window, in seconds (a whole number of hours).
    function windowSeconds() external view returns (uint64);

    // ------------------------------------------------------------------
    // Offers
    // ------------------------------------------------------------------

    /**
     * @notice Offers `amount` GPU-hours of `tokenId` from node `nodeId` at
     * `pricePerGpuHour` (stablecoin units), and locks `amount × bondPerGpuHour` of the
     * node's bond, where bondPerGpuHour is the highest of the id's current one and
     * ceil(pricePerGpuHour × bondCoverageBps / 10_000). If that raises the id's bond per
     * GPU-hour (or its refund price), the hours already on offer or sold unreserved are
     * topped up to it in the same call (ObligationTermsRaised).
     * Requirements: caller is the node's operator; node is Active and of the
     * token's class; the window has not started; amount and price > 0; promised
     * capacity stays within gpuCount × window hours × commitRatioBps / 10_000;
     * the node has enough free bond (else the registry's RegistryInsufficientBond).
     */
    function publishOffer(uint256 nodeId, uint256 tokenId, uint256 amount, uint256 pricePerGpuHour)
        external
        returns (uint256 offerId);

    /**
     * @notice Closes offer `offerId`: its unsold GPU-hours are no longer promised and
     * their bond is unlocked. Sold capacity stays owed (and its bond locked).
     * Requirements: caller is the node's operator; offer is open.
     */
    function cancelOffer(uint256 offerId) external;

    /**
     * @notice Buys `amount` GPU-hours from offer `offerId`, paying
     * `amount × pricePerGpuHour` in the stablecoin (approved beforehand), and
     * mints the tokens to the caller.
     * Requirements: offer open with ≥ amount left; node still Active; window not started.
     */
    function buy(uint256 offerId, uint256 amount) external returns (uint256 cost);

    /**
     * @notice {buy}, approving the payment with an EIP-2612 permit for exactly the cost.
     * A permit that fails (e.g. already used by a front-runner) is ignored: the
     * payment then needs an existing allowance.
     */
    function buyWithPermit(uint256 offerId, uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
        returns (uint256 cost);

    /// @notice Offer `offerId`; reverts if unknown.
    function offer(uint256 offerId) external view returns (Offer memory);

    /// @notice Number of offers ever published (the highest offer id).
    function offerCount() external view returns (uint256);

    /**
     * @notice Capacity of node `nodeId` in the window starting at `windowStart`:
     * the most it may promise, and what it has promised and sold.
     */
    function capacityOf(uint256 nodeId, uint64 windowStart)
        external
        view
        returns (uint256 limit, uint256 promised, uint256 sold);

    // ------------------------------------------------------------------
    // Redemption, delivery, settlement, expiry
    // ------------------------------------------------------------------

    /**
     * @notice Burns `amount` of the caller's `tokenId` and reserves that many GPU-hours on
     * node `nodeId`, which must have sold at least that much of `tokenId` not yet reserved.
     * The reservation is priced at the highest price the node asked for `tokenId`
     * (Obligation.refundPricePerGpuHour) and the penalty in force now, and carries its own
     * bond: `amount × bondPerGpuHour`, the bond that backed those hours. Its refund is paid
     * from that bond alone. Why the highest price and not the average: the tokens are
     * fungible, so an average would let a cheap sale (to an accomplice, say) dilute the
     * refund of holders who paid more; at the highest price a holder's refund is never
     * below what any buyer of that node paid, and a cheap hour's larger refund is paid by
     * the bond its own offer had to lock.
     * @dev The holder names the node (see the contract NatSpec for why); {redeemableFrom} tells
     * how much each node can take. Requirements: window not started; amount > 0; caller holds
     * it; the node is Active or Jailed, not exiting nor exited (CapacityNodeNotActive). A jailed
     * node still owes what it sold: its holders can still turn their tokens into claims.
     */
    function redeem(uint256 tokenId, uint256 amount, uint256 nodeId) external returns (uint256 reservationId);

    /**
     * @notice Counts attested epochs of node `nodeId` toward the window of `tokenId`: each
     * leaf must be the node's, for an epoch that ends inside the window and was not counted
     * before, and in that epoch's attested tree (OracleHub.requireLeaf). Permissionless; the
     * operator has the incentive to prove its delivery before the grace period ends.
     * Requirements: the window has ended; delivery not yet finalized; `tokenId` is of the node's
     * GPU class (else CapacityClassMismatch); leaves.length == proofs.length > 0.
     */
    function proveDelivery(
        uint256 nodeId,
        uint256 tokenId,
        IOracleHub.NodeLeaf[] calldata leaves,
        bytes32[][] calldata proofs
    ) external;

    /**
     * @notice Counts node `nodeId`'s delivery over the attested epochs `first.epoch`..`last.epoch`
     * of `tokenId`'s window from two leaves, whatever the number of epochs between (leaf v2):
     * `last.cumMilliGpuHours - (first.cumMilliGpuHours - first.milliGpuHours)`. The oracles chain
     * each node's cumulative counters on its newest attested leaf, so that difference is every
     * milli-GPU-hour attested for the node from `first.epoch` to `last.epoch`; an epoch of the
     * range without a leaf of the node (excluded, or passed over) delivered nothing and is
     * counted as proven. `first` may be `last` (one epoch). A prover cannot overstate: a later
     * first leaf or an earlier last one only leaves epochs out. Composes with {proveDelivery}:
     * every epoch still counts once (the same per-node bitmap).
     * Requirements: as {proveDelivery}; both leaves the node's, in the window, in order
     * (CapacityRangeReversed), of one chain of counters (CapacityCumulativeMismatch), and no
     * epoch of the range counted before (CapacityEpochAlreadyProven names the first).
     */
    function proveDeliveryRange(
        uint256 nodeId,
        uint256 tokenId,
        IOracleHub.NodeLeaf calldata first,
        bytes32[] calldata firstProof,
        IOracleHub.NodeLeaf calldata last,
        bytes32[] calldata lastProof
    ) external;

    /**
     * @notice Settles reservation `reservationId` (permissionless). The first settlement of a
     * node's window freezes its proven delivery. The reservation's share of the shortfall is
     * `amount × max(0, reserved × 1000 − delivered) / (reserved × 1000)` GPU-hours; its holder is
     * refunded `pricePerGpuHour × share × (10_000 + penaltyBps) / 10_000` (rounded down) from the
     * reservation's OWN bond lock (NodeRegistry.settleLock), never from bond backing anything
     * else; a refund above it (bond coverage below 100% + penalty) is recorded as uncovered.
     * The reservation's bond lock is released either way (its unpaid part becomes free bond).
     * Requirements: reservation exists and is unsettled; window ended; every epoch of the window
     * proven, or the settlement grace period over.
     */
    function settleReservation(uint256 reservationId) external;

    /**
     * @notice Releases the bond of node `nodeId`'s sold GPU-hours of `tokenId` that nobody
     * redeemed: once the window opens they can no longer be redeemed, so the node owes
     * nothing for them (it keeps the proceeds). Permissionless.
     * Requirements: the window has started; some unredeemed sold capacity is left.
     */
    function releaseExpired(uint256 nodeId, uint256 tokenId) external;

    /// @notice Sets the shortfall penalty for reservations made from now on. Requirements: admin; ≤ 10_000.
    function setShortfallPenalty(uint16 shortfallPenaltyBps_) external;

    /// @notice Reservation `reservationId`; reverts if unknown.
    function reservation(uint256 reservationId) external view returns (Reservation memory);

    /// @notice Number of reservations ever made (the highest reservation id).
    function reservationCount() external view returns (uint256);

    /// @notice What node `nodeId` owes for `tokenId`.
    function obligationOf(uint256 nodeId, uint256 tokenId) external view returns (Obligation memory);

    /// @notice GPU-hours of `tokenId` a holder can still redeem against node `nodeId` (0 once the window opened).
    function redeemableFrom(uint256 nodeId, uint256 tokenId) external view returns (uint256);

    /// @notice First and last oracle epoch counted toward the window of `tokenId` (those ending inside it).
    function windowEpochs(uint256 tokenId) external view returns (uint64 firstEpoch, uint64 lastEpoch);

    /// @notice Whether epoch `epoch` of node `nodeId` was counted toward a window's delivery.
    function isEpochProven(uint256 nodeId, uint64 epoch) external view returns (bool);

    /// @notice Refunds owed to holders of node `nodeId`'s reservations that its bond could not cover.
    function uncoveredShortfall(uint256 nodeId) external view returns (uint256);

    /// @notice Penalty on top of the price refunded per GPU-hour short, in bps.
    function shortfallPenaltyBps() external view returns (uint16);

    /// @notice Seconds after a window ends during which settlement waits for every epoch to be proven.
    function settlementGraceSeconds() external view returns (uint64);

    /// @notice The OracleHub whose attestations prove delivery.
    function oracleHub() external view returns (IOracleHub);

    // ------------------------------------------------------------------
    // Proceeds
    // ------------------------------------------------------------------

    /**
     * @notice Pays `amount` of node `nodeId`'s held sale proceeds to `to` (settlement).
     * Requirements: caller has PROCEEDS_ROLE; amount ≤ held; `to` not zero.
     */
    function collectProceeds(uint256 nodeId, uint256 amount, address to) external;

    /// @notice Sale proceeds of node `nodeId` held by this contract.
    function heldProceeds(uint256 nodeId) external view returns (uint256);

    /// @notice Sale proceeds held for all nodes; equals this contract's stablecoin balance unless someone donated.
    function totalHeldProceeds() external view returns (uint256);

    // ------------------------------------------------------------------
    // Configuration
    // ------------------------------------------------------------------

    /// @notice Sets the share of a node's GPU-hours it may promise. Requirements: admin; 1..10_000.
    function setCommitRatio(uint16 commitRatioBps_) external;

    /// @notice Sets the bond locked per unit of offered notional. Requirements: admin; 1..100_000.
    function setBondCoverage(uint32 bondCoverageBps_) external;

    /// @notice Share of a node's GPU-hours in a window it may promise, in bps.
    function commitRatioBps() external view returns (uint16);

    /// @notice Bond locked per unit of offered notional (price × amount), in bps.
    function bondCoverageBps() external view returns (uint32);
}
