// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC2771Context} from "@openzeppelin/contracts/metatx/ERC2771Context.sol";
import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Permit} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Permit.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Context} from "@openzeppelin/contracts/utils/Context.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {ICapacityToken} from "./interfaces/ICapacityToken.sol";
import {INodeRegistry} from "./interfaces/INodeRegistry.sol";
import {IOracleHub} from "./interfaces/IOracleHub.sol";
import {IRiskGate} from "./interfaces/IRiskGate.sol";
import {EmergencyPause} from "./utils/EmergencyPause.sol";

/**
 * @title CapacityToken
 * @notice ERC-1155 GPU-hour tokens and their primary market. See {ICapacityToken}.
 * @dev Design decisions:
 * - Token id = (uint256(classId) << 64) | windowStart; windows are aligned to
 *   the fixed `windowSeconds` (a whole number of hours), so one class and one
 *   window is one fungible id across operators.
 * - What a node promises (offered and not cancelled) is capped per window when
 *   the offer is published, not when it sells: an operator cannot advertise
 *   more than it can deliver, and the cap check is one storage slot.
 * - Bond is locked in the NodeRegistry at publication, at ONE bond per GPU-hour
 *   per (node, token id): the highest ceil(price × bondCoverageBps) of the id's
 *   offers, topped up for the hours already there when a dearer offer raises it.
 *   Each lock's books live here (an open offer: remaining × bondPerGpuHour; the
 *   unreserved sales: unreserved × bondPerGpuHour; a reservation: its own
 *   bondLocked), and the registry's `locked` is exactly their sum: SLASHER_ROLE
 *   there can take free bond only, and a reservation is settled with
 *   NodeRegistry.settleLock, paying its refund out of its own lock. So cancel,
 *   release and settle unlock exactly what they locked, and the node cannot exit
 *   while any of it is locked.
 * - Sale proceeds stay here, per node, until PROCEEDS_ROLE (settlement)
 *   collects them: a shortfall can still be refunded. Invariant: stablecoin
 *   received == collected + totalHeldProceeds, to the unit.
 * - The stablecoin must be a plain ERC-20 (no fee on transfer).
 * - Buyers and operators can act through the trusted ERC-2771 forwarder.
 * - Emergency pause ({EmergencyPause}): GUARDIAN_ROLE can stop new offers and buys
 *   for a bounded time; cancel, redeem, proofs, settlement, expiry and proceeds
 *   collection are never paused, so nobody's money or claim is trapped by it.
 *
 * Redemption, delivery and expiry:
 * - Sales are tracked per (node, token id) in an {Obligation}: unreserved sold
 *   GPU-hours, reserved GPU-hours, the refund price (the highest price the node
 *   asked for the id) and the bond per GPU-hour.
 * - Assignment: the holder names the node to redeem against ({redeem}), which
 *   must have at least that much unreserved sold capacity of the id. Why not a
 *   FIFO queue: O(1) gas with no queue to maintain or griefing by dust entries;
 *   the holder (or the backend on its behalf, with {redeemableFrom}) picks the
 *   operator it trusts, and no node can ever be assigned more than it sold. The
 *   reservation is priced at the node's refund price for the id and takes
 *   amount × bondPerGpuHour of its bond: a cheap sale cannot dilute a dearer
 *   holder's refund nor take the bond a dearer sale brought (ICapacityToken.redeem).
 * - Delivery: an oracle epoch counts toward the window in which it ENDS
 *   (`windowStart < epochEnd <= windowEnd`); with the window a whole number of
 *   epochs this partitions epochs between windows whatever the hub's genesis.
 *   Proofs are submitted in bounded batches ({proveDelivery}); a per-node epoch
 *   bitmap forbids counting an epoch twice. Delivered = sum of the attested
 *   `milliGpuHours` (GPU-hours the node was up to serve), compared with all the
 *   node's reservations for the window together; a shortfall is shared pro rata.
 * - Settlement waits for every epoch to be proven or for `settlementGraceSeconds`
 *   after the window, so a holder cannot settle before the operator had a chance
 *   to prove its delivery; the first settlement freezes the node's delivery.
 * - Refunds come from the reservation's own bond lock only (NodeRegistry.settleLock
 *   pays the holder); held proceeds are the settlement contract's business. With
 *   bondCoverageBps >= 10_000 + shortfallPenaltyBps every refund is covered in full
 *   (bondPerGpuHour >= refundPrice × coverage); any part a lock cannot cover (the
 *   penalty raised or the coverage lowered after the offers) is recorded per
 *   reservation and per node ({uncoveredShortfall}).
 * - Expiry: a token can be redeemed only before its window opens. From then on
 *   the node owes nothing for sold hours nobody redeemed (the holder bought an
 *   option and did not exercise it; the operator keeps the price) and anyone may
 *   release their bond ({releaseExpired}). Unredeemed tokens stay as inert
 *   ERC-1155 balances: transferable records with no claim attached.
 */
contract CapacityToken is
    ERC1155,
    AccessControl,
    EmergencyPause,
    ERC2771Context,
    ReentrancyGuardTransient,
    ICapacityToken
{
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

    /// @notice May pay out held sale proceeds (the settlement contract).
    bytes32 public constant PROCEEDS_ROLE = keccak256("PROCEEDS_ROLE");

    /// @notice Asked by {publishOffer}: a node it flags (covenant broken) cannot offer new
    /// capacity. Zero = no gate. Set by the admin ({setRiskGate}); the settlement in deployments.
    IRiskGate public riskGate;

    uint256 private constant BPS = 10_000;
    uint32 private constant MAX_BOND_COVERAGE_BPS = 100_000;
    uint256 private constant MILLI = 1_000; // milli-GPU-hours per GPU-hour (IOracleHub units)
    uint64 private constant MAX_SETTLEMENT_GRACE = 30 days;

    INodeRegistry public immutable registry;
    IERC20 public immutable stablecoin;
    uint64 private immutable _windowSeconds;
    IOracleHub private immutable _hub;
    uint64 private immutable _epochGenesis;
    uint64 private immutable _epochLength;
    uint64 private immutable _settlementGrace;

    // Storage: _commitRatioBps (uint16), _bondCoverageBps (uint32) and _penaltyBps (uint16) share
    // one slot; Offer, Commitment, Obligation and Reservation packing: see ICapacityToken.
    uint16 private _commitRatioBps;
    uint32 private _bondCoverageBps;
    uint16 private _penaltyBps;
    uint256 private _offerCount;
    uint256 private _totalHeld;
    uint256 private _reservationCount;
    mapping(uint256 offerId => Offer) private _offers;
    mapping(uint256 nodeId => mapping(uint64 windowStart => Commitment)) private _commitments;
    mapping(uint256 nodeId => uint256 amount) private _held;
    mapping(uint256 nodeId => mapping(uint256 tokenId => Obligation)) private _obligations;
    mapping(uint256 reservationId => Reservation) private _reservations;
    // Bit `epoch % 256` of word `epoch / 256`: the node's epoch was counted (an epoch lies in one window).
    mapping(uint256 nodeId => mapping(uint256 word => uint256 bits)) private _provenEpochBits;
    mapping(uint256 nodeId => uint256 amount) private _uncovered;

    /**
     * @param admin Receives DEFAULT_ADMIN_ROLE.
     * @param registry_ The NodeRegistry; this contract needs its BOND_LOCKER_ROLE.
     * @param hub_ The OracleHub whose attested leaves prove delivery.
     * @param stablecoin_ The payment token.
     * @param trustedForwarder The ERC-2771 forwarder.
     * @param windowSeconds_ Delivery window length: a non-zero whole number of hours and of hub epochs.
     * @param commitRatioBps_ Share of a node's GPU-hours it may promise, 1..10_000.
     * @param bondCoverageBps_ Bond locked per unit of offered notional, 1..100_000.
     * @param shortfallPenaltyBps_ Refund on top of the price per GPU-hour short, 0..10_000.
     * @param settlementGraceSeconds_ Wait after a window for delivery proofs, ≤ 30 days.
     * @param uri_ ERC-1155 metadata URI template.
     */
    constructor(
        address admin,
        INodeRegistry registry_,
        IOracleHub hub_,
        IERC20 stablecoin_,
        address trustedForwarder,
        uint64 windowSeconds_,
        uint16 commitRatioBps_,
        uint32 bondCoverageBps_,
        uint16 shortfallPenaltyBps_,
        uint64 settlementGraceSeconds_,
        string memory uri_
    ) ERC1155(uri_) ERC2771Context(trustedForwarder) {
        if (windowSeconds_ == 0 || windowSeconds_ % 1 hours != 0) revert CapacityInvalidConfig(windowSeconds_);
        if (settlementGraceSeconds_ > MAX_SETTLEMENT_GRACE) revert CapacityInvalidConfig(settlementGraceSeconds_);
        uint64 epochLength = hub_.epochLengthSeconds();
        if (windowSeconds_ % epochLength != 0) revert CapacityWindowNotEpochAligned(windowSeconds_, epochLength);
        registry = registry_;
        stablecoin = stablecoin_;
        _windowSeconds = windowSeconds_;
        _hub = hub_;
        _epochGenesis = hub_.genesisTimestamp();
        _epochLength = epochLength;
        _settlementGrace = settlementGraceSeconds_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _setCommitRatio(commitRatioBps_);
        _setBondCoverage(bondCoverageBps_);
        _setShortfallPenalty(shortfallPenaltyBps_);
    }

    // ------------------------------------------------------------------
    // Token ids
    // ------------------------------------------------------------------

    /// @inheritdoc ICapacityToken
    function tokenIdFor(uint32 classId, uint64 windowStart) external view returns (uint256) {
        if (windowStart % _windowSeconds != 0) revert CapacityMisalignedWindow(windowStart, _windowSeconds);
        return (uint256(classId) << 64) | windowStart;
    }

    /// @inheritdoc ICapacityToken
    function decodeTokenId(uint256 tokenId) public view returns (uint32 classId, uint64 windowStart) {
        // Valid ids have no bits above the 32-bit class id and a non-zero class.
        if (tokenId >> 96 != 0 || tokenId >> 64 == 0) revert CapacityInvalidTokenId(tokenId);
        classId = uint32(tokenId >> 64);
        windowStart = uint64(tokenId);
        if (windowStart % _windowSeconds != 0) revert CapacityInvalidTokenId(tokenId);
    }

    /// @inheritdoc ICapacityToken
    function windowSeconds() external view returns (uint64) {
        return _windowSeconds;
    }

    // ------------------------------------------------------------------
    // Offers
    // ------------------------------------------------------------------

    /// @inheritdoc ICapacityToken
    function publishOffer(uint256 nodeId, uint256 tokenId, uint256 amount, uint256 pricePerGpuHour)
        external
        nonReentrant
        whenNotPaused
        returns (uint256 offerId)
    {
        if (amount == 0 || pricePerGpuHour == 0) revert CapacityZeroAmount();
        (uint32 classId, uint64 windowStart) = decodeTokenId(tokenId);
        // slither-disable-next-line timestamp (windows are hours long; seconds of drift are harmless)
        if (block.timestamp >= windowStart) revert CapacityWindowStarted(windowStart, block.timestamp);
        IRiskGate gate = riskGate;
        if (address(gate) != address(0) && gate.isFlagged(nodeId)) revert CapacityNodeFlagged(nodeId);
        // Hours of this id already on offer (not yet sold) before this one.
        uint256 onOffer = _promise(nodeId, classId, windowStart, amount);
        (uint128 bondPerGpuHour, uint256 toppedUp) = _raiseTerms(nodeId, tokenId, pricePerGpuHour, onOffer);
        uint256 bondLocked = uint256(bondPerGpuHour) * amount + toppedUp;

        offerId = ++_offerCount;
        _offers[offerId] = Offer({
            tokenId: tokenId,
            nodeId: nodeId.toUint64(),
            remaining: amount.toUint64(),
            sold: 0,
            open: true,
            pricePerGpuHour: pricePerGpuHour.toUint128(),
            bondPerGpuHour: bondPerGpuHour
        });
        emit OfferPublished(offerId, nodeId, tokenId, amount, pricePerGpuHour, bondLocked);
        // Trusted registry call after the state writes; reverts RegistryInsufficientBond if the bond is short.
        registry.lockBond(nodeId, bondLocked);
    }

    /// @inheritdoc ICapacityToken
    function cancelOffer(uint256 offerId) external nonReentrant {
        Offer storage o = _requireOffer(offerId);
        if (!o.open) revert CapacityOfferClosed(offerId);
        uint256 nodeId = o.nodeId;
        address sender = _msgSender();
        if (registry.node(nodeId).operator != sender) revert CapacityNotOperator(nodeId, sender);

        uint64 unsold = o.remaining;
        // The id's bond per hour now (it may have been topped up since this offer was published).
        uint256 bondUnlocked = uint256(_obligations[nodeId][o.tokenId].bondPerGpuHour) * unsold;
        o.open = false;
        o.remaining = 0;
        // unsold <= promised: every promise was added by an offer's amount.
        _commitments[nodeId][uint64(o.tokenId)].promised -= unsold;
        emit OfferCancelled(offerId, unsold, bondUnlocked);
        // Trusted registry call after the state writes.
        if (bondUnlocked != 0) registry.unlockBond(nodeId, bondUnlocked);
    }

    /// @inheritdoc ICapacityToken
    function buy(uint256 offerId, uint256 amount) external nonReentrant whenNotPaused returns (uint256 cost) {
        return _buy(offerId, amount, _msgSender());
    }

    /// @inheritdoc ICapacityToken
    function buyWithPermit(uint256 offerId, uint256 amount, uint256 deadline, uint8 v, bytes32 r, bytes32 s)
        external
        nonReentrant
        whenNotPaused
        returns (uint256 cost)
    {
        address buyer = _msgSender();
        Offer storage o = _requireOffer(offerId);
        // A front-run permit makes this call fail; the allowance it set is then used as is.
        try IERC20Permit(address(stablecoin)).permit(
            buyer, address(this), amount * o.pricePerGpuHour, deadline, v, r, s
        ) {} catch {}
        return _buy(offerId, amount, buyer);
    }

    /// @inheritdoc ICapacityToken
    function offer(uint256 offerId) external view returns (Offer memory) {
        return _requireOffer(offerId);
    }

    /// @inheritdoc ICapacityToken
    function offerCount() external view returns (uint256) {
        return _offerCount;
    }

    /// @inheritdoc ICapacityToken
    function capacityOf(uint256 nodeId, uint64 windowStart)
        external
        view
        returns (uint256 limit, uint256 promised, uint256 sold)
    {
        Commitment memory c = _commitments[nodeId][windowStart];
        return (_capacityLimit(registry.node(nodeId).gpuCount), c.promised, c.sold);
    }

    // ------------------------------------------------------------------
    // Redemption
    // ------------------------------------------------------------------

    /// @inheritdoc ICapacityToken
    function redeem(uint256 tokenId, uint256 amount, uint256 nodeId)
        external
        nonReentrant
        returns (uint256 reservationId)
    {
        if (amount == 0) revert CapacityZeroAmount();
        (, uint64 windowStart) = decodeTokenId(tokenId);
        // slither-disable-next-line timestamp (windows are hours long; seconds of drift are harmless)
        if (block.timestamp >= windowStart) revert CapacityWindowStarted(windowStart, block.timestamp);
        // Trusted registry, a view. An exiting or exited node takes no new reservation; a jailed
        // one does: its sold hours are owed all the same, and refusing them would let the
        // jailer (no delay) make every holder's tokens expire while the operator keeps the price.
        INodeRegistry.NodeStatus status = registry.nodeStatus(nodeId);
        if (status != INodeRegistry.NodeStatus.Active && status != INodeRegistry.NodeStatus.Jailed) {
            revert CapacityNodeNotActive(nodeId, uint8(status));
        }
        Obligation storage ob = _obligations[nodeId][tokenId];
        uint64 unreserved = ob.unreserved;
        if (amount > unreserved) revert CapacityNotRedeemable(nodeId, tokenId, unreserved, amount);

        address holder = _msgSender();
        // Burning makes no external call (no receiver hook on burns); reverts ERC1155InsufficientBalance.
        _burn(holder, tokenId, amount);

        // Every unreserved hour of the id is backed by bondPerGpuHour: the reservation takes
        // exactly its hours' bond, so the books of the rest stay exact.
        uint256 pricePerGpuHour = ob.refundPricePerGpuHour;
        uint256 bondMoved = uint256(ob.bondPerGpuHour) * amount;
        uint16 penaltyBps = _penaltyBps;
        // amount <= unreserved; reserved + unreserved <= sold (uint64 sums).
        unchecked {
            ob.unreserved = unreserved - uint64(amount);
            ob.reserved += uint64(amount);
        }
        reservationId = ++_reservationCount;
        _reservations[reservationId] = Reservation({
            holder: holder,
            nodeId: uint64(nodeId), // non-zero sold capacity implies a registered node id (uint64 offers)
            tokenId: tokenId,
            amount: uint64(amount),
            pricePerGpuHour: uint128(pricePerGpuHour), // the highest offer price (uint128)
            shortfallPenaltyBps: penaltyBps,
            settled: false,
            bondLocked: bondMoved.toUint128(), // <= the bond locked for these hours (uint128)
            uncovered: 0
        });
        emit Redeemed(reservationId, holder, nodeId, tokenId, amount, pricePerGpuHour, bondMoved);
    }

    /// @inheritdoc ICapacityToken
    function reservation(uint256 reservationId) external view returns (Reservation memory) {
        return _requireReservation(reservationId);
    }

    /// @inheritdoc ICapacityToken
    function reservationCount() external view returns (uint256) {
        return _reservationCount;
    }

    /// @inheritdoc ICapacityToken
    function obligationOf(uint256 nodeId, uint256 tokenId) external view returns (Obligation memory) {
        return _obligations[nodeId][tokenId];
    }

    /// @inheritdoc ICapacityToken
    function redeemableFrom(uint256 nodeId, uint256 tokenId) external view returns (uint256) {
        (, uint64 windowStart) = decodeTokenId(tokenId);
        // slither-disable-next-line timestamp (windows are hours long; seconds of drift are harmless)
        return block.timestamp >= windowStart ? 0 : _obligations[nodeId][tokenId].unreserved;
    }

    // ------------------------------------------------------------------
    // Delivery and settlement
    // ------------------------------------------------------------------

    /// @inheritdoc ICapacityToken
    function proveDelivery(
        uint256 nodeId,
        uint256 tokenId,
        IOracleHub.NodeLeaf[] calldata leaves,
        bytes32[][] calldata proofs
    ) external nonReentrant {
        uint256 count = leaves.length;
        if (count == 0 || count != proofs.length) revert CapacityProofLengthMismatch(count, proofs.length);
        (Obligation storage ob, uint64 firstEpoch, uint64 lastEpoch) = _openDelivery(nodeId, tokenId);

        uint256 milliGpuHours = 0;
        for (uint256 i = 0; i < count; ++i) {
            IOracleHub.NodeLeaf calldata leaf = leaves[i];
            if (leaf.nodeId != nodeId) revert CapacityLeafNodeMismatch(nodeId, leaf.nodeId);
            uint64 epoch = leaf.epoch;
            if (epoch < firstEpoch || epoch > lastEpoch) {
                revert CapacityEpochOutsideWindow(epoch, firstEpoch, lastEpoch);
            }
            _markEpochProven(nodeId, epoch);
            // Trusted hub, view call (staticcall): reverts OracleInvalidProof / OracleLeafOutOfRange.
            // slither-disable-next-line calls-loop (trusted immutable hub; a revert aborts the whole proof)
            _hub.requireLeaf(leaf, proofs[i]);
            milliGpuHours += leaf.milliGpuHours;
        }
        _countDelivery(nodeId, tokenId, ob, count, milliGpuHours);
    }

    /// @inheritdoc ICapacityToken
    function proveDeliveryRange(
        uint256 nodeId,
        uint256 tokenId,
        IOracleHub.NodeLeaf calldata first,
        bytes32[] calldata firstProof,
        IOracleHub.NodeLeaf calldata last,
        bytes32[] calldata lastProof
    ) external nonReentrant {
        (Obligation storage ob, uint64 firstEpoch, uint64 lastEpoch) = _openDelivery(nodeId, tokenId);
        if (first.nodeId != nodeId) revert CapacityLeafNodeMismatch(nodeId, first.nodeId);
        if (last.nodeId != nodeId) revert CapacityLeafNodeMismatch(nodeId, last.nodeId);
        uint64 from = first.epoch;
        uint64 to = last.epoch;
        if (from < firstEpoch || from > lastEpoch) revert CapacityEpochOutsideWindow(from, firstEpoch, lastEpoch);
        if (to < from) revert CapacityRangeReversed(from, to);
        if (to > lastEpoch) revert CapacityEpochOutsideWindow(to, firstEpoch, lastEpoch);
        // Trusted hub, view calls: reverts OracleInvalidProof / OracleLeafOutOfRange (which also
        // refuses a cumulative counter below its own epoch's figure).
        _hub.requireLeaf(first, firstProof);
        _hub.requireLeaf(last, lastProof);
        uint64 before = first.cumMilliGpuHours - first.milliGpuHours;
        if (last.cumMilliGpuHours < before) revert CapacityCumulativeMismatch(before, last.cumMilliGpuHours);
        _markRangeProven(nodeId, from, to);
        _countDelivery(nodeId, tokenId, ob, uint256(to) - from + 1, last.cumMilliGpuHours - before);
    }

    /// @inheritdoc ICapacityToken
    function settleReservation(uint256 reservationId) external nonReentrant {
        Reservation storage r = _requireReservation(reservationId);
        if (r.settled) revert CapacityReservationSettled(reservationId);
        uint256 nodeId = r.nodeId;
        Obligation storage ob = _obligations[nodeId][r.tokenId];
        if (!ob.finalized) _finalizeDelivery(nodeId, r.tokenId, ob);

        (uint256 refund, uint256 shortfallShareMilli) = _refundOf(r, ob);
        // The refund is paid from this reservation's own lock, never beyond it.
        uint256 bondUnlocked = r.bondLocked;
        uint256 slashed = Math.min(refund, bondUnlocked);
        address holder = r.holder;
        bytes32 evidence = _evidence(reservationId, r.tokenId, ob);

        r.settled = true;
        r.bondLocked = 0;
        uint256 uncovered = refund - slashed;
        if (uncovered != 0) {
            r.uncovered = uncovered.toUint128();
            _uncovered[nodeId] += uncovered;
        }
        emit ReservationSettled(reservationId, nodeId, holder, shortfallShareMilli, refund, slashed, bondUnlocked);
        if (uncovered != 0) emit ShortfallUncovered(reservationId, nodeId, holder, uncovered);

        // Trusted registry call after the state writes: releases the lock and pays the holder
        // `slashed` of it in the stablecoin; a token callback re-entering here is stopped by the guard.
        registry.settleLock(nodeId, bondUnlocked, slashed, holder, evidence);
    }

    /// @inheritdoc ICapacityToken
    function releaseExpired(uint256 nodeId, uint256 tokenId) external nonReentrant {
        (, uint64 windowStart) = decodeTokenId(tokenId);
        // slither-disable-next-line timestamp (windows are hours long; seconds of drift are harmless)
        if (block.timestamp < windowStart) revert CapacityWindowNotStarted(tokenId, windowStart);
        Obligation storage ob = _obligations[nodeId][tokenId];
        uint64 expired = ob.unreserved;
        if (expired == 0) revert CapacityNothingToRelease(nodeId, tokenId);
        uint256 bondUnlocked = uint256(ob.bondPerGpuHour) * expired;
        ob.unreserved = 0;
        emit CapacityExpired(nodeId, tokenId, expired, bondUnlocked);
        // Trusted registry call after the state writes.
        registry.unlockBond(nodeId, bondUnlocked);
    }

    /// @inheritdoc ICapacityToken
    function windowEpochs(uint256 tokenId) external view returns (uint64 firstEpoch, uint64 lastEpoch) {
        (, uint64 windowStart) = decodeTokenId(tokenId);
        return _windowEpochs(windowStart);
    }

    /// @inheritdoc ICapacityToken
    function isEpochProven(uint256 nodeId, uint64 epoch) external view returns (bool) {
        return _provenEpochBits[nodeId][epoch >> 8] & (1 << (epoch & 0xff)) != 0;
    }

    /// @inheritdoc ICapacityToken
    function uncoveredShortfall(uint256 nodeId) external view returns (uint256) {
        return _uncovered[nodeId];
    }

    /// @inheritdoc ICapacityToken
    function settlementGraceSeconds() external view returns (uint64) {
        return _settlementGrace;
    }

    /// @inheritdoc ICapacityToken
    function oracleHub() external view returns (IOracleHub) {
        return _hub;
    }

    /// @notice Sets the risk gate {publishOffer} consults (zero disables it). Admin only.
    function setRiskGate(IRiskGate gate) external onlyRole(DEFAULT_ADMIN_ROLE) {
        riskGate = gate;
        emit RiskGateSet(address(gate));
    }

    // ------------------------------------------------------------------
    // Proceeds
    // ------------------------------------------------------------------

    /// @inheritdoc ICapacityToken
    function collectProceeds(uint256 nodeId, uint256 amount, address to)
        external
        onlyRole(PROCEEDS_ROLE)
        nonReentrant
    {
        if (to == address(0)) revert CapacityInvalidRecipient();
        uint256 held = _held[nodeId];
        if (amount == 0) revert CapacityZeroAmount();
        if (amount > held) revert CapacityInsufficientProceeds(nodeId, held, amount);
        // amount <= held <= _totalHeld.
        unchecked {
            _held[nodeId] = held - amount;
            _totalHeld -= amount;
        }
        emit ProceedsCollected(nodeId, to, amount);
        // External call after the state writes; the guard blocks re-entry.
        stablecoin.safeTransfer(to, amount);
    }

    /// @inheritdoc ICapacityToken
    function heldProceeds(uint256 nodeId) external view returns (uint256) {
        return _held[nodeId];
    }

    /// @inheritdoc ICapacityToken
    function totalHeldProceeds() external view returns (uint256) {
        return _totalHeld;
    }

    // ------------------------------------------------------------------
    // Configuration
    // ------------------------------------------------------------------

    /// @inheritdoc ICapacityToken
    function setCommitRatio(uint16 commitRatioBps_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setCommitRatio(commitRatioBps_);
    }

    /// @inheritdoc ICapacityToken
    function setBondCoverage(uint32 bondCoverageBps_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setBondCoverage(bondCoverageBps_);
    }

    /// @inheritdoc ICapacityToken
    function setShortfallPenalty(uint16 shortfallPenaltyBps_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setShortfallPenalty(shortfallPenaltyBps_);
    }

    /// @inheritdoc ICapacityToken
    function shortfallPenaltyBps() external view returns (uint16) {
        return _penaltyBps;
    }

    /// @inheritdoc ICapacityToken
    function commitRatioBps() external view returns (uint16) {
        return _commitRatioBps;
    }

    /// @inheritdoc ICapacityToken
    function bondCoverageBps() external view returns (uint32) {
        return _bondCoverageBps;
    }

    /// @inheritdoc ERC1155
    function supportsInterface(bytes4 interfaceId) public view override(ERC1155, AccessControl) returns (bool) {
        return super.supportsInterface(interfaceId);
    }

    // ------------------------------------------------------------------
    // ERC-2771 plumbing (Context is inherited twice)
    // ------------------------------------------------------------------

    function _msgSender() internal view override(Context, ERC2771Context) returns (address) {
        return ERC2771Context._msgSender();
    }

    function _msgData() internal view override(Context, ERC2771Context) returns (bytes calldata) {
        return ERC2771Context._msgData();
    }

    function _contextSuffixLength() internal view override(Context, ERC2771Context) returns (uint256) {
        return ERC2771Context._contextSuffixLength();
    }

    // ------------------------------------------------------------------
    // Internal
    // ------------------------------------------------------------------

    function _buy(uint256 offerId, uint256 amount, address buyer) private returns (uint256 cost) {
        if (amount == 0) revert CapacityZeroAmount();
        Offer storage o = _requireOffer(offerId);
        if (!o.open) revert CapacityOfferClosed(offerId);
        uint64 remaining = o.remaining;
        if (amount > remaining) revert CapacityOfferInsufficient(offerId, remaining, amount);
        uint256 tokenId = o.tokenId;
        uint64 windowStart = uint64(tokenId);
        // slither-disable-next-line timestamp (windows are hours long; seconds of drift are harmless)
        if (block.timestamp >= windowStart) revert CapacityWindowStarted(windowStart, block.timestamp);
        uint256 nodeId = o.nodeId;
        INodeRegistry.NodeStatus status = registry.nodeStatus(nodeId);
        if (status != INodeRegistry.NodeStatus.Active) revert CapacityNodeNotActive(nodeId, uint8(status));

        cost = amount * o.pricePerGpuHour;
        // amount <= remaining (uint64), so the narrowing and the additions cannot overflow:
        // sold + remaining of an offer never exceed its original uint64 amount, and a
        // window's sold never exceeds its promised (uint128).
        unchecked {
            o.remaining = remaining - uint64(amount);
            o.sold += uint64(amount);
            _commitments[nodeId][windowStart].sold += uint128(amount);
        }
        // The sold hours' bond stays locked at the id's bondPerGpuHour: it now backs them unreserved.
        Obligation storage ob = _obligations[nodeId][tokenId];
        ob.unreserved = (uint256(ob.unreserved) + amount).toUint64();
        _held[nodeId] += cost;
        _totalHeld += cost;
        emit CapacityBought(offerId, buyer, tokenId, nodeId, amount, cost);
        // Payment in before the mint; the mint's receiver hook runs last, under the guard.
        stablecoin.safeTransferFrom(buyer, address(this), cost);
        _mint(buyer, tokenId, amount, "");
    }

    /// @dev Checks the caller may promise `amount` of node `nodeId` in the window, and records the
    /// promise. Returns the hours of the window on offer and not yet sold before this promise.
    function _promise(uint256 nodeId, uint32 classId, uint64 windowStart, uint256 amount)
        private
        returns (uint256 onOffer)
    {
        INodeRegistry.Node memory n = registry.node(nodeId);
        address sender = _msgSender();
        if (n.operator != sender) revert CapacityNotOperator(nodeId, sender);
        if (n.status != INodeRegistry.NodeStatus.Active) revert CapacityNodeNotActive(nodeId, uint8(n.status));
        if (n.classId != classId) revert CapacityClassMismatch(n.classId, classId);

        Commitment storage c = _commitments[nodeId][windowStart];
        uint256 limit = _capacityLimit(n.gpuCount);
        uint256 available = limit > c.promised ? limit - c.promised : 0;
        if (amount > available) revert CapacityExceeded(available, amount);
        // sold <= promised: a sale takes an offer's remaining hours, each promised once.
        onOffer = c.promised - c.sold;
        // amount <= available <= limit, and limit fits uint128 (gpuCount <= 4096, uint64 window).
        c.promised += uint128(amount);
    }

    /// @dev Raises node `nodeId`'s terms for `tokenId` to an offer at `pricePerGpuHour`: the refund
    /// price to the highest asked, the bond per GPU-hour to the highest needed at today's coverage.
    /// Returns the id's bond per GPU-hour and the top-up owed for the hours already backed by the
    /// old one (`onOffer` unsold on open offers + the unreserved sales).
    function _raiseTerms(uint256 nodeId, uint256 tokenId, uint256 pricePerGpuHour, uint256 onOffer)
        private
        returns (uint128 bondPerGpuHour, uint256 toppedUp)
    {
        Obligation storage ob = _obligations[nodeId][tokenId];
        uint128 oldBond = ob.bondPerGpuHour;
        uint128 oldPrice = ob.refundPricePerGpuHour;
        uint128 needed = Math.mulDiv(pricePerGpuHour, _bondCoverageBps, BPS, Math.Rounding.Ceil).toUint128();
        uint128 price = pricePerGpuHour.toUint128();
        if (needed <= oldBond && price <= oldPrice) return (oldBond, 0);
        bondPerGpuHour = needed > oldBond ? needed : oldBond;
        if (price > oldPrice) ob.refundPricePerGpuHour = price;
        if (bondPerGpuHour != oldBond) {
            ob.bondPerGpuHour = bondPerGpuHour;
            toppedUp = uint256(bondPerGpuHour - oldBond) * (onOffer + ob.unreserved);
        }
        emit ObligationTermsRaised(nodeId, tokenId, price > oldPrice ? price : oldPrice, bondPerGpuHour, toppedUp);
    }

    /// @dev Freezes node `nodeId`'s proven delivery for `tokenId` once the window ended and every
    /// epoch is proven or the grace period is over.
    function _finalizeDelivery(uint256 nodeId, uint256 tokenId, Obligation storage ob) private {
        uint64 windowStart = uint64(tokenId); // a reservation's token id was validated at redemption
        uint256 windowEnd = _requireWindowEnded(tokenId, windowStart);
        (uint64 firstEpoch, uint64 lastEpoch) = _windowEpochs(windowStart);
        uint256 epochCount = lastEpoch >= firstEpoch ? uint256(lastEpoch) - firstEpoch + 1 : 0;
        uint256 proven = ob.provenEpochs;
        uint256 graceEnd = windowEnd + _settlementGrace;
        // slither-disable-next-line timestamp (windows are hours long; seconds of drift are harmless)
        if (proven < epochCount && block.timestamp < graceEnd) {
            revert CapacitySettlementTooEarly(proven, epochCount, graceEnd);
        }
        ob.finalized = true;
        uint256 reservedMilli = uint256(ob.reserved) * MILLI;
        uint256 delivered = ob.deliveredMilliGpuHours;
        emit DeliveryFinalized(
            nodeId,
            tokenId,
            ob.reserved,
            delivered,
            proven,
            epochCount,
            reservedMilli > delivered ? reservedMilli - delivered : 0
        );
    }

    /// @dev Reservation `r`'s refund: its pro-rata share of the node's shortfall, at its price,
    /// plus its penalty, rounded down; and that share in milli-GPU-hours (for the event).
    function _refundOf(Reservation storage r, Obligation storage ob)
        private
        view
        returns (uint256 refund, uint256 shortfallShareMilli)
    {
        uint256 reserved = ob.reserved; // >= r.amount > 0
        uint256 reservedMilli = reserved * MILLI;
        uint256 delivered = ob.deliveredMilliGpuHours;
        uint256 shortfallMilli = reservedMilli > delivered ? reservedMilli - delivered : 0;
        uint256 amount = r.amount;
        refund = Math.mulDiv(
            uint256(r.pricePerGpuHour) * amount, shortfallMilli * (BPS + r.shortfallPenaltyBps), reservedMilli * BPS
        );
        shortfallShareMilli = shortfallMilli * amount / reserved;
    }

    /// @dev Evidence cited in the slash: this contract, the reservation, and the frozen figures it was settled on.
    function _evidence(uint256 reservationId, uint256 tokenId, Obligation storage ob) private view returns (bytes32) {
        return keccak256(abi.encode(address(this), reservationId, tokenId, ob.reserved, ob.deliveredMilliGpuHours));
    }

    /// @dev Window start of `tokenId`, which must be of node `nodeId`'s GPU class. The epoch
    /// bitmap is per node (an epoch lies in one window), so epochs counted toward an id of
    /// another class would be lost to the node's real obligation for the window: anyone
    /// could void an operator's delivery and, after the grace period, have it slashed.
    function _requireNodeToken(uint256 nodeId, uint256 tokenId) private view returns (uint64 windowStart) {
        uint32 classId;
        (classId, windowStart) = decodeTokenId(tokenId);
        // Trusted registry, view call; reverts for an unknown node.
        uint32 nodeClassId = registry.node(nodeId).classId;
        if (nodeClassId != classId) revert CapacityClassMismatch(nodeClassId, classId);
    }

    /// @dev The checks both delivery proofs open with: `tokenId` is of node `nodeId`'s class, its
    /// window has ended and its delivery is not frozen yet. Returns the obligation and the epochs
    /// of the window.
    function _openDelivery(uint256 nodeId, uint256 tokenId)
        private
        view
        returns (Obligation storage ob, uint64 firstEpoch, uint64 lastEpoch)
    {
        uint64 windowStart = _requireNodeToken(nodeId, tokenId);
        _requireWindowEnded(tokenId, windowStart);
        ob = _obligations[nodeId][tokenId];
        if (ob.finalized) revert CapacityDeliveryFinalized(nodeId, tokenId);
        (firstEpoch, lastEpoch) = _windowEpochs(windowStart);
    }

    function _requireWindowEnded(uint256 tokenId, uint64 windowStart) private view returns (uint256 windowEnd) {
        windowEnd = uint256(windowStart) + _windowSeconds;
        // slither-disable-next-line timestamp (windows are hours long; seconds of drift are harmless)
        if (block.timestamp < windowEnd) revert CapacityWindowNotEnded(tokenId, windowEnd, block.timestamp);
    }

    /// @dev Epochs ending inside (windowStart, windowStart + windowSeconds]; empty (last < first)
    /// for a window wholly before the hub's genesis.
    function _windowEpochs(uint64 windowStart) private view returns (uint64 firstEpoch, uint64 lastEpoch) {
        uint256 genesis = _epochGenesis;
        uint256 windowEnd = uint256(windowStart) + _windowSeconds;
        // if/else rather than `cond ? (x).toUint64() : c`: slither cannot build IR for the ternary form.
        firstEpoch = 1;
        if (windowStart >= genesis) firstEpoch = SafeCast.toUint64((windowStart - genesis) / _epochLength + 1);
        if (windowEnd >= genesis) lastEpoch = SafeCast.toUint64((windowEnd - genesis) / _epochLength);
    }

    /// @dev Adds `count` proven epochs delivering `milliGpuHours` to node `nodeId`'s `tokenId`.
    function _countDelivery(
        uint256 nodeId,
        uint256 tokenId,
        Obligation storage ob,
        uint256 count,
        uint256 milliGpuHours
    ) private {
        // Each epoch of the window is counted at most once (bitmap), so provenEpochs <= window epochs.
        uint32 provenEpochs = (uint256(ob.provenEpochs) + count).toUint32();
        uint64 delivered = (uint256(ob.deliveredMilliGpuHours) + milliGpuHours).toUint64();
        ob.provenEpochs = provenEpochs;
        ob.deliveredMilliGpuHours = delivered;
        emit DeliveryProven(nodeId, tokenId, count, milliGpuHours, provenEpochs, delivered);
    }

    /// @dev Marks epochs `from`..`to` of node `nodeId` counted, a bitmap word at a time.
    function _markRangeProven(uint256 nodeId, uint64 from, uint64 to) private {
        mapping(uint256 => uint256) storage bits = _provenEpochBits[nodeId];
        uint256 lastWord = to >> 8;
        for (uint256 w = from >> 8; w <= lastWord; ++w) {
            uint256 lo = w == from >> 8 ? from & 0xff : 0;
            uint256 hi = w == lastWord ? to & 0xff : 0xff;
            uint256 mask = (type(uint256).max >> (0xff - hi)) & (type(uint256).max << lo);
            uint256 word = bits[w];
            uint256 taken = word & mask;
            if (taken != 0) {
                revert CapacityEpochAlreadyProven(nodeId, uint64((w << 8) | Math.log2(taken & (~taken + 1))));
            }
            bits[w] = word | mask;
        }
    }

    function _markEpochProven(uint256 nodeId, uint64 epoch) private {
        mapping(uint256 => uint256) storage bits = _provenEpochBits[nodeId];
        uint256 mask = 1 << (epoch & 0xff);
        uint256 word = bits[epoch >> 8];
        if (word & mask != 0) revert CapacityEpochAlreadyProven(nodeId, epoch);
        bits[epoch >> 8] = word | mask;
    }

    function _requireReservation(uint256 reservationId) private view returns (Reservation storage r) {
        r = _reservations[reservationId];
        if (r.holder == address(0)) revert CapacityUnknownReservation(reservationId);
    }

    function _setShortfallPenalty(uint16 shortfallPenaltyBps_) private {
        if (shortfallPenaltyBps_ > BPS) revert CapacityInvalidConfig(shortfallPenaltyBps_);
        _penaltyBps = shortfallPenaltyBps_;
        emit ShortfallPenaltySet(shortfallPenaltyBps_);
    }

    function _capacityLimit(uint32 gpuCount) private view returns (uint256) {
        // Multiply first: _windowSeconds is a whole number of hours (constructor), so this equals
        // gpuCount * hours * ratio / BPS without rounding the hours.
        return uint256(gpuCount) * _windowSeconds * _commitRatioBps / (1 hours * BPS);
    }

    function _requireOffer(uint256 offerId) private view returns (Offer storage o) {
        o = _offers[offerId];
        if (o.nodeId == 0) revert CapacityUnknownOffer(offerId);
    }

    function _setCommitRatio(uint16 commitRatioBps_) private {
        if (commitRatioBps_ == 0 || commitRatioBps_ > BPS) revert CapacityInvalidConfig(commitRatioBps_);
        _commitRatioBps = commitRatioBps_;
        emit CommitRatioSet(commitRatioBps_);
    }

    function _setBondCoverage(uint32 bondCoverageBps_) private {
        if (bondCoverageBps_ == 0 || bondCoverageBps_ > MAX_BOND_COVERAGE_BPS) {
            revert CapacityInvalidConfig(bondCoverageBps_);
        }
        _bondCoverageBps = bondCoverageBps_;
        emit BondCoverageSet(bondCoverageBps_);
    }
}
