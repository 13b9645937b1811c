"""One IMAP connection over aioimaplib: TCP, TLS (implicit or STARTTLS), read-only commands.

aioimaplib has no STARTTLS, reports a `* BYE` greeting, a dropped connection or a
reply it cannot parse only as a timeout, and keeps whatever a server sends. This module
drives aioimaplib's protocol object directly so that each of those becomes an immediate,
named failure, so that what a server can make a probe hold is bounded, and so that TCP
and TLS are timed apart.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import Callable
from typing import Any

from aioimaplib import aioimaplib

from monitor.probes.imap_replies import (
    ReplyError,
    capabilities_after_login,
    capability_atoms,
    parse_capability_reply,
    quote,
)
from monitor.probes.readonly import PROBE_GATE, ImapGate
from monitor.probes.redact import printable

Response = Any  # aioimaplib.Response: a (result, lines) named tuple

_LOST = "LOST"  # result given to commands still waiting when the connection ends

# What one connection may make a probe hold. The longest line a probe needs is a
# CAPABILITY line (Dovecot's is about 400 bytes); a folder name, quoted or as a literal,
# is at most a few hundred. 64 KiB is over a hundred times either, yet a server that
# announced a 4 GB literal or sent a line without end once made three probes hold 1.24 GB.
MAX_LINE_BYTES = 64 * 1024
MAX_LITERAL_BYTES = 64 * 1024
# One reply is everything the server sends until it completes a command. The longest a
# probe reads is LIST, one line per folder: 5,000 folders are some 250 KB in 5,000 lines.
# 100,000 lines or 16 MiB leave twenty times that and still bound a flood to about 20 MB.
MAX_REPLY_LINES = 100_000
MAX_REPLY_BYTES = 16 * 1024 * 1024
_CRLF = b"\r\n"
_LITERAL = re.compile(rb"\{(\d+)\}$")  # a line announcing a literal: `* LIST () "/" {12}`


class ConnectionLost(ConnectionError):
    """The server closed the connection, or sent what the client cannot parse."""


class ProtocolFault(ConnectionLost):
    """The server sent data the client cannot parse; the connection was dropped."""


class GreetingRefused(ConnectionError):
    """The server greeted with `* BYE`: it will not serve this connection."""


class _ReadOnlyProtocol(aioimaplib.IMAP4ClientProtocol):  # type: ignore[misc]
    """aioimaplib's protocol, with a read-only gate, bounded reads and a signal when the
    connection ends."""

    # aioimaplib's attributes this class reads or resets.
    state: str
    pending_sync_command: Any
    pending_async_commands: dict[str, Any]
    incomplete_line: bytes
    current_command: Any

    def __init__(self, loop: asyncio.AbstractEventLoop, gate: ImapGate) -> None:
        super().__init__(loop)
        self.gate = gate
        self.greeting: asyncio.Future[bytes] = loop.create_future()
        self.closed = False
        self.fault = ""
        self._reply_lines = 0
        self._reply_bytes = 0

    async def execute(self, command: Any, scrub: str | None = None) -> Response:
        args = tuple(command.args)
        self.gate.check(command.name, args, command.prefix)
        if self.closed:
            raise self.lost_error("connection closed by server")
        response = await super().execute(command, scrub=scrub)
        if response.result == _LOST:
            raise self.lost_error("connection closed by server")
        self.gate.observe(command.name, args, command.prefix, response.result, response.lines)
        return response

    def data_received(self, d: bytes) -> None:
        if self.fault:
            return  # aborted: whatever the transport still hands over is not read
        try:
            super().data_received(d)
        except ProtocolFault as exc:
            self._abort(str(exc))
        except Exception as exc:
            # aioimaplib raises on unexpected tags; this connection is no longer usable.
            self._abort(f"unparseable server data ({type(exc).__name__})")

    def _handle_responses(
        self, data: bytes, line_handler: Callable[[bytes, Any], Any], current_cmd: Any = None
    ) -> None:
        # aioimaplib (2.0.3) reads one line per recursive call: a read holding ~990 lines
        # or more raised RecursionError, so a LIST of a thousand folders failed. This is
        # the same reading as a loop, checking each line and literal against the caps
        # before anything is kept. Same contract: IncompleteRead carries what is pending.
        view = memoryview(data)
        command, pos = current_cmd, 0
        while pos < len(data):
            if command is not None and command.wait_literal_data():
                rest = command.append_literal_data(view[pos:])
                self._count_reply(lines=0, size=len(data) - pos - len(rest))
                pos = len(data) - len(rest)
                if command.wait_literal_data():
                    raise aioimaplib.IncompleteRead(command)
            end = data.find(_CRLF, pos, pos + MAX_LINE_BYTES + len(_CRLF))
            if end < 0:
                if len(data) - pos > MAX_LINE_BYTES + 1:
                    raise ProtocolFault(f"server line longer than {MAX_LINE_BYTES} bytes")
                raise aioimaplib.IncompleteRead(command, data[pos:])
            line, pos = data[pos:end], end + len(_CRLF)
            self._count_reply(lines=1, size=len(line) + len(_CRLF))
            literal_size = _announced_literal(line)
            handled = line_handler(line, command)
            if literal_size is not None:
                if handled is None:
                    handled = aioimaplib.Command("NIL", "unused", loop=self.loop)
                handled.begin_literal_data(literal_size)
                command = handled
            elif handled is not None and handled.wait_data():
                command = handled
            else:
                command = None
        if self.pending_sync_command is not None:
            self.pending_sync_command.flush()
        if command is not None and command.wait_data():
            raise aioimaplib.IncompleteRead(command)

    def _count_reply(self, *, lines: int, size: int) -> None:
        self._reply_lines += lines
        self._reply_bytes += size
        if self._reply_lines > MAX_REPLY_LINES:
            raise ProtocolFault(f"server reply longer than {MAX_REPLY_LINES} lines")
        if self._reply_bytes > MAX_REPLY_BYTES:
            raise ProtocolFault(f"server reply longer than {MAX_REPLY_BYTES} bytes")

    def _response_done(self, line: bytes) -> None:
        self._reply_lines = self._reply_bytes = 0
        super()._response_done(line)

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
            # When TLS fails, nobody is left to await the greeting; marking the exception
            # as seen keeps asyncio from reporting it as never retrieved.
            self.greeting.exception()
        self._fail_pending()
        super().connection_lost(exc)

    def lost_error(self, default: str) -> ConnectionLost:
        """The error to raise now that the connection is gone."""
        return ProtocolFault(self.fault) if self.fault else ConnectionLost(default)

    def _abort(self, fault: str) -> None:
        """Drop the connection and everything read from it, and fail waiting commands."""
        self.fault = fault
        self.closed = True
        # Released here, not when the protocol is collected: it may sit in a reference
        # cycle (a raised error's traceback holds the session) until a full collection.
        self.incomplete_line = b""
        self.current_command = None
        self._fail_pending()
        if self.transport is not None:
            self.transport.abort()

    def _fail_pending(self) -> None:
        # aioimaplib leaves commands waiting for a reply that will never come; end them now
        # so a dropped connection fails the probe at once instead of at its deadline.
        pending = [self.pending_sync_command, *self.pending_async_commands.values()]
        self.pending_sync_command = None
        self.pending_async_commands.clear()
        for command in pending:
            if command is not None:
                command.response.lines.clear()
                command.close(b"connection lost", _LOST)


class _FetchCommand(aioimaplib.FetchCommand):  # type: ignore[misc]
    """aioimaplib's FETCH, but telling whether a message's data is complete in constant time.

    aioimaplib rescans every line of the reply at each new line to find the last message's
    parentheses: 5,000 lines took 4 s, 20,000 took 78 s, with the event loop blocked. Here
    the parentheses since the last message's first line are counted as lines arrive.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._opened = self._closed = 0
        super().__init__(*args, **kwargs)

    def append_to_resp(self, line: bytes | bytearray, result: str = "Pending") -> None:
        super().append_to_resp(line, result)
        # Literal data comes as a bytearray; like aioimaplib, its parentheses do not count.
        if isinstance(line, bytes):
            if self.FETCH_MESSAGE_DATA_RE.match(line):
                self._opened = self._closed = 0
            self._opened += line.count(b"(")
            self._closed += line.count(b")")

    def wait_data(self) -> bool:
        return self._opened != self._closed


def _announced_literal(line: bytes) -> int | None:
    """The size of the literal a line announces, if any; a fault if it is over the cap."""
    match = _LITERAL.search(line)
    if match is None:
        return None
    digits = match.group(1).lstrip(b"0") or b"0"
    if len(digits) > 20:  # int() of thousands of digits is slow, or refused
        raise ProtocolFault(f"server announced a literal of a {len(digits)}-digit size")
    size = int(digits)
    if size > MAX_LITERAL_BYTES:
        raise ProtocolFault(f"server announced a {size}-byte literal")
    return size


class ImapSession:
    """An IMAP client connection limited to what its gate allows: by default, a probe's."""

    def __init__(self, host: str, port: int, server_name: str, gate: ImapGate = PROBE_GATE) -> None:
        gate.claim()
        self._host = host
        self._port = port
        self._server_name = server_name
        self._gate = gate
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
            lambda: _ReadOnlyProtocol(loop, self._gate), self._host, self._port
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

    def ssl_object(self) -> ssl.SSLObject | None:
        """The TLS state of the connection, once secured."""
        protocol = self._protocol
        if protocol is None or protocol.transport is None:
            return None
        found = protocol.transport.get_extra_info("ssl_object")
        return found if isinstance(found, ssl.SSLObject) else None

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
        quoted = quote(password)
        command = aioimaplib.Command("LOGIN", protocol.new_tag(), user, quoted, loop=protocol.loop)
        # Scrub the form on the wire: with a quote or backslash in it, the raw one is not.
        response = await protocol.execute(command, scrub=quoted)
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
        command = _FetchCommand(
            protocol.new_tag(), f"{first}:{last}", "(RFC822.SIZE)", loop=protocol.loop
        )
        return await protocol.execute(command)

    async def select(self, folder: str) -> Response:
        """Open a folder read-write; only a gate with a write exception lets it through."""
        response = await self.command("SELECT", quote(folder))
        # Any answer closes the folder that was open (RFC 3501 6.3.1); a refusal leaves none.
        self.protocol.state = aioimaplib.SELECTED if response.result == "OK" else aioimaplib.AUTH
        return response

    async def uid(self, name: str, *args: str) -> Response:
        """A UID command (SEARCH, STORE, EXPUNGE) other than FETCH."""
        protocol = self.protocol
        command = aioimaplib.Command(
            name, protocol.new_tag(), *args, prefix="UID", loop=protocol.loop
        )
        return await protocol.execute(command)

    async def uid_fetch(self, uid_set: str, items: str) -> Response:
        """UID FETCH, literals included in the reply's lines as bytearrays."""
        protocol = self.protocol
        command = _FetchCommand(
            protocol.new_tag(), uid_set, items, prefix="UID", loop=protocol.loop
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
