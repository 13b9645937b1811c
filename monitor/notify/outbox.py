"""The persistent outbox of warning mails, in the state file.

A row is committed before its SMTP transaction starts and marked after the relay's answer,
each in its own transaction. A crash between the relay's 250 and that mark leaves the row
pending: it is sent again, under the same Message-ID. That is the only duplicate possible.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from monitor.notify.templates import Audience
from monitor.state.store import StateStore


class OutboxState(StrEnum):
    """Where a warning mail is in its life."""

    PENDING = "pending"  # to send, at next_attempt_at
    SENT = "sent"  # the relay answered 250
    FAILED = "failed"  # the relay refused it for good (5xx), reason kept
    SUPERSEDED = "superseded"  # a more urgent warning replaced it (catch-up)
    CANCELLED = "cancelled"  # the password changed (new expiry date), or it expired first
    DRY_RUN = "dry_run"  # rendered and logged, not sent (notify.enabled is false)


# Thresholds with a row in these states need no new row: the policy's `done` set.
_DONE = tuple(str(s) for s in OutboxState if s is not OutboxState.CANCELLED)

Key = tuple[str, dt.date, int, Audience]  # (address, expiry_date, threshold, audience)

_COLUMNS = (
    "address, expiry_date, threshold, audience, recipient, establishment, contact, state, "
    "message_id, created_at, attempts, next_attempt_at, last_attempt_at, reason, last_error, "
    "sent_at"
)
_KEY = "address = ? AND expiry_date = ? AND threshold = ? AND audience = ?"


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """A warning to queue: whom, for which expiry and threshold, and what it will name."""

    address: str
    expiry_date: dt.date
    threshold: int
    audience: Audience
    recipient: str
    message_id: str
    establishment: str = ""
    contact: str = ""


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A stored outbox row."""

    entry: OutboxEntry
    state: OutboxState
    created_at: float
    attempts: int
    next_attempt_at: float
    last_attempt_at: float | None
    reason: str
    last_error: str
    sent_at: float | None

    @property
    def key(self) -> Key:
        """(address, expiry_date, threshold, audience)."""
        e = self.entry
        return (e.address, e.expiry_date, e.threshold, e.audience)


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    """The outbox for metrics."""

    pending: int
    oldest_pending_created_at: float | None
    sent: dict[int, int]  # by threshold
    failed: dict[tuple[int, str], int]  # by (threshold, reason)
    last_sent_at: float | None


def enqueue(store: StateStore, entries: Iterable[OutboxEntry], now: float) -> int:
    """Queue these warnings, keeping any row already there; returns how many are new."""
    values = [
        (
            e.address,
            e.expiry_date.isoformat(),
            e.threshold,
            str(e.audience),
            e.recipient,
            e.establishment,
            e.contact,
            str(OutboxState.PENDING),
            e.message_id,
            now,
            now,
        )
        for e in entries
    ]
    with store.writing() as db:
        before = db.total_changes
        db.executemany(
            "INSERT OR IGNORE INTO outbox (address, expiry_date, threshold, audience, recipient, "
            "establishment, contact, state, message_id, created_at, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            values,
        )
        return db.total_changes - before


def supersede(
    store: StateStore, address: str, expiry_date: dt.date, thresholds: Iterable[int], now: float
) -> int:
    """Mark these thresholds of this expiry as replaced by a more urgent one: pending rows
    stop, and a threshold without a row gets one, so it counts as done."""
    day = expiry_date.isoformat()
    passed = list(thresholds)
    with store.writing() as db:
        before = db.total_changes
        for threshold in passed:
            db.execute(
                "UPDATE outbox SET state = ?, last_attempt_at = ? WHERE address = ? AND "
                "expiry_date = ? AND threshold = ? AND state = ?",
                (str(OutboxState.SUPERSEDED), now, address, day, threshold, "pending"),
            )
            db.execute(
                "INSERT OR IGNORE INTO outbox (address, expiry_date, threshold, audience, "
                "recipient, state, message_id, created_at, next_attempt_at) "
                "VALUES (?, ?, ?, ?, ?, ?, '', ?, ?)",
                (address, day, threshold, str(Audience.BMA), address, "superseded", now, now),
            )
        return db.total_changes - before


def cancel_other_dates(store: StateStore, address: str, expiry_date: dt.date, now: float) -> int:
    """A new expiry date (the password changed): cancel pending rows of any other date."""
    with store.writing() as db:
        cursor = db.execute(
            "UPDATE outbox SET state = ?, reason = 'new_expiry_date', last_attempt_at = ? "
            "WHERE address = ? AND expiry_date != ? AND state = ?",
            (str(OutboxState.CANCELLED), now, address, expiry_date.isoformat(), "pending"),
        )
        return cursor.rowcount


def pending(store: StateStore, now: float, limit: int) -> list[OutboxRow]:
    """Pending rows due at `now`, most urgent threshold first, oldest first."""
    with store.reading() as db:
        found = db.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE state = 'pending' AND next_attempt_at <= ? "
            "ORDER BY threshold, next_attempt_at, created_at LIMIT ?",
            (now, limit),
        ).fetchall()
    return [_row(values) for values in found]


def rows(store: StateStore, address: str | None = None) -> list[OutboxRow]:
    """Every row (of one mailbox, if given), for listing."""
    with store.reading() as db:
        found = db.execute(
            f"SELECT {_COLUMNS} FROM outbox WHERE ? IS NULL OR address = ? "
            "ORDER BY address, expiry_date, threshold DESC, audience",
            (address, address),
        ).fetchall()
    return [_row(values) for values in found]


def thresholds_done(store: StateStore, address: str, expiry_date: dt.date) -> frozenset[int]:
    """Thresholds of this expiry already queued, sent, failed, superseded or dry-run."""
    marks = ", ".join("?" * len(_DONE))
    with store.reading() as db:
        found = db.execute(
            f"SELECT DISTINCT threshold FROM outbox WHERE address = ? AND expiry_date = ? "
            f"AND state IN ({marks})",
            (address, expiry_date.isoformat(), *_DONE),
        ).fetchall()
    return frozenset(int(threshold) for (threshold,) in found)


def mark_sent(store: StateStore, key: Key, now: float) -> None:
    """The relay took the mail (250)."""
    _update(store, key, "state = 'sent', sent_at = ?, reason = '', last_error = ''", (now,), now)


def mark_failed(store: StateStore, key: Key, now: float, reason: str, error: str) -> None:
    """The relay refused the mail for good (5xx): no retry; the reason is kept."""
    _update(store, key, "state = 'failed', reason = ?, last_error = ?", (reason, error), now)


def mark_dry_run(store: StateStore, key: Key, now: float) -> None:
    """Rendered and logged instead of sent."""
    _update(store, key, "state = 'dry_run'", (), now)


def cancel(store: StateStore, key: Key, now: float, reason: str) -> None:
    """Drop a pending row that must not go out (e.g. the password expired first)."""
    _update(store, key, "state = 'cancelled', reason = ?", (reason,), now, only_pending=True)


def retry_later(
    store: StateStore,
    key: Key,
    now: float,
    reason: str,
    error: str,
    *,
    initial: float,
    maximum: float,
) -> float:
    """A transient failure: try again after a back-off doubling from `initial` up to
    `maximum`; returns when."""
    with store.writing() as db:
        found = db.execute(f"SELECT attempts FROM outbox WHERE {_KEY}", _key_values(key))
        row = found.fetchone()
        attempts = int(row[0]) + 1 if row else 1
        delay = float(min(maximum, initial * 2.0 ** min(attempts - 1, 60)))
        db.execute(
            "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_attempt_at = ?, "
            f"reason = ?, last_error = ? WHERE {_KEY} AND state = 'pending'",
            (attempts, now + delay, now, reason, error, *_key_values(key)),
        )
    return now + delay


def attempted_since(store: StateStore, since: float) -> int:
    """Rows handed to the relay (or dry-run) at or after `since`: the daily cap's count."""
    with store.reading() as db:
        (count,) = db.execute(
            "SELECT COUNT(*) FROM outbox WHERE last_attempt_at >= ? AND state IN "
            "('pending', 'sent', 'failed', 'dry_run') AND attempts > 0",
            (since,),
        ).fetchone()
    return int(count)


def counts(store: StateStore) -> OutboxCounts:
    """Pending rows and the oldest one, sent and failed by threshold (and reason)."""
    with store.reading() as db:
        waiting, oldest = db.execute(
            "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE state = 'pending'"
        ).fetchone()
        done = db.execute(
            "SELECT state, threshold, reason, COUNT(*), MAX(sent_at) FROM outbox "
            "WHERE state IN ('sent', 'failed') GROUP BY state, threshold, reason"
        ).fetchall()
    sent: Counter[int] = Counter()
    failed: Counter[tuple[int, str]] = Counter()
    last: float | None = None
    for state, threshold, reason, number, latest in done:
        if state == "sent":
            sent[int(threshold)] += int(number)
            if latest is not None and (last is None or float(latest) > last):
                last = float(latest)
        else:
            failed[(int(threshold), str(reason))] += int(number)
    return OutboxCounts(int(waiting), oldest, dict(sent), dict(failed), last)


def _update(
    store: StateStore,
    key: Key,
    assignments: str,
    values: tuple[object, ...],
    now: float,
    *,
    only_pending: bool = False,
) -> None:
    # Counting the attempt here, with its outcome, keeps one write per mail; a crash before
    # it leaves the row pending, which is what re-sends it.
    guard = " AND state = 'pending'" if only_pending else ""
    attempts = "attempts" if only_pending else "attempts + 1"
    with store.writing() as db:
        db.execute(
            f"UPDATE outbox SET {assignments}, attempts = {attempts}, last_attempt_at = ? "
            f"WHERE {_KEY}{guard}",
            (*values, now, *_key_values(key)),
        )


def _key_values(key: Key) -> tuple[object, ...]:
    address, expiry_date, threshold, audience = key
    return (address, expiry_date.isoformat(), threshold, str(audience))


def _row(values: tuple[object, ...]) -> OutboxRow:
    (address, day, threshold, audience, recipient, establishment, contact, state, message_id,
     created, attempts, next_at, last_at, reason, error, sent_at) = values  # fmt: skip
    entry = OutboxEntry(
        str(address),
        dt.date.fromisoformat(str(day)),
        int(str(threshold)),
        Audience(str(audience)),
        str(recipient),
        str(message_id),
        str(establishment),
        str(contact),
    )
    return OutboxRow(
        entry,
        OutboxState(str(state)),
        float(str(created)),
        int(str(attempts)),
        float(str(next_at)),
        None if last_at is None else float(str(last_at)),
        str(reason),
        str(error),
        None if sent_at is None else float(str(sent_at)),
    )


def done_since(store: StateStore, first_date: dt.date) -> dict[tuple[str, dt.date], set[int]]:
    """For every (mailbox, expiry date) from `first_date` on, its thresholds done: what
    the warning policy must not send again (one query, at start)."""
    marks = ", ".join("?" * len(_DONE))
    with store.reading() as db:
        found = db.execute(
            f"SELECT DISTINCT address, expiry_date, threshold FROM outbox "
            f"WHERE expiry_date >= ? AND state IN ({marks})",
            (first_date.isoformat(), *_DONE),
        ).fetchall()
    done: dict[tuple[str, dt.date], set[int]] = {}
    for address, day, threshold in found:
        done.setdefault((address, dt.date.fromisoformat(day)), set()).add(int(threshold))
    return done


def last_warned(store: StateStore, first_date: dt.date) -> dict[str, tuple[int, float]]:
    """For each mailbox with an expiry date from `first_date` on, the most urgent warning
    the relay accepted for it (to the BMA itself) and when: (threshold, sent_at)."""
    with store.reading() as db:
        found = db.execute(
            "SELECT address, MIN(threshold), MAX(sent_at) FROM outbox "
            "WHERE state = 'sent' AND audience = 'bma' AND expiry_date >= ? "
            "GROUP BY address",
            (first_date.isoformat(),),
        ).fetchall()
    return {address: (int(threshold), float(sent)) for address, threshold, sent in found}
