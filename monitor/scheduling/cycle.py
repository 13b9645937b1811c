"""One pass over the fleet, one requested probe, and when a probe also measures usage."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from monitor.config.model import Mailbox, ProbingConfig
from monitor.probes.result import Protocol, QuotaSource
from monitor.scheduling.runner import Outcomes
from monitor.scheduling.view import MailboxStatus, ProbeStatus


def estimate_due(
    status: MailboxStatus, probe: ProbeStatus, now: float, probing: ProbingConfig
) -> bool:
    """Whether this probe should also sum folder sizes (where the server has no QUOTA)."""
    quota = status.quota
    if quota is not None and quota.source is QuotaSource.IMAP_QUOTA:
        return True  # GETQUOTAROOT answers first; the flag only matters if QUOTA goes away
    # STAT counts the inbox alone: it is no whole-mailbox sum, and counting it as one would
    # put the IMAP sum off for ever where POP3 probes more often than the estimate cadence.
    summed = quota is not None and quota.source is not QuotaSource.POP3_STAT
    # A failed estimate (too slow for the deadline, say) waits its turn like a good one,
    # so a huge mailbox does not cost a full-deadline probe at every interval.
    last = max(
        quota.measured_at if quota is not None and summed else 0.0,
        probe.estimated_at or 0.0,
    )
    return now - last >= probing.quota_estimate_interval


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    """How one probe was asked for: by the cycle (defaults), or by a sweep."""

    estimate: bool | None = None  # None: when the estimate cadence says so
    force: bool = False  # try even a locked-out mailbox
    outcomes: dict[tuple[str, Protocol], Outcomes] | None = None  # where a sweep collects
    trial: bool = False  # the probe that decides whether a down server is back
    # Told of each outcome as it comes (a sweep's progress display).
    on_outcome: Callable[[Mailbox, Protocol, Outcomes], None] | None = None


class Cycle:
    """Book-keeping to time one pass over every mailbox."""

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.pending = 0
        self.dispatched_all = False
        self._reported = False

    def complete(self) -> bool:
        """True once, when every probe of the cycle was sent and has finished."""
        if self.dispatched_all and self.pending == 0 and not self._reported:
            self._reported = True
            return True
        return False
