"""The audit's summary for the terminal (stdout), in English like the rest of the CLI."""

from __future__ import annotations

from collections.abc import Iterator
from zoneinfo import ZoneInfo

from monitor.audit.rows import NOT_ACTIONABLE
from monitor.audit.summary import Flagged, Summary
from monitor.audit.values import local_day, local_time, percent, size

LISTED = 20  # longer lists end with "... and N more": the CSV and HTML have them all


def summary_lines(summary: Summary, zone: ZoneInfo) -> Iterator[str]:
    """The summary, line by line."""
    yield f"Fleet audit, {local_time(summary.generated_at, zone)} ({zone.key})"
    yield (
        f"{summary.mailboxes} mailboxes, {summary.rows} mailbox/protocol pairs: "
        f"{summary.probed_rows} with a result, {summary.not_probed_yet} not probed yet"
    )
    verdict = f"{len(summary.action)} mailbox(es)" if summary.action else "nothing"
    yield f"Needs action: {verdict}"
    for flagged in summary.action[:LISTED]:
        yield f"  {_who(flagged)}: {flagged.note}"
    yield from _more(summary.action)

    yield ""
    yield "Login failures by protocol and reason:"
    if not summary.failures:
        yield "  none"
    quiet = {str(reason) for reason in NOT_ACTIONABLE}
    for (protocol, reason), count in summary.failures.items():
        aside = "  (no action: the server answered, the password was not refused)"
        yield f"  {protocol:<5} {reason:<24} {count}" + (aside if reason in quiet else "")
    if summary.failures_by_server:
        yield "Login failures by server:"
        for (server, protocol), count in summary.failures_by_server.items():
            yield f"  {server} {protocol:<5} {count}"

    yield ""
    yield "Fullest mailboxes:"
    if not summary.fullest:
        yield "  no usage known"
    for flagged in summary.fullest:
        facts = flagged.facts
        state = str(facts.quota_state or "-")
        yield (
            f"  {_who(flagged)}: {percent(facts.ratio)} "
            f"({size(facts.used_bytes)} of {size(facts.limit_bytes)}) {state}"
        )
    yield f"Forecast full within {summary.within_days:g} days: {len(summary.forecast)}"
    for flagged in summary.forecast[:LISTED]:
        yield f"  {_who(flagged)}: {local_day(flagged.facts.forecast_full_at, zone)}"
    yield from _more(summary.forecast)

    yield ""
    yield f"CERBERE passwords expired or expiring soon: {len(summary.expiring)}"
    for flagged in summary.expiring[:LISTED]:
        facts = flagged.facts
        when = "expired" if facts.expired else f"{facts.expiry_days_left} days left"
        yield f"  {_who(flagged)}: {facts.expiry_date} ({when}, from {facts.expiry_source})"
    yield from _more(summary.expiring)

    yield ""
    yield f"Locked out (a refused password is not tried again): {len(summary.locked_out)}"
    for flagged in summary.locked_out[:LISTED]:
        yield f"  {_who(flagged)}: {flagged.note}"
    yield from _more(summary.locked_out)
    yield f"Mailbox password missing: {len(summary.credential_missing)}"
    for flagged in summary.credential_missing[:LISTED]:
        yield f"  {_who(flagged)}: {flagged.note}"
    yield from _more(summary.credential_missing)
    yield f"No CERBERE password (SMTP not probed): {summary.no_cerbere}"
    if summary.held:
        # The daemon's logins in flight are here too, until their answer comes.
        yield f"Logins with no answer yet (held back until one comes): {summary.held}"
    yield f"Warning mails: {summary.outbox_pending} pending, {summary.outbox_failed} failed"


def _who(flagged: Flagged) -> str:
    mailbox = flagged.mailbox
    name = f" {mailbox.name}" if mailbox.name else ""
    return f"{mailbox.local_part}{name}"


def _more(items: list[Flagged]) -> Iterator[str]:
    if len(items) > LISTED:
        yield f"  ... and {len(items) - LISTED} more"
