"""The login guard's tables: lock-outs and attempts whose outcome is not known yet.

Both are keyed by credential, (mailbox, secret), not by protocol: IMAP and POP3 send the
same mailbox password, so a refusal over one holds the other back too. Both are shared by
every process using the state file (the daemon and `bma-monitor probe`): an attempt is
reserved in one write transaction that first reads both tables, so two processes can never
both send a credential that one of them saw refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from monitor.credentials import SecretKind
from monitor.probes.result import Protocol, Reason
from monitor.state.store import StateStore

Key = tuple[str, SecretKind]  # (address, secret): one account's credential


@dataclass(frozen=True, slots=True)
class Lockout:
    """A mailbox whose credential was refused for good: no attempt until it changes."""

    address: str
    secret: SecretKind
    protocol: Protocol  # the protocol that was refused
    reason: Reason
    since: float
    fingerprint: str  # scrypt of the refused secret; tells a new secret from the old one
    detail: str = ""

    @property
    def key(self) -> Key:
        """(address, secret)."""
        return (self.address, self.secret)


@dataclass(frozen=True, slots=True)
class Attempt:
    """A login whose secret is about to be, or was, sent, and whose outcome is not known."""

    address: str
    secret: SecretKind
    protocol: Protocol  # the protocol sending it
    credential: str  # the secret's source and file identity (see Credential.identity)
    started_at: float

    @property
    def key(self) -> Key:
        """(address, secret)."""
        return (self.address, self.secret)


# Given the current lock-out and attempt rows of a key, whether to reserve an attempt.
Decide = Callable[[Lockout | None, Attempt | None], bool]


def load_lockouts(store: StateStore) -> dict[Key, Lockout]:
    """Every lock-out in force."""
    with store.reading() as db:
        rows = db.execute(
            "SELECT address, secret, protocol, reason, since, fingerprint, detail FROM lockout"
        ).fetchall()
    return {
        (address, SecretKind(secret)): Lockout(
            address,
            SecretKind(secret),
            Protocol(protocol),
            Reason(reason),
            since,
            fingerprint,
            detail,
        )
        for address, secret, protocol, reason, since, fingerprint, detail in rows
    }


def load_attempts(store: StateStore) -> dict[Key, Attempt]:
    """Every attempt whose outcome was never recorded."""
    with store.reading() as db:
        rows = db.execute(
            "SELECT address, secret, protocol, credential, started_at FROM login_attempt"
        ).fetchall()
    return {
        (address, SecretKind(secret)): Attempt(
            address, SecretKind(secret), Protocol(protocol), credential, started
        )
        for address, secret, protocol, credential, started in rows
    }


def reserve(
    store: StateStore,
    requests: Sequence[tuple[Attempt, Decide]],
    resolved: Iterable[Key] = (),
    lockouts: Iterable[Lockout] = (),
) -> list[tuple[bool, Lockout | None, Attempt | None]]:
    """In one transaction: forget `resolved` attempts, save `lockouts`, then for each
    request read its rows, ask `decide`, and record the attempt if it says yes.

    Returns, per request, whether it was reserved and the rows that were found.
    """
    out: list[tuple[bool, Lockout | None, Attempt | None]] = []
    with store.writing() as db:
        db.executemany(
            "DELETE FROM login_attempt WHERE address = ? AND secret = ?",
            [(a, str(k)) for a, k in resolved],
        )
        for refused in lockouts:
            _save_lockout(db, refused)
        for attempt, decide in requests:
            key = (attempt.address, str(attempt.secret))
            row = db.execute(
                "SELECT protocol, reason, since, fingerprint, detail FROM lockout "
                "WHERE address = ? AND secret = ?",
                key,
            ).fetchone()
            lockout = None
            if row is not None:
                lockout = Lockout(
                    attempt.address, attempt.secret, Protocol(row[0]), Reason(row[1]), *row[2:]
                )
            row = db.execute(
                "SELECT protocol, credential, started_at FROM login_attempt "
                "WHERE address = ? AND secret = ?",
                key,
            ).fetchone()
            pending = None
            if row is not None:
                pending = Attempt(attempt.address, attempt.secret, Protocol(row[0]), *row[1:])
            go = decide(lockout, pending)
            if go:
                db.execute(
                    "INSERT OR REPLACE INTO login_attempt "
                    "(address, secret, protocol, credential, started_at) VALUES (?, ?, ?, ?, ?)",
                    (*key, str(attempt.protocol), attempt.credential, attempt.started_at),
                )
            out.append((go, lockout, pending))
    return out


def record_refusal(store: StateStore, lockout: Lockout) -> None:
    """Save a lock-out and forget the attempt it ends, in one transaction."""
    with store.writing() as db:
        _save_lockout(db, lockout)


def clear_lockout(store: StateStore, key: Key) -> None:
    """Forget a lock-out: the credential changed or was accepted."""
    store.write_many(
        "DELETE FROM lockout WHERE address = ? AND secret = ?", [(key[0], str(key[1]))]
    )


def _save_lockout(db: sqlite3.Connection, lockout: Lockout) -> None:
    db.execute(
        "INSERT OR REPLACE INTO lockout "
        "(address, secret, protocol, reason, since, fingerprint, detail) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            lockout.address,
            str(lockout.secret),
            str(lockout.protocol),
            str(lockout.reason),
            lockout.since,
            lockout.fingerprint,
            lockout.detail,
        ),
    )
    db.execute(
        "DELETE FROM login_attempt WHERE address = ? AND secret = ?",
        (lockout.address, str(lockout.secret)),
    )
