"""Server-wide outage: one signal instead of thousands of failed mailboxes, and a gentle retry.

Tracked per endpoint, (server, protocol): POP3 may be down while IMAP works. When most
recent probes to an endpoint fail on the server's side (it cannot be reached,
secured or greeted, or it hangs at LOGIN as an Exchange whose directory is unreachable
does), the server is marked down and mailbox probes to it stop. A credential-free check
(connect, TLS, greeting) then runs with exponential back-off; once it passes, a single
mailbox probe is let through as a trial, and only its outcome brings the server back up.
The trial matters for the LOGIN hang: the check alone passes at once there, and the server
would flap up and down, costing a timed-out login each time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from monitor.config.model import OutageConfig
from monitor.probes.contract import Prober
from monitor.probes.result import ProbeResult, Reason

# Results that never reached the server say nothing about it.
_NOT_THE_SERVER = frozenset({Reason.CREDENTIAL_MISSING, Reason.INTERNAL_ERROR})


def is_server_failure(result: ProbeResult, prober: Prober) -> bool:
    """Whether a result says the server, not the mailbox, failed.

    A POP3 `[IN-USE]` or `[LOGIN-DELAY]` is an answer, so never a server failure: the
    school's own client is downloading.
    """
    if result.reason.is_transport_failure and result.failed_phase in prober.reach_phases:
        return True
    return result.reason is Reason.TIMEOUT and result.failed_phase == prober.auth_phase


def says_something_about_server(result: ProbeResult) -> bool:
    """Whether a result comes from talking to the server at all."""
    return result.reason not in _NOT_THE_SERVER


class Admission(StrEnum):
    """Whether a due mailbox probe may go to a server."""

    PROBE = "probe"  # the server is up
    TRIAL = "trial"  # the server is down but answered its check: this probe decides
    SKIP = "skip"  # down: wait for the check or the trial


@dataclass(frozen=True, slots=True)
class ServerState:
    """What the metrics show of a server."""

    up: bool
    down_since: float | None
    next_check_at: float | None
    last_error: str


class OutageDetector:
    """Tracks one server's recent probe outcomes; all times are Unix seconds."""

    def __init__(self, prober: Prober, config: OutageConfig) -> None:
        self._config = config
        self._prober = prober
        self._recent: deque[tuple[float, bool]] = deque()
        self._failures = 0  # failures in _recent, kept in step: counting them is O(window)
        self.down_since: float | None = None
        self.next_check_at: float | None = None
        self._backoff = config.backoff_initial
        self._trial_open = False  # the check passed: one mailbox probe may go
        self._trial_running = False
        self.last_error = ""

    @property
    def up(self) -> bool:
        """True unless the server is considered down."""
        return self.down_since is None

    def reconfigure(self, config: OutageConfig) -> None:
        """Use new thresholds from the next result on."""
        self._config = config

    def admit(self) -> Admission:
        """Whether a due mailbox probe may go now; a TRIAL must be reported to `record_trial`."""
        if self.up:
            return Admission.PROBE
        if self._trial_open and not self._trial_running:
            self._trial_running = True
            return Admission.TRIAL
        return Admission.SKIP

    def record(self, now: float, result: ProbeResult) -> bool:
        """Count a mailbox probe; True when this result tips the server into down."""
        if not says_something_about_server(result):
            return False
        failed = is_server_failure(result, self._prober)
        self._recent.append((now, failed))
        self._failures += failed
        self._forget_before(now - self._config.window)
        if failed:
            self.last_error = f"{result.reason}: {result.detail}"
        if not self.up:
            return False
        total = len(self._recent)
        if (
            total >= self._config.min_probes
            and self._failures >= self._config.failure_ratio * total
        ):
            self.down_since = now
            self._backoff = self._config.backoff_initial
            self.next_check_at = now + self._backoff
            return True
        return False

    def record_trial(self, now: float, result: ProbeResult | None) -> bool:
        """Count the trial probe (None: it was not sent); True when the server is back up."""
        self._trial_running = False
        if self.up:
            return False
        if result is None or not says_something_about_server(result):
            return False  # inconclusive: the next due probe is the trial
        if is_server_failure(result, self._prober):
            self.last_error = f"{result.reason}: {result.detail}"
            self._trial_open = False
            self._back_off(now)
            return False
        self._back_up()
        return True

    def check_due(self, now: float) -> bool:
        """Whether a down server's credential-free check should run now."""
        return (
            not self.up
            and not self._trial_open
            and self.next_check_at is not None
            and now >= self.next_check_at
        )

    def record_check(self, now: float, healthy: bool, error: str = "") -> bool:
        """Count a credential-free check; True when it passed and a trial probe may go."""
        if healthy:
            self._trial_open = True
            self.next_check_at = None
            return True
        self.last_error = error or self.last_error
        self._back_off(now)
        return False

    def state(self) -> ServerState:
        """An immutable view for metrics."""
        return ServerState(self.up, self.down_since, self.next_check_at, self.last_error)

    def _back_off(self, now: float) -> None:
        self._backoff = min(self._backoff * 2, self._config.backoff_max)
        self.next_check_at = now + self._backoff

    def _back_up(self) -> None:
        self.down_since = None
        self.next_check_at = None
        self._trial_open = False
        self._recent.clear()
        self._failures = 0
        self.last_error = ""

    def _forget_before(self, cutoff: float) -> None:
        while self._recent and self._recent[0][0] < cutoff:
            self._failures -= self._recent.popleft()[1]
