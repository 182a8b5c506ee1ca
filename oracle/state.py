"""Crash-safe progress: what this oracle sent and what got confirmed, in SQLite.

Write-ahead: a signed ``attest`` transaction is stored (status ``sent``) BEFORE
it is broadcast. After a crash at any point (kill -9 included) the next start
finds it and, instead of building a new transaction, either reads its receipt
(it was mined while we were down), re-sends the very same bytes (it never left,
or the node dropped it), or retires it (another transmitter attested the epoch).
So an epoch is posted at most once by this oracle, and since the next epoch is
always ``lastAttestedEpoch() + 1`` on-chain, none is skipped: late epochs are
caught up in order.

Every attestation this oracle saw land (its own or another transmitter's) is kept
too, with the block that holds it and the quorum-signed ``attest`` call itself: a
reorg that takes that block away is noticed by its hash, and the very same call
(same report, same signatures: still valid for that epoch on the surviving chain)
is sent again with a fresh nonce (oracle/reporter.py). A removed attestation stays
``removed`` here until it is back on-chain, so a crash does not forget it.

Rows are keyed by the chain's identity (chain id, genesis hash, hub address): a
dev chain restarted from scratch is a different chain and starts clean.
SQLite in WAL mode with ``synchronous=FULL``: a committed row survives a crash
of the process and of the machine.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
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
    status TEXT NOT NULL CHECK (
        status IN ('sent', 'confirmed', 'reverted', 'retired', 'orphaned')
    ),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (chain, tx_hash)
);
CREATE INDEX IF NOT EXISTS attempts_open ON attempts (chain, status, epoch);
CREATE TABLE IF NOT EXISTS attestations (
    chain TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    root TEXT NOT NULL,
    call_data BLOB NOT NULL,
    tx_hash TEXT NOT NULL,
    block_number INTEGER NOT NULL,
    block_hash TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('on_chain', 'removed')),
    updated_at REAL NOT NULL,
    PRIMARY KEY (chain, epoch)
);
"""

# 'orphaned' (a confirmed attempt whose block a reorg took away) came after the first
# state files: their attempts table is rebuilt with the wider CHECK, rows kept.
_UPGRADE_ATTEMPTS = """
ALTER TABLE attempts RENAME TO attempts_before_orphaned;
DROP INDEX IF EXISTS attempts_open;
{create}
INSERT INTO attempts SELECT * FROM attempts_before_orphaned;
DROP TABLE attempts_before_orphaned;
"""


@dataclass(frozen=True)
class Attestation:
    """An epoch's attestation as this oracle last saw it on-chain."""

    epoch: int
    root: bytes
    call_data: bytes  # ``attest(report, signatures)``: any transmitter may send it again
    tx_hash: str
    block_number: int
    block_hash: str
    status: str  # on_chain | removed"""


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
            self._upgrade()
            self._db.executescript(_SCHEMA)

    def _upgrade(self) -> None:
        row = self._db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'attempts'"
        ).fetchone()
        if row is not None and "orphaned" not in row[0]:
            create = _SCHEMA.split(";")[0] + ";"
            self._db.executescript("BEGIN;" + _UPGRADE_ATTEMPTS.format(create=create) + "COMMIT;")

    def close(self) -> None:
        self._db.close()

    def record_sent(self, signed: SignedAttestation, root: bytes) -> None:
        now = time.time()
        with self._lock:
            self._db.execute(
                # The very same transaction may be sent again (a reorg removed it and
                # the rebuilt one came out byte for byte equal): it is in flight anew.
                "INSERT INTO attempts VALUES (?, ?, ?, ?, ?, ?, 'sent', ?, ?)"
                " ON CONFLICT (chain, tx_hash) DO UPDATE SET status = 'sent',"
                " created_at = excluded.created_at, updated_at = excluded.updated_at",
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

    def orphan_confirmed(self, epoch: int, keep: str | None = None) -> None:
        """Our confirmed attempts for ``epoch`` whose block left the chain (all but
        ``keep``, the transaction the chain holds now): ``orphaned``."""
        with self._lock:
            self._db.execute(
                "UPDATE attempts SET status = 'orphaned', updated_at = ?"
                " WHERE chain = ? AND epoch = ? AND status = 'confirmed' AND tx_hash IS NOT ?",
                (time.time(), self.chain, epoch, keep),
            )

    # -- attestations seen on-chain ------------------------------------------------

    def record_attestation(self, attestation: Attestation) -> None:
        """The epoch's attestation is on-chain in this block (replaces what was known)."""
        a = attestation
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO attestations VALUES (?, ?, ?, ?, ?, ?, ?, 'on_chain', ?)",
                (
                    self.chain,
                    a.epoch,
                    "0x" + a.root.hex(),
                    a.call_data,
                    a.tx_hash,
                    a.block_number,
                    a.block_hash,
                    time.time(),
                ),
            )

    def mark_removed(self, epoch: int) -> None:
        with self._lock:
            self._db.execute(
                "UPDATE attestations SET status = 'removed', updated_at = ?"
                " WHERE chain = ? AND epoch = ?",
                (time.time(), self.chain, epoch),
            )

    def forget_attestation(self, epoch: int) -> None:
        """Its signed call can no longer be sent (the hub's set or config moved on)."""
        with self._lock:
            self._db.execute(
                "DELETE FROM attestations WHERE chain = ? AND epoch = ?", (self.chain, epoch)
            )

    def attestations_to_check(self, from_block: int, above_epoch: int) -> list[Attestation]:
        """On-chain attestations a reorg could still take away: mined at or after
        ``from_block``, or of an epoch above ``above_epoch`` (the hub's last attested:
        a reorg of any depth that took the newest ones lowers it)."""
        return self._attestations(
            "status = 'on_chain' AND (block_number >= ? OR epoch > ?)", (from_block, above_epoch)
        )

    def removed_attestations(self) -> list[Attestation]:
        """Attestations a reorg took away and not seen back on-chain, oldest epoch first."""
        return self._attestations("status = 'removed'", ())

    def attestation(self, epoch: int) -> Attestation | None:
        found = self._attestations("epoch = ?", (epoch,))
        return found[0] if found else None

    def last_recorded_epoch(self) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT MAX(epoch) FROM attestations WHERE chain = ?", (self.chain,)
            ).fetchone()
        return int(row[0] or 0)

    def _attestations(self, where: str, args: tuple) -> list[Attestation]:
        with self._lock:
            rows = self._db.execute(
                "SELECT epoch, root, call_data, tx_hash, block_number, block_hash, status"
                f" FROM attestations WHERE chain = ? AND {where} ORDER BY epoch",
                (self.chain, *args),
            ).fetchall()
        return [
            Attestation(e, bytes.fromhex(r[2:]), bytes(c), h, n, b, s)
            for e, r, c, h, n, b, s in rows
        ]
