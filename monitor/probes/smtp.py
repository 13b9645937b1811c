"""The SMTP AUTH probe: connect, TLS, greeting, EHLO, one AUTH, QUIT, each phase timed.

It checks the CERBERE password on the submission server: implicit TLS on 465 (the
schools' set-up guide) or STARTTLS on 587 (Exchange's front end). A probe sends exactly
one AUTH with exactly one mechanism, and nothing that could send or reveal mail.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum

from aiosmtplib.errors import SMTPException, SMTPResponseException

from monitor.config.model import EndpointConfig, TlsMode
from monitor.credentials import Secret, SecretKind
from monitor.probes.contract import BeforeSecret, Clock, ProbeOptions, Prober
from monitor.probes.failures import transport_failure
from monitor.probes.result import CONNECT, GREETING, TLS, ProbeResult, Protocol, Reason, TlsFacts
from monitor.probes.run import ProbeRun, reach_greeting, required_context
from monitor.probes.smtp_replies import (
    auth_secret_forms,
    choose_mechanism,
    classify_auth_reply,
    scrub,
    without_auth,
)
from monitor.probes.smtp_session import ProtocolMismatch, ReplyRefused, SmtpSession
from monitor.probes.timing import PhaseDeadline

QUIT_TIMEOUT = 5.0
DEFAULT_OPTIONS = ProbeOptions()


class Phase(StrEnum):
    """Timed steps of an SMTP probe; with STARTTLS, TLS comes after a first EHLO."""

    CONNECT = CONNECT
    TLS = TLS
    GREETING = GREETING
    EHLO = "ehlo"
    AUTH = "auth"
    QUIT = "quit"


# What a run's steps found: the reason, the detail, and the phase that failed if any.
Outcome = tuple[Reason, str, Phase | None]


async def probe_smtp(
    endpoint: EndpointConfig,
    address: str,
    secret: Secret,
    *,
    context: ssl.SSLContext | None,
    deadline: float,
    clock: Clock = time.time,
    before_secret: BeforeSecret | None = None,
    options: ProbeOptions = DEFAULT_OPTIONS,
) -> ProbeResult:
    """Authenticate once to the submission server; every failure comes back as a reason.

    `before_secret` is awaited just before the AUTH command; what it raises (the lock-out
    guard's refusal) ends the probe without sending it and is not caught here.
    """
    run = _Run(address, endpoint, secret, context, clock, before_secret)
    return await run.run(deadline, run.authenticate)


async def check_smtp_server(
    endpoint: EndpointConfig,
    *,
    context: ssl.SSLContext | None,
    deadline: float,
    clock: Clock = time.time,
) -> ProbeResult:
    """A credential-free check of an SMTP server: connect, TLS, greeting and EHLO, no AUTH."""
    label = f"{endpoint.host}:{endpoint.port}"
    run = _Run(label, endpoint, Secret(""), context, clock)
    return await run.run(deadline, run.greet)


class _Run(ProbeRun):
    """State of one probe run, so each step can be written as a plain method."""

    def __init__(
        self,
        address: str,
        server: EndpointConfig,
        secret: Secret,
        context: ssl.SSLContext | None,
        clock: Clock,
        before_secret: BeforeSecret | None = None,
    ) -> None:
        super().__init__(Protocol.SMTP, address, auth_secret_forms(address, secret.reveal()), clock)
        self.server = server
        self.secret = secret
        self.context = context
        self.before_secret = before_secret
        self.session = SmtpSession(server.host, server.port, server.tls_server_name or server.host)
        self._guard_refusal: Exception | None = None

    async def run(
        self, deadline: float, steps: Callable[[PhaseDeadline], Awaitable[Outcome]]
    ) -> ProbeResult:
        """Run `steps` under the deadline, then QUIT; a failure becomes the result's reason."""
        started = self.clock()
        deadline_at = asyncio.get_running_loop().time() + deadline
        try:
            async with asyncio.timeout_at(deadline_at) as timeout:
                reason, detail, failed_phase = await steps(
                    PhaseDeadline(self.timer, timeout, deadline_at)
                )
            await self._quit(deadline_at)
            return self.result(started, reason, detail, failed_phase=failed_phase)
        except Exception as exc:
            if exc is self._guard_refusal:
                raise
            return self.failed(started, exc, classify_exception)
        finally:
            self.session.close()

    async def greet(self, budget: PhaseDeadline) -> Outcome:
        """Everything before a credential: connect, secure, greeting, EHLO."""
        server, session = self.server, self.session
        await reach_greeting(budget, Phase, server, session, self.context)
        with budget.phase(Phase.EHLO, server.command_timeout):
            await session.ehlo()
        if server.tls is TlsMode.STARTTLS:
            with budget.phase(Phase.TLS, server.command_timeout):
                await session.starttls(required_context(self.context, server))
            with budget.phase(Phase.EHLO, server.command_timeout):
                await session.ehlo()
        return Reason.OK, "", None

    async def authenticate(self, budget: PhaseDeadline) -> Outcome:
        """Greet, then one AUTH with the one mechanism chosen; its reply is the outcome."""
        await self.greet(budget)
        mechanism = choose_mechanism(self.session.mechanisms)
        if mechanism is None:
            return Reason.PROTOCOL_ERROR, without_auth(self.session.extensions), Phase.EHLO
        with budget.phase(Phase.AUTH, self.server.command_timeout):
            await self._guard()
            reply = await self.session.authenticate(mechanism, self.address, self.secret.reveal())
        reason = classify_auth_reply(reply.code, reply.message)
        if reason is Reason.OK:
            return reason, "", None
        return reason, f"{reply.code} {reply.message}", Phase.AUTH

    async def _guard(self) -> None:
        """Await the lock-out guard, remembering what it raises so that it is let through."""
        if self.before_secret is None:
            return
        try:
            await self.before_secret()
        except Exception as exc:
            self._guard_refusal = exc
            raise

    async def _quit(self, deadline_at: float) -> None:
        """Say goodbye politely, within the deadline; the answer changes nothing measured."""
        if not self.session.can_quit:
            return
        loop = asyncio.get_running_loop()
        limit = min(self.server.command_timeout, QUIT_TIMEOUT)
        with self.timer.phase(Phase.QUIT):
            try:
                async with asyncio.timeout_at(min(deadline_at, loop.time() + limit)):
                    await self.session.quit()
            except (TimeoutError, ConnectionError, SMTPException):
                pass

    def scrub(self, text: str) -> str:
        """Text with the secret masked, in whole forms and in cut-short base64 echoes."""
        return scrub(text, self._secret_forms)

    def tls(self) -> TlsFacts | None:
        # Taken after the handshake: once the server answers QUIT, the transport is gone.
        return self.session.tls


def classify_exception(exc: BaseException, phase: str | None) -> tuple[Reason, str]:
    """The single place where low-level errors become probe reasons."""
    found = transport_failure(exc, phase)
    if found is not None:
        return found
    if isinstance(exc, ReplyRefused):
        return Reason.SERVER_ERROR, str(exc)
    if isinstance(exc, ProtocolMismatch):
        return Reason.PROTOCOL_ERROR, str(exc)
    if isinstance(exc, SMTPResponseException):
        # aiosmtplib's verdict on a malformed or over-long reply.
        where = f" during {phase}" if phase else ""
        return Reason.PROTOCOL_ERROR, f"unreadable reply{where}: {exc.message}"
    raise exc  # a bug, not a server's doing: the scheduler reports it as internal_error


PROBER = Prober(
    protocol=Protocol.SMTP,
    secret=SecretKind.CERBERE,
    probe=probe_smtp,
    check=check_smtp_server,
    phases=tuple(Phase),
    auth_phase=Phase.AUTH,
)
