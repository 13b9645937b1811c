"""What the scheduler knows, as immutable values for metrics and /healthz."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from monitor.config.model import Config, Mailbox
from monitor.probes.result import ProbeResult, Protocol, QuotaReading, Reason
from monitor.scheduling.outage import ServerState
from monitor.state.logins import Lockout
from monitor.state.store import WriteHealth


class SkipCause(StrEnum):
    """Why a due probe was not sent."""

    LOCKED_OUT = "locked_out"
    OUTCOME_UNKNOWN = "outcome_unknown"  # held after a login that got no answer
    SERVER_DOWN = "server_down"
    STILL_RUNNING = "still_running"


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """Everything known about one mailbox, replaced whole on each change."""

    mailbox: Mailbox
    result: ProbeResult | None = None
    last_success_at: float | None = None
    quota: QuotaReading | None = None
    lockout: Lockout | None = None
    estimated_at: float | None = None  # last size estimate attempted, even if it failed


@dataclass(frozen=True, slots=True)
class StateHealth:
    """Whether what must survive a restart is on disk."""

    write: WriteHealth
    unsaved_lockouts: int  # held in memory only: a restart now would retry them


@dataclass(frozen=True, slots=True)
class SchedulerView:
    """An immutable copy of the scheduler's state, for metrics and health."""

    config: Config
    mailboxes: dict[str, MailboxStatus]
    servers: dict[str, ServerState]
    probes: dict[Protocol, int]
    failures: dict[tuple[Protocol, Reason], int]
    quota_failures: int  # logins that worked, then the usage could not be read
    skipped: dict[SkipCause, int]
    server_checks: dict[str, int]
    server_check_failures: dict[tuple[str, Reason], int]
    in_flight: int
    cycle_seconds: float | None
    lag_seconds: float
    dispatcher_due: float  # monotonic time by which the dispatcher will show life again
    state: StateHealth
