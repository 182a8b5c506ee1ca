"""A browser wallet for the dashboard tests: an EIP-1193 provider in the page, announced
as EIP-6963 asks, whose every request goes to this Python object, which answers as a wallet
extension does, with a real key (eth-account signs the typed data the page sends).

So the signature the page asks for is made exactly as a wallet makes it; what makes a
wallet refuse is kept too: typed data without its EIP712Domain type (MetaMask would hash
the domain as an empty struct and sign something the contract cannot verify), a domain
for another chain than the wallet's, a signer that is not the connected account. The
test plays the user: ``reject_next`` declines the next request of a method (EIP-1193's
4001), ``chain_id`` is the network the wallet starts on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

# The page side (a provider forwarding to window.__walletRequest, announced with EIP-6963).
PAGE_SCRIPT = Path(__file__).with_name("wallet.js")
NAME = "Test wallet"
USER_REJECTED = {"code": 4001, "message": "User rejected the request."}
DOMAIN_FIELDS = ["name", "version", "chainId", "verifyingContract", "salt"]


@dataclass
class PythonWallet:
    account: LocalAccount
    chain_id: int
    connected: bool = False
    reject_next: set[str] = field(default_factory=set)
    signed: list[dict[str, Any]] = field(default_factory=list)  # typed data, in order
    asked: list[str] = field(default_factory=list)  # every method the page called

    def install(self, page: Any) -> None:
        page.expose_function("__walletRequest", self.request)
        page.add_init_script(path=str(PAGE_SCRIPT))

    def request(self, method: str, params: list[Any]) -> dict[str, Any]:
        self.asked.append(method)
        if method in self.reject_next:
            self.reject_next.discard(method)
            return {"error": USER_REJECTED}
        try:
            return self._answer(method, params)
        except WalletRefusal as exc:
            return {"error": {"code": -32602, "message": str(exc)}}

    def _answer(self, method: str, params: list[Any]) -> dict[str, Any]:
        # Lowercase, as MetaMask answers: the page must not take case for identity.
        if method == "eth_requestAccounts":
            self.connected = True
            return {"result": [self.account.address.lower()]}
        if method == "eth_accounts":
            return {"result": [self.account.address.lower()] if self.connected else []}
        if method == "eth_chainId":
            return {"result": hex(self.chain_id)}
        if method == "wallet_switchEthereumChain":
            self.chain_id = int(params[0]["chainId"], 16)
            return {"result": None, "emit": [["chainChanged", hex(self.chain_id)]]}
        if method == "eth_signTypedData_v4":
            return {"result": self._sign(*params)}
        raise WalletRefusal(f"unsupported method {method}")

    def _sign(self, address: str, text: str) -> str:
        if not self.connected or address.lower() != self.account.address.lower():
            raise WalletRefusal(f"{address} is not the connected account")
        typed = json.loads(text)
        domain = typed["domain"]
        declared = [f["name"] for f in typed["types"].get("EIP712Domain", [])]
        if declared != [k for k in DOMAIN_FIELDS if k in domain]:
            raise WalletRefusal(f"EIP712Domain {declared} does not describe the domain {domain}")
        if int(domain.get("chainId", self.chain_id)) != self.chain_id:
            raise WalletRefusal(
                f"Provided chainId {domain['chainId']} must match the active chainId "
                f"{self.chain_id}"
            )
        signed = Account.sign_typed_data(self.account.key, full_message=typed)
        self.signed.append(typed)
        return "0x" + bytes(signed.signature).hex()


class WalletRefusal(Exception):
    """What a wallet answers with an error instead of signing."""
