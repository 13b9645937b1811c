"""A scripted IMAP server for faults a real server will not produce on demand.

Each behaviour is a coroutine that talks to one client; the server listens on an
ephemeral loopback port. Real behaviour is tested against Dovecot, not here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

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


async def flood_after_login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Accept LOGIN, then answer the quota query with 50,000 untagged lines in one go."""
    writer.write(b"* OK [CAPABILITY " + CAPS + b" QUOTA] ready\r\n")
    await writer.drain()
    while line := await reader.readline():
        tag, _, rest = line.partition(b" ")
        if rest.upper().startswith(b"LOGIN"):
            writer.write(tag + b" OK [CAPABILITY " + CAPS + b" QUOTA] Logged in\r\n")
        elif rest.upper().startswith(b"GETQUOTAROOT"):
            writer.write(b"* QUOTA x (STORAGE 1 2)\r\n" * 50_000 + tag + b" OK done\r\n")
        elif rest.upper().startswith(b"LOGOUT"):
            writer.write(b"* BYE\r\n" + tag + b" OK bye\r\n")
            await writer.drain()
            return
        else:
            writer.write(tag + b" BAD unexpected\r\n")
        await writer.drain()


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
