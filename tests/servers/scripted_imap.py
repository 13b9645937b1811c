"""A scripted IMAP server for faults a real server will not produce on demand.

Each behaviour is a coroutine that talks to one client; the server listens on an
ephemeral loopback port. Real behaviour is tested against Dovecot, not here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

CAPS = b"IMAP4rev1 AUTH=PLAIN"
STREAM_LIMIT_BYTES = 32 * 1024 * 1024
STREAM_LIMIT_SECONDS = 10.0


async def bye_greeting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Refuse at once, as a server over its connection limit does."""
    writer.write(b"* BYE Too many connections from your IP\r\n")
    await writer.drain()


async def garbage_greeting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer with bytes that are not IMAP, as another service on the port would."""
    writer.write(b"\x16\x03\x01\x02\x00garbage\xff\xfe\r\n")
    await writer.drain()
    await reader.read(100)


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept the connection and never say anything."""
    await reader.read()


async def close_after_greeting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greet, then hang up before any command is answered."""
    writer.write(b"* OK [CAPABILITY " + CAPS + b"] ready\r\n")
    await writer.drain()
    await reader.readline()


async def close_during_login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greet, then drop the connection as soon as LOGIN arrives."""
    writer.write(b"* OK [CAPABILITY " + CAPS + b"] ready\r\n")
    await writer.drain()
    while line := await reader.readline():
        if b" LOGIN " in line.upper():
            return


def flood_after_login(lines: int) -> Behaviour:
    """Accept LOGIN, then answer the quota query with `lines` untagged lines, sent in batches
    of 50,000 until all are sent or the client hangs up, then the tagged OK."""

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY " + CAPS + b" QUOTA] ready\r\n")
        await writer.drain()
        while line := await reader.readline():
            tag, _, rest = line.partition(b" ")
            if rest.upper().startswith(b"LOGIN"):
                writer.write(tag + b" OK [CAPABILITY " + CAPS + b" QUOTA] Logged in\r\n")
            elif rest.upper().startswith(b"GETQUOTAROOT"):
                for first in range(0, lines, 50_000):
                    writer.write(b"* QUOTA x (STORAGE 1 2)\r\n" * min(50_000, lines - first))
                    await writer.drain()
                writer.write(tag + b" OK done\r\n")
            elif rest.upper().startswith(b"LOGOUT"):
                writer.write(b"* BYE\r\n" + tag + b" OK bye\r\n")
                await writer.drain()
                return
            else:
                writer.write(tag + b" BAD unexpected\r\n")
            await writer.drain()

    return flood


async def huge_literal(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answer CAPABILITY with a 4 GiB literal, then stream its bytes until the client hangs up."""
    writer.write(b"* OK ready\r\n")
    await writer.drain()
    while line := await reader.readline():
        tag, _, rest = line.partition(b" ")
        if rest.upper().startswith(b"CAPABILITY"):
            writer.write(b"* CAPABILITY {4294967296}\r\n")
            await _stream(writer, b"x" * 65536)
            return
        writer.write(tag + b" BAD unexpected\r\n")
        await writer.drain()


async def endless_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greet with a line that never ends: bytes without CRLF until the client hangs up."""
    writer.write(b"* OK ")
    await _stream(writer, b"x" * 65536)
    await reader.read()


async def _stream(writer: asyncio.StreamWriter, chunk: bytes) -> None:
    """Send `chunk` again and again until the client hangs up, within STREAM_LIMIT_BYTES
    and STREAM_LIMIT_SECONDS so that a client that keeps reading cannot keep a test going."""
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + STREAM_LIMIT_SECONDS
    sent = 0
    while sent < STREAM_LIMIT_BYTES and loop.time() < stop_at:
        writer.write(chunk)
        await writer.drain()
        sent += len(chunk)


async def exchange_login_failed(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Refuse LOGIN the way Exchange does: no response code, only `LOGIN failed.`."""
    writer.write(b"* OK The Microsoft Exchange IMAP4 service is ready.\r\n")
    await writer.drain()
    while line := await reader.readline():
        tag, _, rest = line.partition(b" ")
        if rest.upper().startswith(b"CAPABILITY"):
            writer.write(b"* CAPABILITY " + CAPS + b" IDLE\r\n" + tag + b" OK done.\r\n")
        elif rest.upper().startswith(b"LOGIN"):
            writer.write(tag + b" NO LOGIN failed.\r\n")
        else:
            writer.write(tag + b" OK\r\n")
        await writer.drain()


def literal_folder_names(count: int, piece: int) -> Behaviour:
    """Exchange-like, but LIST names each folder as a literal, which Dovecot never does; the
    reply goes out in writes of `piece` bytes, so literals and lines are cut across reads."""
    names = [f"Dossier {i}".encode() for i in range(count)]
    listing = b"".join(
        b'* LIST (\\HasNoChildren) "/" {%d}\r\n%s\r\n' % (len(name), name) for name in names
    )
    return _exchange_like(listing, piece=piece)


def fetch_flood(lines: int) -> Behaviour:
    """Exchange-like with INBOX only, whose one message FETCH reports `lines` times over."""
    return _exchange_like(b'* LIST (\\HasNoChildren) "/" INBOX\r\n', fetch_lines=lines)


def _exchange_like(listing: bytes, *, piece: int = 1 << 20, fetch_lines: int = 1) -> Behaviour:
    """No QUOTA, no STATUS=SIZE: LIST answers `listing`, in writes of `piece` bytes; each
    folder holds one message as large as its name, reported by FETCH `fetch_lines` times."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY " + CAPS + b"] ready\r\n")
        await writer.drain()
        size = 0
        while line := await reader.readline():
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            command, _, arguments = rest.partition(b" ")
            reply = tag + b" OK done\r\n"
            if command.upper() == b"LOGIN":
                reply = tag + b" OK [CAPABILITY " + CAPS + b"] Logged in\r\n"
            elif command.upper() == b"LIST":
                for start in range(0, len(listing), piece):
                    writer.write(listing[start : start + piece])
                    await asyncio.sleep(0)
            elif command.upper() == b"EXAMINE":
                size = len(arguments.strip(b'"'))
                reply = b"* 1 EXISTS\r\n" + reply
            elif command.upper() == b"FETCH":
                reply = b"* 1 FETCH (RFC822.SIZE %d)\r\n" % size * fetch_lines + reply
            elif command.upper() == b"LOGOUT":
                writer.write(b"* BYE\r\n" + reply)
                await writer.drain()
                return
            writer.write(reply)
            await writer.drain()

    return serve


def echo_login(accept: bool) -> Behaviour:
    """Repeat LOGIN's arguments as they came over the wire: in LOGIN's NO when `accept` is
    false, else in the NO to the quota query that follows a successful LOGIN."""

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY " + CAPS + b" QUOTA] ready\r\n")
        await writer.drain()
        arguments = b""
        while line := await reader.readline():
            tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
            command, _, tail = rest.partition(b" ")
            if command.upper() == b"LOGIN":
                arguments = tail
                writer.write(
                    tag + b" OK [CAPABILITY " + CAPS + b" QUOTA] Logged in\r\n"
                    if accept
                    else tag + b" NO [AUTHENTICATIONFAILED] rejected LOGIN " + arguments + b"\r\n"
                )
            elif command.upper() == b"LOGOUT":
                writer.write(b"* BYE\r\n" + tag + b" OK bye\r\n")
            else:
                writer.write(tag + b" NO no quota for LOGIN " + arguments + b"\r\n")
            await writer.drain()

    return echo


class ScriptedImapServer:
    """Serves one behaviour on 127.0.0.1; counts the connections it accepted."""

    def __init__(self, behaviour: Behaviour, port: int = 0) -> None:
        self._behaviour = behaviour
        self._server: asyncio.Server | None = None
        self.connections = 0
        self.port = port

    async def __aenter__(self) -> ScriptedImapServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            await self._behaviour(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
