// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC1155} from "@openzeppelin/contracts/token/ERC1155/ERC1155.sol";

/**
 * @title BaselineERC1155
 * @notice Benchmark baseline only (bench/): a plain OpenZeppelin ERC-1155 whose deployer
 * mints freely, to price safeTransferFrom without CapacityToken's extra bookkeeping.
 */
contract BaselineERC1155 is ERC1155 {
    constructor() ERC1155("") {}

    /// @notice Mint `amount` of `id` to `to` (benchmark setup only).
    function mint(address to, uint256 id, uint256 amount) external {
        _mint(to, id, amount, "");
    }
}
