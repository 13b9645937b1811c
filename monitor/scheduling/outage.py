"""Server-wide outage: one signal instead of thousands of failed mailboxes, and a gentle retry.

When most recent probes to a server fail before any mailbox was involved (connect, TLS
or greeting), the server is marked down. Mailbox probes to it stop; a credential-free
health check (connect, TLS, greeting) runs with exponential back-off until it succeeds.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from monitor.config.model import OutageConfig
from monitor.probes.result import Phase, ProbeResult

_SERVER_PHASES = frozenset({Phase.CONNECT, Phase.TLS, Phase.GREETING})


def is_server_failure(result: ProbeResult) -> bool:
    """Whether a result says the server, not the mailbox, failed."""
    return result.reason.is_transport_failure and result.failed_phase in _SERVER_PHASES


@dataclass(frozen=True, slots=True)
class ServerState:
    """What the metrics show of a server."""

    up: bool
    down_since: float | None
    next_check_at: float | None
    last_error: str


class OutageDetector:
    """Tracks one server's recent probe outcomes; all times are Unix seconds."""

    def __init__(self, config: OutageConfig) -> None:
        self._config = config
        self._recent: deque[tuple[float, bool]] = deque()
        self._failures = 0  # failures in _recent, kept in step: counting them is O(window)
        self.down_since: float | None = None
        self.next_check_at: float | None = None
        self._backoff = config.backoff_initial
        self.last_error = ""

    @property
    def up(self) -> bool:
        """True unless the server is considered down."""
        return self.down_since is None

    def record(self, now: float, result: ProbeResult) -> bool:
        """Count a mailbox probe; True when this result tips the server into down."""
        failed = is_server_failure(result)
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

    def check_due(self, now: float) -> bool:
        """Whether a down server's health check should run now."""
        return not self.up and self.next_check_at is not None and now >= self.next_check_at

    def record_check(self, now: float, healthy: bool, error: str = "") -> bool:
        """Count a health check; True when the server comes back up."""
        if healthy:
            self.down_since = None
            self.next_check_at = None
            self._recent.clear()
            self._failures = 0
            self.last_error = ""
            return True
        self.last_error = error or self.last_error
        self._backoff = min(self._backoff * 2, self._config.backoff_max)
        self.next_check_at = now + self._backoff
        return False

    def state(self) -> ServerState:
        """An immutable view for metrics."""
        return ServerState(self.up, self.down_since, self.next_check_at, self.last_error)

    def _forget_before(self, cutoff: float) -> None:
        while self._recent and self._recent[0][0] < cutoff:
            self._failures -= self._recent.popleft()[1]
