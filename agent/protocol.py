"""What a node agent and the oracle agree on: signed documents and work challenges.

Signed documents. The agent signs the exact bytes it sends: ``payload`` is a
canonical JSON text (sorted keys, no spaces) and ``signature`` an EIP-191
``personal_sign`` signature over it by the node key. The oracle verifies the
signature over those bytes and only then parses them, so what was signed is
what is read. Every payload names its ``kind``, the chain id and the node id,
so a sample cannot pass for an answer, nor a node's document for another
node's or another chain's.

Challenges, in two steps so that the deadline times the GPU, not the host.
*Prepare*: the oracle sends a random 32-byte ``nonce`` and a size ``n``; the
agent derives ``A`` and ``B`` (n × n, integers in [-3, 3] stored as float32)
from the nonce, in blocks of ``BLOCK`` rows seeded separately so the oracle can
stream ``B`` in O(n) memory, and loads them on the device. *Go*: the oracle
sends a second random value ``go``, from which both derive a sign per row of
``B`` (``S``); the agent must now compute ``C = A @ (S B)``, which it could not
start before (no useful precomputation covers 2**n sign patterns). Every entry
of C is an integer of magnitude at most 9n, exact in float32 (and in TF32 or
BF16 inputs with FP32 accumulation) as long as 9n < 2**24, so any hardware
gives the same bytes. The agent commits to ``C`` with a Merkle root over its
rows (leaf: row index and the SHA-256 of the row's little-endian float32 bytes,
hashed on all cores), signed with both nonces, the GPU's UUID and the measured
time; the oracle then asks for ``k`` random rows with proofs and recomputes each
as ``(row_i(A) * s) @ B``: O(n²) per row against the agent's O(n³).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from eth_account import Account
from eth_account.messages import encode_defunct

from gpucap.merkle import StandardMerkleTree, process_proof, standard_leaf_hash

SAMPLE_KIND = "gpucap-agent-sample/1"
ANSWER_KIND = "gpucap-challenge-answer/1"
BLOCK = 256
ROW_LEAF = ("uint256", "bytes32")
# Largest n whose products stay exact in float32: 9 n < 2**24.
MAX_N = (2**24 - 1) // 9


class ProtocolError(ValueError):
    """A document that is malformed, unsigned or signed by the wrong key."""


def canonical(payload: dict) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False)


def sign_document(private_key: str | bytes, payload: dict) -> dict:
    text = canonical(payload)
    signed = Account.sign_message(encode_defunct(text=text), private_key)
    return {"payload": text, "signature": "0x" + bytes(signed.signature).hex()}


def open_document(document: object, kind: str, chain_id: int, node_id: int) -> tuple[dict, str]:
    """The payload of a signed document and the address that signed it.

    Raises ProtocolError when it is not a signed ``kind`` document for this chain and node.
    """
    if not isinstance(document, dict):
        raise ProtocolError("not a signed document")
    text, signature = document.get("payload"), document.get("signature")
    if not isinstance(text, str) or not isinstance(signature, str):
        raise ProtocolError("unsigned: no payload and signature")
    try:
        signer = Account.recover_message(encode_defunct(text=text), signature=signature)
        payload = json.loads(text)
    except (ValueError, TypeError) as exc:
        raise ProtocolError(f"unreadable signature or payload ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("kind") != kind:
        raise ProtocolError(f"not a {kind} document")
    if payload.get("chainId") != chain_id or payload.get("nodeId") != node_id:
        raise ProtocolError(
            f"signed for chain {payload.get('chainId')} node {payload.get('nodeId')},"
            f" not chain {chain_id} node {node_id}"
        )
    return payload, signer


# -- the challenge's matrices ----------------------------------------------------


def _block(nonce: bytes, which: int, block: int, n: int) -> np.ndarray:
    rows = min(BLOCK, n - block * BLOCK)
    seed = np.random.SeedSequence([int.from_bytes(nonce, "big"), which, block, n])
    rng = np.random.Generator(np.random.PCG64(seed))
    values = rng.integers(-3, 4, size=(rows, n), dtype=np.int8)
    return values.astype(np.float32)


def matrix(nonce: bytes, which: int, n: int) -> np.ndarray:
    """``A`` (which=0) or ``B`` (which=1) of the challenge ``nonce``, n × n."""
    return np.concatenate([_block(nonce, which, b, n) for b in range(-(-n // BLOCK))])


def signs(go: bytes, n: int) -> np.ndarray:
    """The ±1 per row of ``B`` that ``go`` selects (float32, shape (n,))."""
    seed = np.random.SeedSequence([int.from_bytes(go, "big"), n])
    bits = np.random.Generator(np.random.PCG64(seed)).integers(0, 2, size=n, dtype=np.int8)
    return (1 - 2 * bits).astype(np.float32)


def expected_rows(nonce: bytes, go: bytes, n: int, rows: Sequence[int]) -> np.ndarray:
    """``(A @ (S B))[rows]`` without holding ``A`` or ``B``: B is streamed block by block."""
    s = signs(go, n)
    a_rows = np.stack([_block(nonce, 0, i // BLOCK, n)[i % BLOCK] for i in rows]) * s
    out = np.zeros((len(rows), n), dtype=np.float64)
    for b in range(-(-n // BLOCK)):
        block = _block(nonce, 1, b, n)
        out += a_rows[:, b * BLOCK : b * BLOCK + block.shape[0]].astype(np.float64) @ block
    return out.astype(np.float32)


def row_leaf(index: int, row: np.ndarray) -> tuple[int, bytes]:
    return (index, hashlib.sha256(np.ascontiguousarray(row, dtype="<f4").data).digest())


def row_tree(c: np.ndarray) -> StandardMerkleTree:
    """The Merkle tree over C's rows; rows are hashed on every core (hashlib frees the GIL)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        leaves = list(pool.map(row_leaf, range(len(c)), c))
    return StandardMerkleTree.of(leaves, ROW_LEAF)


def verify_row(root: bytes, index: int, row: Sequence[float], proof: Sequence[bytes]) -> bool:
    leaf = standard_leaf_hash(ROW_LEAF, row_leaf(index, np.asarray(row, dtype=np.float32)))
    return process_proof(leaf, proof) == root


@dataclass(frozen=True)
class Challenge:
    """Work the oracle sends: multiply the nonce's matrices, answer within ``deadline_s``."""

    nonce: bytes
    n: int
    deadline_s: float

    @property
    def flops(self) -> float:
        return 2.0 * self.n**3

    def to_json(self) -> dict:
        return {"nonce": "0x" + self.nonce.hex(), "n": self.n, "deadlineSeconds": self.deadline_s}

    @classmethod
    def from_json(cls, body: object) -> Challenge:
        if not isinstance(body, dict):
            raise ProtocolError("a challenge is a JSON object")
        try:
            nonce = bytes.fromhex(str(body["nonce"]).removeprefix("0x"))
            n, deadline = int(body["n"]), float(body["deadlineSeconds"])
        except (KeyError, ValueError, TypeError) as exc:
            raise ProtocolError(f"malformed challenge ({exc})") from exc
        if len(nonce) != 32 or not 1 <= n <= MAX_N or deadline <= 0:
            raise ProtocolError("challenge needs a 32-byte nonce, 1 <= n <= MAX_N, a deadline")
        return cls(nonce, n, deadline)
