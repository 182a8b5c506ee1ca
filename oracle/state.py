"""Crash-safe progress: what this oracle sent and what got confirmed, in SQLite.

Write-ahead: a signed ``attest`` transaction is stored (status ``sent``) BEFORE
it is broadcast. After a crash at any point (kill -9 included) the next start
finds it and, instead of building a new transaction, either reads its receipt
(it was mined while we were down), re-sends the very same bytes (it never left,
or the node dropped it), or retires it (another transmitter attested the epoch).
So an epoch is posted at most once by this oracle, and since the next epoch is
always ``lastAttestedEpoch() + 1`` on-chain, none is skipped: late epochs are
caught up in order.

Rows are keyed by the chain's identity (chain id, genesis hash, hub address): a
dev chain restarted from scratch is a different chain and starts clean.
SQLite in WAL mode with ``synchronous=FULL``: a committed row survives a crash
of the process and of the machine.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from oracle.chain import SignedAttestation

_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempts (
    chain TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    tx_hash TEXT NOT NULL,
    raw_tx BLOB NOT NULL,
    nonce INTEGER NOT NULL,
    root TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('sent', 'confirmed', 'reverted', 'retired')),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (chain, tx_hash)
);
CREATE INDEX IF NOT EXISTS attempts_open ON attempts (chain, status, epoch);
"""


class ProgressStore:
    def __init__(self, path: Path | str, chain: str) -> None:
        self.chain = chain
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def record_sent(self, signed: SignedAttestation, root: bytes) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, 'sent', ?, ?)",
                (
                    self.chain,
                    signed.epoch,
                    signed.tx_hash,
                    signed.raw,
                    signed.nonce,
                    "0x" + root.hex(),
                    now,
                    now,
                ),
            )

    def mark(self, tx_hash: str, status: str) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE attempts SET status = ?, updated_at = ? WHERE chain = ? AND tx_hash = ?",
                (status, time.time(), self.chain, tx_hash),
            )

    def in_flight(self) -> list[SignedAttestation]:
        """Transactions sent (or about to be) whose outcome is not known, oldest epoch first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT epoch, tx_hash, raw_tx, nonce FROM attempts"
                " WHERE chain = ? AND status = 'sent' ORDER BY epoch, created_at",
                (self.chain,),
            ).fetchall()
        return [SignedAttestation(e, h, bytes(r), n) for e, h, r, n in rows]

    def attempt_info(self, tx_hash: str) -> tuple[str, float]:
        """(root, sent-at unix time) recorded with an attempt."""
        with self._lock:
            row = self._db.execute(
                "SELECT root, created_at FROM attempts WHERE chain = ? AND tx_hash = ?",
                (self.chain, tx_hash),
            ).fetchone()
        if row is None:
            raise KeyError(tx_hash)
        return str(row[0]), float(row[1])

    def last_confirmed_epoch(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(epoch) FROM attempts WHERE chain = ? AND status = 'confirmed'",
                (self.chain,),
            ).fetchone()
        return int(row[0] or 0)

    def statuses(self, epoch: int) -> list[str]:
        with self._lock:
            rows = self._db.execute(
                "SELECT status FROM attempts WHERE chain = ? AND epoch = ? ORDER BY created_at",
                (self.chain, epoch),
            ).fetchall()
        return [r[0] for r in rows]
