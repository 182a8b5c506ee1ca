// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {IObligationSource} from "./IObligationSource.sol";

/**
 * @title INodeRegistry
 * @notice Registry of GPU classes (the standard a capacity token refers to), of
 * the GPU nodes operators register against them, and of each node's bond in the
 * stablecoin.
 *
 * Node life cycle:
 *
 *     registerNode ──► Active ──jail──► Jailed ──unjail──► Active
 *                        │
 *                   requestExit (nothing owed)
 *                        ▼
 *                     Exiting ──(unbondingDelay passed, nothing owed) withdrawBond──► Exited
 *
 * Bond accounting is per node: `bonded` is what the node's bond holds,
 * `locked` the part that backs what the node owes (set by BOND_LOCKER_ROLE,
 * i.e. CapacityToken, which keeps the books of every lock: each open offer,
 * unreserved sale and reservation). `locked <= bonded` always holds, and no
 * slash ever reaches locked bond from outside its locker: SLASHER_ROLE takes
 * free bond only ({slash}); a locker settles its own lock ({settleLock}),
 * paying at most that lock to the party it backs.
 *
 * "Nothing owed": no locked bond, and no obligation source ({obligationSources},
 * e.g. the settlement contract for a pool loan) reports an open obligation.
 * An operator cannot start an exit, nor withdraw, while anything is owed.
 */
interface INodeRegistry {
    /// @notice A registered standard GPU class.
    /// @dev Storage packing: name (1 slot, bytes32) | referencePowerW (uint32),
    /// referenceThroughput (uint64), economicLifeMonths (uint16),
    /// residualValueBps (uint16), exists (bool) share the second slot.
    struct GpuClass {
        bytes32 name;
        uint32 referencePowerW;
        uint64 referenceThroughput;
        uint16 economicLifeMonths;
        uint16 residualValueBps;
        bool exists;
    }

    enum NodeStatus {
        None,
        Active,
        Jailed,
        Exiting,
        Exited
    }

    /// @notice A GPU node registered by an operator.
    /// @dev Storage packing (4 slots):
    ///   slot 0: operator (20 B) | classId (4 B) | gpuCount (4 B) | status (1 B)
    ///   slot 1: region (32 B)
    ///   slot 2: nodeKey (20 B) | acquiredAt (8 B)
    ///   slot 3: acquisitionCost (16 B) | withdrawableAt (8 B)
    struct Node {
        address operator;
        uint32 classId;
        uint32 gpuCount;
        NodeStatus status;
        bytes32 region;
        address nodeKey;
        uint64 acquiredAt;
        uint128 acquisitionCost;
        uint64 withdrawableAt;
    }

    /// @notice A node's bond, in stablecoin units (6 decimals).
    /// @dev Storage packing: bonded (16 B) | locked (16 B) in one slot.
    struct Bond {
        uint128 bonded;
        uint128 locked;
    }

    // ------------------------------------------------------------------
    // Events
    // ------------------------------------------------------------------

    /// @notice GPU class `classId` was registered.
    event GpuClassRegistered(
        uint32 indexed classId,
        bytes32 name,
        uint32 referencePowerW,
        uint64 referenceThroughput,
        uint16 economicLifeMonths,
        uint16 residualValueBps
    );

    /// @notice `operator` registered node `nodeId` of `classId` with `gpuCount` GPUs.
    event NodeRegistered(
        uint256 indexed nodeId,
        address indexed operator,
        uint32 indexed classId,
        uint32 gpuCount,
        bytes32 region,
        address nodeKey,
        uint128 acquisitionCost,
        uint64 acquiredAt
    );

    /// @notice `from` added `amount` to node `nodeId`'s bond, which now holds `bonded`.
    event BondDeposited(uint256 indexed nodeId, address indexed from, uint256 amount, uint256 bonded);

    /// @notice `amount` of node `nodeId`'s bond was locked; `locked` is now locked in total.
    event BondLocked(uint256 indexed nodeId, address indexed locker, uint256 amount, uint256 locked);

    /// @notice `amount` of node `nodeId`'s bond was unlocked; `locked` is now locked in total.
    event BondUnlocked(uint256 indexed nodeId, address indexed locker, uint256 amount, uint256 locked);

    /// @notice `amount` of node `nodeId`'s bond was slashed to `recipient` for `evidence`.
    event NodeSlashed(uint256 indexed nodeId, uint256 amount, address indexed recipient, bytes32 indexed evidence);

    /// @notice Node `nodeId` was jailed by `jailer` for `reason`.
    event NodeJailed(uint256 indexed nodeId, address indexed jailer, bytes32 reason);

    /// @notice Node `nodeId` was released from jail by `jailer` for `reason`.
    event NodeUnjailed(uint256 indexed nodeId, address indexed jailer, bytes32 reason);

    /// @notice Node `nodeId` started exiting; its bond is withdrawable from `withdrawableAt`.
    event NodeExitRequested(uint256 indexed nodeId, uint64 withdrawableAt);

    /// @notice Node `nodeId`'s whole bond, `amount`, was withdrawn to `to`; the node is Exited.
    event NodeExited(uint256 indexed nodeId, address indexed to, uint256 amount);

    /// @notice The unbonding delay changed to `delaySeconds`.
    event UnbondingDelaySet(uint64 delaySeconds);

    /// @notice `source` is now asked whether a node owes anything before it may exit.
    event ObligationSourceAdded(address indexed source);

    /// @notice `source` is no longer asked before exits.
    event ObligationSourceRemoved(address indexed source);

    /// @notice `locker` released `unlocked` of node `nodeId`'s locked bond, of which `slashed`
    /// was paid to `recipient` for `evidence`; `locked` is now locked in total.
    event BondLockSettled(
        uint256 indexed nodeId,
        address indexed locker,
        uint256 unlocked,
        uint256 slashed,
        address recipient,
        bytes32 indexed evidence,
        uint256 locked
    );

    /// @notice GPU `gpuId` (keccak256 of its UUID) was bound to node `nodeId`.
    event GpuBound(uint256 indexed nodeId, bytes32 indexed gpuId);

    /// @notice GPU `gpuId` was released from node `nodeId` (by its operator, or on its
    /// rebinding by another node after `nodeId` exited).
    event GpuUnbound(uint256 indexed nodeId, bytes32 indexed gpuId);

    // ------------------------------------------------------------------
    // Errors
    // ------------------------------------------------------------------

    /// @notice No GPU class has id `classId`.
    error RegistryUnknownClass(uint32 classId);

    /// @notice A GPU class with `name` already exists as `classId`.
    error RegistryDuplicateClass(bytes32 name, uint32 classId);

    /// @notice A class parameter is out of range (zero power or life, residual > 100%, empty name).
    error RegistryInvalidClass();

    /// @notice `gpuCount` is zero or above `maxGpuCount`.
    error RegistryInvalidGpuCount(uint32 gpuCount, uint32 maxGpuCount);

    /// @notice The node key is zero or already used by node `nodeId`.
    error RegistryInvalidNodeKey(address nodeKey, uint256 nodeId);

    /// @notice Acquisition cost is zero, or the acquisition date is zero or in the future.
    error RegistryInvalidAcquisition(uint256 acquisitionCost, uint64 acquiredAt);

    /// @notice No node has id `nodeId`.
    error RegistryUnknownNode(uint256 nodeId);

    /// @notice `caller` is not the operator of node `nodeId`.
    error RegistryNotOperator(uint256 nodeId, address caller);

    /// @notice Node `nodeId` is in `status`, which does not allow this action.
    error RegistryInvalidStatus(uint256 nodeId, NodeStatus status);

    /// @notice A zero amount was given.
    error RegistryZeroAmount();

    /// @notice The zero address cannot receive slashed bond.
    error RegistryInvalidRecipient();

    /// @notice The bond has `available` free (neither locked nor slashed), less than `requested`.
    error RegistryInsufficientBond(uint256 available, uint256 requested);

    /// @notice Only `locked` is locked, less than the `requested` unlock.
    error RegistryInsufficientLockedBond(uint256 locked, uint256 requested);

    /// @notice Node `nodeId` is unbonding until `withdrawableAt`.
    error RegistryUnbonding(uint256 nodeId, uint64 withdrawableAt);

    /// @notice Node `nodeId` still has `locked` bond backing outstanding capacity.
    error RegistryBondLocked(uint256 nodeId, uint256 locked);

    /// @notice Node `nodeId` still owes something through `source` (e.g. a pool loan).
    error RegistryObligationOpen(uint256 nodeId, address source);

    /// @notice A lock can pay out at most what it releases: `slashed` > `unlocked`.
    error RegistrySlashExceedsLock(uint256 unlocked, uint256 slashed);

    /// @notice `source` is zero, already listed, not listed, or the list is full (`maxSources`).
    error RegistryInvalidObligationSource(address source, uint256 maxSources);

    /// @notice A GPU id is zero (not the keccak256 of any UUID).
    error RegistryInvalidGpuId();

    /// @notice GPU `gpuId` is bound to node `nodeId` (this one or another) already.
    error RegistryGpuAlreadyBound(bytes32 gpuId, uint256 nodeId);

    /// @notice GPU `gpuId` is not bound to node `nodeId`.
    error RegistryGpuNotBound(bytes32 gpuId, uint256 nodeId);

    /// @notice Node `nodeId` would have `bound` GPUs bound, more than its `gpuCount`.
    error RegistryTooManyGpus(uint256 nodeId, uint256 bound, uint32 gpuCount);

    /// @notice `delaySeconds` is above `maxDelaySeconds`.
    error RegistryInvalidUnbondingDelay(uint64 delaySeconds, uint64 maxDelaySeconds);

    // ------------------------------------------------------------------
    // GPU classes
    // ------------------------------------------------------------------

    /**
     * @notice Registers a standard GPU class and returns its id (ids start at 1).
     * Requirements: caller has CLASS_ADMIN_ROLE; name unique and non-empty;
     * power and life non-zero; residual ≤ 10_000 bps.
     */
    function registerGpuClass(
        bytes32 name,
        uint32 referencePowerW,
        uint64 referenceThroughput,
        uint16 economicLifeMonths,
        uint16 residualValueBps
    ) external returns (uint32 classId);

    /// @notice The GPU class `classId`; reverts if unknown.
    function gpuClass(uint32 classId) external view returns (GpuClass memory);

    /// @notice Number of registered GPU classes (the highest class id).
    function gpuClassCount() external view returns (uint32);

    // ------------------------------------------------------------------
    // Nodes
    // ------------------------------------------------------------------

    /**
     * @notice Registers a node operated by the caller (the ERC-2771 signer when
     * relayed) and returns its id (ids start at 1). The node starts Active with
     * an empty bond.
     * @param classId GPU class of every GPU in the node.
     * @param gpuCount Number of GPUs, 1..MAX_GPUS_PER_NODE.
     * @param region Free-form region code, e.g. "eu-west".
     * @param acquisitionCost What the node's GPUs cost, in stablecoin units (6 decimals); non-zero.
     * @param acquiredAt Unix time the GPUs were acquired; non-zero and not in the future.
     * @param nodeKey Address of the key the node's agent signs with; unique.
     */
    function registerNode(
        uint32 classId,
        uint32 gpuCount,
        bytes32 region,
        uint128 acquisitionCost,
        uint64 acquiredAt,
        address nodeKey
    ) external returns (uint256 nodeId);

    /// @notice Node `nodeId`; reverts if unknown.
    function node(uint256 nodeId) external view returns (Node memory);

    /// @notice Status of node `nodeId` (None if unknown); a cheap read for other contracts.
    function nodeStatus(uint256 nodeId) external view returns (NodeStatus);

    /// @notice Number of registered nodes (the highest node id).
    function nodeCount() external view returns (uint256);

    /// @notice The node registered with `nodeKey`, or 0.
    function nodeIdByKey(address nodeKey) external view returns (uint256);

    // ------------------------------------------------------------------
    // GPUs
    // ------------------------------------------------------------------

    /**
     * @notice Binds the GPUs `gpuIds` to node `nodeId`: the oracles accept a node agent's
     * readings and challenge answers only for GPUs bound to that node. A GPU id is
     * keccak256 of the GPU's UUID string exactly as NVML reports it ("GPU-…"). A GPU is
     * bound to at most one node; a node exiting releases its GPUs (another node may then
     * bind them: GpuUnbound for the exited node, then GpuBound).
     * Requirements: caller is the node's operator; node Active or Jailed; every id non-zero
     * and not bound to a node that has not exited; at most `gpuCount` bound in all.
     */
    function bindGpus(uint256 nodeId, bytes32[] calldata gpuIds) external;

    /**
     * @notice Releases the GPUs `gpuIds` from node `nodeId` (e.g. a GPU replaced).
     * Requirements: caller is the node's operator; each id bound to this node.
     */
    function unbindGpus(uint256 nodeId, bytes32[] calldata gpuIds) external;

    /// @notice The node GPU `gpuId` is bound to, or 0 (never bound, released, or its node exited).
    function gpuNode(bytes32 gpuId) external view returns (uint256);

    /// @notice How many GPUs node `nodeId` has bound.
    function boundGpuCount(uint256 nodeId) external view returns (uint256);

    // ------------------------------------------------------------------
    // Bond
    // ------------------------------------------------------------------

    /**
     * @notice Posts or tops up node `nodeId`'s bond with `amount` of the stablecoin,
     * pulled from the caller (who must have approved this contract).
     * Requirements: caller is the node's operator; node is not Exited; amount > 0.
     */
    function depositBond(uint256 nodeId, uint256 amount) external;

    /**
     * @notice Locks `amount` of node `nodeId`'s free bond so it cannot leave while
     * it backs outstanding capacity.
     * Requirements: caller has BOND_LOCKER_ROLE; amount > 0 and ≤ free bond.
     */
    function lockBond(uint256 nodeId, uint256 amount) external;

    /**
     * @notice Releases `amount` of node `nodeId`'s locked bond.
     * Requirements: caller has BOND_LOCKER_ROLE; amount > 0 and ≤ locked bond.
     */
    function unlockBond(uint256 nodeId, uint256 amount) external;

    /**
     * @notice Releases `unlocked` of node `nodeId`'s locked bond that the caller locked and
     * pays `slashed` of it to `recipient` (a holder refunded for a shortfall), citing
     * `evidence`; the rest of the released amount becomes free bond. A locker can pay out
     * only bond it locked itself for the obligation it settles, so no settlement reaches
     * bond that backs another offer, reservation or loan.
     * Requirements: caller has BOND_LOCKER_ROLE; 0 < unlocked ≤ locked; slashed ≤ unlocked;
     * recipient not zero when slashed > 0.
     */
    function settleLock(uint256 nodeId, uint256 unlocked, uint256 slashed, address recipient, bytes32 evidence)
        external;

    /**
     * @notice Takes `amount` of node `nodeId`'s FREE bond (never locked bond) and sends it
     * to `recipient`, citing `evidence` (e.g. a report hash).
     * Requirements: caller has SLASHER_ROLE; node not Exited; 0 < amount ≤ free bond;
     * recipient not zero.
     */
    function slash(uint256 nodeId, uint256 amount, address recipient, bytes32 evidence) external;

    /// @notice Bond of node `nodeId` (zero for an unknown node).
    function bondOf(uint256 nodeId) external view returns (Bond memory);

    /// @notice Bond of node `nodeId` that is neither locked nor withdrawn.
    function freeBond(uint256 nodeId) external view returns (uint256);

    // ------------------------------------------------------------------
    // Jail
    // ------------------------------------------------------------------

    /**
     * @notice Jails Active node `nodeId` for `reason`: it cannot back new capacity or exit.
     * Requirements: caller has JAILER_ROLE; node is Active.
     */
    function jail(uint256 nodeId, bytes32 reason) external;

    /**
     * @notice Returns Jailed node `nodeId` to Active, citing `reason`.
     * Requirements: caller has JAILER_ROLE; node is Jailed.
     */
    function unjail(uint256 nodeId, bytes32 reason) external;

    // ------------------------------------------------------------------
    // Exit
    // ------------------------------------------------------------------

    /**
     * @notice Starts node `nodeId`'s exit: it stops backing new capacity, and its
     * bond becomes withdrawable after the unbonding delay (during which it can
     * still be slashed).
     * Requirements: caller is the operator; node is Active; nothing owed: no bond
     * locked (RegistryBondLocked: open offers, unreserved sales or unsettled
     * reservations) and no obligation source reports an open obligation
     * (RegistryObligationOpen, e.g. a pool loan outstanding).
     */
    function requestExit(uint256 nodeId) external;

    /**
     * @notice Sends node `nodeId`'s whole bond to its operator and marks it Exited.
     * Requirements: caller is the operator; node is Exiting; the unbonding delay
     * has passed; nothing owed (as for {requestExit}, checked again).
     */
    function withdrawBond(uint256 nodeId) external;

    /**
     * @notice Adds `source` to the contracts asked before an exit or withdrawal.
     * Requirements: caller has DEFAULT_ADMIN_ROLE; source not zero nor listed; fewer
     * than MAX_OBLIGATION_SOURCES listed.
     */
    function addObligationSource(IObligationSource source) external;

    /**
     * @notice Removes `source` from the contracts asked before an exit or withdrawal.
     * Requirements: caller has DEFAULT_ADMIN_ROLE; source listed.
     */
    function removeObligationSource(IObligationSource source) external;

    /// @notice The contracts asked before an exit or withdrawal.
    function obligationSources() external view returns (IObligationSource[] memory);

    /**
     * @notice Whether node `nodeId` owes anything now, and to whom: locked bond
     * (`source` = the registry itself) or an obligation source's open obligation.
     */
    function owes(uint256 nodeId) external view returns (bool owing, address source);

    /**
     * @notice Sets the unbonding delay for exits requested from now on.
     * Requirements: caller has DEFAULT_ADMIN_ROLE; delay ≤ MAX_UNBONDING_DELAY.
     */
    function setUnbondingDelay(uint64 delaySeconds) external;

    /// @notice Seconds between an exit request and the bond withdrawal.
    function unbondingDelay() external view returns (uint64);

    /// @notice The ERC-20 the bonds are held in (the stablecoin).
    function bondToken() external view returns (address);
}
