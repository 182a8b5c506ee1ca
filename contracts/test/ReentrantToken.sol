// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/**
 * @title ReentrantToken
 * @notice TEST ONLY. A 6-decimal ERC-20 that, when armed, calls back into a
 * target during every transfer (like an ERC-777 hook or a malicious
 * stablecoin), bubbling the callee's revert. It can also act as an account
 * itself (`execute`), so the re-entering caller is a legitimate operator.
 */
contract ReentrantToken is ERC20 {
    address private _target;
    bytes private _callData;

    constructor() ERC20("Reentrant USD", "rUSD") {}

    function decimals() public pure override returns (uint8) {
        return 6;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Arms the hook: the next transfers call `target` with `callData`.
    function arm(address target, bytes calldata callData) external {
        _target = target;
        _callData = callData;
    }

    /// @notice Makes this contract call `target` (so it can be a node operator).
    function execute(address target, bytes calldata callData) external returns (bytes memory) {
        return _call(target, callData);
    }

    function _update(address from, address to, uint256 value) internal override {
        super._update(from, to, value);
        address target = _target;
        if (target != address(0)) {
            delete _target; // one re-entry attempt per arming
            _call(target, _callData);
        }
    }

    function _call(address target, bytes memory callData) private returns (bytes memory result) {
        bool ok;
        (ok, result) = target.call(callData);
        if (!ok) {
            assembly ("memory-safe") {
                revert(add(result, 0x20), mload(result))
            }
        }
    }
}
