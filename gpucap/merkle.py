"""A Python twin of OpenZeppelin's ``StandardMerkleTree`` (@openzeppelin/merkle-tree).

Why a twin and not our own scheme: contracts verify with OpenZeppelin's
``MerkleProof`` and anyone holding a dump of our tree (``standard-v1`` JSON) can
load it with the JavaScript library and get the same root and proofs.

The convention, exactly as the JS library builds it:
- leaf hash = ``keccak256(keccak256(abi.encode(types, value)))`` (double hashing
  so a leaf's 64-byte preimage cannot pass for an inner node);
- leaf hashes are sorted ascending and laid out at the end of a flat array of
  ``2n - 1`` nodes in reverse (``tree[len - 1 - i] = sorted[i]``);
- an inner node is ``keccak256(min(a, b) ‖ max(a, b))`` (sorted pairs, as
  ``MerkleProof`` hashes);
- a tree of one leaf has that leaf's hash as its root and empty proofs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import encode
from eth_utils import keccak


class MerkleTreeError(ValueError):
    """A tree was asked for with no leaves, or a proof for a value not in it."""


def standard_leaf_hash(types: Sequence[str], value: Sequence[Any]) -> bytes:
    """``keccak256(bytes.concat(keccak256(abi.encode(value...))))`` for ``types``."""
    return keccak(keccak(encode(list(types), list(value))))


def hash_pair(a: bytes, b: bytes) -> bytes:
    """Commutative inner-node hash, as OpenZeppelin's ``Hashes.commutativeKeccak256``."""
    return keccak(a + b) if a < b else keccak(b + a)


def process_proof(leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root a proof leads to from ``leaf`` (``MerkleProof.processProof``)."""
    computed = leaf
    for sibling in proof:
        computed = hash_pair(computed, sibling)
    return computed


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


@dataclass(frozen=True)
class StandardMerkleTree:
    """An immutable tree over ``values`` encoded as ``leaf_encoding``."""

    leaf_encoding: tuple[str, ...]
    values: tuple[tuple[Any, ...], ...]
    tree: tuple[bytes, ...]
    # values[i] sits at tree[tree_indices[i]]
    tree_indices: tuple[int, ...]

    @classmethod
    def of(
        cls, values: Sequence[Sequence[Any]], leaf_encoding: Sequence[str]
    ) -> StandardMerkleTree:
        if not values:
            raise MerkleTreeError("a Merkle tree needs at least one leaf")
        encoding = tuple(leaf_encoding)
        frozen = tuple(tuple(v) for v in values)
        hashed = sorted(
            ((standard_leaf_hash(encoding, v), i) for i, v in enumerate(frozen)), key=lambda p: p[0]
        )
        size = 2 * len(hashed) - 1
        nodes: list[bytes] = [b""] * size
        indices = [0] * len(frozen)
        for position, (leaf, value_index) in enumerate(hashed):
            nodes[size - 1 - position] = leaf
            indices[value_index] = size - 1 - position
        for i in range(size - 1 - len(hashed), -1, -1):
            nodes[i] = hash_pair(nodes[2 * i + 1], nodes[2 * i + 2])
        return cls(encoding, frozen, tuple(nodes), tuple(indices))

    @property
    def root(self) -> bytes:
        return self.tree[0]

    def leaf_hash(self, index: int) -> bytes:
        """Hash of ``values[index]``."""
        return self.tree[self.tree_indices[index]]

    def proof(self, index: int) -> list[bytes]:
        """Sibling hashes from ``values[index]`` up to the root."""
        if not 0 <= index < len(self.values):
            raise MerkleTreeError(f"no value at index {index} (tree has {len(self.values)})")
        position = self.tree_indices[index]
        proof: list[bytes] = []
        while position > 0:
            sibling = position + 1 if position % 2 == 1 else position - 1
            proof.append(self.tree[sibling])
            position = (position - 1) // 2
        return proof

    def verify(self, index: int, proof: Sequence[bytes]) -> bool:
        return process_proof(self.leaf_hash(index), proof) == self.root

    def dump(self) -> dict[str, Any]:
        """The ``standard-v1`` JSON object ``StandardMerkleTree.load`` accepts in JS.

        Integers are written as decimal strings, as the JS library writes bigints.
        """
        return {
            "format": "standard-v1",
            "leafEncoding": list(self.leaf_encoding),
            "tree": [_hex(node) for node in self.tree],
            "values": [
                {"value": [_json_value(v) for v in value], "treeIndex": index}
                for value, index in zip(self.values, self.tree_indices, strict=True)
            ],
        }


def _json_value(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return _hex(value)
    return value
