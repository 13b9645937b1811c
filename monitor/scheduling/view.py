"""The read model: what the scheduler knows, as immutable values for metrics, /healthz and
the CLI. Built by the scheduler, read from any thread."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from monitor.config.model import Config, Mailbox
from monitor.probes.result import ProbeResult, Protocol, QuotaReading, Reason, TlsFacts
from monitor.scheduling.outage import ServerState
from monitor.state.logins import Lockout
from monitor.state.store import WriteHealth

EndpointKey = tuple[str, Protocol]  # (server name, protocol)


class SkipCause(StrEnum):
    """Why a due probe was not sent."""

    LOCKED_OUT = "locked_out"
    OUTCOME_UNKNOWN = "outcome_unknown"  # held after a login that got no answer
    SERVER_DOWN = "server_down"
    STILL_RUNNING = "still_running"
    NO_CREDENTIAL = "no_credential"  # an optional secret (CERBERE) the mailbox does not have


@dataclass(frozen=True, slots=True)
class ProbeStatus:
    """What one protocol's probes found of one mailbox, replaced whole on each change."""

    protocol: Protocol
    result: ProbeResult | None = None
    last_success_at: float | None = None
    lockout: Lockout | None = None  # of the secret this protocol sends
    estimated_at: float | None = None  # last size estimate attempted, even if it failed


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """Everything known about one mailbox, replaced whole on each change."""

    mailbox: Mailbox
    # One entry per protocol the mailbox is probed with; never mutated once built.
    probes: dict[Protocol, ProbeStatus] = field(default_factory=dict)
    quota: QuotaReading | None = None  # the best reading any protocol gave

    def probe(self, protocol: Protocol) -> ProbeStatus:
        """The status of one protocol (empty if it never ran)."""
        return self.probes.get(protocol) or ProbeStatus(protocol)


@dataclass(frozen=True, slots=True)
class StateHealth:
    """Whether what must survive a restart is on disk."""

    write: WriteHealth
    unsaved_lockouts: int  # held in memory only: a restart now would retry them


@dataclass(frozen=True, slots=True)
class Counters:
    """What happened since start, for the fleet counters."""

    probes: dict[Protocol, int]
    failures: dict[tuple[Protocol, Reason], int]
    quota_failures: dict[Protocol, int]  # logins that worked, then the usage was not read
    skipped: dict[tuple[Protocol, SkipCause], int]
    server_checks: dict[EndpointKey, int]
    server_check_failures: dict[tuple[EndpointKey, Reason], int]


@dataclass(frozen=True, slots=True)
class SchedulerView:
    """An immutable copy of the scheduler's state, for metrics and health."""

    config: Config
    mailboxes: dict[str, MailboxStatus]
    servers: dict[EndpointKey, ServerState]
    tls: dict[EndpointKey, TlsFacts]  # from the last probe's handshake with each endpoint
    counters: Counters
    in_flight: int
    cycle_seconds: dict[Protocol, float]
    lag_seconds: float
    dispatcher_due: float  # monotonic time by which the dispatcher will show life again
    state: StateHealth
