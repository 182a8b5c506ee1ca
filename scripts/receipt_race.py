"""brownie's dropped-transaction check vs anvil's receipt race (foundry-rs/foundry#10944).

anvil can report a sender's nonce as advanced (the block is mined) a moment before
``eth_getTransactionReceipt`` returns the transaction's receipt. brownie's confirmation
loop reads the nonce first and the receipt second, and takes "nonce moved, no receipt"
for a dropped transaction: a mined transaction then fails with "Tx dropped without
known replacement". On a loaded machine (the test suite's two workers on two cores,
the demo's deploy beside its other processes) that window is hit now and then.

``install()`` wraps brownie's account-level wait: when brownie gives a transaction up
as dropped with no replacement, the node is asked again with web3's own receipt wait
(``RECEIPT_GRACE_SECONDS``). If the transaction was mined after all, brownie's
confirmation runs again on the same receipt object (status, events, return value,
revert handling stay brownie's) and the call returns it; a transaction that really
was dropped still raises brownie's error.
"""

from __future__ import annotations

import functools
from typing import Any

from brownie import web3
from brownie.exceptions import TransactionError
from brownie.network.account import _PrivateKeyAccount
from brownie.network.transaction import Status
from web3.exceptions import TimeExhausted

RECEIPT_GRACE_SECONDS = 5.0
_MARK = "_gpucap_receipt_race"


def install() -> None:
    """Idempotent: wraps ``_PrivateKeyAccount._await_confirmation`` once per process."""
    original = _PrivateKeyAccount._await_confirmation
    if getattr(original, _MARK, False):
        return

    @functools.wraps(original)
    def _await_confirmation(self: Any, receipt: Any, required_confs: int, *args: Any) -> Any:
        try:
            return original(self, receipt, required_confs, *args)
        except TransactionError:
            if receipt.status != Status.Dropped or not _mined(receipt.txid):
                raise
            receipt.status = Status.Pending
            receipt._confirmed.clear()
            receipt._await_confirmation(None, required_confs)
            if receipt.status == Status.Dropped:  # the receipt went missing again
                raise
        return receipt

    setattr(_await_confirmation, _MARK, True)
    _PrivateKeyAccount._await_confirmation = _await_confirmation


def _mined(txid: str) -> bool:
    try:
        web3.eth.wait_for_transaction_receipt(
            txid, timeout=RECEIPT_GRACE_SECONDS, poll_latency=0.05
        )
    except TimeExhausted:
        return False
    return True
