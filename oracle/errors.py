"""Typed failures of the oracle daemon (never a bare ``Exception``)."""

from __future__ import annotations

from gpucap.revert import DecodedError


class OracleError(RuntimeError):
    """Base of every failure the daemon knows how to report."""


class OracleConfigError(OracleError):
    """Settings that cannot work (missing keys outside development, dev keys in production)."""


class QuorumUnavailable(OracleError):
    """The keys this daemon holds cannot reach the hub's quorum."""

    def __init__(self, members: int, quorum: int) -> None:
        super().__init__(
            f"this daemon holds {members} current oracle key(s); the hub needs {quorum} signatures"
        )
        self.members = members
        self.quorum = quorum


class AttestationRejected(OracleError):
    """The hub refused the report before it was sent (simulation reverted)."""

    def __init__(self, epoch: int, reason: DecodedError | str) -> None:
        super().__init__(f"epoch {epoch} rejected by OracleHub: {reason}")
        self.epoch = epoch
        self.reason = reason

    @property
    def error_name(self) -> str | None:
        return self.reason.name if isinstance(self.reason, DecodedError) else None


class AttestationReverted(OracleError):
    """The transaction was mined but reverted (e.g. another oracle posted first)."""

    def __init__(self, epoch: int, tx_hash: str) -> None:
        super().__init__(f"attest for epoch {epoch} reverted on-chain in tx {tx_hash}")
        self.epoch = epoch
        self.tx_hash = tx_hash


class TransactionDropped(OracleError):
    """A persisted attest transaction the node no longer accepts nor knows."""

    def __init__(self, epoch: int, tx_hash: str, reason: str) -> None:
        super().__init__(f"attest for epoch {epoch} (tx {tx_hash}) was dropped: {reason}")
        self.epoch = epoch
        self.tx_hash = tx_hash


class ChainReset(OracleError):
    """The chain is not the one this oracle's state was recorded on any more (a new
    genesis block) or the deployment is gone from it: nothing recorded can be recovered
    there, so the daemon stops (a reorg, by contrast, is recovered from)."""


class ChainMovedBack(OracleError):
    """The block a step was reading at left the chain while it was read (a reorg under
    way: the head went below it, or another block took its height): the step is retried,
    and the next one sees the surviving chain."""

    def __init__(self, block: int, head: int) -> None:
        super().__init__(
            f"block {block} left the chain while it was read (head now {head}): a reorg is"
            " under way; retrying"
        )
        self.block = block
        self.head = head
