// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

/**
 * @title IMarket
 * @notice The secondary market for GPU-hours (CapacityToken ids, class x window) and pool
 * shares (listed RevenuePool ERC-20s) against the stablecoin. Makers sign EIP-712 limit
 * orders off-chain and keep their tokens: the market holds nothing, it moves the maker's
 * and the taker's tokens on a fill, under their approvals (ERC-1155 setApprovalForAll,
 * ERC-20 approve). Takers fill one order ({fill}) or several ({fillBatch}), directly or
 * through the trusted ERC-2771 forwarder (relayed, gasless).
 *
 * Prices and rounding: an order offers `amount` asset units for `quoteAmount` stablecoin
 * units in all. A fill of `f` units is priced `f * quoteAmount / amount`, rounded in the
 * MAKER's favour: up when the maker sells, down when the maker buys, so every fill is at
 * or better than the maker's limit price. Fees are on the stablecoin leg, rounded down:
 * `makerFee = quote * makerFeeBps / 10_000` is paid by the maker and `takerFee` likewise
 * by the taker; the buyer pays its fee on top of the quote and the seller's fee comes out
 * of what it receives. Per fill, to the unit:
 *     buyer pays = quote + buyer's fee = seller receives + makerFee + takerFee.
 *
 * Order states: open, partially filled, filled (filled == amount), cancelled (by the maker,
 * one order or every nonce below a minimum) and expired (now >= expiry). A cancelled or
 * expired order never fills again; a fill never takes an order beyond its amount.
 */
interface IMarket {
    /**
     * @notice A maker's signed limit order (EIP-712 type `Order`).
     * @param maker Who signed it and whose tokens move.
     * @param asset The CapacityToken (ERC-1155) or a listed pool (ERC-20).
     * @param tokenId The capacity token id; 0 for a pool share.
     * @param sell True: the maker sells `asset` for the stablecoin; false: it buys.
     * @param amount Asset units offered or wanted (GPU-hours, or pool-share units).
     * @param quoteAmount Stablecoin units for the whole `amount` (the limit price).
     * @param nonce Any value >= the maker's {minValidNonce}; distinct orders need distinct
     * nonces only if every other field is equal.
     * @param expiry Unix second from which the order no longer fills.
     */
    struct Order {
        address maker;
        address asset;
        uint256 tokenId;
        bool sell;
        uint256 amount;
        uint256 quoteAmount;
        uint256 nonce;
        uint64 expiry;
    }

    /// @notice One item of {fillBatch}: fill `fillAmount` of `order`, signed `signature`.
    struct Fill {
        Order order;
        bytes signature;
        uint256 fillAmount;
    }

    /**
     * @notice Per order hash. Storage: filled (uint128) and cancelled (bool) share one slot.
     * @param filled Asset units filled so far.
     * @param cancelled The maker cancelled it.
     */
    struct OrderState {
        uint128 filled;
        bool cancelled;
    }

    /**
     * @notice The last trade of an instrument. Storage: one slot.
     * @param priceWad Stablecoin units per asset unit, scaled by 1e18 (quote * 1e18 / amount).
     * @param timestamp When it traded (0: never).
     */
    struct LastTrade {
        uint192 priceWad;
        uint64 timestamp;
    }

    /// @notice What {orderStatus} reports.
    enum Status {
        Open,
        PartiallyFilled,
        Filled,
        Cancelled,
        Expired
    }

    /**
     * @notice `taker` filled `amount` units of the order `orderHash` for `quote` stablecoin
     * units; the maker paid `makerFee` and the taker `takerFee` (to the fee recipient).
     * The order's filled amount is now `filledTotal`.
     */
    event OrderFilled(
        bytes32 indexed orderHash,
        address indexed maker,
        address indexed taker,
        address asset,
        uint256 tokenId,
        bool makerSells,
        uint256 amount,
        uint256 quote,
        uint256 makerFee,
        uint256 takerFee,
        uint256 filledTotal
    );

    /// @notice `maker` cancelled the order `orderHash`.
    event OrderCancelled(bytes32 indexed orderHash, address indexed maker);

    /// @notice Every order of `maker` with a nonce below `minValidNonce` is cancelled.
    event NoncesCancelled(address indexed maker, uint256 minValidNonce);

    /// @notice The fees of fills from now on.
    event FeesSet(uint16 makerFeeBps, uint16 takerFeeBps);

    /// @notice Fees go to `recipient` from now on.
    event FeeRecipientSet(address indexed recipient);

    /// @notice `pool`'s shares can (or, `listed` false, can no longer) be traded.
    event PoolListed(address indexed pool, bool listed);

    /// @notice The order expired at `expiry`; it is `nowTimestamp`.
    error MarketOrderExpired(bytes32 orderHash, uint64 expiry, uint256 nowTimestamp);

    /// @notice The maker cancelled the order.
    error MarketOrderCancelled(bytes32 orderHash);

    /// @notice The order's nonce is below the maker's minimum valid nonce.
    error MarketNonceCancelled(bytes32 orderHash, uint256 nonce, uint256 minValidNonce);

    /// @notice The signature recovers to `signer`, not the order's `maker`.
    error MarketInvalidSigner(bytes32 orderHash, address signer, address maker);

    /// @notice The fill asks `requested` units; the order has `remaining` left.
    error MarketOverfill(bytes32 orderHash, uint256 remaining, uint256 requested);

    /// @notice A zero fill, or an order of zero amount or zero quote.
    error MarketZeroAmount();

    /// @notice The fill is so small that its price rounds to zero stablecoin units.
    error MarketZeroQuote(bytes32 orderHash, uint256 fillAmount);

    /// @notice `asset` is neither the CapacityToken nor a listed pool.
    error MarketAssetNotListed(address asset);

    /// @notice A pool share order must carry token id 0.
    error MarketInvalidTokenId(address asset, uint256 tokenId);

    /// @notice The capacity token's window started at `windowStart`; it is `nowTimestamp`.
    error MarketWindowStarted(uint256 tokenId, uint64 windowStart, uint256 nowTimestamp);

    /// @notice The taker is the maker.
    error MarketSelfTrade(address maker);

    /// @notice `caller` is not the order's maker.
    error MarketNotMaker(address caller, address maker);

    /// @notice The new minimum nonce must exceed the current one.
    error MarketNonceNotIncreasing(uint256 current, uint256 requested);

    /// @notice A fee above MAX_FEE_BPS.
    error MarketFeeTooHigh(uint16 feeBps, uint16 maxFeeBps);

    /// @notice The zero address where an account is needed.
    error MarketZeroAddress();

    /// @notice `token` moved `received` units to the recipient where `expected` were sent
    /// (a fee-on-transfer or rebasing token; the market assumes neither).
    error MarketTransferShortfall(address token, uint256 expected, uint256 received);

    /**
     * @notice Fills `fillAmount` units of `order` as the taker (the caller, or the signer of
     * a request relayed by the trusted forwarder), settling both legs and the fees at once.
     * Requirements: not paused; a valid signature of the maker; not expired, cancelled or
     * below the maker's minimum nonce; `fillAmount` within what is left; a capacity token
     * whose window has not started, or a listed pool; the taker is not the maker; both sides
     * approved the market. Emits {OrderFilled}.
     * @return quote Stablecoin units of the trade before fees.
     */
    function fill(Order calldata order, bytes calldata signature, uint256 fillAmount)
        external
        returns (uint256 quote);

    /**
     * @notice Fills every item of `fills` for the same taker, in order, all or nothing (the
     * backend's matched fills, relayed in one transaction). Same requirements as {fill},
     * per item. Emits {OrderFilled} per item.
     * @return quoteTotal Sum of the items' quotes.
     */
    function fillBatch(Fill[] calldata fills) external returns (uint256 quoteTotal);

    /**
     * @notice Cancels `order`: it never fills again. Never paused.
     * Requirements: the caller is the maker; not already cancelled. Emits {OrderCancelled}.
     */
    function cancel(Order calldata order) external;

    /**
     * @notice Cancels every order of the caller with a nonce below `newMinValidNonce`. Never
     * paused. Requirements: above the current {minValidNonce}. Emits {NoncesCancelled}.
     */
    function cancelUpTo(uint256 newMinValidNonce) external;

    /**
     * @notice Sets the maker and taker fees (each at most MAX_FEE_BPS) of fills from now on.
     * Requirements: DEFAULT_ADMIN_ROLE. Emits {FeesSet}.
     */
    function setFees(uint16 makerFeeBps, uint16 takerFeeBps) external;

    /// @notice Sets who receives fees. Requirements: DEFAULT_ADMIN_ROLE; non-zero. Emits {FeeRecipientSet}.
    function setFeeRecipient(address recipient) external;

    /// @notice Lists or delists a pool's shares. Requirements: DEFAULT_ADMIN_ROLE; non-zero. Emits {PoolListed}.
    function setPoolListed(address pool, bool listed) external;

    /// @notice The EIP-712 hash of `order` (this chain, this contract).
    function hashOrder(Order calldata order) external view returns (bytes32);

    /// @notice The filled amount and cancellation of the order `orderHash`.
    function orderState(bytes32 orderHash) external view returns (OrderState memory);

    /**
     * @notice Where `order` stands and how much of it can still fill (0 unless open or
     * partially filled). Does not check the signature, approvals or balances.
     */
    function orderStatus(Order calldata order) external view returns (Status status, uint256 remaining);

    /// @notice Orders of `maker` with a lower nonce are cancelled.
    function minValidNonce(address maker) external view returns (uint256);

    /// @notice The fees of the next fill, in basis points of its quote.
    function fees() external view returns (uint16 makerFeeBps, uint16 takerFeeBps);

    /// @notice Who receives fees.
    function feeRecipient() external view returns (address);

    /// @notice Whether `pool`'s shares can be traded.
    function isPoolListed(address pool) external view returns (bool);

    /// @notice The last trade of (`asset`, `tokenId`) (tokenId 0 for a pool share).
    function lastTrade(address asset, uint256 tokenId) external view returns (LastTrade memory);

    /**
     * @notice `amount` units of (`asset`, `tokenId`) marked at the last trade's price, in
     * stablecoin units rounded down, and when that trade was (0, 0: never traded). A raw
     * last price: a reader that lends against it takes the lower of it and book value, and
     * decides how old a trade it trusts.
     */
    function markToMarket(address asset, uint256 tokenId, uint256 amount)
        external
        view
        returns (uint256 value, uint64 tradedAt);
}
