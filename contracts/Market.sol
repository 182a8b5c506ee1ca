// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC2771Context} from "@openzeppelin/contracts/metatx/ERC2771Context.sol";
import {IERC1155} from "@openzeppelin/contracts/token/ERC1155/IERC1155.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Context} from "@openzeppelin/contracts/utils/Context.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {ICapacityToken} from "./interfaces/ICapacityToken.sol";
import {IMarket} from "./interfaces/IMarket.sol";
import {IEmergencyPause} from "./interfaces/IEmergencyPause.sol";
import {EmergencyPause} from "./utils/EmergencyPause.sol";

/**
 * @title Market
 * @notice Signed limit orders for GPU-hours and pool shares against the stablecoin. See {IMarket}.
 * @dev Design decisions:
 * - No custody: a resting order is a signature; tokens stay with their owners until a
 *   fill moves them maker <-> taker in one call, so a paused or abandoned market holds
 *   nothing of anyone's.
 * - Replay: the EIP-712 domain binds chain id and this contract's address; a fill adds
 *   to the order's filled amount, so one signature fills at most its amount, ever.
 * - Checks, then the order's state, then the transfers (the tokens are the immutable
 *   CapacityToken and stablecoin, or a pool the admin listed); every fill entry point is
 *   nonReentrant, so a token's hook cannot fill again mid-fill.
 * - The ERC-20 legs that pay a counterparty are checked by balance: a fee-on-transfer or
 *   rebasing token reverts the fill (MarketTransferShortfall) rather than short a trader.
 *   A pool share's leg is checked every time, the stablecoin's on the first leg of a call
 *   (a fee switch like USDT's is one setting for every transfer; see {_settle}).
 * - Gas: the order is hashed from its calldata words, the signature read from calldata,
 *   a capacity id's window checked here on the token's immutable window length, and the
 *   pause's end kept in the fee slot, so a fill reads one slot for pause and fees.
 * - Fees are read at fill time and bounded by MAX_FEE_BPS (1%): a maker signs a price,
 *   not a fee; the admin (the timelock outside the dev chain) cannot take more than that.
 * - Emergency pause ({EmergencyPause}): GUARDIAN_ROLE can stop fills for a bounded
 *   time; cancellation is never paused.
 * - Self-trades (taker == maker) are refused; wash trades between addresses cannot be
 *   told apart on-chain and are the indexer's to flag.
 */
contract Market is AccessControl, EmergencyPause, EIP712, ERC2771Context, ReentrancyGuardTransient, IMarket {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

    /// @dev One call's terms: the fee slot, read once per call (once for a whole batch), and
    /// whether this call already proved the stablecoin moves exact amounts.
    struct FeeTerms {
        address recipient;
        uint16 makerFeeBps;
        uint16 takerFeeBps;
        bool stablecoinExact;
    }

    /// @notice The EIP-712 type of {IMarket.Order}.
    bytes32 public constant ORDER_TYPEHASH = keccak256(
        "Order(address maker,address asset,uint256 tokenId,bool sell,uint256 amount,uint256 quoteAmount,uint256 nonce,uint64 expiry)"
    );
    /// @notice The highest maker or taker fee: 1% of a fill's quote.
    uint16 public constant MAX_FEE_BPS = 100;

    uint256 private constant BPS = 10_000;
    uint256 private constant WAD = 1e18;

    /// @notice The ERC-1155 GPU-hour token traded here.
    ICapacityToken public immutable capacity;
    /// @notice What every trade is priced and paid in.
    IERC20 public immutable stablecoin;
    /// @dev The CapacityToken's window length (immutable there too): a fill checks an id's
    /// window here instead of calling {ICapacityToken.decodeTokenId}.
    uint64 private immutable _windowSeconds;

    // Storage: _feeRecipient (address, 160 bits), _makerFeeBps and _takerFeeBps (uint16 each)
    // and _pauseEnd (uint64: EmergencyPause's end of a pause, kept here, see _requireNotPaused) share one
    // slot, read once per call (a fill or a whole batch). OrderState and LastTrade: one slot
    // each (see IMarket).
    address private _feeRecipient;
    uint16 private _makerFeeBps;
    uint16 private _takerFeeBps;
    uint64 private _pauseEnd;
    // slither-disable-next-line uninitialized-state (written through storage pointers)
    mapping(bytes32 orderHash => OrderState) private _orders;
    mapping(address maker => uint256 nonce) private _minNonce;
    mapping(address pool => bool) private _listedPools;
    mapping(address asset => mapping(uint256 tokenId => LastTrade)) private _lastTrades;

    /**
     * @param admin Receives DEFAULT_ADMIN_ROLE.
     * @param capacity_ The CapacityToken.
     * @param stablecoin_ The payment token (a plain ERC-20; checked per fill).
     * @param trustedForwarder The ERC-2771 forwarder that relays takers' fills.
     * @param feeRecipient_ Receives the fees.
     * @param makerFeeBps_ Maker fee, at most MAX_FEE_BPS.
     * @param takerFeeBps_ Taker fee, at most MAX_FEE_BPS.
     */
    constructor(
        address admin,
        ICapacityToken capacity_,
        IERC20 stablecoin_,
        address trustedForwarder,
        address feeRecipient_,
        uint16 makerFeeBps_,
        uint16 takerFeeBps_
    ) EIP712("GpucapMarket", "1") ERC2771Context(trustedForwarder) {
        if (address(capacity_) == address(0) || address(stablecoin_) == address(0)) revert MarketZeroAddress();
        capacity = capacity_;
        stablecoin = stablecoin_;
        _windowSeconds = capacity_.windowSeconds();
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _setFeeRecipient(feeRecipient_);
        _setFees(makerFeeBps_, takerFeeBps_);
    }

    // ------------------------------------------------------------------
    // Fills
    // ------------------------------------------------------------------

    /// @inheritdoc IMarket
    function fill(Order calldata order, bytes calldata signature, uint256 fillAmount)
        external
        nonReentrant
        whenNotPaused
        returns (uint256 quote)
    {
        address taker = _msgSender();
        FeeTerms memory terms = _feeTerms();
        uint256 takerOwes;
        (quote, takerOwes) = _fill(order, signature, fillAmount, taker, terms);
        _payFees(taker, terms.recipient, takerOwes);
    }

    /// @inheritdoc IMarket
    function fillBatch(Fill[] calldata fills) external nonReentrant whenNotPaused returns (uint256 quoteTotal) {
        address taker = _msgSender();
        FeeTerms memory terms = _feeTerms();
        uint256 takerOwes = 0;
        for (uint256 i; i < fills.length; ++i) {
            Fill calldata f = fills[i];
            (uint256 quote, uint256 owes) = _fill(f.order, f.signature, f.fillAmount, taker, terms);
            quoteTotal += quote;
            takerOwes += owes;
        }
        // The fees of every item the taker bought, in one transfer at the end.
        _payFees(taker, terms.recipient, takerOwes);
    }

    // ------------------------------------------------------------------
    // Cancellation (never paused)
    // ------------------------------------------------------------------

    /// @inheritdoc IMarket
    function cancel(Order calldata order) external {
        address sender = _msgSender();
        if (sender != order.maker) revert MarketNotMaker(sender, order.maker);
        bytes32 orderHash = _hashOrder(order);
        OrderState storage state = _orders[orderHash];
        if (state.cancelled) revert MarketOrderCancelled(orderHash);
        state.cancelled = true;
        emit OrderCancelled(orderHash, sender);
    }

    /// @inheritdoc IMarket
    function cancelUpTo(uint256 newMinValidNonce) external {
        address sender = _msgSender();
        uint256 current = _minNonce[sender];
        if (newMinValidNonce <= current) revert MarketNonceNotIncreasing(current, newMinValidNonce);
        _minNonce[sender] = newMinValidNonce;
        emit NoncesCancelled(sender, newMinValidNonce);
    }

    // ------------------------------------------------------------------
    // Admin
    // ------------------------------------------------------------------

    /// @inheritdoc IMarket
    function setFees(uint16 makerFeeBps, uint16 takerFeeBps) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setFees(makerFeeBps, takerFeeBps);
    }

    /// @inheritdoc IMarket
    function setFeeRecipient(address recipient) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setFeeRecipient(recipient);
    }

    /// @inheritdoc IMarket
    function setPoolListed(address pool, bool listed) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (pool == address(0)) revert MarketZeroAddress();
        _listedPools[pool] = listed;
        emit PoolListed(pool, listed);
    }

    // ------------------------------------------------------------------
    // Views
    // ------------------------------------------------------------------

    /// @inheritdoc IMarket
    function hashOrder(Order calldata order) external view returns (bytes32) {
        return _hashOrder(order);
    }

    /// @inheritdoc IMarket
    function orderState(bytes32 orderHash) external view returns (OrderState memory) {
        return _orders[orderHash];
    }

    /// @inheritdoc IMarket
    function orderStatus(Order calldata order) external view returns (Status status, uint256 remaining) {
        OrderState memory state = _orders[_hashOrder(order)];
        if (state.filled >= order.amount) return (Status.Filled, 0);
        if (state.cancelled || order.nonce < _minNonce[order.maker]) return (Status.Cancelled, 0);
        // slither-disable-next-line timestamp (orders live minutes to days; seconds of drift are harmless)
        if (block.timestamp >= order.expiry) return (Status.Expired, 0);
        remaining = order.amount - state.filled;
        status = state.filled == 0 ? Status.Open : Status.PartiallyFilled;
    }

    /// @inheritdoc IMarket
    function minValidNonce(address maker) external view returns (uint256) {
        return _minNonce[maker];
    }

    /// @inheritdoc IMarket
    function fees() external view returns (uint16 makerFeeBps, uint16 takerFeeBps) {
        return (_makerFeeBps, _takerFeeBps);
    }

    /// @inheritdoc IMarket
    function feeRecipient() external view returns (address) {
        return _feeRecipient;
    }

    /// @inheritdoc IMarket
    function isPoolListed(address pool) external view returns (bool) {
        return _listedPools[pool];
    }

    /// @inheritdoc IMarket
    function lastTrade(address asset, uint256 tokenId) external view returns (LastTrade memory) {
        return _lastTrades[asset][tokenId];
    }

    /// @inheritdoc IMarket
    function markToMarket(address asset, uint256 tokenId, uint256 amount)
        external
        view
        returns (uint256 value, uint64 tradedAt)
    {
        LastTrade memory last = _lastTrades[asset][tokenId];
        return (Math.mulDiv(amount, last.priceWad, WAD), last.timestamp);
    }

    // ------------------------------------------------------------------
    // EmergencyPause: the pause's end lives in the fee slot
    // ------------------------------------------------------------------

    /// @inheritdoc IEmergencyPause
    function paused() public view override returns (bool) {
        // slither-disable-next-line timestamp (pauses are days long; seconds of drift are harmless)
        return block.timestamp < _pauseEnd;
    }

    /// @inheritdoc IEmergencyPause
    function pausedUntil() external view override returns (uint64) {
        return _pauseEnd;
    }

    /// @dev A fill reads the pause and then the fees: one slot, one cold read.
    function _requireNotPaused() internal view override {
        uint64 pauseEnd = _pauseEnd;
        // slither-disable-next-line timestamp (pauses are days long; seconds of drift are harmless)
        if (block.timestamp < pauseEnd) revert PauseActive(pauseEnd);
    }

    function _storePausedUntil(uint64 until) internal override {
        _pauseEnd = until;
    }

    // ------------------------------------------------------------------
    // ERC-2771
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
    // Private
    // ------------------------------------------------------------------

    /// @dev One fill: checks and the order's state ({_record}), the event, then the transfers.
    /// When the taker is the buyer, the fees are returned (`takerOwes`) for the caller to
    /// collect once per call; when the maker buys, they are paid here.
    function _fill(
        Order calldata order,
        bytes calldata signature,
        uint256 fillAmount,
        address taker,
        FeeTerms memory terms
    ) private returns (uint256 quote, uint256 takerOwes) {
        uint256 makerFee;
        uint256 takerFee;
        {
            bytes32 orderHash;
            uint256 filledTotal;
            (orderHash, quote, filledTotal) = _record(order, signature, fillAmount, taker);
            makerFee = quote * terms.makerFeeBps / BPS;
            takerFee = quote * terms.takerFeeBps / BPS;
            _emitFilled(orderHash, order, taker, fillAmount, quote, makerFee, takerFee, filledTotal);
        }
        (address seller, address buyer, uint256 sellerFee) =
            order.sell ? (order.maker, taker, makerFee) : (taker, order.maker, takerFee);
        _settle(order.asset, order.tokenId, fillAmount, seller, buyer, quote - sellerFee, terms);
        // The buyer pays the fees of both sides: its own on top of the quote, and the seller's
        // out of the quote (the seller received quote - sellerFee above).
        if (buyer == taker) return (quote, makerFee + takerFee);
        _payFees(buyer, terms.recipient, makerFee + takerFee);
    }

    /// @dev `payer` (the taker, or a buying maker who signed the order) pays `amount` of fees.
    function _payFees(address payer, address recipient, uint256 amount) private {
        // slither-disable-next-line arbitrary-send-erc20,calls-loop (payer: the taker or a signing maker)
        if (amount != 0) stablecoin.safeTransferFrom(payer, recipient, amount);
    }

    function _emitFilled(
        bytes32 orderHash,
        Order calldata order,
        address taker,
        uint256 fillAmount,
        uint256 quote,
        uint256 makerFee,
        uint256 takerFee,
        uint256 filledTotal
    ) private {
        emit OrderFilled(
            orderHash,
            order.maker,
            taker,
            order.asset,
            order.tokenId,
            order.sell,
            fillAmount,
            quote,
            makerFee,
            takerFee,
            filledTotal
        );
    }

    /// @dev Every check of a fill, then the order's filled amount and the instrument's last trade.
    function _record(Order calldata order, bytes calldata signature, uint256 fillAmount, address taker)
        private
        returns (bytes32 orderHash, uint256 quote, uint256 filledTotal)
    {
        OrderState storage state;
        (orderHash, state) = _checkOrder(order, signature, taker);
        if (fillAmount == 0) revert MarketZeroAmount();
        // filled <= amount: every fill is checked against what is left.
        uint256 remaining = order.amount - state.filled;
        if (fillAmount > remaining) revert MarketOverfill(orderHash, remaining, fillAmount);
        _requireTradable(order.asset, order.tokenId);
        quote = _quoteOf(order, fillAmount);
        if (quote == 0) revert MarketZeroQuote(orderHash, fillAmount);
        filledTotal = order.amount - remaining + fillAmount;
        state.filled = filledTotal.toUint128();
        _lastTrades[order.asset][order.tokenId] =
            LastTrade({priceWad: _priceWad(quote, fillAmount), timestamp: uint64(block.timestamp)});
    }

    /// @dev The order is live (not expired, below the minimum nonce or cancelled), signed by its
    /// maker, and the taker is someone else.
    function _checkOrder(Order calldata order, bytes calldata signature, address taker)
        private
        view
        returns (bytes32 orderHash, OrderState storage state)
    {
        orderHash = _hashOrder(order);
        address maker = order.maker;
        // slither-disable-next-line timestamp (orders live minutes to days; seconds of drift are harmless)
        if (block.timestamp >= order.expiry) revert MarketOrderExpired(orderHash, order.expiry, block.timestamp);
        uint256 minNonce = _minNonce[maker];
        if (order.nonce < minNonce) revert MarketNonceCancelled(orderHash, order.nonce, minNonce);
        state = _orders[orderHash];
        if (state.cancelled) revert MarketOrderCancelled(orderHash);
        address signer = _recover(orderHash, signature);
        if (signer != maker) revert MarketInvalidSigner(orderHash, signer, maker);
        if (taker == maker) revert MarketSelfTrade(maker);
    }

    /// @dev The two legs of a fill: the asset seller -> buyer, `sellerReceives` stablecoin buyer -> seller.
    /// The stablecoin's first leg in a call is checked by balance ({_transferExact}); the
    /// later legs of a batch are not: a fee on transfer (USDT's dormant switch) is a setting of
    /// the token, the same for every transfer of one transaction, so the first leg refuses it.
    /// A pool share's leg is checked every time.
    function _settle(
        address asset,
        uint256 tokenId,
        uint256 amount,
        address seller,
        address buyer,
        uint256 sellerReceives,
        FeeTerms memory terms
    ) private {
        // Interactions after the order's state was written; the tokens are the immutable
        // CapacityToken or an admin-listed pool, and the caller holds the reentrancy guard.
        if (asset == address(capacity)) {
            // slither-disable-next-line calls-loop (the immutable CapacityToken; a batch is all or nothing)
            IERC1155(asset).safeTransferFrom(seller, buyer, tokenId, amount, "");
        } else {
            _transferExact(IERC20(asset), seller, buyer, amount);
        }
        if (terms.stablecoinExact) {
            // slither-disable-next-line arbitrary-send-erc20,calls-loop (buyer: the taker or the maker who signed)
            stablecoin.safeTransferFrom(buyer, seller, sellerReceives);
        } else {
            _transferExact(stablecoin, buyer, seller, sellerReceives);
            terms.stablecoinExact = true;
        }
    }

    /// @dev transferFrom that reverts unless `to` received exactly `amount` (no fee on transfer).
    function _transferExact(IERC20 token, address from, address to, uint256 amount) private {
        // slither-disable-next-line calls-loop (the stablecoin or a listed pool; all or nothing)
        uint256 before = token.balanceOf(to);
        // slither-disable-next-line arbitrary-send-erc20 (from: the taker, or the maker who signed)
        token.safeTransferFrom(from, to, amount);
        // slither-disable-next-line calls-loop (as above)
        uint256 received = token.balanceOf(to) - before;
        if (received != amount) revert MarketTransferShortfall(address(token), amount, received);
    }

    function _requireTradable(address asset, uint256 tokenId) private view {
        if (asset == address(capacity)) {
            // CapacityToken.decodeTokenId's rule, on its immutable window length: a class x
            // window id has nothing above the 32-bit class, a non-zero class and an aligned start.
            uint64 windowStart = uint64(tokenId);
            if (tokenId >> 96 != 0 || tokenId >> 64 == 0 || windowStart % _windowSeconds != 0) {
                revert ICapacityToken.CapacityInvalidTokenId(tokenId);
            }
            // slither-disable-next-line timestamp (windows are hours long; seconds of drift are harmless)
            if (block.timestamp >= windowStart) revert MarketWindowStarted(tokenId, windowStart, block.timestamp);
        } else {
            if (!_listedPools[asset]) revert MarketAssetNotListed(asset);
            if (tokenId != 0) revert MarketInvalidTokenId(asset, tokenId);
        }
    }

    /// @dev The EIP-712 digest of `order`, hashed straight from calldata: every field of
    /// Order is one static 32-byte word, so abi.encode(ORDER_TYPEHASH, order...) is the
    /// typehash followed by the order's 256 calldata bytes. Those bytes are checked clean
    /// first (addresses within 160 bits, the bool 0 or 1, expiry within 64 bits), as the
    /// ABI decoder would, so one order has exactly one encoding and one hash.
    function _hashOrder(Order calldata order) private view returns (bytes32) {
        bytes32 typeHash = ORDER_TYPEHASH;
        bytes32 structHash;
        assembly ("memory-safe") {
            if or(
                or(shr(160, calldataload(order)), shr(160, calldataload(add(order, 0x20)))),
                or(gt(calldataload(add(order, 0x60)), 1), shr(64, calldataload(add(order, 0xe0))))
            ) { revert(0, 0) }
            let ptr := mload(0x40)
            mstore(ptr, typeHash)
            calldatacopy(add(ptr, 0x20), order, 0x100)
            structHash := keccak256(ptr, 0x120)
        }
        return _hashTypedDataV4(structHash);
    }

    /// @dev ECDSA.recover(hash, signature) without copying the signature to memory: the same
    /// length rule (65 bytes: r, s, v) and the same checks (s in the lower half, no zero signer).
    function _recover(bytes32 hash, bytes calldata signature) private pure returns (address) {
        if (signature.length != 65) revert ECDSA.ECDSAInvalidSignatureLength(signature.length);
        bytes32 r;
        bytes32 s;
        uint8 v;
        assembly ("memory-safe") {
            r := calldataload(signature.offset)
            s := calldataload(add(signature.offset, 0x20))
            v := byte(0, calldataload(add(signature.offset, 0x40)))
        }
        return ECDSA.recover(hash, v, r, s);
    }

    /// @dev fillAmount * quoteAmount / amount, rounded up when the maker sells (IMarket).
    /// fillAmount <= amount - filled and filled fits 128 bits, so with quoteAmount below
    /// 2^128 the product cannot overflow; larger quotes take mulDiv's 512-bit path.
    function _quoteOf(Order calldata order, uint256 fillAmount) private pure returns (uint256 quote) {
        uint256 amount = order.amount;
        uint256 quoteAmount = order.quoteAmount;
        if (quoteAmount > type(uint128).max || fillAmount > type(uint128).max) {
            return Math.mulDiv(fillAmount, quoteAmount, amount, order.sell ? Math.Rounding.Ceil : Math.Rounding.Floor);
        }
        unchecked {
            // Both factors below 2^128: the product is below 2^256; amount > 0 (fillAmount <= amount).
            uint256 product = fillAmount * quoteAmount;
            quote = product / amount;
            if (order.sell && product % amount != 0) ++quote;
        }
    }

    /// @dev quote * 1e18 / fillAmount as a uint192; a quote below 2^128 needs no 512-bit product.
    function _priceWad(uint256 quote, uint256 fillAmount) private pure returns (uint192) {
        if (quote > type(uint128).max) return Math.mulDiv(quote, WAD, fillAmount).toUint192();
        // quote < 2^128 and WAD < 2^60: the product and the price (fillAmount >= 1) are below 2^188.
        unchecked {
            return uint192(quote * WAD / fillAmount);
        }
    }

    function _feeTerms() private view returns (FeeTerms memory) {
        return FeeTerms({
            recipient: _feeRecipient,
            makerFeeBps: _makerFeeBps,
            takerFeeBps: _takerFeeBps,
            stablecoinExact: false
        });
    }

    function _setFees(uint16 makerFeeBps, uint16 takerFeeBps) private {
        if (makerFeeBps > MAX_FEE_BPS) revert MarketFeeTooHigh(makerFeeBps, MAX_FEE_BPS);
        if (takerFeeBps > MAX_FEE_BPS) revert MarketFeeTooHigh(takerFeeBps, MAX_FEE_BPS);
        _makerFeeBps = makerFeeBps;
        _takerFeeBps = takerFeeBps;
        emit FeesSet(makerFeeBps, takerFeeBps);
    }

    function _setFeeRecipient(address recipient) private {
        if (recipient == address(0)) revert MarketZeroAddress();
        _feeRecipient = recipient;
        emit FeeRecipientSet(recipient);
    }
}
