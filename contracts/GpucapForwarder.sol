// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

import {ERC2771Forwarder} from "@openzeppelin/contracts/metatx/ERC2771Forwarder.sol";

/**
 * @title GpucapForwarder
 * @notice The ERC-2771 forwarder every gpucap contract trusts: wallet users sign
 * an EIP-712 `ForwardRequest` and the backend's relayer submits it (singly with
 * `execute`, or many at once with `executeBatch`), paying the gas.
 * @dev OpenZeppelin's forwarder unchanged. Its EIP-712 domain is
 * ("GpucapForwarder", "1", chain id, this address), and each signer has a
 * sequential nonce: a request is accepted once, on one chain, by one
 * forwarder. Targets must trust this forwarder (ERC2771Context), otherwise the
 * request is rejected with `ERC2771UntrustfulTarget`.
 */
contract GpucapForwarder is ERC2771Forwarder {
    constructor() ERC2771Forwarder("GpucapForwarder") {}
}
