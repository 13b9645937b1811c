"""One SMTP submission connection over aiosmtplib's protocol: TCP, TLS, read-only commands.

aiosmtplib's `SMTP.connect()` opens TCP, does the TLS handshake and reads the greeting in
one call, and its `starttls()` and `data()` write to the socket without passing through
`SMTP.execute_command`. This module drives aiosmtplib's protocol object instead, so that
TCP and TLS are timed apart and the read-only gate sits on the protocol's write path,
below every command aiosmtplib can send. aiosmtplib still parses every reply, bounds its
size and refuses control characters in commands.

No await here has a timeout of its own: the probe runs each under its phase's deadline.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import ssl

from aiosmtplib.auth import auth_plain_encode
from aiosmtplib.errors import SMTPResponseException, SMTPServerDisconnected
from aiosmtplib.esmtp import parse_esmtp_extensions
from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.response import SMTPResponse

from monitor.probes.readonly import SMTP_COMMANDS, ForbiddenCommand, check_smtp_command
from monitor.probes.result import TlsFacts
from monitor.probes.smtp_replies import AUTH_CONTINUE
from monitor.probes.tls import tls_facts

READY = 220
COMPLETED = 250
# RFC 5321's verbs and the extensions' that carry mail or reveal addresses: the gate names
# them when it refuses one. Any other first word outside an AUTH exchange is refused
# without being repeated, since a bug there could be sending a secret as a command.
_MAIL_VERBS = frozenset(
    {"MAIL", "RCPT", "DATA", "BDAT", "BURL", "VRFY", "EXPN", "HELP", "ETRN", "TURN", "ATRN"}
)


class SmtpProbeError(Exception):
    """A reply or a server's state that ends an SMTP probe; the probe names its reason."""


class ReplyRefused(SmtpProbeError):
    """The server refused a step outside AUTH (greeting, EHLO, STARTTLS) with this reply."""

    def __init__(self, step: str, code: int, text: str) -> None:
        super().__init__(f"{step} refused: {code} {text}")
        self.step = step
        self.code = code


class ProtocolMismatch(SmtpProbeError):
    """The server lacks what the probe needs, or answered out of turn."""


class _GatedProtocol(SMTPProtocol):
    """aiosmtplib's protocol, writing only what the read-only gate has let through."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop=loop)
        self._cleared: bytes | None = None  # the one line the gate let through, not yet sent
        # The server's last reply was a 334 inside AUTH: the next line answers its challenge
        # (base64, or `*` to cancel) and is not a command.
        self.sasl_turn = False

    # aiosmtplib's signatures, timeout included; probes pass none (see the module's docstring).
    async def execute_command(
        self,
        *args: bytes,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> SMTPResponse:
        in_exchange = self.sasl_turn
        if not in_exchange:
            _check_verb(args[0] if args else b"")
        self._cleared = b" ".join(args) + b"\r\n"
        self.sasl_turn = False
        try:
            response = await super().execute_command(*args, timeout=timeout)
        finally:
            self._cleared = None  # a clearance is for this one call
        started_exchange = not in_exchange and args[0].upper() == b"AUTH"
        self.sasl_turn = response.code == AUTH_CONTINUE and (in_exchange or started_exchange)
        return response

    async def execute_data_command(
        self,
        message: bytes,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> SMTPResponse:
        check_smtp_command("DATA")
        raise ForbiddenCommand("SMTP DATA is never sent by probes")  # if the list ever allows it

    async def start_tls(
        self,
        tls_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> SMTPResponse:
        _check_verb(b"STARTTLS")
        self._cleared = b"STARTTLS\r\n"
        try:
            return await super().start_tls(tls_context, server_hostname, timeout)
        finally:
            self._cleared = None

    def write(self, data: bytes) -> None:
        # The only way to the socket: a future aiosmtplib path that writes without passing
        # the gate fails here instead of sending.
        if data != self._cleared:
            raise ForbiddenCommand("SMTP bytes that did not pass the read-only gate; not sent")
        self._cleared = None
        super().write(data)


def _check_verb(verb: bytes) -> None:
    """Refuse a command line whose first word is not on the read-only list."""
    name = verb.decode("ascii", "replace").upper()
    if name not in SMTP_COMMANDS and name not in _MAIL_VERBS:
        raise ForbiddenCommand("SMTP line that is no command, outside an AUTH exchange; not sent")
    check_smtp_command(name)


class SmtpSession:
    """An SMTP client connection limited to what probes may do."""

    def __init__(self, host: str, port: int, server_name: str) -> None:
        self._host = host
        self._port = port
        self._server_name = server_name
        self._protocol: _GatedProtocol | None = None
        self.extensions: dict[str, str] = {}  # EHLO keywords, lower case, with their values
        self.mechanisms: list[str] = []  # SASL mechanisms offered, upper case
        self.tls: TlsFacts | None = None  # kept at the handshake: QUIT ends the transport

    @property
    def protocol(self) -> _GatedProtocol:
        """The live protocol; only valid after connect()."""
        if self._protocol is None:
            raise SMTPServerDisconnected("not connected")
        return self._protocol

    async def connect(self) -> None:
        """Open the TCP connection."""
        loop = asyncio.get_running_loop()
        protocol = _GatedProtocol(loop)
        await loop.create_connection(lambda: protocol, self._host, self._port)
        self._protocol = protocol

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """Wrap the open connection in TLS before the greeting (implicit TLS, port 465)."""
        protocol = self.protocol
        plain = protocol.transport
        if not isinstance(plain, asyncio.WriteTransport) or plain.is_closing():
            raise SMTPServerDisconnected("connection closed before TLS")
        transport = await asyncio.get_running_loop().start_tls(
            plain, protocol, context, server_hostname=self._server_name
        )
        if transport is None:
            raise SMTPServerDisconnected("connection closed during the TLS handshake")
        protocol.transport = transport
        self._note_tls()

    async def read_greeting(self) -> SMTPResponse:
        """Wait for the server's 220."""
        response = await self.protocol.read_response()
        if response.code != READY:
            raise ReplyRefused("greeting", response.code, response.message)
        return response

    async def ehlo(self) -> None:
        """Say EHLO and keep what the server offers."""
        response = await self.protocol.execute_command(b"EHLO", self._client_name())
        if response.code != COMPLETED:
            raise ReplyRefused("EHLO", response.code, response.message)
        self.extensions, mechanisms = parse_esmtp_extensions(response.message)
        self.mechanisms = [mechanism.upper() for mechanism in mechanisms]

    async def starttls(self, context: ssl.SSLContext) -> None:
        """Upgrade a plain connection with STARTTLS (port 587); EHLO must follow."""
        if "starttls" not in self.extensions:
            raise ProtocolMismatch("server does not offer STARTTLS")
        try:
            await self.protocol.start_tls(context, server_hostname=self._server_name)
        except SMTPResponseException as exc:
            raise ReplyRefused("STARTTLS", exc.code, exc.message) from exc
        self._note_tls()
        # RFC 3207 4.2: what the server said before TLS cannot be trusted.
        self.extensions, self.mechanisms = {}, []

    async def authenticate(self, mechanism: str, user: str, secret: str) -> SMTPResponse:
        """One AUTH exchange with one mechanism; its final reply, whatever it says."""
        execute = self.protocol.execute_command
        if mechanism == "PLAIN":
            response = await execute(b"AUTH", b"PLAIN", auth_plain_encode(user, secret))
        elif mechanism == "LOGIN":
            # Without an initial response: the first challenge is always the user name, so a
            # server that ignored one could never take the secret for the user name.
            response = await execute(b"AUTH", b"LOGIN")
            for answer in (user, secret):
                if response.code != AUTH_CONTINUE:
                    break
                response = await execute(base64.b64encode(answer.encode("utf-8")))
        else:
            raise ValueError(f"no AUTH {mechanism} in probes")
        if response.code == AUTH_CONTINUE:
            raise ProtocolMismatch(f"server asked for more after the whole AUTH {mechanism}")
        return response

    @property
    def can_quit(self) -> bool:
        """Whether QUIT would be read as a command, not as an answer inside AUTH."""
        return self._protocol is not None and not self._protocol.sasl_turn

    async def quit(self) -> None:
        """Say goodbye; the answer does not matter."""
        await self.protocol.execute_command(b"QUIT")

    def close(self) -> None:
        """Drop the connection now, whatever state it is in."""
        transport = self._protocol.transport if self._protocol is not None else None
        if isinstance(transport, asyncio.Transport):
            transport.abort()
        elif transport is not None:
            transport.close()

    def _note_tls(self) -> None:
        transport = self.protocol.transport
        self.tls = tls_facts(transport.get_extra_info("ssl_object") if transport else None)

    def _client_name(self) -> bytes:
        """EHLO's argument: this end's address literal (RFC 5321 4.1.3), with no DNS lookup."""
        transport = self.protocol.transport
        sockname = transport.get_extra_info("sockname") if transport else None
        try:
            address = ipaddress.ip_address(sockname[0] if isinstance(sockname, tuple) else "")
        except (ValueError, IndexError):
            return b"localhost"
        literal = f"[IPv6:{address}]" if address.version == 6 else f"[{address}]"
        return literal.encode("ascii")
