"""One IMAP connection over aioimaplib: TCP, TLS (implicit or STARTTLS), read-only commands.

aioimaplib has no STARTTLS and reports a `* BYE` greeting, a dropped connection or a
reply it cannot parse only as a timeout. This module drives aioimaplib's protocol
object directly so that each of those becomes an immediate, named failure, and so that
TCP and TLS are timed apart.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from aioimaplib import aioimaplib

from monitor.probes.imap_replies import (
    ReplyError,
    capabilities_after_login,
    capability_atoms,
    parse_capability_reply,
    printable,
    quote,
)
from monitor.probes.readonly import check_imap_command

Response = Any  # aioimaplib.Response: a (result, lines) named tuple


_LOST = "LOST"  # result given to commands still waiting when the connection ends


class ConnectionLost(ConnectionError):
    """The server closed the connection, or sent what the client cannot parse."""


class ProtocolFault(ConnectionLost):
    """The server sent data the client cannot parse; the connection was dropped."""


class GreetingRefused(ConnectionError):
    """The server greeted with `* BYE`: it will not serve this connection."""


class _ReadOnlyProtocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib's protocol, with a read-only gate and a signal when the connection ends."""

    state: str

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.greeting: asyncio.Future[bytes] = loop.create_future()
        self.closed = False
        self.fault = ""

    async def execute(self, command: Any, scrub: str | None = None) -> Response:
        check_imap_command(command.name, tuple(command.args), command.prefix)
        if self.closed:
            raise self.lost_error("connection closed by server")
        response = await super().execute(command, scrub=scrub)
        if response.result == _LOST:
            raise self.lost_error("connection closed by server")
        return response

    def data_received(self, d: bytes) -> None:
        try:
            super().data_received(d)
        except Exception as exc:
            # aioimaplib parses recursively (RecursionError on a very long reply) and raises
            # on unexpected tags; either way this connection is no longer usable.
            self.fault = f"unparseable server data ({type(exc).__name__})"
            if self.transport is not None:
                self.transport.abort()

    def _handle_line(self, line: bytes, current_cmd: Any) -> Any:
        if self.state == aioimaplib.CONNECTED:
            # The greeting is read here rather than by aioimaplib, which would swallow a BYE.
            if line and not self.greeting.done():
                self.greeting.set_result(bytes(line))
                upper = line.upper()
                if upper.startswith(b"* OK"):
                    self.state = aioimaplib.NONAUTH
                elif upper.startswith(b"* PREAUTH"):
                    self.state = aioimaplib.AUTH
            return None
        return super()._handle_line(line, current_cmd)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if not self.greeting.done():
            self.greeting.set_exception(self.lost_error("closed before greeting"))
        # aioimaplib leaves commands waiting for a reply that will never come; end them now
        # so a dropped connection fails the probe at once instead of at its deadline.
        pending = [self.pending_sync_command, *self.pending_async_commands.values()]
        for command in pending:
            if command is not None:
                command.close(b"connection lost", _LOST)
        super().connection_lost(exc)

    def lost_error(self, default: str) -> ConnectionLost:
        """The error to raise now that the connection is gone."""
        return ProtocolFault(self.fault) if self.fault else ConnectionLost(default)


class ImapSession:
    """An IMAP client connection limited to what probes may do."""

    def __init__(self, host: str, port: int, server_name: str) -> None:
        self._host = host
        self._port = port
        self._server_name = server_name
        self._protocol: _ReadOnlyProtocol | None = None
        self.capabilities: set[str] = set()

    @property
    def protocol(self) -> _ReadOnlyProtocol:
        """The live protocol; only valid after connect()."""
        if self._protocol is None:
            raise ConnectionLost("not connected")
        return self._protocol

    async def connect(self) -> None:
        """Open the TCP connection."""
        loop = asyncio.get_running_loop()
        _, protocol = await loop.create_connection(
            lambda: _ReadOnlyProtocol(loop), self._host, self._port
        )
        self._protocol = protocol

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """Wrap the open connection in TLS and check the server's certificate."""
        loop = asyncio.get_running_loop()
        protocol = self.protocol
        if protocol.closed:
            raise protocol.lost_error("connection closed before TLS")
        transport = await loop.start_tls(
            protocol.transport, protocol, context, server_hostname=self._server_name
        )
        if transport is None:
            raise ConnectionLost("connection closed during TLS handshake")
        protocol.transport = transport

    async def read_greeting(self) -> bytes:
        """Wait for the greeting; a BYE or garbage greeting is an error."""
        greeting = await self.protocol.greeting
        upper = greeting.upper()
        if upper.startswith(b"* BYE"):
            raise GreetingRefused(printable(greeting[5:]) or "server said BYE")
        if not upper.startswith(b"* OK"):
            raise ReplyError(f"unexpected greeting {printable(greeting, 80)!r}")
        atoms = capability_atoms([greeting[4:].lstrip()])
        self.capabilities = atoms if atoms is not None else set()
        return greeting

    async def starttls(self, context: ssl.SSLContext) -> None:
        """Upgrade a plain connection with the STARTTLS command."""
        if "STARTTLS" not in self.capabilities:
            raise ReplyError("server does not offer STARTTLS")
        response = await self.command("STARTTLS")
        if response.result != "OK":
            raise ReplyError(
                f"STARTTLS refused: {printable(response.lines[-1] if response.lines else b'')}"
            )
        await self.start_tls(context)
        # RFC 3501 6.2.1: what was said before TLS cannot be trusted; ask again.
        self.capabilities = set()

    async def refresh_capabilities(self) -> set[str]:
        """Ask the server for its capabilities."""
        response = await self.command("CAPABILITY")
        atoms = parse_capability_reply(response.lines) if response.result == "OK" else set()
        if "IMAP4REV1" not in atoms:
            raise ReplyError("CAPABILITY reply does not name IMAP4rev1")
        self.capabilities = atoms
        return atoms

    async def login(self, user: str, password: str) -> Response:
        """LOGIN; the password is quoted, and scrubbed from aioimaplib's own debug log."""
        protocol = self.protocol
        command = aioimaplib.Command(
            "LOGIN", protocol.new_tag(), user, quote(password), loop=protocol.loop
        )
        response = await protocol.execute(command, scrub=password)
        if response.result == "OK":
            protocol.state = aioimaplib.AUTH
            atoms = capabilities_after_login(response.lines)
            # Servers may announce new capabilities (QUOTA, say) only once logged in.
            self.capabilities = atoms if atoms is not None else set()
        return response

    async def examine(self, folder: str) -> Response:
        """Open a folder read-only."""
        response = await self.command("EXAMINE", quote(folder))
        if response.result == "OK":
            self.protocol.state = aioimaplib.SELECTED
        return response

    async def fetch_sizes(self, first: int, last: int) -> Response:
        """RFC822.SIZE of messages first..last of the open folder."""
        protocol = self.protocol
        command = aioimaplib.FetchCommand(
            protocol.new_tag(), f"{first}:{last}", "(RFC822.SIZE)", loop=protocol.loop
        )
        return await protocol.execute(command)

    async def command(self, name: str, *args: str, untagged: str | None = None) -> Response:
        """Send one command and wait for its tagged reply."""
        protocol = self.protocol
        command = aioimaplib.Command(
            name, protocol.new_tag(), *args, untagged_resp_name=untagged, loop=protocol.loop
        )
        return await protocol.execute(command)

    async def logout(self) -> None:
        """Say goodbye; the answer does not matter."""
        await self.command("LOGOUT")

    def close(self) -> None:
        """Drop the connection now, whatever state it is in."""
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.abort()
