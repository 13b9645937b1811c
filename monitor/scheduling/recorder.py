"""The receivers of each probe outcome: status, counters, outage detection, TLS facts, log."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import structlog

from monitor.config.model import Config, Mailbox
from monitor.fullness.forecasts import Forecasts
from monitor.fullness.states import QuotaLevel, bounds_for
from monitor.fullness.tracker import FullnessTracker
from monitor.probes.result import ProbeResult, Protocol, QuotaReading, Reason, TlsFacts
from monitor.scheduling.endpoints import Endpoints
from monitor.scheduling.events import log_probe_result
from monitor.scheduling.runner import Held, LockedOut, NoCredential, Outcomes
from monitor.scheduling.statuses import Lockouts, StatusBook
from monitor.scheduling.view import EndpointKey, SkipCause

log = structlog.get_logger("bma_monitor.scheduler")


class Recorder:
    """Takes each outcome to everything that keeps track of it."""

    def __init__(
        self,
        book: StatusBook,
        endpoints: Endpoints,
        lockouts: Callable[[], Lockouts],
        config: Callable[[], Config],
        clock: Callable[[], float],
        fullness: FullnessTracker,
    ) -> None:
        self._book = book
        self._fullness = fullness
        self._endpoints = endpoints
        self._lockouts = lockouts
        self._config = config
        self._clock = clock
        self.probes: Counter[Protocol] = Counter()
        self.failures: Counter[tuple[Protocol, Reason]] = Counter()
        self.quota_failures: Counter[Protocol] = Counter()
        self.skipped: Counter[tuple[Protocol, SkipCause]] = Counter()
        self.tls: dict[EndpointKey, TlsFacts] = {}
        self.forecasts = Forecasts()

    def record(
        self, mailbox: Mailbox, protocol: Protocol, outcome: Outcomes, estimated: bool
    ) -> None:
        """Count and keep one outcome of a due probe."""
        if isinstance(outcome, LockedOut):
            self.skip(SkipCause.LOCKED_OUT, mailbox, protocol)
            self._book.record_lockout(mailbox, self._lockouts())
            return
        if isinstance(outcome, Held):
            self.skip(SkipCause.OUTCOME_UNKNOWN, mailbox, protocol)
            return
        if isinstance(outcome, NoCredential):
            self.skip(SkipCause.NO_CREDENTIAL, mailbox, protocol)
            return
        result = outcome
        now = self._clock()
        kept = self._book.record(
            mailbox, result, now=now, estimated=estimated, lockouts=self._lockouts()
        )
        if not kept:
            return
        self.probes[protocol] += 1
        if not result.login_ok:
            self.failures[(protocol, result.reason)] += 1
        if result.quota_error:
            self.quota_failures[protocol] += 1
        key = (mailbox.server, protocol)
        if result.tls is not None:
            self.tls[key] = result.tls
        if result.quota is not None:
            self._quota_state(mailbox, result.quota)
        detector = self._endpoints.detectors.get(key)
        if detector is not None and detector.record(now, result):
            log.error(
                "server_down",
                server=mailbox.server,
                protocol=str(protocol),
                error=detector.last_error,
            )
        log_probe_result(mailbox, result, self._config().quota)

    def _quota_state(self, mailbox: Mailbox, reading: QuotaReading) -> None:
        """Follow the mailbox's quota state and forecast; a change of state is a log event."""
        config = self._config().quota
        change = self._fullness.observe(mailbox, reading, config)
        limit = bounds_for(reading, mailbox.tiers, config).full
        self.forecasts.update(
            self._fullness, mailbox.address, limit, self._clock(), config, force=change is not None
        )
        if change is None or (change.previous is None and change.current is QuotaLevel.OK):
            return  # the first reading of a mailbox with room is no news
        log.warning(
            "quota_state",
            mailbox=mailbox.local_part,
            server=mailbox.server,
            previous=str(change.previous) if change.previous is not None else None,
            state=str(change.current),
            used_bytes=reading.used_bytes,
        )

    def trial_done(self, mailbox: Mailbox, protocol: Protocol, outcome: Outcomes | None) -> None:
        """Report a down endpoint's trial probe: its outcome decides whether it is back up."""
        detector = self._endpoints.detectors.get((mailbox.server, protocol))
        if detector is None:
            return
        result = outcome if isinstance(outcome, ProbeResult) else None
        if detector.record_trial(self._clock(), result):
            log.warning("server_up", server=mailbox.server, protocol=str(protocol))

    def skip(self, cause: SkipCause, mailbox: Mailbox, protocol: Protocol) -> None:
        """Count a due probe that was not sent."""
        self.skipped[(protocol, cause)] += 1
        log.debug(
            "probe_skipped", mailbox=mailbox.local_part, protocol=str(protocol), cause=str(cause)
        )
