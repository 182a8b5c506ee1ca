"""The market's raw-call table names real functions: each signature is one of the
compiled contracts' it is sent to, with the same selector and argument types."""

from __future__ import annotations

import pytest
from eth_utils import function_abi_to_4byte_selector, get_abi_input_types

from backend.services.market import rawcall
from gpucap.deployment import REPO_ROOT, read_abi

# The contracts the market calls raw: the stablecoin and pool shares (ERC-20 with
# EIP-2612 and EIP-5267), the capacity token and the Market.
TARGETS = ("TestStablecoin", "RevenuePool", "CapacityToken", "Market")
TABLE = {
    name: value for name, value in vars(rawcall).items() if isinstance(value, rawcall.RawFunction)
}


def _functions() -> dict[bytes, tuple[str, ...]]:
    found: dict[bytes, tuple[str, ...]] = {}
    for contract in TARGETS:
        for item in read_abi(REPO_ROOT / "build" / "contracts" / f"{contract}.json"):
            if item.get("type") == "function":
                found[function_abi_to_4byte_selector(item)] = tuple(get_abi_input_types(item))
    return found


@pytest.mark.parametrize("name", sorted(TABLE))
def test_each_raw_function_is_a_compiled_function(name):
    function = TABLE[name]
    assert _functions().get(function.selector) == function.types


def test_a_call_is_the_selector_then_the_encoded_arguments():
    holder = "0x000000000000000000000000000000000000dEaD"
    method, (request, block) = rawcall.BALANCE_OF_ID.call(holder, holder, 7)
    assert (method, block, request["to"]) == ("eth_call", "latest", holder)
    assert request["data"] == "0x00fdd58e" + "00" * 12 + holder[2:].lower() + f"{7:064x}"


def test_a_signature_with_tuple_arguments_is_refused():
    with pytest.raises(ValueError, match="flat argument types"):
        rawcall.RawFunction("fill((address,uint256),bytes,uint256)")
