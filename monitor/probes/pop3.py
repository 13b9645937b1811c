"""The POP3 probe: connect, TLS, greeting, CAPA, login, STAT, QUIT, each phase timed.

The session is kept short on purpose: with Dovecot's pop3_lock_session (and on servers
that lock the maildrop as RFC 1939 asks), a school's client that connects while the probe
is logged in waits for it, or is told the mailbox is in use.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from enum import StrEnum

from monitor.config.model import EndpointConfig, TlsMode
from monitor.credentials import Secret, SecretKind
from monitor.probes.contract import BeforeSecret, Clock, ProbeOptions, Prober
from monitor.probes.failures import transport_failure
from monitor.probes.pop3_errors import GreetingRefused, Pop3Error, ProtocolFault
from monitor.probes.pop3_replies import Capabilities, Reply, classify_refusal, parse_stat
from monitor.probes.pop3_session import Pop3Session, plain_response
from monitor.probes.redact import printable, secret_forms
from monitor.probes.result import (
    CONNECT,
    GREETING,
    TLS,
    ProbeResult,
    Protocol,
    QuotaReading,
    QuotaSource,
    Reason,
)
from monitor.probes.run import ProbeRun, reach_greeting, required_context
from monitor.probes.timing import PhaseDeadline, phases_until

QUIT_TIMEOUT = 2.0
DEFAULT_OPTIONS = ProbeOptions()  # POP3 reads nothing the options change


class Phase(StrEnum):
    """Timed steps of a POP3 probe, in the order they happen."""

    CONNECT = CONNECT
    TLS = TLS
    GREETING = GREETING
    CAPA = "capa"
    LOGIN = "login"
    STAT = "stat"
    QUIT = "quit"


async def probe_pop3(
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
    """Log in to one mailbox and read its inbox size with STAT; failures are reasons.

    `before_secret` is awaited just before the password is sent; what it raises (the
    lock-out guard's refusal) ends the probe without sending it and is not caught here.
    """
    run = _Run(endpoint, address, secret, context, clock)
    return await run.probe(deadline, before_secret)


async def check_pop3_server(
    endpoint: EndpointConfig,
    *,
    context: ssl.SSLContext | None,
    deadline: float,
    clock: Clock = time.time,
) -> ProbeResult:
    """A credential-free health check of a POP3 server, for use while it is thought down."""
    label = f"{endpoint.host}:{endpoint.port}"
    return await _Run(endpoint, label, Secret(""), context, clock).check(deadline)


class _Run(ProbeRun):
    """State of one probe run, so each step can be written as a plain method."""

    def __init__(
        self,
        server: EndpointConfig,
        address: str,
        secret: Secret,
        context: ssl.SSLContext | None,
        clock: Clock,
    ) -> None:
        # AUTH PLAIN sends the password inside base64; a server may echo that back.
        password = secret.reveal()
        forms = secret_forms(password, plain_response(address, password))
        super().__init__(Protocol.POP3, address, forms, clock)
        self.server = server
        self.secret = secret
        self.context = context
        self.session = Pop3Session(server.host, server.port, server.tls_server_name or server.host)
        self.capabilities: Capabilities | None = None  # None: the server has no CAPA

    async def probe(self, deadline: float, before_secret: BeforeSecret | None) -> ProbeResult:
        started = self.clock()
        deadline_at = asyncio.get_running_loop().time() + deadline
        try:
            async with phases_until(self.timer, deadline_at) as phases:
                await self._reach(phases)
                use_sasl = self._use_sasl()
                reply = await self._log_in(phases, before_secret, use_sasl)
            if not reply.ok:
                reason = classify_refusal(reply.text)
                shown = printable(reply.text, None)  # result() scrubs, then cuts
                return self.result(started, reason, shown, failed_phase=Phase.LOGIN)
            quota, quota_error = await self._stat(deadline_at)
            await self._quit(deadline_at)
            return self.result(started, Reason.OK, "", quota=quota, quota_error=quota_error)
        except Exception as exc:
            return self.failed(started, exc, classify_exception)
        finally:
            self.session.close()

    async def check(self, deadline: float) -> ProbeResult:
        """Connect, secure, greeting and CAPA only, with no credential."""
        started = self.clock()
        deadline_at = asyncio.get_running_loop().time() + deadline
        try:
            async with phases_until(self.timer, deadline_at) as phases:
                await self._reach(phases)
            await self._quit(deadline_at)
            return self.result(started, Reason.OK, "")
        except Exception as exc:
            return self.failed(started, exc, classify_exception)
        finally:
            self.session.close()

    async def _reach(self, phases: PhaseDeadline) -> None:
        """Connect, secure, greet and list capabilities: everything before a credential."""
        server, session = self.server, self.session
        await reach_greeting(phases, Phase, server, session, self.context)
        with phases.phase(Phase.CAPA, server.command_timeout):
            self.capabilities = await session.capabilities()
        if server.tls is TlsMode.STARTTLS:
            with phases.phase(Phase.TLS, server.command_timeout):
                if self.capabilities is not None and "STLS" not in self.capabilities.names:
                    raise ProtocolFault("server does not offer STLS")
                await session.stls(required_context(self.context, server))
            # RFC 2595 4: what was said before TLS cannot be trusted; ask again.
            with phases.phase(Phase.CAPA, server.command_timeout):
                self.capabilities = await session.capabilities()

    def _use_sasl(self) -> bool:
        """AUTH PLAIN where CAPA lists it, else USER/PASS; a fault, still in the CAPA phase
        (the server's offer, not the mailbox, is at fault), where CAPA lists neither."""
        offered = self.capabilities
        # Without CAPA (an RFC 1939 server) USER/PASS is all there is to try.
        if offered is None or "PLAIN" in offered.sasl:
            return offered is not None
        if "USER" not in offered.names:
            raise ProtocolFault(f"server offers neither USER nor SASL PLAIN: {offered.shown()}")
        return False

    async def _log_in(
        self, phases: PhaseDeadline, before_secret: BeforeSecret | None, use_sasl: bool
    ) -> Reply:
        """Send the credential the way the server offers; its answer, +OK or a refusal."""
        with phases.phase(Phase.LOGIN, self.server.command_timeout):
            if before_secret is not None:
                await before_secret()
            password = self.secret.reveal()
            if use_sasl:
                return await self.session.auth_plain(self.address, password)
            return await self.session.user_pass(self.address, password)

    async def _stat(self, deadline_at: float) -> tuple[QuotaReading | None, str]:
        """The inbox's size from STAT; once logged in, a failure here is only a quota error."""
        try:
            async with phases_until(self.timer, deadline_at) as phases:
                with phases.phase(Phase.STAT, self.server.command_timeout):
                    reply = await self.session.stat()
        except TimeoutError:
            return None, "timed out before STAT was answered"
        except (Pop3Error, ConnectionError) as exc:
            return None, str(exc) or type(exc).__name__
        if not reply.ok:
            return None, f"STAT refused: {printable(reply.text, None)}"
        try:
            messages, octets = parse_stat(reply.text)
        except ProtocolFault as exc:
            return None, str(exc)
        # STAT counts the inbox only; the source says so, and ranks it below whole-mailbox sums.
        reading = QuotaReading(
            used_bytes=octets,
            limit_bytes=None,
            source=QuotaSource.POP3_STAT,
            measured_at=self.clock(),
            messages=messages,
        )
        return reading, ""

    async def _quit(self, deadline_at: float) -> None:
        """Say goodbye politely; what was measured does not depend on the answer."""
        limit = min(self.server.command_timeout, QUIT_TIMEOUT)
        quit_at = min(deadline_at, asyncio.get_running_loop().time() + limit)
        with self.timer.phase(Phase.QUIT):
            try:
                async with asyncio.timeout_at(quit_at):
                    await self.session.quit()
            except (TimeoutError, Pop3Error, ConnectionError):
                pass

    def connection_ssl(self) -> ssl.SSLObject | None:
        """The TLS state of the POP3 connection, once secured."""
        return self.session.ssl_object()


def classify_exception(exc: BaseException, phase: str | None) -> tuple[Reason, str]:
    """The single place where low-level errors become probe reasons."""
    # POP3's own errors first: GreetingRefused and ConnectionLost are ConnectionErrors too.
    if isinstance(exc, GreetingRefused):
        return Reason.SERVER_ERROR, f"server refused the connection: {exc}"
    if isinstance(exc, ProtocolFault):
        return Reason.PROTOCOL_ERROR, str(exc)
    found = transport_failure(exc, phase)
    if found is not None:
        return found
    raise exc  # a bug, not a server's doing: the scheduler reports it as internal_error


PROBER = Prober(
    protocol=Protocol.POP3,
    secret=SecretKind.MAILBOX,
    probe=probe_pop3,
    check=check_pop3_server,
    phases=tuple(Phase),
    auth_phase=Phase.LOGIN,
    # CAPA comes before any credential: a failure there is the server's too.
    reach_phases=frozenset({Phase.CONNECT, Phase.TLS, Phase.GREETING, Phase.CAPA}),
)
