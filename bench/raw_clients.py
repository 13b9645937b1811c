"""The least a client can do per probe, for each protocol, on plain asyncio streams.

Each sends the same commands as the daemon's probe of that protocol, against a server
that offers what the probe looks for, and nothing else: no timing, parsing beyond the
status word, logging, state or read-only checks.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Awaitable, Callable

RawProbe = Callable[[asyncio.StreamReader, asyncio.StreamWriter, str, str], Awaitable[bool]]


def _plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode("ascii")


async def _until_tagged(reader: asyncio.StreamReader, tag: bytes) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line.startswith(tag + b" "):
            return line


async def imap(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, user: str, password: str
) -> bool:
    """Greeting, LOGIN, GETQUOTAROOT INBOX, LOGOUT; True when LOGIN and quota answered OK."""
    await reader.readline()
    writer.write(f'a1 LOGIN {user} "{password}"\r\n'.encode())
    login = await _until_tagged(reader, b"a1")
    writer.write(b"a2 GETQUOTAROOT INBOX\r\n")
    quota = await _until_tagged(reader, b"a2")
    writer.write(b"a3 LOGOUT\r\n")
    await _until_tagged(reader, b"a3")
    return login.startswith(b"a1 OK") and quota.startswith(b"a2 OK")


async def _pop3_multiline(reader: asyncio.StreamReader) -> bytes:
    status = await reader.readline()
    if status.startswith(b"+OK"):
        while await reader.readline() not in (b".\r\n", b""):
            pass
    return status


async def pop3(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, user: str, password: str
) -> bool:
    """Greeting, CAPA, AUTH PLAIN (initial response), STAT, QUIT; True when STAT answered +OK."""
    await reader.readline()
    writer.write(b"CAPA\r\n")
    await _pop3_multiline(reader)
    writer.write(f"AUTH PLAIN {_plain(user, password)}\r\n".encode())
    login = await reader.readline()
    writer.write(b"STAT\r\n")
    stat = await reader.readline()
    writer.write(b"QUIT\r\n")
    await reader.readline()
    return login.startswith(b"+OK") and stat.startswith(b"+OK")


async def _smtp_reply(reader: asyncio.StreamReader) -> bytes:
    # A multi-line reply has a dash after the code on every line but the last.
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        if line[3:4] != b"-":
            return line


async def smtp(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, user: str, password: str
) -> bool:
    """Greeting, EHLO, AUTH PLAIN (initial response), QUIT; True when AUTH answered 235."""
    await _smtp_reply(reader)
    writer.write(b"EHLO [127.0.0.1]\r\n")
    await _smtp_reply(reader)
    writer.write(f"AUTH PLAIN {_plain(user, password)}\r\n".encode())
    auth = await _smtp_reply(reader)
    writer.write(b"QUIT\r\n")
    await _smtp_reply(reader)
    return auth.startswith(b"235")


CLIENTS: dict[str, RawProbe] = {"imap": imap, "pop3": pop3, "smtp": smtp}
