"""What the report's sections list, computed once for the text, HTML and JSON outputs."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from monitor.audit.rows import AuditRow, MailboxFacts
from monitor.audit.snapshot import Snapshot
from monitor.config.model import Mailbox
from monitor.probes.result import Protocol

FULLEST_SHOWN = 10


@dataclass(frozen=True, slots=True)
class Flagged:
    """A mailbox in one of the report's lists, with its mailbox-wide facts."""

    mailbox: Mailbox
    facts: MailboxFacts
    note: str = ""  # what puts it in the list, where the facts do not say it
    note_fr: str = ""  # the same in French, where it is worded by us (reasons to act)


@dataclass(frozen=True, slots=True)
class Summary:
    """The report's sections."""

    generated_at: float
    within_days: float
    mailboxes: int
    rows: int
    probed_rows: int
    not_probed_yet: int
    failures: dict[tuple[str, str], int]  # (protocol, reason) -> rows
    failures_by_server: dict[tuple[str, str], int]  # (server, protocol) -> rows
    fullest: list[Flagged]
    forecast: list[Flagged]
    expiring: list[Flagged]
    locked_out: list[Flagged]
    credential_missing: list[Flagged]
    no_cerbere: int  # mailboxes without the optional CERBERE password: no SMTP probe
    held: int  # credentials held back: their last login got no answer
    outbox_pending: int
    outbox_failed: int
    action: list[Flagged]  # every mailbox needing action, with why

    @property
    def needs_action(self) -> bool:
        """Whether anything needs someone to act: exit status 1."""
        return bool(self.action)


def summarise(
    rows: list[AuditRow], snapshot: Snapshot, within_days: float, first_warning: int
) -> Summary:
    """The sections of a report over `rows`; `first_warning` is the earliest warning mail's
    number of days before a CERBERE expiry."""
    by_mailbox: dict[str, list[AuditRow]] = {}
    for row in rows:
        by_mailbox.setdefault(row.mailbox.address, []).append(row)
    firsts = [group[0] for group in by_mailbox.values()]
    failed = [row for row in rows if row.failed]
    measured = [r for r in firsts if r.facts.ratio is not None]
    measured.sort(key=lambda r: -(r.facts.ratio or 0.0))
    forecast = [r for r in firsts if r.facts.forecast_full_at is not None]
    forecast.sort(key=lambda r: r.facts.forecast_full_at or 0.0)
    expiring = [
        r
        for r in firsts
        if r.facts.expired
        or (r.facts.expiry_days_left is not None and r.facts.expiry_days_left <= first_warning)
    ]
    expiring.sort(key=_days_left)
    return Summary(
        generated_at=snapshot.read_at,
        within_days=within_days,
        mailboxes=len(by_mailbox),
        rows=len(rows),
        probed_rows=sum(1 for row in rows if row.checked_at is not None),
        not_probed_yet=sum(1 for row in rows if row.reason == "not_probed_yet"),
        failures=_by_protocol(Counter((str(r.protocol), r.reason) for r in failed)),
        failures_by_server=dict(
            Counter((r.mailbox.server, str(r.protocol)) for r in failed).most_common()
        ),
        fullest=[_flag(r) for r in measured[:FULLEST_SHOWN]],
        forecast=[_flag(r) for r in forecast],
        expiring=[_flag(r) for r in expiring],
        locked_out=_per_mailbox(by_mailbox, lambda r: r.locked_out, _lockout),
        credential_missing=_per_mailbox(by_mailbox, lambda r: r.credential_missing, _detail),
        no_cerbere=sum(1 for g in by_mailbox.values() if any(r.no_optional_credential for r in g)),
        held=len(snapshot.held),
        outbox_pending=snapshot.outbox.pending,
        outbox_failed=sum(snapshot.outbox.failed.values()),
        action=_per_mailbox(
            by_mailbox, lambda r: r.needs_action, lambda r: [a.en for a in r.actions], _french
        ),
    )


def _by_protocol(counts: Counter[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """Grouped by protocol in the usual order (IMAP, POP3, SMTP), the most frequent first."""
    order = {str(p): i for i, p in enumerate(Protocol)}
    return dict(sorted(counts.items(), key=lambda item: (order[item[0][0]], -item[1])))


def _flag(row: AuditRow) -> Flagged:
    return Flagged(row.mailbox, row.facts)


def _days_left(row: AuditRow) -> int:
    """Expired first (SMTP said so, whatever the date), then the soonest."""
    left = row.facts.expiry_days_left
    return -(10**6) if row.facts.expired or left is None else left


def _detail(row: AuditRow) -> tuple[str, ...]:
    return (row.detail,)


def _lockout(row: AuditRow) -> tuple[str, ...]:
    lockout = row.lockout
    if lockout is None:
        return ()
    since = time.strftime("%Y-%m-%d %H:%M", time.localtime(lockout.since))
    return (
        f"{lockout.secret.label} refused over {lockout.protocol} ({lockout.reason}, "
        f"since {since}): {lockout.detail}",
    )


def _french(row: AuditRow) -> list[str]:
    return [action.fr for action in row.actions]


def _per_mailbox(
    by_mailbox: dict[str, list[AuditRow]],
    selected: Callable[[AuditRow], bool],
    notes: Callable[[AuditRow], Iterable[str]],
    notes_fr: Callable[[AuditRow], Iterable[str]] | None = None,
) -> list[Flagged]:
    """Each mailbox with a selected row once, noting every reason any of its rows gives
    (a lock-out shows on both IMAP and POP3: it is one mailbox password)."""
    found: list[Flagged] = []
    for group in by_mailbox.values():
        chosen = [row for row in group if selected(row)]
        if chosen:
            said = dict.fromkeys(note for row in chosen for note in notes(row) if note)
            french = dict.fromkeys(n for row in chosen for n in (notes_fr or notes)(row) if n)
            first = chosen[0]
            found.append(Flagged(first.mailbox, first.facts, "; ".join(said), "; ".join(french)))
    return found
