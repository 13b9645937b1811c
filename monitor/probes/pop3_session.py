"""One POP3 connection on asyncio: TCP, TLS (implicit or STLS), read-only commands.

No maintained asyncio POP3 client exists, and poplib in a thread cannot be stopped at a
deadline: a hung server would keep a thread per probe. This client reads through an
asyncio protocol of its own rather than a StreamReader, because after STLS whatever the
server sent before the handshake must be seen and refused (RFC 2595 section 4, the
plaintext injection of CVE-2011-0411), and a StreamReader does not show what it holds.
Every line is bounded, every command passes the read-only gate, and the caller puts every
await under its deadline.
"""

from __future__ import annotations

import asyncio
import base64
import ssl

from monitor.probes.pop3_errors import ConnectionLost, GreetingRefused, ProtocolFault
from monitor.probes.pop3_replies import (
    Capabilities,
    Reply,
    parse_capabilities,
    parse_status,
)
from monitor.probes.readonly import ForbiddenCommand, check_pop3_command
from monitor.probes.redact import printable

# RFC 2449 allows a reply line 512 octets; 64 KiB is over a hundred times that, and what
# a server without line ends can make a probe hold.
MAX_LINE_BYTES = 64 * 1024
# Dovecot's CAPA is ten short lines; a flood stops here.
MAX_CAPA_LINES = 1_000
MAX_CAPA_BYTES = 64 * 1024
# Unread data beyond this stops reading from the socket until the probe reads on.
_PAUSE_BYTES = 2 * MAX_LINE_BYTES
_UNSENDABLE = ("\r", "\n", "\0")


class _LineReader(asyncio.Protocol):
    """Bytes from the server, handed out a line at a time, never more than the caps."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._ended = False
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) > _PAUSE_BYTES and not self._paused and self.transport:
            self.transport.pause_reading()
            self._paused = True
        self._wake()

    def eof_received(self) -> bool | None:
        self._ended = True
        self._wake()
        return None  # close the transport: a POP3 server does not half-close

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended = True
        self._wake()

    @property
    def pending(self) -> int:
        """Bytes received and not yet read."""
        return len(self._buffer)

    async def readline(self) -> bytes:
        """The next line without its line end; a fault when it outgrows MAX_LINE_BYTES."""
        while True:
            end = self._buffer.find(b"\n", 0, MAX_LINE_BYTES + 2)
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                self._resume()
                return line.removesuffix(b"\r")
            if len(self._buffer) > MAX_LINE_BYTES + 1:
                raise ProtocolFault(f"server line longer than {MAX_LINE_BYTES} bytes")
            if self._ended:
                raise ConnectionLost("connection closed by server")
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _resume(self) -> None:
        if self._paused and len(self._buffer) <= _PAUSE_BYTES and self.transport:
            self.transport.resume_reading()
            self._paused = False


class Pop3Session:
    """A POP3 client connection limited to what probes may do."""

    def __init__(self, host: str, port: int, server_name: str) -> None:
        self._host = host
        self._port = port
        self._server_name = server_name
        self._reader: _LineReader | None = None

    @property
    def reader(self) -> _LineReader:
        """The live connection; only valid after connect()."""
        if self._reader is None or self._reader.transport is None:
            raise ConnectionLost("not connected")
        return self._reader

    async def connect(self) -> None:
        """Open the TCP connection."""
        loop = asyncio.get_running_loop()
        _, self._reader = await loop.create_connection(_LineReader, self._host, self._port)

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """Wrap the open connection in TLS and check the server's certificate."""
        reader = self.reader
        if reader.pending:
            # Sent before the handshake, it would be read as if it came over TLS.
            raise ProtocolFault("server sent data before the TLS handshake")
        assert reader.transport is not None
        transport = await asyncio.get_running_loop().start_tls(
            reader.transport, reader, context, server_hostname=self._server_name
        )
        if transport is None:
            raise ConnectionLost("connection closed during TLS handshake")
        reader.transport = transport

    def ssl_object(self) -> ssl.SSLObject | None:
        """The TLS state of the connection, once secured."""
        if self._reader is None or self._reader.transport is None:
            return None
        found = self._reader.transport.get_extra_info("ssl_object")
        return found if isinstance(found, ssl.SSLObject) else None

    async def read_greeting(self) -> bytes:
        """Wait for the greeting; a -ERR or garbage greeting is an error."""
        line = await self.reader.readline()
        try:
            reply = parse_status(line)
        except ProtocolFault:
            raise ProtocolFault(f"unexpected greeting: {printable(line, 80)}") from None
        if not reply.ok:
            raise GreetingRefused(printable(reply.text) or "server said -ERR")
        return reply.text

    async def capabilities(self) -> Capabilities | None:
        """What CAPA lists; None from a server without CAPA (RFC 1939 only)."""
        reply = await self.command("CAPA")
        if not reply.ok:
            return None
        lines: list[bytes] = []
        size = 0
        while (line := await self.reader.readline()) != b".":
            size += len(line) + 2
            if len(lines) >= MAX_CAPA_LINES or size > MAX_CAPA_BYTES:
                raise ProtocolFault(
                    f"CAPA reply longer than {MAX_CAPA_LINES} lines or {MAX_CAPA_BYTES} bytes"
                )
            lines.append(line.removeprefix(b"."))  # RFC 1939 3: undo dot-stuffing
        return parse_capabilities(lines)

    async def stls(self, context: ssl.SSLContext) -> None:
        """Upgrade a plain connection with STLS (RFC 2595)."""
        reply = await self.command("STLS")
        if not reply.ok:
            raise ProtocolFault(f"STLS refused: {printable(reply.text)}")
        await self.start_tls(context)

    async def user_pass(self, user: str, password: str) -> Reply:
        """USER then PASS (RFC 1939); the refusal of either is returned."""
        reply = await self.command("USER", user)
        if not reply.ok:
            return reply
        return await self.command("PASS", password)

    async def auth_plain(self, user: str, password: str) -> Reply:
        """AUTH PLAIN with the initial response (RFC 5034), no authorisation identity."""
        await self.send("AUTH", "PLAIN", plain_response(user, password))
        line = await self.reader.readline()
        if line.startswith(b"+") and not line.upper().startswith(b"+OK"):
            # A challenge after the whole PLAIN response: nothing more can be answered.
            raise ProtocolFault("server asked for more after AUTH PLAIN's initial response")
        return parse_status(line)

    async def stat(self) -> Reply:
        """STAT: message count and size of the maildrop."""
        return await self.command("STAT")

    async def quit(self) -> None:
        """Say goodbye; the answer does not matter."""
        await self.command("QUIT")

    async def command(self, name: str, *args: str) -> Reply:
        """Send one command and read its status line."""
        await self.send(name, *args)
        return parse_status(await self.reader.readline())

    async def send(self, name: str, *args: str) -> None:
        """Write one command line, once the read-only gate has let it through."""
        check_pop3_command(name)
        line = " ".join((name, *args))
        if any(char in line for char in _UNSENDABLE):
            # A line break would smuggle a second command past the gate.
            raise ForbiddenCommand(f"POP3 {name.upper()} with a line break or NUL in it")
        transport = self.reader.transport
        if transport is None or transport.is_closing():
            raise ConnectionLost("connection closed by server")
        transport.write(line.encode("utf-8") + b"\r\n")

    def close(self) -> None:
        """Drop the connection now, whatever state it is in."""
        if self._reader is not None and self._reader.transport is not None:
            self._reader.transport.abort()


def plain_response(user: str, password: str) -> str:
    """The SASL PLAIN initial response (RFC 4616), base64 as AUTH sends it."""
    raw = b"\0" + user.encode("utf-8") + b"\0" + password.encode("utf-8")
    return base64.b64encode(raw).decode("ascii")
