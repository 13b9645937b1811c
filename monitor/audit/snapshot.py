"""Everything the state file says of the fleet, read once, read-only, into plain values."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from monitor.audit.forecasting import near_full_forecasts
from monitor.canary.evidence import Evidence, Found, load_evidence
from monitor.config.model import Config
from monitor.expiry.book import ExpiryBook
from monitor.expiry.directory_store import load_directory
from monitor.expiry.model import Expiry
from monitor.expiry.observed import ObservedChanges
from monitor.fullness.store import StateRow, load_states
from monitor.notify import outbox
from monitor.notify.outbox import OutboxCounts
from monitor.scheduling.statuses import restored_statuses
from monitor.scheduling.view import MailboxStatus
from monitor.state.logins import Attempt, Key, Lockout, load_attempts, load_lockouts
from monitor.state.store import StateStore

K = TypeVar("K")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The fleet as the state file had it at `read_at` (Unix time)."""

    read_at: float
    statuses: dict[str, MailboxStatus]  # every configured mailbox, probed or not
    lockouts: dict[Key, Lockout]
    held: dict[Key, Attempt]  # logins whose outcome is unknown: held back for a while
    quota_states: dict[str, StateRow]
    forecasts: dict[str, float]  # full within the horizon asked (Unix time), by address
    expiries: dict[str, Expiry]
    evidence: dict[tuple[str, Evidence], Found]
    outbox: OutboxCounts


def read_snapshot(config: Config, within_days: float, path: Path | None = None) -> Snapshot:
    """Open the state file read-only (StateError if missing, damaged or of another
    schema), read every table the report needs, and close it: no write, no lock held."""
    store = StateStore.open_readonly(path or config.state.path)
    try:
        return _read(config, store, within_days, time.time())
    finally:
        store.close()


def _read(config: Config, store: StateStore, within_days: float, now: float) -> Snapshot:
    lockouts = load_lockouts(store)
    statuses = restored_statuses(config.mailboxes, store.load_mailboxes(), lockouts)
    observed = ObservedChanges(store)
    directory = load_directory(store)
    book = ExpiryBook(lambda: config.expiry, observed, lambda: directory, lambda: statuses)
    return Snapshot(
        read_at=now,
        statuses=statuses,
        lockouts=lockouts,
        held=load_attempts(store),
        quota_states=load_states(store),
        forecasts=near_full_forecasts(config, store, statuses, now, within_days),
        expiries=book.expiries(config.mailboxes),
        evidence=load_evidence(store),
        outbox=outbox.counts(store),
    )


def merged(snapshots: list[Snapshot]) -> Snapshot:
    """One snapshot of several shards' state files (their mailboxes never overlap)."""
    counts = [s.outbox for s in snapshots]
    return Snapshot(
        read_at=min(s.read_at for s in snapshots),
        statuses={k: v for s in snapshots for k, v in s.statuses.items()},
        lockouts={k: v for s in snapshots for k, v in s.lockouts.items()},
        held={k: v for s in snapshots for k, v in s.held.items()},
        quota_states={k: v for s in snapshots for k, v in s.quota_states.items()},
        forecasts={k: v for s in snapshots for k, v in s.forecasts.items()},
        expiries={k: v for s in snapshots for k, v in s.expiries.items()},
        evidence={k: v for s in snapshots for k, v in s.evidence.items()},
        outbox=OutboxCounts(
            pending=sum(c.pending for c in counts),
            oldest_pending_created_at=min(
                (c.oldest_pending_created_at for c in counts if c.oldest_pending_created_at),
                default=None,
            ),
            sent=_summed(c.sent for c in counts),
            failed=_summed(c.failed for c in counts),
            last_sent_at=max((c.last_sent_at for c in counts if c.last_sent_at), default=None),
        ),
    )


def _summed(tallies: Iterable[dict[K, int]]) -> dict[K, int]:
    total: dict[K, int] = {}
    for tally in tallies:
        for key, count in tally.items():
            total[key] = total.get(key, 0) + count
    return total
