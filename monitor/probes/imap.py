"""The IMAP probe: connect, TLS, greeting, LOGIN, quota, LOGOUT, each phase timed."""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator
from contextlib import AbstractContextManager, asynccontextmanager
from enum import StrEnum

from aioimaplib import aioimaplib

from monitor.config.model import EndpointConfig, TlsMode
from monitor.credentials import Secret, SecretKind
from monitor.probes.contract import BeforeSecret, Clock, ProbeOptions, Prober
from monitor.probes.failures import transport_failure
from monitor.probes.imap_replies import (
    ReplyError,
    classify_login_refusal,
    secret_forms,
    status_text,
)
from monitor.probes.imap_session import GreetingRefused, ImapSession, ProtocolFault
from monitor.probes.imap_usage import read_usage
from monitor.probes.readonly import PROBE_GATE, ImapGate
from monitor.probes.redact import printable
from monitor.probes.result import (
    CONNECT,
    GREETING,
    TLS,
    ProbeResult,
    Protocol,
    QuotaReading,
    Reason,
)
from monitor.probes.run import ProbeRun, required_context
from monitor.probes.timing import PhaseDeadline, phases_until

LOGOUT_TIMEOUT = 5.0
DEFAULT_OPTIONS = ProbeOptions()


class Phase(StrEnum):
    """Timed steps of an IMAP probe, in the order they happen."""

    CONNECT = CONNECT
    TLS = TLS
    GREETING = GREETING
    LOGIN = "login"
    QUOTA = "quota"
    LOGOUT = "logout"


async def probe_imap(
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
    """Log in to one mailbox and read its usage; every failure comes back as a reason.

    `before_secret` is awaited just before the password is sent; what it raises (the
    lock-out guard's refusal) ends the probe without sending it and is not caught here.
    """
    run = _Run(address, endpoint, secret, context, options, clock, before_secret)
    return await run.run(deadline)


async def check_imap_server(
    endpoint: EndpointConfig,
    *,
    context: ssl.SSLContext | None,
    deadline: float,
    clock: Clock = time.time,
) -> ProbeResult:
    """A credential-free health check of an IMAP server, for use while it is thought down."""
    label = f"{endpoint.host}:{endpoint.port}"
    run = _Run(label, endpoint, Secret(""), context, ProbeOptions(), clock)
    return await run.check(deadline)


class LoginRefused(Exception):
    """The server refused the mailbox's LOGIN; `detail` is scrubbed of the secret."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@asynccontextmanager
async def logged_in(
    endpoint: EndpointConfig,
    address: str,
    secret: Secret,
    *,
    context: ssl.SSLContext | None,
    deadline: float,
    gate: ImapGate,
    clock: Clock = time.time,
) -> AsyncIterator[ImapSession]:
    """A session through the probe's own connect, TLS, greeting and LOGIN steps, for work
    other than probing (the canary's); raises LoginRefused or what classify_exception reads.
    """
    run = _Run(address, endpoint, secret, context, DEFAULT_OPTIONS, clock, gate=gate)
    deadline_at = asyncio.get_running_loop().time() + deadline
    try:
        async with phases_until(run.timer, deadline_at) as run._phases:
            refusal = await run._log_in()
        if refusal is not None:
            raise LoginRefused(*refusal)
        yield run.session
        await run._logout()
    finally:
        run.session.close()


class _Run(ProbeRun):
    """State of one probe run, so each step can be written as a plain method."""

    def __init__(
        self,
        address: str,
        server: EndpointConfig,
        secret: Secret,
        context: ssl.SSLContext | None,
        usage: ProbeOptions,
        clock: Clock,
        before_secret: BeforeSecret | None = None,
        gate: ImapGate = PROBE_GATE,
    ) -> None:
        super().__init__(Protocol.IMAP, address, secret_forms(secret.reveal()), clock)
        self.before_secret = before_secret
        self.server = server
        self.secret = secret
        self.context = context
        self.usage = usage
        self.session = ImapSession(
            server.host, server.port, server.tls_server_name or server.host, gate
        )
        self._phases: PhaseDeadline | None = None  # the run's deadline, once it runs

    def _phase(self, phase: Phase, limit: float) -> AbstractContextManager[None]:
        """Time a phase and hold it to its own limit, within the probe's deadline."""
        assert self._phases is not None
        return self._phases.phase(phase, limit)

    async def run(self, deadline: float) -> ProbeResult:
        started = self.clock()
        deadline_at = asyncio.get_running_loop().time() + deadline
        quota: QuotaReading | None = None
        quota_error = ""
        try:
            async with phases_until(self.timer, deadline_at) as self._phases:
                refusal = await self._log_in()
            if refusal is not None:
                return self.result(started, *refusal, failed_phase=Phase.LOGIN)
            with self.timer.phase(Phase.QUOTA):
                try:
                    async with asyncio.timeout_at(deadline_at):
                        quota = await read_usage(
                            self.session,
                            estimate=self.usage.estimate_usage,
                            fetch_chunk=self.usage.fetch_chunk,
                            clock=self.clock,
                        )
                except TimeoutError:
                    quota_error = "timed out before the usage was read"
                except (ReplyError, aioimaplib.AioImapException, ConnectionError) as exc:
                    quota_error = printable(str(exc)) or type(exc).__name__
            await self._logout()
            return self.result(started, Reason.OK, "", quota=quota, quota_error=quota_error)
        except Exception as exc:
            return self.failed(started, exc, classify_exception)
        finally:
            self.session.close()

    async def check(self, deadline: float) -> ProbeResult:
        """Connect, TLS and greeting only, with no credential: is the server there at all?"""
        started = self.clock()
        deadline_at = asyncio.get_running_loop().time() + deadline
        try:
            async with phases_until(self.timer, deadline_at) as self._phases:
                await self._reach()
            await self._logout()
            return self.result(started, Reason.OK, "")
        except Exception as exc:
            return self.failed(started, exc, classify_exception)
        finally:
            self.session.close()

    async def _logout(self) -> None:
        """Say goodbye politely; what was measured does not depend on the answer."""
        with self.timer.phase(Phase.LOGOUT):
            try:
                async with asyncio.timeout(min(self.server.command_timeout, LOGOUT_TIMEOUT)):
                    await self.session.logout()
            except (TimeoutError, ConnectionError, aioimaplib.AioImapException):
                pass

    async def _reach(self) -> None:
        """Connect, secure and greet: everything before a credential is needed."""
        server, session = self.server, self.session
        with self._phase(Phase.CONNECT, server.connect_timeout):
            await session.connect()
        if server.tls is TlsMode.IMPLICIT:
            with self._phase(Phase.TLS, server.connect_timeout):
                await session.start_tls(required_context(self.context, server))
        with self._phase(Phase.GREETING, server.command_timeout):
            await session.read_greeting()
            if not session.capabilities:
                await session.refresh_capabilities()
        if server.tls is TlsMode.STARTTLS:
            with self._phase(Phase.TLS, server.command_timeout):
                await session.starttls(required_context(self.context, server))
                await session.refresh_capabilities()

    async def _log_in(self) -> tuple[Reason, str] | None:
        """Reach the logged-in state; return the refusal when LOGIN is refused."""
        await self._reach()
        session = self.session
        if "LOGINDISABLED" in session.capabilities:
            raise ReplyError("server refuses LOGIN on this connection (LOGINDISABLED)")
        with self._phase(Phase.LOGIN, self.server.command_timeout):
            if self.before_secret is not None:
                await self.before_secret()
            response = await session.login(self.address, self.secret.reveal())
            if response.result != "OK":
                text = status_text(response.lines)
                # Scrubbed before printable() cuts it, so no part of an echoed secret is left.
                shown = printable(self.scrub(text.decode("utf-8", "replace")))
                return classify_login_refusal(response.result, text), shown
            if not session.capabilities:
                await session.refresh_capabilities()
        return None

    def connection_ssl(self) -> ssl.SSLObject | None:
        """The TLS state of the IMAP connection, once secured."""
        return self.session.ssl_object()


def classify_exception(exc: BaseException, phase: str | None) -> tuple[Reason, str]:
    """The single place where low-level errors become probe reasons."""
    # IMAP's own errors first: GreetingRefused and ProtocolFault are ConnectionErrors too.
    if isinstance(exc, GreetingRefused):
        return Reason.SERVER_ERROR, f"server refused the connection: {exc}"
    if isinstance(exc, ProtocolFault):
        return Reason.PROTOCOL_ERROR, str(exc)
    # Before ValueError: a certificate that fails verification is a ValueError too.
    found = transport_failure(exc, phase)
    if found is not None:
        return found
    if isinstance(exc, ReplyError | aioimaplib.AioImapException | ValueError):
        return Reason.PROTOCOL_ERROR, printable(str(exc)) or type(exc).__name__
    raise exc  # a bug, not a server's doing: the scheduler reports it as internal_error


PROBER = Prober(
    protocol=Protocol.IMAP,
    secret=SecretKind.MAILBOX,
    probe=probe_imap,
    check=check_imap_server,
    phases=tuple(Phase),
    auth_phase=Phase.LOGIN,
)
