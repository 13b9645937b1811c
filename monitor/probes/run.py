"""What one run of a probe does alike in every protocol: time its phases, end in a result."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import Protocol as Interface

from monitor.config.model import EndpointConfig, TlsMode
from monitor.probes.contract import Clock
from monitor.probes.redact import printable, scrub
from monitor.probes.result import (
    CONNECT,
    GREETING,
    TLS,
    ProbeResult,
    Protocol,
    QuotaReading,
    Reason,
    TlsFacts,
)
from monitor.probes.timing import PhaseDeadline, PhaseTimer
from monitor.probes.tls import tls_facts

# A protocol's one boundary from errors to reasons; it raises again what is a bug.
Classifier = Callable[[BaseException, str | None], tuple[Reason, str]]


class Greeting(Interface):
    """A protocol session's first steps, named alike in every protocol."""

    async def connect(self) -> None: ...

    async def start_tls(self, context: ssl.SSLContext) -> None: ...

    async def read_greeting(self) -> object: ...


async def reach_greeting(
    phases: PhaseDeadline,
    phase: Callable[[str], str],
    server: EndpointConfig,
    session: Greeting,
    context: ssl.SSLContext | None,
) -> None:
    """Connect, secure from the first byte where the endpoint says so, read the greeting:
    each step timed under the endpoint's connect or command timeout, as the protocol's own
    member of its phase (`phase` is the protocol's Phase enum)."""
    with phases.phase(phase(CONNECT), server.connect_timeout):
        await session.connect()
    if server.tls is TlsMode.IMPLICIT:
        with phases.phase(phase(TLS), server.connect_timeout):
            await session.start_tls(required_context(context, server))
    with phases.phase(phase(GREETING), server.command_timeout):
        await session.read_greeting()


def required_context(context: ssl.SSLContext | None, server: EndpointConfig) -> ssl.SSLContext:
    """The TLS context an endpoint's TLS mode needs; a missing one is a bug, not a reason."""
    if context is None:
        raise RuntimeError(f"endpoint wants TLS ({server.tls}) but no context was given")
    return context


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
