"""User actions as a wallet makes them, shared by the CLI and the demo's activity process.

Relayable calls (the API's ``/api/v1/forward`` allow-list) are signed here as
ERC-2771 forward requests and posted to the API, so they get the API's
validation and error codes. RevenuePool calls are not relayable (pools are not
in the deployment manifest); they are sent by the wallet itself, after the same
kind of check the API makes: the call is simulated first and a revert is
reported with the contract's own custom error.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import ContractLogicError

from gpucap.deployment import REPO_ROOT, Deployment, ManifestError
from gpucap.revert import decode_revert, revert_data
from gpucap.signing import sign_permit, sign_request

DEFAULT_DEADLINE_SECONDS = 600


class ApiRejected(Exception):
    """The API answered 4xx/5xx: ``body`` holds its machine-readable ``code`` and ``reason``."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"{status} {body.get('code')}: {body.get('reason')}")
        self.status, self.body = status, body


class TxRejected(Exception):
    """A direct transaction would revert (``error``: the decoded custom error) or did."""

    def __init__(self, message: str, error: str | None = None) -> None:
        super().__init__(message)
        self.error = error


class Api:
    """The gpucap API over HTTP; every non-2xx answer raises ApiRejected."""

    def __init__(self, base_url: str, timeout: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout)

    def get(self, path: str, **params: Any) -> Any:
        query = {k: v for k, v in params.items() if v is not None}
        return _answer(self.http.get(path, params=query))

    def post(self, path: str, body: Any = None) -> Any:
        return _answer(self.http.post(path, json=body))

    def follow(self, action_id: str, timeout: float = 60.0) -> dict[str, Any]:
        """Poll an action until confirmed or failed (or ``timeout``: returned as it is)."""
        deadline = time.monotonic() + timeout
        while True:
            action: dict[str, Any] = self.get(f"/actions/{action_id}")
            if action["status"] in ("confirmed", "failed") or time.monotonic() > deadline:
                return action
            time.sleep(0.3)


def _answer(resp: httpx.Response) -> Any:
    try:
        body = resp.json()
    except ValueError:
        body = {"code": "HTTPError", "reason": resp.text}
    if resp.status_code >= 400:
        raise ApiRejected(resp.status_code, body if isinstance(body, dict) else {"reason": body})
    return body


@dataclass(frozen=True)
class Signing:
    """What a wallet signs a forward request with: the forwarder nonce, and the chain's
    time its deadline counts from (block time, which the forwarder checks; a wall clock
    can be far from it, as on a test chain moved ahead)."""

    nonce: int
    chain_time: int

    @property
    def deadline(self) -> int:
        return self.chain_time + DEFAULT_DEADLINE_SECONDS


def signing_of(api: Api, address: str) -> Signing:
    nonces = api.get(f"/api/v1/accounts/{address}/nonces")
    return Signing(nonce=nonces["forwarder"], chain_time=nonces["chain_time"])


def forward(
    api: Api,
    deployment: Deployment,
    signer: LocalAccount,
    contract: str,
    data: str,
    signing: Signing | None = None,
) -> dict[str, Any]:
    """Sign a forward request calling ``contract`` with ``data`` and post it; returns the
    API's acceptance (``action_id``, ``contract``, ``function``). ``signing``: the nonce
    and chain time to sign with, read from the API when not given."""
    signing = signing or signing_of(api, signer.address)
    nonce = signing.nonce
    target = deployment.contracts[contract].address
    forwarder = deployment.contracts["GpucapForwarder"].address
    req = sign_request(
        signer, forwarder, deployment.chain_id, target, data, nonce, signing.deadline
    )
    accepted: dict[str, Any] = api.post("/api/v1/forward", req.api_body())
    return accepted


def buy_calldata(
    api: Api, deployment: Deployment, signer: LocalAccount, offer_id: int, amount: int
) -> tuple[str, Signing]:
    """``buyWithPermit`` calldata (the permit for exactly the price, signed here) and what
    to sign the forward request with."""
    offer = api.get(f"/api/v1/offers/{offer_id}")
    nonces = api.get(f"/api/v1/accounts/{signer.address}/nonces")
    signing = Signing(nonce=nonces["forwarder"], chain_time=nonces["chain_time"])
    deadline = signing.deadline
    capacity = deployment.contract(Web3(), "CapacityToken")
    v, r, s = sign_permit(
        signer,
        token_name=nonces["stablecoin_name"],
        token=nonces["stablecoin"],
        spender=capacity.address,
        value=amount * offer["price_per_gpu_hour"],
        nonce=nonces["stablecoin_permit"],
        deadline=deadline,
        chain_id=nonces["chain_id"],
    )
    data = capacity.encode_abi("buyWithPermit", args=[offer_id, amount, deadline, v, r, s])
    return data, signing


# ---------------------------------------------------------------------------
# RevenuePool: direct transactions, simulated first
# ---------------------------------------------------------------------------


def pool_abi() -> list[dict[str, Any]]:
    path = REPO_ROOT / "build" / "contracts" / "RevenuePool.json"
    try:
        abi: list[dict[str, Any]] = json.loads(path.read_text())["abi"]
    except (OSError, KeyError, ValueError) as exc:
        raise ManifestError(f"cannot read the RevenuePool ABI from {path}: {exc}") from exc
    return abi


@dataclass(frozen=True)
class Sent:
    tx_hash: str
    block_number: int
    gas_used: int


def pool(w3: Web3, address: str) -> Any:
    """A web3 RevenuePool at ``address``."""
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=pool_abi())


def send_call(w3: Web3, signer: LocalAccount, call: Any, timeout: float = 60) -> Sent:
    """Simulate a web3 contract call from ``signer``, then sign, send and wait for it.
    Raises TxRejected with the decoded custom error if it would revert or did."""
    name = call.fn_name
    try:
        gas = call.estimate_gas({"from": signer.address})
    except ContractLogicError as exc:
        decoded = decode_revert(call.contract_abi, revert_data(exc.data))
        reason = str(decoded) if decoded is not None else str(exc)
        raise TxRejected(f"{name} would revert: {reason}", reason) from exc
    tx = call.build_transaction(
        {
            "from": signer.address,
            "nonce": w3.eth.get_transaction_count(signer.address, "pending"),
            "gas": gas * 12 // 10,  # state may move between estimate and inclusion
            "chainId": w3.eth.chain_id,
        }
    )
    tx_hash = w3.eth.send_raw_transaction(signer.sign_transaction(tx).raw_transaction)
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=timeout)
    if receipt["status"] != 1:
        raise TxRejected(f"{name} reverted on-chain (tx {tx_hash.to_0x_hex()})")
    return Sent(tx_hash.to_0x_hex(), receipt["blockNumber"], receipt["gasUsed"])


def timelock_execute(timelock: Any, calls: list[dict[str, Any]]) -> Any:
    """The GpucapTimelock call that carries out one announced operation, from its calls as
    ``GET /api/v1/governance/changes`` lists them: ``execute`` for one call, ``executeBatch``
    (in batch order) for several. Anyone may send it once the operation is due."""
    ordered = sorted(calls, key=lambda c: c["call_index"])
    predecessor = bytes.fromhex(ordered[0]["predecessor"][2:])
    salt = bytes.fromhex(ordered[0]["salt"][2:])
    targets = [Web3.to_checksum_address(c["target"]) for c in ordered]
    values = [int(c["value"]) for c in ordered]
    payloads = [c["data"] for c in ordered]
    fn = timelock.functions
    if len(ordered) == 1:
        return fn.execute(targets[0], values[0], payloads[0], predecessor, salt)
    return fn.executeBatch(targets, values, payloads, predecessor, salt)
