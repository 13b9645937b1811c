"""The SQLite state file: what must survive a restart or a crash.

Calls block; the daemon runs them in a worker thread. One connection is shared under a
lock, and WAL mode lets `bma-monitor probe` use the file while the daemon runs.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from monitor.probes.result import ProbeResult, Protocol, QuotaReading, Reason
from monitor.state.codec import (
    quota_from_json,
    quota_to_json,
    result_from_json,
    result_to_json,
)
from monitor.state.migrations import MIGRATIONS

T = TypeVar("T")


class StateError(Exception):
    """The state file cannot be opened or written."""


@dataclass(frozen=True, slots=True)
class Lockout:
    """A mailbox whose credential was refused for good: no attempt until it changes."""

    address: str
    protocol: Protocol
    reason: Reason
    since: float
    fingerprint: str  # scrypt of the refused secret; tells a new secret from the old one
    detail: str = ""


@dataclass(frozen=True, slots=True)
class MailboxRecord:
    """The last known state of one mailbox."""

    address: str
    result: ProbeResult | None
    last_success_at: float | None
    quota: QuotaReading | None


class StateStore:
    """Typed access to the state file."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self._lock = threading.Lock()
        self.path = path

    @classmethod
    def open(cls, path: Path) -> StateStore:
        """Open (creating and migrating as needed) the state file at `path`."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                path, timeout=10.0, check_same_thread=False, isolation_level=None
            )
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute("PRAGMA busy_timeout=10000")
            migrate(connection)
        except (OSError, sqlite3.Error) as exc:
            raise StateError(f"cannot open state file {path}: {exc}") from exc
        if path.exists():
            os.chmod(path, 0o600)  # it holds password fingerprints
        return cls(connection, path)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    def salt(self) -> bytes:
        """This installation's random salt for credential fingerprints."""
        with self._lock, self._db:
            row = self._db.execute(
                "SELECT value FROM meta WHERE key = 'fingerprint_salt'"
            ).fetchone()
            if row is not None:
                return bytes(row[0])
            salt = secrets.token_bytes(16)
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES ('fingerprint_salt', ?)", (salt,)
            )
            return salt

    def load_mailboxes(self) -> dict[str, MailboxRecord]:
        """Every stored mailbox record, by address."""
        with self._lock:
            rows = self._db.execute(
                "SELECT address, last_result, last_success_at, quota FROM mailbox"
            ).fetchall()
        return {
            address: MailboxRecord(
                address,
                _decoded(result_from_json, result),
                success,
                _decoded(quota_from_json, quota),
            )
            for address, result, success, quota in rows
        }

    def save_mailboxes(self, records: Iterable[MailboxRecord]) -> None:
        """Insert or replace these mailbox records in one transaction."""
        rows = [
            (
                r.address,
                result_to_json(r.result) if r.result else None,
                r.last_success_at,
                quota_to_json(r.quota) if r.quota else None,
            )
            for r in records
        ]
        if not rows:
            return
        self._write(
            "INSERT INTO mailbox (address, last_result, last_success_at, quota) "
            "VALUES (?, ?, ?, ?) "
            "ON CONFLICT(address) DO UPDATE SET last_result = excluded.last_result, "
            "last_success_at = excluded.last_success_at, quota = excluded.quota",
            rows,
        )

    def load_lockouts(self) -> dict[tuple[str, Protocol], Lockout]:
        """Every lock-out in force, by (address, protocol)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT address, protocol, reason, since, fingerprint, detail FROM lockout"
            ).fetchall()
        out = {}
        for address, protocol, reason, since, fingerprint, detail in rows:
            lockout = Lockout(
                address, Protocol(protocol), Reason(reason), since, fingerprint, detail
            )
            out[(address, lockout.protocol)] = lockout
        return out

    def save_lockout(self, lockout: Lockout) -> None:
        """Record a lock-out durably before any further attempt can be made."""
        self._write(
            "INSERT OR REPLACE INTO lockout "
            "(address, protocol, reason, since, fingerprint, detail) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            [
                (
                    lockout.address,
                    str(lockout.protocol),
                    str(lockout.reason),
                    lockout.since,
                    lockout.fingerprint,
                    lockout.detail,
                )
            ],
        )

    def clear_lockout(self, address: str, protocol: Protocol) -> None:
        """Forget a lock-out: the credential changed or was accepted."""
        self._write(
            "DELETE FROM lockout WHERE address = ? AND protocol = ?", [(address, str(protocol))]
        )

    def _write(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        try:
            with self._lock, self._db:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise StateError(f"cannot write state file {self.path}: {exc}") from exc


def _decoded(decode: Callable[[str], T], text: str | None) -> T | None:
    """A stored value, or None when it is absent or was written by another version."""
    if not text:
        return None
    try:
        return decode(text)
    except (ValueError, KeyError, TypeError):
        return None


def migrate(connection: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the version reached."""
    version = int(connection.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise StateError(
            f"state file has schema version {version}, newer than this bma-monitor "
            f"understands ({len(MIGRATIONS)}); refusing to touch it"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in script:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)
