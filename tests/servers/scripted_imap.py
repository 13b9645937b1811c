"""Scripted IMAP behaviours for faults a real server will not produce on demand.

Each behaviour is a coroutine that talks to one client of a ScriptedImapServer (the
shared tests.servers.scripted.ScriptedServer). Real behaviour is tested against Dovecot.
"""

from __future__ import annotations

import asyncio

from tests.servers.scripted import Behaviour, ScriptedServer, stream

CAPS = b"IMAP4rev1 AUTH=PLAIN"


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
            await stream(writer, b"x" * 65536)
            return
        writer.write(tag + b" BAD unexpected\r\n")
        await writer.drain()


async def endless_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greet with a line that never ends: bytes without CRLF until the client hangs up."""
    writer.write(b"* OK ")
    await stream(writer, b"x" * 65536)
    await reader.read()


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


# The name IMAP tests know the shared server by.
ScriptedImapServer = ScriptedServer
