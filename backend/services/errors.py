"""Typed failures of the service layer; routes map them to HTTP, tasks to retries."""

from __future__ import annotations


class ServiceError(Exception):
    """Base: carries a machine ``code`` and a human ``reason``."""

    code = "ServiceError"

    def __init__(self, reason: str, *, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        if code is not None:
            self.code = code


class ChainUnavailable(ServiceError):
    """The node did not answer (down, timed out, or the receipt is not there yet). Retry later."""

    code = "ChainUnavailable"


class DatabaseUnavailable(ServiceError):
    """The database did not answer (down, unreachable, connection lost). Nothing was
    committed by the failed transaction; retry later."""

    code = "DatabaseUnavailable"


class TransactionDropped(ChainUnavailable):
    """The node forgot a sent transaction (neither mined nor pending). Retry: the retry
    re-sends the recorded transaction (same hash), or re-batches if its nonce is used."""

    code = "TransactionDropped"


class WrongChain(ServiceError):
    """The node is on another chain than the manifest: refuse to act."""

    code = "WrongChain"


class TransactionReverted(ServiceError):
    """The transaction would revert or did revert; ``code`` is the decoded custom error name."""

    def __init__(
        self, reason: str, *, code: str, tx_hash: str | None = None, block_number: int | None = None
    ) -> None:
        super().__init__(reason, code=code)
        self.tx_hash = tx_hash
        self.block_number = block_number


class NonceLockTimeout(ServiceError):
    """Another relay held the sender's nonce lock for too long. Retry later."""

    code = "NonceLockTimeout"


class ActionNotFound(ServiceError):
    code = "ActionNotFound"


class IdempotencyConflict(ServiceError):
    """The idempotency key is already used by an action with different parameters."""

    code = "IdempotencyKeyReused"


class AuthFailed(ServiceError):
    """Sign-in or session rejected (401); ``code`` says which check failed."""

    code = "Unauthorized"


class Forbidden(ServiceError):
    """Signed in, but the session's address lacks the role the route needs (403)."""

    code = "Forbidden"


class MalformedRequest(ServiceError):
    """The request parsed as JSON but its content cannot be used (422)."""

    code = "MalformedRequest"
