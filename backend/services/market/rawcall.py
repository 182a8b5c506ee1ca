"""The market's raw contract calls: one table of the functions it reads and sends, and
the JSON-RPC requests for them.

The order book (book.py) and the permit checks (permits.py) read the chain as raw
eth_calls in one JSON-RPC batch a request: each web3 ``ContractFunction.call`` looked
its function up in the ABI by hashing every candidate's signature, asked the node for
its chain id again (web3's validation middleware) and went through requests' adapter,
~5 ms of the API's CPU and two round trips a read; a taker's match made six. A function
is named here once, by its signature, so its selector and its argument types cannot
disagree.
"""

from __future__ import annotations

from typing import Any

from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

LATEST_BLOCK = ("eth_getBlockByNumber", ["latest", False])


def eth_call(to: str, data: bytes) -> tuple[str, list[Any]]:
    """The request (for ``Chain.batch``) that calls ``to`` with ``data`` at the latest block."""
    return ("eth_call", [{"to": to, "data": "0x" + data.hex()}, "latest"])


class RawFunction:
    """A contract function known by its signature, e.g. ``balanceOf(address,uint256)``.
    Flat argument types only (no tuples): all the market calls this way."""

    __slots__ = ("selector", "types")

    def __init__(self, signature: str) -> None:
        _, _, rest = signature.partition("(")
        arguments = rest.removesuffix(")")
        if not rest.endswith(")") or "(" in arguments or ")" in arguments:
            raise ValueError(f"{signature!r} is not a signature with flat argument types")
        self.selector: bytes = function_signature_to_4byte_selector(signature)
        self.types: tuple[str, ...] = tuple(arguments.split(",")) if arguments else ()

    def data(self, *args: Any) -> bytes:
        """Calldata: the selector, then ``args`` ABI-encoded."""
        return self.selector + (encode(self.types, args) if self.types else b"")

    def call(self, to: str, *args: Any) -> tuple[str, list[Any]]:
        """The eth_call request of this function at ``to`` with ``args``."""
        return eth_call(to, self.data(*args))


# ERC-20 (+ EIP-2612, EIP-5267): the stablecoin and pool shares.
BALANCE_OF = RawFunction("balanceOf(address)")
ALLOWANCE = RawFunction("allowance(address,address)")
NAME = RawFunction("name()")
NONCES = RawFunction("nonces(address)")
DOMAIN_SEPARATOR = RawFunction("DOMAIN_SEPARATOR()")
EIP712_DOMAIN = RawFunction("eip712Domain()")
PERMIT = RawFunction("permit(address,address,uint256,uint256,uint8,bytes32,bytes32)")
# CapacityToken (ERC-1155).
BALANCE_OF_ID = RawFunction("balanceOf(address,uint256)")
APPROVED_FOR_ALL = RawFunction("isApprovedForAll(address,address)")
DECODE_TOKEN_ID = RawFunction("decodeTokenId(uint256)")
# Market.
FEES = RawFunction("fees()")
IS_POOL_LISTED = RawFunction("isPoolListed(address)")
