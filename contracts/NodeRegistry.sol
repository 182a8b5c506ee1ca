// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC2771Context} from "@openzeppelin/contracts/metatx/ERC2771Context.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Context} from "@openzeppelin/contracts/utils/Context.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

import {INodeRegistry} from "./interfaces/INodeRegistry.sol";
import {IObligationSource} from "./interfaces/IObligationSource.sol";

/**
 * @title NodeRegistry
 * @notice GPU classes, the nodes operators register against them, and each
 * node's bond in the stablecoin. See {INodeRegistry} for the node life cycle.
 * @dev Design decisions:
 * - Bond token: the stablecoin, fixed at construction, moved with SafeERC20.
 *   It must be a plain ERC-20 (no fee on transfer, no rebasing): the bond
 *   credits exactly `amount` for a deposit of `amount`.
 * - Bond accounting is per node, never pooled per operator, so a slash of one
 *   node never touches another node's collateral.
 * - BOND_LOCKER_ROLE (CapacityToken) locks the part of the bond that backs
 *   outstanding capacity, so an exit cannot take it, and keeps the books of
 *   each lock; it settles a lock with {settleLock}, paying at most that lock.
 *   SLASHER_ROLE may take free bond only: no slash from outside a lock's books
 *   reaches bond that backs an offer, a sale or a reservation, so `locked` here
 *   is always exactly the sum the locker's books say.
 * - Exits wait until nothing is owed: no locked bond, and no obligation source
 *   (the settlement contract, for pool loans) reports an open obligation. The
 *   sources are a short admin-set list (at most MAX_OBLIGATION_SOURCES), asked
 *   with a view call at requestExit and again at withdrawBond; a source that
 *   reverts blocks the exit (fails closed) until the admin removes it.
 * - GPU binding: an operator binds each GPU (keccak256 of its UUID) to at most one node,
 *   at most gpuCount per node. An exit does not loop over the node's GPUs: a binding to
 *   an Exited node simply no longer counts ({gpuNode} says 0) and another node may take
 *   it over (GpuUnbound for the exited node is emitted then).
 * - JAILER_ROLE freezes a node: it cannot back new capacity nor start an exit
 *   until unjailed. The bond stays slashable.
 * - Operators act through the trusted ERC-2771 forwarder without gas:
 *   every caller check uses `_msgSender()`.
 * - Token-moving functions are nonReentrant (transient-storage guard) and
 *   write state before the transfer.
 */
contract NodeRegistry is AccessControl, ERC2771Context, ReentrancyGuardTransient, INodeRegistry {
    using SafeERC20 for IERC20;
    using SafeCast for uint256;

    /// @notice May register GPU classes.
    bytes32 public constant CLASS_ADMIN_ROLE = keccak256("CLASS_ADMIN_ROLE");
    /// @notice May lock and unlock bond that backs capacity (CapacityToken).
    bytes32 public constant BOND_LOCKER_ROLE = keccak256("BOND_LOCKER_ROLE");
    /// @notice May slash bond to a recipient (contracts that judge delivery).
    bytes32 public constant SLASHER_ROLE = keccak256("SLASHER_ROLE");
    /// @notice May jail and unjail nodes.
    bytes32 public constant JAILER_ROLE = keccak256("JAILER_ROLE");

    /// @notice Upper bound on GPUs in one node (a large HGX pod); keeps capacity math far from overflow.
    uint32 public constant MAX_GPUS_PER_NODE = 4096;
    /// @notice Upper bound on the unbonding delay, so an admin cannot trap bonds forever.
    uint64 public constant MAX_UNBONDING_DELAY = 90 days;
    /// @notice Upper bound on obligation sources, so an exit check stays a few view calls.
    uint256 public constant MAX_OBLIGATION_SOURCES = 8;

    IERC20 private immutable _bondToken;

    // Storage: _classCount (uint32) and _unbondingDelay (uint64) share one slot;
    // each mapping takes its own slot. Node and Bond packing: see INodeRegistry.
    uint32 private _classCount;
    uint64 private _unbondingDelay;
    mapping(uint32 classId => GpuClass) private _classes;
    mapping(bytes32 name => uint32 classId) private _classIdByName;

    uint256 private _nodeCount;
    mapping(uint256 nodeId => Node) private _nodes;
    mapping(address nodeKey => uint256 nodeId) private _nodeIdByKey;
    mapping(uint256 nodeId => Bond) private _bonds;
    IObligationSource[] private _obligationSources;
    mapping(bytes32 gpuId => uint256 nodeId) private _gpuNode;
    mapping(uint256 nodeId => uint256 count) private _boundGpuCount;

    /**
     * @param admin Receives DEFAULT_ADMIN_ROLE, CLASS_ADMIN_ROLE and JAILER_ROLE.
     * @param bondToken_ The stablecoin bonds are posted in.
     * @param trustedForwarder The ERC-2771 forwarder operators relay through.
     * @param unbondingDelay_ Seconds between an exit request and the bond withdrawal.
     */
    constructor(address admin, IERC20 bondToken_, address trustedForwarder, uint64 unbondingDelay_)
        ERC2771Context(trustedForwarder)
    {
        _bondToken = bondToken_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(CLASS_ADMIN_ROLE, admin);
        _grantRole(JAILER_ROLE, admin);
        _setUnbondingDelay(unbondingDelay_);
    }

    // ------------------------------------------------------------------
    // GPU classes
    // ------------------------------------------------------------------

    /// @inheritdoc INodeRegistry
    function registerGpuClass(
        bytes32 name,
        uint32 referencePowerW,
        uint64 referenceThroughput,
        uint16 economicLifeMonths,
        uint16 residualValueBps
    ) external onlyRole(CLASS_ADMIN_ROLE) returns (uint32 classId) {
        if (name == bytes32(0) || referencePowerW == 0 || economicLifeMonths == 0 || residualValueBps > 10_000) {
            revert RegistryInvalidClass();
        }
        uint32 existing = _classIdByName[name];
        if (existing != 0) revert RegistryDuplicateClass(name, existing);

        classId = ++_classCount;
        _classes[classId] = GpuClass({
            name: name,
            referencePowerW: referencePowerW,
            referenceThroughput: referenceThroughput,
            economicLifeMonths: economicLifeMonths,
            residualValueBps: residualValueBps,
            exists: true
        });
        _classIdByName[name] = classId;
        emit GpuClassRegistered(
            classId, name, referencePowerW, referenceThroughput, economicLifeMonths, residualValueBps
        );
    }

    /// @inheritdoc INodeRegistry
    function gpuClass(uint32 classId) external view returns (GpuClass memory) {
        return _requireClass(classId);
    }

    /// @inheritdoc INodeRegistry
    function gpuClassCount() external view returns (uint32) {
        return _classCount;
    }

    // ------------------------------------------------------------------
    // Nodes
    // ------------------------------------------------------------------

    /// @inheritdoc INodeRegistry
    function registerNode(
        uint32 classId,
        uint32 gpuCount,
        bytes32 region,
        uint128 acquisitionCost,
        uint64 acquiredAt,
        address nodeKey
    ) external returns (uint256 nodeId) {
        _requireClass(classId);
        if (gpuCount == 0 || gpuCount > MAX_GPUS_PER_NODE) {
            revert RegistryInvalidGpuCount(gpuCount, MAX_GPUS_PER_NODE);
        }
        // slither-disable-next-line timestamp (seconds of drift cannot invalidate a real purchase date)
        if (acquisitionCost == 0 || acquiredAt == 0 || acquiredAt > block.timestamp) {
            revert RegistryInvalidAcquisition(acquisitionCost, acquiredAt);
        }
        uint256 keyOwner = _nodeIdByKey[nodeKey];
        if (nodeKey == address(0) || keyOwner != 0) revert RegistryInvalidNodeKey(nodeKey, keyOwner);

        nodeId = ++_nodeCount;
        address operator = _msgSender();
        _nodes[nodeId] = Node({
            operator: operator,
            classId: classId,
            gpuCount: gpuCount,
            status: NodeStatus.Active,
            region: region,
            nodeKey: nodeKey,
            acquiredAt: acquiredAt,
            acquisitionCost: acquisitionCost,
            withdrawableAt: 0
        });
        _nodeIdByKey[nodeKey] = nodeId;
        emit NodeRegistered(nodeId, operator, classId, gpuCount, region, nodeKey, acquisitionCost, acquiredAt);
    }

    /// @inheritdoc INodeRegistry
    function node(uint256 nodeId) external view returns (Node memory) {
        Node memory n = _nodes[nodeId];
        if (n.status == NodeStatus.None) revert RegistryUnknownNode(nodeId);
        return n;
    }

    /// @inheritdoc INodeRegistry
    function nodeStatus(uint256 nodeId) external view returns (NodeStatus) {
        return _nodes[nodeId].status;
    }

    /// @inheritdoc INodeRegistry
    function nodeCount() external view returns (uint256) {
        return _nodeCount;
    }

    /// @inheritdoc INodeRegistry
    function nodeIdByKey(address nodeKey) external view returns (uint256) {
        return _nodeIdByKey[nodeKey];
    }

    // ------------------------------------------------------------------
    // GPUs
    // ------------------------------------------------------------------

    /// @inheritdoc INodeRegistry
    function bindGpus(uint256 nodeId, bytes32[] calldata gpuIds) external {
        Node storage n = _requireOperator(nodeId, _msgSender());
        if (n.status != NodeStatus.Active && n.status != NodeStatus.Jailed) {
            revert RegistryInvalidStatus(nodeId, n.status);
        }
        uint256 bound = _boundGpuCount[nodeId] + gpuIds.length;
        if (bound > n.gpuCount) revert RegistryTooManyGpus(nodeId, bound, n.gpuCount);
        for (uint256 i = 0; i < gpuIds.length; ++i) {
            bytes32 gpuId = gpuIds[i];
            if (gpuId == bytes32(0)) revert RegistryInvalidGpuId();
            uint256 owner = _gpuNode[gpuId];
            if (owner != 0) {
                if (_nodes[owner].status != NodeStatus.Exited) revert RegistryGpuAlreadyBound(gpuId, owner);
                emit GpuUnbound(owner, gpuId);
            }
            _gpuNode[gpuId] = nodeId;
            emit GpuBound(nodeId, gpuId);
        }
        _boundGpuCount[nodeId] = bound;
    }

    /// @inheritdoc INodeRegistry
    function unbindGpus(uint256 nodeId, bytes32[] calldata gpuIds) external {
        _requireOperator(nodeId, _msgSender());
        for (uint256 i = 0; i < gpuIds.length; ++i) {
            bytes32 gpuId = gpuIds[i];
            if (_gpuNode[gpuId] != nodeId) revert RegistryGpuNotBound(gpuId, nodeId);
            delete _gpuNode[gpuId];
            emit GpuUnbound(nodeId, gpuId);
        }
        // Each id was bound to this node, so counted in _boundGpuCount: no underflow.
        _boundGpuCount[nodeId] -= gpuIds.length;
    }

    /// @inheritdoc INodeRegistry
    function gpuNode(bytes32 gpuId) external view returns (uint256) {
        uint256 owner = _gpuNode[gpuId];
        return owner != 0 && _nodes[owner].status != NodeStatus.Exited ? owner : 0;
    }

    /// @inheritdoc INodeRegistry
    function boundGpuCount(uint256 nodeId) external view returns (uint256) {
        return _boundGpuCount[nodeId];
    }

    // ------------------------------------------------------------------
    // Bond
    // ------------------------------------------------------------------

    /// @inheritdoc INodeRegistry
    function depositBond(uint256 nodeId, uint256 amount) external nonReentrant {
        address sender = _msgSender();
        NodeStatus status = _requireOperator(nodeId, sender).status;
        if (status == NodeStatus.Exited) revert RegistryInvalidStatus(nodeId, status);
        if (amount == 0) revert RegistryZeroAmount();

        Bond storage bond = _bonds[nodeId];
        uint128 bonded = bond.bonded + amount.toUint128();
        bond.bonded = bonded;
        emit BondDeposited(nodeId, sender, amount, bonded);
        // External call after the state write; the guard blocks re-entry.
        _bondToken.safeTransferFrom(sender, address(this), amount);
    }

    /// @inheritdoc INodeRegistry
    function lockBond(uint256 nodeId, uint256 amount) external onlyRole(BOND_LOCKER_ROLE) {
        _requireNode(nodeId);
        if (amount == 0) revert RegistryZeroAmount();
        Bond storage bond = _bonds[nodeId];
        uint256 free = bond.bonded - bond.locked;
        if (amount > free) revert RegistryInsufficientBond(free, amount);
        // amount <= free <= bonded < 2**128, so the sum fits.
        uint128 locked = bond.locked + uint128(amount);
        bond.locked = locked;
        emit BondLocked(nodeId, _msgSender(), amount, locked);
    }

    /// @inheritdoc INodeRegistry
    function unlockBond(uint256 nodeId, uint256 amount) external onlyRole(BOND_LOCKER_ROLE) {
        _requireNode(nodeId);
        if (amount == 0) revert RegistryZeroAmount();
        Bond storage bond = _bonds[nodeId];
        uint128 locked = bond.locked;
        if (amount > locked) revert RegistryInsufficientLockedBond(locked, amount);
        // amount <= locked, checked above.
        unchecked {
            locked -= uint128(amount);
        }
        bond.locked = locked;
        emit BondUnlocked(nodeId, _msgSender(), amount, locked);
    }

    /// @inheritdoc INodeRegistry
    function settleLock(uint256 nodeId, uint256 unlocked, uint256 slashed, address recipient, bytes32 evidence)
        external
        onlyRole(BOND_LOCKER_ROLE)
        nonReentrant
    {
        _requireNode(nodeId);
        if (unlocked == 0) revert RegistryZeroAmount();
        if (slashed > unlocked) revert RegistrySlashExceedsLock(unlocked, slashed);
        if (slashed != 0 && recipient == address(0)) revert RegistryInvalidRecipient();
        Bond storage bond = _bonds[nodeId];
        (uint128 bonded, uint128 locked) = (bond.bonded, bond.locked);
        if (unlocked > locked) revert RegistryInsufficientLockedBond(locked, unlocked);
        // slashed <= unlocked <= locked <= bonded, checked above and by the invariant.
        unchecked {
            locked -= uint128(unlocked);
            bonded -= uint128(slashed);
        }
        (bond.bonded, bond.locked) = (bonded, locked);
        emit BondLockSettled(nodeId, _msgSender(), unlocked, slashed, recipient, evidence, locked);
        if (slashed != 0) {
            emit NodeSlashed(nodeId, slashed, recipient, evidence);
            // External call after the state writes; the guard blocks re-entry.
            _bondToken.safeTransfer(recipient, slashed);
        }
    }

    /// @inheritdoc INodeRegistry
    function slash(uint256 nodeId, uint256 amount, address recipient, bytes32 evidence)
        external
        onlyRole(SLASHER_ROLE)
        nonReentrant
    {
        NodeStatus status = _requireNode(nodeId).status;
        if (status == NodeStatus.Exited) revert RegistryInvalidStatus(nodeId, status);
        if (amount == 0) revert RegistryZeroAmount();
        if (recipient == address(0)) revert RegistryInvalidRecipient();
        Bond storage bond = _bonds[nodeId];
        uint128 bonded = bond.bonded;
        // Free bond only: locked bond backs what the node owes and is settled by its locker.
        uint256 free = bonded - bond.locked;
        if (amount > free) revert RegistryInsufficientBond(free, amount);

        // amount <= free <= bonded, checked above.
        unchecked {
            bonded -= uint128(amount);
        }
        bond.bonded = bonded;
        emit NodeSlashed(nodeId, amount, recipient, evidence);
        // External call after the state writes; the guard blocks re-entry.
        _bondToken.safeTransfer(recipient, amount);
    }

    /// @inheritdoc INodeRegistry
    function bondOf(uint256 nodeId) external view returns (Bond memory) {
        return _bonds[nodeId];
    }

    /// @inheritdoc INodeRegistry
    function freeBond(uint256 nodeId) external view returns (uint256) {
        Bond memory bond = _bonds[nodeId];
        return bond.bonded - bond.locked;
    }

    /// @inheritdoc INodeRegistry
    function bondToken() external view returns (address) {
        return address(_bondToken);
    }

    // ------------------------------------------------------------------
    // Jail
    // ------------------------------------------------------------------

    /// @inheritdoc INodeRegistry
    function jail(uint256 nodeId, bytes32 reason) external onlyRole(JAILER_ROLE) {
        Node storage n = _requireNode(nodeId);
        if (n.status != NodeStatus.Active) revert RegistryInvalidStatus(nodeId, n.status);
        n.status = NodeStatus.Jailed;
        emit NodeJailed(nodeId, _msgSender(), reason);
    }

    /// @inheritdoc INodeRegistry
    function unjail(uint256 nodeId, bytes32 reason) external onlyRole(JAILER_ROLE) {
        Node storage n = _requireNode(nodeId);
        if (n.status != NodeStatus.Jailed) revert RegistryInvalidStatus(nodeId, n.status);
        n.status = NodeStatus.Active;
        emit NodeUnjailed(nodeId, _msgSender(), reason);
    }

    // ------------------------------------------------------------------
    // Exit
    // ------------------------------------------------------------------

    /// @inheritdoc INodeRegistry
    function requestExit(uint256 nodeId) external {
        Node storage n = _requireOperator(nodeId, _msgSender());
        if (n.status != NodeStatus.Active) revert RegistryInvalidStatus(nodeId, n.status);
        _requireNothingOwed(nodeId);
        uint64 withdrawableAt = block.timestamp.toUint64() + _unbondingDelay;
        n.status = NodeStatus.Exiting;
        n.withdrawableAt = withdrawableAt;
        emit NodeExitRequested(nodeId, withdrawableAt);
    }

    /// @inheritdoc INodeRegistry
    function withdrawBond(uint256 nodeId) external nonReentrant {
        address operator = _msgSender();
        Node storage n = _requireOperator(nodeId, operator);
        if (n.status != NodeStatus.Exiting) revert RegistryInvalidStatus(nodeId, n.status);
        // slither-disable-next-line timestamp (unbonding delay is minutes to days; drift is harmless)
        if (block.timestamp < n.withdrawableAt) revert RegistryUnbonding(nodeId, n.withdrawableAt);
        _requireNothingOwed(nodeId);
        Bond memory bond = _bonds[nodeId];

        n.status = NodeStatus.Exited;
        delete _bonds[nodeId];
        emit NodeExited(nodeId, operator, bond.bonded);
        // External call after the state writes; the guard blocks re-entry.
        if (bond.bonded != 0) _bondToken.safeTransfer(operator, bond.bonded);
    }

    /// @inheritdoc INodeRegistry
    function setUnbondingDelay(uint64 delaySeconds) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setUnbondingDelay(delaySeconds);
    }

    /// @inheritdoc INodeRegistry
    function unbondingDelay() external view returns (uint64) {
        return _unbondingDelay;
    }

    /// @inheritdoc INodeRegistry
    function addObligationSource(IObligationSource source) external onlyRole(DEFAULT_ADMIN_ROLE) {
        uint256 count = _obligationSources.length;
        if (address(source) == address(0) || count >= MAX_OBLIGATION_SOURCES || _sourceIndex(source) < count) {
            revert RegistryInvalidObligationSource(address(source), MAX_OBLIGATION_SOURCES);
        }
        _obligationSources.push(source);
        emit ObligationSourceAdded(address(source));
    }

    /// @inheritdoc INodeRegistry
    function removeObligationSource(IObligationSource source) external onlyRole(DEFAULT_ADMIN_ROLE) {
        uint256 count = _obligationSources.length;
        uint256 index = _sourceIndex(source);
        if (index == count) revert RegistryInvalidObligationSource(address(source), MAX_OBLIGATION_SOURCES);
        _obligationSources[index] = _obligationSources[count - 1];
        _obligationSources.pop();
        emit ObligationSourceRemoved(address(source));
    }

    /// @inheritdoc INodeRegistry
    function obligationSources() external view returns (IObligationSource[] memory) {
        return _obligationSources;
    }

    /// @inheritdoc INodeRegistry
    function owes(uint256 nodeId) public view returns (bool owing, address source) {
        if (_bonds[nodeId].locked != 0) return (true, address(this));
        uint256 count = _obligationSources.length;
        for (uint256 i = 0; i < count; ++i) {
            IObligationSource s = _obligationSources[i];
            // Admin-listed source, a view call; a revert blocks the exit (fails closed).
            // slither-disable-next-line calls-loop (at most MAX_OBLIGATION_SOURCES admin-listed views)
            if (s.hasOpenObligations(nodeId)) return (true, address(s));
        }
        return (false, address(0));
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

    function _setUnbondingDelay(uint64 delaySeconds) private {
        if (delaySeconds > MAX_UNBONDING_DELAY) {
            revert RegistryInvalidUnbondingDelay(delaySeconds, MAX_UNBONDING_DELAY);
        }
        _unbondingDelay = delaySeconds;
        emit UnbondingDelaySet(delaySeconds);
    }

    /// @dev Reverts unless node `nodeId` owes nothing: RegistryBondLocked for locked bond,
    /// RegistryObligationOpen naming the source of any other open obligation.
    function _requireNothingOwed(uint256 nodeId) private view {
        (bool owing, address source) = owes(nodeId);
        if (!owing) return;
        if (source == address(this)) revert RegistryBondLocked(nodeId, _bonds[nodeId].locked);
        revert RegistryObligationOpen(nodeId, source);
    }

    /// @dev Index of `source` in the list, or the list's length if it is not listed.
    function _sourceIndex(IObligationSource source) private view returns (uint256 index) {
        uint256 count = _obligationSources.length;
        for (index = 0; index < count; ++index) {
            if (_obligationSources[index] == source) return index;
        }
    }

    function _requireClass(uint32 classId) private view returns (GpuClass memory c) {
        c = _classes[classId];
        if (!c.exists) revert RegistryUnknownClass(classId);
    }

    function _requireNode(uint256 nodeId) private view returns (Node storage n) {
        n = _nodes[nodeId];
        if (n.status == NodeStatus.None) revert RegistryUnknownNode(nodeId);
    }

    function _requireOperator(uint256 nodeId, address caller) private view returns (Node storage n) {
        n = _requireNode(nodeId);
        if (n.operator != caller) revert RegistryNotOperator(nodeId, caller);
    }
}
