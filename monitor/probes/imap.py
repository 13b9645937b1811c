"""The IMAP probe: connect, TLS, greeting, LOGIN, quota, LOGOUT, each phase timed."""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from aioimaplib import aioimaplib

from monitor.config.model import ServerConfig, TlsMode
from monitor.credentials import Secret
from monitor.probes.imap_replies import (
    ReplyError,
    classify_login_refusal,
    printable,
    secret_forms,
    status_text,
)
from monitor.probes.imap_session import GreetingRefused, ImapSession, ProtocolFault
from monitor.probes.imap_usage import read_usage
from monitor.probes.result import Phase, ProbeResult, Protocol, QuotaReading, Reason
from monitor.probes.timing import PhaseTimer

LOGOUT_TIMEOUT = 5.0

BeforeSecret = Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class UsagePlan:
    """What the scheduler wants measured besides the login."""

    estimate: bool  # sum folder sizes where the server has no QUOTA (slow)
    fetch_chunk: int = 250


def tls_context(server: ServerConfig) -> ssl.SSLContext | None:
    """A verifying client context for the server, or None for a plain connection."""
    if server.tls is TlsMode.NONE:
        return None
    context = ssl.create_default_context(
        cafile=str(server.ca_file) if server.ca_file is not None else None
    )
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def probe_imap(
    address: str,
    server: ServerConfig,
    secret: Secret,
    *,
    context: ssl.SSLContext | None,
    deadline: float,
    usage: UsagePlan,
    clock: Callable[[], float] = time.time,
    before_secret: BeforeSecret | None = None,
) -> ProbeResult:
    """Log in to one mailbox and read its usage; every failure comes back as a reason.

    `before_secret` is awaited just before the password is sent; what it raises (the
    lock-out guard's refusal) ends the probe without sending it and is not caught here.
    """
    run = _Run(address, server, secret, context, usage, clock, before_secret)
    return await run.run(deadline)


async def check_imap_server(
    server: ServerConfig,
    *,
    context: ssl.SSLContext | None,
    deadline: float,
    clock: Callable[[], float] = time.time,
) -> ProbeResult:
    """A credential-free health check of an IMAP server, for use while it is thought down."""
    label = f"{server.host}:{server.port}"
    run = _Run(label, server, Secret(""), context, UsagePlan(estimate=False), clock)
    return await run.check(deadline)


class _Run:
    """State of one probe run, so each step can be written as a plain method."""

    def __init__(
        self,
        address: str,
        server: ServerConfig,
        secret: Secret,
        context: ssl.SSLContext | None,
        usage: UsagePlan,
        clock: Callable[[], float],
        before_secret: BeforeSecret | None = None,
    ) -> None:
        self.address = address
        self.before_secret = before_secret
        self.server = server
        self.secret = secret
        self.context = context
        self.usage = usage
        self.clock = clock
        self.timer = PhaseTimer()
        self.session = ImapSession(server.host, server.port, server.tls_server_name or server.host)
        self._deadline: asyncio.Timeout | None = None
        self._deadline_at = 0.0

    @contextmanager
    def _phase(self, phase: Phase, limit: float) -> Iterator[None]:
        """Time a phase and hold it to its own limit, within the probe's deadline."""
        # One Timeout for the whole login, moved at each phase: cheaper than one per phase.
        assert self._deadline is not None
        now = asyncio.get_running_loop().time()
        self._deadline.reschedule(min(self._deadline_at, now + limit))
        with self.timer.phase(phase):
            yield

    async def run(self, deadline: float) -> ProbeResult:
        started = self.clock()
        deadline_at = self._deadline_at = asyncio.get_running_loop().time() + deadline
        quota: QuotaReading | None = None
        quota_error = ""
        try:
            async with asyncio.timeout_at(deadline_at) as self._deadline:
                refusal = await self._log_in()
            if refusal is not None:
                return self._result(started, *refusal, failed_phase=Phase.LOGIN)
            with self.timer.phase(Phase.QUOTA):
                try:
                    async with asyncio.timeout_at(deadline_at):
                        quota = await read_usage(
                            self.session,
                            estimate=self.usage.estimate,
                            fetch_chunk=self.usage.fetch_chunk,
                            clock=self.clock,
                        )
                except TimeoutError:
                    quota_error = "timed out before the usage was read"
                except (ReplyError, aioimaplib.AioImapException, ConnectionError) as exc:
                    quota_error = printable(str(exc)) or type(exc).__name__
            await self._logout()
            return self._result(started, Reason.OK, "", quota, quota_error)
        except Exception as exc:
            reason, detail = classify_exception(exc, self.timer.current)
            return self._result(started, reason, detail, failed_phase=self.timer.current)
        finally:
            self.session.close()

    async def check(self, deadline: float) -> ProbeResult:
        """Connect, TLS and greeting only, with no credential: is the server there at all?"""
        started = self.clock()
        self._deadline_at = asyncio.get_running_loop().time() + deadline
        try:
            async with asyncio.timeout_at(self._deadline_at) as self._deadline:
                await self._reach()
            await self._logout()
            return self._result(started, Reason.OK, "")
        except Exception as exc:
            reason, detail = classify_exception(exc, self.timer.current)
            return self._result(started, reason, detail, failed_phase=self.timer.current)
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
            assert self.context is not None
            with self._phase(Phase.TLS, server.connect_timeout):
                await session.start_tls(self.context)
        with self._phase(Phase.GREETING, server.command_timeout):
            await session.read_greeting()
            if not session.capabilities:
                await session.refresh_capabilities()
        if server.tls is TlsMode.STARTTLS:
            assert self.context is not None
            with self._phase(Phase.TLS, server.command_timeout):
                await session.starttls(self.context)
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
                shown = printable(self._scrub(text.decode("utf-8", "replace")))
                return classify_login_refusal(response.result, text), shown
            if not session.capabilities:
                await session.refresh_capabilities()
        return None

    def _result(
        self,
        started: float,
        reason: Reason,
        detail: str,
        quota: QuotaReading | None = None,
        quota_error: str = "",
        failed_phase: Phase | None = None,
    ) -> ProbeResult:
        return ProbeResult(
            address=self.address,
            protocol=Protocol.IMAP,
            reason=reason,
            started_at=started,
            durations=dict(self.timer.durations),
            failed_phase=failed_phase,
            detail=self._scrub(detail),
            quota=quota,
            quota_error=self._scrub(quota_error),
        )

    def _scrub(self, text: str) -> str:
        """Text with the secret masked in every form a server could echo it back in."""
        for form in secret_forms(self.secret.reveal()):
            text = text.replace(form, "********")
        return text


def classify_exception(exc: BaseException, phase: Phase | None) -> tuple[Reason, str]:
    """The single place where low-level errors become probe reasons."""
    where = f" during {phase}" if phase else ""
    if isinstance(exc, TimeoutError):
        return Reason.TIMEOUT, f"no answer{where}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return Reason.TLS_ERROR, f"certificate not trusted: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return Reason.TLS_ERROR, f"TLS failed{where}: {exc.reason or type(exc).__name__}"
    if isinstance(exc, GreetingRefused):
        return Reason.SERVER_ERROR, f"server refused the connection: {exc}"
    if isinstance(exc, ConnectionRefusedError):
        return Reason.CONNECT_REFUSED, "connection refused"
    if isinstance(exc, socket.gaierror):
        return Reason.DNS_ERROR, f"name resolution failed: {exc.strerror}"
    if isinstance(exc, ProtocolFault):
        return Reason.PROTOCOL_ERROR, str(exc)
    if isinstance(exc, ConnectionError | EOFError):
        return Reason.CONNECTION_CLOSED, f"connection closed{where}"
    if isinstance(exc, ReplyError | aioimaplib.AioImapException | ValueError):
        return Reason.PROTOCOL_ERROR, printable(str(exc)) or type(exc).__name__
    if isinstance(exc, OSError):
        return Reason.CONNECT_REFUSED, f"network error{where}: {exc.strerror or type(exc).__name__}"
    raise exc  # a bug, not a server's doing: the scheduler reports it as internal_error
