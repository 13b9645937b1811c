"""The SQLite state file: what must survive a restart or a crash.

Calls block; the daemon runs them in a worker thread. One connection is shared under a
lock, and WAL mode lets `bma-monitor probe` use the file while the daemon runs.
"""

from __future__ import annotations

import contextlib
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from monitor.probes.result import ProbeResult, Protocol, QuotaReading
from monitor.state.codec import (
    quota_from_json,
    quota_to_json,
    result_from_json,
    result_to_json,
)
from monitor.state.opening import StateError, StateUnreadable, connect, connect_readonly

T = TypeVar("T")

__all__ = [
    "MailboxRecord",
    "ProbeRecord",
    "StateError",
    "StateStore",
    "StateUnreadable",
    "WriteHealth",
]


@dataclass(frozen=True, slots=True)
class WriteHealth:
    """Whether the last write reached the file, and how many failed so far."""

    writable: bool
    failures: int
    last_error: str


@dataclass(frozen=True, slots=True)
class ProbeRecord:
    """The last known outcome of one protocol's probes of one mailbox."""

    address: str
    protocol: Protocol
    result: ProbeResult | None
    last_success_at: float | None


@dataclass(frozen=True, slots=True)
class MailboxRecord:
    """The last known state of one mailbox: its usage, and each protocol's record."""

    address: str
    quota: QuotaReading | None
    probes: dict[Protocol, ProbeRecord]


class StateStore:
    """Typed access to the state file."""

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self._lock = threading.Lock()
        self._data_version: int | None = None
        self._write_failures = 0
        self._last_write_error = ""
        self.path = path

    @classmethod
    def open(cls, path: Path, *, reset: bool = False) -> StateStore:
        """Open (creating and migrating as needed) the state file at `path`.

        An existing file that cannot be used raises StateUnreadable, unless `reset` moves
        it aside first.
        """
        return cls(connect(path, reset=reset), path)

    @classmethod
    def open_readonly(cls, path: Path) -> StateStore:
        """Open an existing state file of the current schema for reading only (reports).

        A missing file, one of another schema version, or a damaged one raises StateError;
        any write through the store raises StateError too (SQLite refuses it).
        """
        return cls(connect_readonly(path), path)

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """The connection, for reads; SQLite errors become StateError."""
        try:
            with self._lock:
                yield self._db
        except sqlite3.Error as exc:
            raise StateError(f"cannot read state file {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def writing(self) -> Iterator[sqlite3.Connection]:
        """The connection inside one write transaction, committed at the end of the block."""
        try:
            with self._lock, self._db:
                self._db.execute("BEGIN IMMEDIATE")
                yield self._db
        except sqlite3.Error as exc:
            self._write_failures += 1
            self._last_write_error = str(exc)
            raise StateError(f"cannot write state file {self.path}: {exc}") from exc
        self._last_write_error = ""

    def write_health(self) -> WriteHealth:
        """How writing has gone (safe to call from any thread)."""
        error = self._last_write_error
        return WriteHealth(not error, self._write_failures, error)

    def changed_elsewhere(self) -> bool:
        """Whether another connection (another process) committed since the last call."""
        with self.reading() as db:
            version = int(db.execute("PRAGMA data_version").fetchone()[0])
        changed = self._data_version is not None and version != self._data_version
        self._data_version = version
        return changed

    def salt(self) -> bytes:
        """This installation's random salt for credential fingerprints."""
        with self.writing() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'fingerprint_salt'").fetchone()
            if row is not None:
                return bytes(row[0])
            salt = secrets.token_bytes(16)
            db.execute("INSERT INTO meta (key, value) VALUES ('fingerprint_salt', ?)", (salt,))
            return salt

    def load_mailboxes(self) -> dict[str, MailboxRecord]:
        """Every stored mailbox record, by address."""
        with self.reading() as db:
            mailboxes = db.execute("SELECT address, quota FROM mailbox").fetchall()
            probes = db.execute(
                "SELECT address, protocol, last_result, last_success_at FROM probe"
            ).fetchall()
        records = {
            address: MailboxRecord(address, _decoded(quota_from_json, quota), {})
            for address, quota in mailboxes
        }
        known = set(Protocol)
        for address, protocol, result, success in probes:
            if protocol not in known:
                continue  # a protocol a newer version probed: not ours to show
            record = records.setdefault(address, MailboxRecord(address, None, {}))
            record.probes[Protocol(protocol)] = ProbeRecord(
                address, Protocol(protocol), _decoded(result_from_json, result), success
            )
        return records

    def save_mailboxes(self, records: Iterable[MailboxRecord]) -> None:
        """Insert or replace these mailbox records, and their probe records, in one transaction."""
        mailboxes: list[tuple[object, ...]] = []
        probes: list[tuple[object, ...]] = []
        for record in records:
            quota = quota_to_json(record.quota) if record.quota else None
            mailboxes.append((record.address, quota))
            probes += [
                (
                    p.address,
                    str(p.protocol),
                    result_to_json(p.result) if p.result else None,
                    p.last_success_at,
                )
                for p in record.probes.values()
            ]
        if not mailboxes:
            return
        with self.writing() as db:
            db.executemany(
                "INSERT INTO mailbox (address, quota) VALUES (?, ?) "
                "ON CONFLICT(address) DO UPDATE SET quota = excluded.quota",
                mailboxes,
            )
            db.executemany(
                "INSERT INTO probe (address, protocol, last_result, last_success_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT(address, protocol) DO UPDATE SET "
                "last_result = excluded.last_result, last_success_at = excluded.last_success_at",
                probes,
            )

    def write_many(self, sql: str, rows: Sequence[tuple[object, ...]]) -> None:
        """Run one statement for every row, in one transaction."""
        with self.writing() as db:
            db.executemany(sql, rows)


def _decoded(decode: Callable[[str], T], text: str | None) -> T | None:
    """A stored value, or None when it is absent or was written by another version."""
    if not text:
        return None
    try:
        return decode(text)
    except (ValueError, KeyError, TypeError):
        return None
