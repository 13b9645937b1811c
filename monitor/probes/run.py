"""What one run of a probe does alike in every protocol: time its phases, end in a result."""

from __future__ import annotations

import ssl
from collections.abc import Callable

from monitor.probes.contract import Clock
from monitor.probes.redact import printable, scrub
from monitor.probes.result import ProbeResult, Protocol, QuotaReading, Reason, TlsFacts
from monitor.probes.timing import PhaseTimer
from monitor.probes.tls import tls_facts

# A protocol's one boundary from errors to reasons; it raises again what is a bug.
Classifier = Callable[[BaseException, str | None], tuple[Reason, str]]


class ProbeRun:
    """One run of one probe; a protocol's run adds its steps and says which is its
    connection. Every text of the result is scrubbed of the secret."""

    def __init__(
        self, protocol: Protocol, address: str, secret_forms: tuple[str, ...], clock: Clock
    ) -> None:
        self.protocol = protocol
        self.address = address
        self.clock = clock
        self.timer = PhaseTimer()
        self._secret_forms = secret_forms

    def connection_ssl(self) -> ssl.SSLObject | None:
        """The TLS state of the run's connection, once secured."""
        return None

    def tls(self) -> TlsFacts | None:
        """What the run's handshake showed, read when the result is made."""
        return tls_facts(self.connection_ssl())

    def scrub(self, text: str) -> str:
        """Text with the secret masked in every form a server could echo it back in."""
        return scrub(text, self._secret_forms)

    def result(
        self,
        started: float,
        reason: Reason,
        detail: str,
        *,
        failed_phase: str | None = None,
        quota: QuotaReading | None = None,
        quota_error: str = "",
    ) -> ProbeResult:
        """The run's result: what it found and how long each phase took."""
        return ProbeResult(
            address=self.address,
            protocol=self.protocol,
            reason=reason,
            started_at=started,
            durations=dict(self.timer.durations),
            failed_phase=failed_phase,
            # Cut only once scrubbed: a cut could leave part of a secret that no form matches.
            detail=printable(self.scrub(detail)),
            quota=quota,
            quota_error=printable(self.scrub(quota_error)),
            tls=self.tls(),
        )

    def failed(self, started: float, exc: Exception, classify: Classifier) -> ProbeResult:
        """The result of a run an error ended, in the phase it was in; a bug raises again."""
        reason, detail = classify(exc, self.timer.current)
        return self.result(started, reason, detail, failed_phase=self.timer.current)
