"""Raw logs to (contract, event, args): the indexer's event decoding.

``EventDecoder`` knows every event of the manifest's contracts and of revenue pools
and decodes a log as the node sends it (hex strings) or as web3 formats it: with the
ABI codec directly where it can, through web3's ``process_log`` otherwise, with the
same result either way. Also the small conversions of log fields, bytes32 labels and
call results into what the indexer stores.

Separate from the indexer because it needs neither the database nor the indexer's
state; it imports neither the indexer nor the read models, which both use it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from eth_abi.exceptions import DecodingError
from eth_utils import event_abi_to_log_topic
from hexbytes import HexBytes

from backend.services.chain import Chain
from backend.services.indexing import pool_index
from gpucap.addresses import checksum
from gpucap.deployment import ManifestError


def bytes32_text(value: Any) -> str:
    """A bytes32 label (GPU class name, region) as text; hex if it is not UTF-8."""
    raw = bytes(HexBytes(value)).rstrip(b"\0")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return "0x" + raw.hex()


def token_parts(token_id: int) -> tuple[int, int]:
    """(class id, window start) of a CapacityToken id = (classId << 64) | windowStart."""
    return token_id >> 64, token_id & ((1 << 64) - 1)


def jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | HexBytes):
        return "0x" + bytes(value).hex()
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value


def _topics(abi: list[dict[str, Any]]) -> dict[bytes, str]:
    return {
        bytes(event_abi_to_log_topic(item)): item["name"]
        for item in abi
        if item.get("type") == "event" and not item.get("anonymous")
    }


def named(outputs: list[dict[str, Any]], value: Any) -> dict[str, Any]:
    """A call's result as {output name: value}, structs (tuples) by component names."""
    if len(outputs) == 1 and outputs[0]["type"] == "tuple":
        outputs, value = outputs[0]["components"], value
    elif len(outputs) == 1:
        value = (value,)
    result: dict[str, Any] = {}
    for out, item in zip(outputs, value, strict=True):
        if out["type"] == "tuple":
            item = named(out["components"], item)
        result[out["name"]] = jsonable(item)
    return result


class EventDecoder:
    """Decodes any log of the manifest's contracts (address + topic0 → the event's ABI),
    and of revenue pools (one ABI, RevenuePool's build artifact, for every pool).

    Logs are decoded with the codec directly (one ``EventLayout`` per event: indexed
    inputs from the topics, the rest from the data), giving what web3's ``process_log``
    gives after ``jsonable``; events whose inputs this does not cover (structs) and any
    log that does not fit its event's layout go through ``process_log`` as before."""

    def __init__(self, chain: Chain) -> None:
        self._by_address: dict[str, tuple[str, Any, dict[bytes, str]]] = {}
        self._codec = chain.w3.codec
        self._layouts: dict[tuple[str, str], EventLayout | None] = {}
        for name, ref in chain.deployment.contracts.items():
            self._by_address[ref.address.lower()] = (name, chain.contract(name), _topics(ref.abi))
            self._add_layouts(name, ref.abi)
        self.pool_abi = _pool_abi(chain)
        self._pool = (
            pool_index.POOL,
            chain.w3.eth.contract(abi=self.pool_abi),
            _topics(self.pool_abi),
        )
        self._add_layouts(pool_index.POOL, self.pool_abi)

    def _add_layouts(self, contract: str, abi: list[dict[str, Any]]) -> None:
        for item in abi:
            if item.get("type") == "event" and not item.get("anonymous"):
                self._layouts[(contract, item["name"])] = EventLayout.of(item)

    @property
    def addresses(self) -> list[str]:
        return list(self._by_address)

    def is_pool_set(self, entry: Any) -> bool:
        """Whether ``entry`` is EpochSettlement's PoolSet (without decoding it)."""
        found = self._by_address.get(str(entry["address"]).lower())
        return (
            found is not None
            and found[0] == pool_index.SETTLEMENT
            and bool(entry["topics"])
            and found[2].get(as_bytes(entry["topics"][0])) == "PoolSet"
        )

    def decode(
        self, entry: Any, pools: Iterable[str] = ()
    ) -> tuple[str, str, dict[str, Any]] | None:
        """(contract name, event name, args) or None for a log no ABI describes.
        ``pools``: the addresses (lowercase) of the pools known so far. ``entry``: a log
        as web3 formats it or as the node sends it (hex strings)."""
        address = str(entry["address"]).lower()
        found = self._by_address.get(address)
        if found is None and address in pools:
            found = self._pool
        if found is None or not entry["topics"]:
            return None
        contract_name, contract, topics = found
        event = topics.get(as_bytes(entry["topics"][0]))
        if event is None:
            return None
        layout = self._layouts.get((contract_name, event))
        if layout is not None:
            args = layout.decode(self._codec, entry)
            if args is not None:
                return contract_name, event, args
        data = contract.events[event]().process_log(_web3_log(entry))
        return contract_name, event, jsonable(dict(data["args"]))


def as_bytes(value: Any) -> bytes:
    """A log field (topic, data, hash) as bytes: web3 gives HexBytes, the node hex text."""
    if isinstance(value, str):
        return bytes.fromhex(value[2:] if value[:2] in ("0x", "0X") else value)
    return bytes(value)


def as_hex(value: Any) -> str:
    """A hash (block, transaction) as lowercase 0x-hex, as it is stored."""
    return "0x" + as_bytes(value).hex()


def as_int(value: Any) -> int:
    """A quantity (block number, log index, timestamp): web3 gives int, the node hex."""
    return int(value, 16) if isinstance(value, str) else int(value)


def _web3_log(entry: Any) -> Any:
    """A raw log as web3's ``get_logs`` formats it (for ``process_log``)."""
    if not isinstance(entry["data"], str):
        return entry
    return {
        **entry,
        "address": checksum(entry["address"]),
        "topics": [HexBytes(t) for t in entry["topics"]],
        "data": HexBytes(entry["data"]),
        "blockHash": HexBytes(entry["blockHash"]),
        "transactionHash": HexBytes(entry["transactionHash"]),
        "blockNumber": as_int(entry["blockNumber"]),
        "logIndex": as_int(entry["logIndex"]),
        "transactionIndex": as_int(entry["transactionIndex"]),
    }


def _normalizer(abi_type: str) -> Callable[[Any], Any] | None:
    """What process_log + ``jsonable`` make of a decoded value of ``abi_type`` (None:
    a type this decoder leaves to process_log)."""
    if abi_type.startswith("tuple") or "(" in abi_type:
        return None
    if abi_type.endswith("]"):
        inner = _normalizer(abi_type[: abi_type.rindex("[")])
        if inner is None:
            return None
        return lambda values: [inner(v) for v in values]
    if abi_type == "address":
        return checksum
    if abi_type.startswith("bytes"):
        return lambda value: "0x" + bytes(value).hex()
    if abi_type == "bool" or abi_type == "string" or abi_type.startswith(("uint", "int")):
        return lambda value: value
    return None


@dataclass(frozen=True)
class EventLayout:
    """One event's decoding: its topic inputs (after topic0) and data inputs, in ABI
    order of each; ``names``: every input in process_log's order (topics, then data)."""

    topic_types: tuple[str, ...]
    topic_norms: tuple[Callable[[Any], Any], ...]
    data_types: tuple[str, ...]
    data_norms: tuple[Callable[[Any], Any], ...]
    names: tuple[str, ...]

    @classmethod
    def of(cls, abi: dict[str, Any]) -> EventLayout | None:
        topic_types: list[str] = []
        data_types: list[str] = []
        topic_names: list[str] = []
        data_names: list[str] = []
        for item in abi["inputs"]:
            abi_type = item["type"]
            if item.get("indexed"):
                if abi_type in ("string", "bytes"):
                    abi_type = "bytes32"  # a dynamic value is indexed as its hash
                elif "[" in abi_type:
                    return None  # indexed arrays: as process_log has them
                topic_types.append(abi_type)
                topic_names.append(item["name"])
            else:
                data_types.append(abi_type)
                data_names.append(item["name"])
        names = (*topic_names, *data_names)
        if len(set(names)) != len(names) or "" in names:
            return None  # process_log renames or refuses these
        topic_norms = [_normalizer(t) for t in topic_types]
        data_norms = [_normalizer(t) for t in data_types]
        if any(n is None for n in (*topic_norms, *data_norms)):
            return None
        return cls(
            tuple(topic_types),
            tuple(n for n in topic_norms if n is not None),
            tuple(data_types),
            tuple(n for n in data_norms if n is not None),
            names,
        )

    def decode(self, codec: Any, entry: Any) -> dict[str, Any] | None:
        """The log's args, or None if it does not fit this layout (process_log decides)."""
        topics = entry["topics"]
        if len(topics) != len(self.topic_types) + 1:
            return None
        try:
            values = [
                norm(codec.decode((t,), as_bytes(topic))[0])
                for t, norm, topic in zip(
                    self.topic_types, self.topic_norms, topics[1:], strict=True
                )
            ]
            if self.data_types:
                decoded = codec.decode(self.data_types, as_bytes(entry["data"]))
                values += [norm(v) for norm, v in zip(self.data_norms, decoded, strict=True)]
            elif as_bytes(entry["data"]):
                return None
        except (DecodingError, ValueError):  # malformed: process_log raises its own error
            return None
        return dict(zip(self.names, values, strict=True))


def _pool_abi(chain: Chain) -> list[dict[str, Any]]:
    """RevenuePool's ABI from the build artifacts the manifest's ABIs come from."""
    ref = chain.deployment.contracts.get(pool_index.SETTLEMENT)
    if ref is None:
        raise ManifestError(f"{pool_index.SETTLEMENT} is not in {chain.deployment.path}")
    path = ref.abi_path.parent / f"{pool_index.POOL}.json"
    try:
        abi: list[dict[str, Any]] = json.loads(path.read_text())["abi"]
    except (OSError, KeyError, ValueError) as exc:
        raise ManifestError(f"cannot read the RevenuePool ABI from {path}: {exc}") from exc
    return abi
