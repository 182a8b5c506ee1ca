"""Read a deployment manifest (written by scripts/deploy.py) into web3 contracts."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any

from web3 import Web3
from web3.contract import Contract

REPO_ROOT = Path(__file__).resolve().parent.parent


class ManifestError(RuntimeError):
    """The manifest is missing, malformed, or names an artifact that is not there."""


# One reader at a time: a build artifact is megabytes of JSON (AST, source maps), and the
# first burst of requests after startup would otherwise parse it once per thread.
_abi_lock = threading.Lock()


def read_abi(path: Path) -> list[dict[str, Any]]:
    """The ``abi`` of a build artifact, parsed once per process for each version of the
    file (its size and modification time): every user of an ABI shares one parse."""
    stat = path.stat()
    with _abi_lock:
        return _parse_abi(path, stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=32)
def _parse_abi(path: Path, _mtime_ns: int, _size: int) -> list[dict[str, Any]]:
    abi: list[dict[str, Any]] = json.loads(path.read_text())["abi"]
    return abi


@dataclass(frozen=True)
class ContractRef:
    name: str
    address: str
    abi_path: Path

    @cached_property
    def abi(self) -> list[dict[str, Any]]:
        try:
            return read_abi(self.abi_path)
        except (OSError, KeyError, json.JSONDecodeError) as exc:
            raise ManifestError(
                f"cannot read ABI of {self.name} from {self.abi_path}: {exc}"
            ) from exc


@dataclass(frozen=True)
class Deployment:
    """What scripts/deploy.py deployed: chain id, first block, contracts."""

    chain_id: int
    deployed_at_block: int
    contracts: dict[str, ContractRef]
    gpu_classes: dict[str, int]
    path: Path

    @classmethod
    def load(cls, path: str | Path) -> Deployment:
        path = Path(path)
        try:
            raw = json.loads(path.read_text())
            refs = {
                name: ContractRef(
                    name=name,
                    address=Web3.to_checksum_address(entry["address"]),
                    abi_path=(REPO_ROOT / entry["abi"]).resolve(),
                )
                for name, entry in raw["contracts"].items()
            }
            return cls(
                chain_id=int(raw["chain_id"]),
                deployed_at_block=int(raw["deployed_at_block"]),
                contracts=refs,
                gpu_classes={k: int(v) for k, v in raw.get("gpu_classes", {}).items()},
                path=path,
            )
        except FileNotFoundError as exc:
            raise ManifestError(f"no deployment manifest at {path}: run the deploy first") from exc
        except (KeyError, ValueError, TypeError) as exc:
            raise ManifestError(f"malformed deployment manifest {path}: {exc}") from exc

    def contract(self, w3: Web3, name: str) -> Contract:
        """A web3 contract for ``name``; raises ManifestError if the manifest lacks it."""
        ref = self.contracts.get(name)
        if ref is None:
            raise ManifestError(f"{name} is not in the deployment manifest {self.path}")
        return w3.eth.contract(address=Web3.to_checksum_address(ref.address), abi=ref.abi)

    def check_chain(self, w3: Web3) -> None:
        """Refuse to act on a chain other than the one deployed to."""
        actual = w3.eth.chain_id
        if actual != self.chain_id:
            raise ManifestError(
                f"manifest {self.path} is for chain {self.chain_id}, node is on chain {actual}"
            )
