"""GPU ids as NodeRegistry binds them: keccak256 of the GPU's UUID string.

The UUID is taken exactly as NVML reports it (``nvmlDeviceGetUUID``: ``GPU-`` and a
lowercase UUID), which is also what a node agent signs in its samples; only surrounding
whitespace is dropped. The registry stores the hash (32 bytes for any UUID form), so
``bindGpus`` takes these ids and ``gpuNode(id)`` answers which node a GPU belongs to.
"""

from __future__ import annotations

from eth_utils import keccak


def gpu_id(uuid: str) -> bytes:
    """The registry's id of the GPU with this UUID."""
    text = uuid.strip()
    if not text:
        raise ValueError("an empty GPU UUID has no id")
    return keccak(text=text)
