"""Evidence that a mailbox is full, whatever its quota reading says, and the canary's
last result per mailbox: kept in the state file, read by the metrics and `probe`."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from monitor.state.store import StateStore


class Evidence(StrEnum):
    """How a mailbox was found full."""

    QUOTA = "quota"  # its usage reading is at or over the limit
    REJECTION = "rejection"  # the server refused mail to it with an X.2.2 status
    BOUNCE = "bounce"  # a DSN with Status X.2.2 came back for it


class CanaryOutcome(StrEnum):
    """What became of one canary."""

    DELIVERED = "delivered"  # seen in the mailbox, then removed
    LEFT = "left"  # seen, but could not be removed (no UIDPLUS): said so
    NOT_DELIVERED = "canary_not_delivered"  # accepted, not seen within the deadline
    REJECTED_FULL = "rejected_full"  # refused with an X.2.2 status: full
    REJECTED = "rejected"  # refused for another reason
    RELAY_FAILED = "relay_failed"  # the relay could not be used: nothing said of the mailbox
    LOGIN_FAILED = "login_failed"  # the mailbox could not be read to look for it


@dataclass(frozen=True, slots=True)
class CanaryResult:
    """One mailbox's last canary."""

    address: str
    canary_id: str
    sent_at: float
    outcome: CanaryOutcome
    latency: float | None  # seconds from hand-over to sight, where seen
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Found:
    """One piece of evidence that a mailbox is full."""

    address: str
    evidence: Evidence
    at: float
    detail: str = ""


def load_results(store: StateStore) -> dict[str, CanaryResult]:
    """Every mailbox's last canary."""
    with store.reading() as db:
        rows = db.execute(
            "SELECT address, canary_id, sent_at, outcome, latency, detail FROM canary_result"
        ).fetchall()
    known = set(CanaryOutcome)
    return {
        row[0]: CanaryResult(row[0], row[1], row[2], CanaryOutcome(row[3]), row[4], row[5])
        for row in rows
        if row[3] in known
    }


def save_result(store: StateStore, result: CanaryResult) -> None:
    """Keep a mailbox's last canary."""
    store.write_many(
        "INSERT OR REPLACE INTO canary_result "
        "(address, canary_id, sent_at, outcome, latency, detail) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                result.address,
                result.canary_id,
                result.sent_at,
                str(result.outcome),
                result.latency,
                result.detail,
            )
        ],
    )


def load_evidence(store: StateStore) -> dict[tuple[str, Evidence], Found]:
    """Every standing piece of rejection or bounce evidence."""
    with store.reading() as db:
        rows = db.execute("SELECT address, evidence, at, detail FROM full_evidence").fetchall()
    known = set(Evidence)
    return {
        (row[0], Evidence(row[1])): Found(row[0], Evidence(row[1]), row[2], row[3])
        for row in rows
        if row[1] in known
    }


def save_evidence(store: StateStore, found: Found) -> None:
    """Keep a piece of evidence (the latest of its kind for the mailbox)."""
    store.write_many(
        "INSERT OR REPLACE INTO full_evidence (address, evidence, at, detail) VALUES (?, ?, ?, ?)",
        [(found.address, str(found.evidence), found.at, found.detail)],
    )


def clear_evidence(store: StateStore, address: str, evidence: Evidence) -> None:
    """Forget a piece of evidence: mail reached the mailbox again since."""
    store.write_many(
        "DELETE FROM full_evidence WHERE address = ? AND evidence = ?", [(address, str(evidence))]
    )
