"""Scripted POP3 behaviours for faults a real server will not produce on demand.

A script greets, then answers each command by its name; it runs in a ScriptedServer
(tests.servers.scripted). Real behaviour is tested against Dovecot, not here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

from tests.servers.scripted import Behaviour, stream

# What a script answers to a command: bytes as they are (b"" for no answer at all), the
# bytes a function makes of the command's arguments, or None to hang up.
Answer = bytes | Callable[[bytes], bytes] | None

# As Dovecot lists it on a plain connection.
CAPA_PLAIN = b"+OK\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nSTLS\r\nUSER\r\nSASL PLAIN LOGIN\r\n.\r\n"
CAPA_USER = b"+OK\r\nUSER\r\nRESP-CODES\r\n.\r\n"
STAT = b"+OK 2 3000\r\n"
DEFAULT_ANSWERS: Mapping[str, Answer] = {
    "CAPA": CAPA_PLAIN,
    "USER": b"+OK\r\n",
    "PASS": b"+OK Logged in.\r\n",
    "AUTH": b"+OK Logged in.\r\n",
    "STAT": STAT,
    "QUIT": b"+OK Logging out.\r\n",
}


def script(
    answers: Mapping[str, Answer] | None = None,
    *,
    greeting: bytes | None = b"+OK POP3 ready.\r\n",
    heard: list[bytes] | None = None,
) -> Behaviour:
    """Greet with `greeting` (None: say nothing, ever), then answer each command from
    `answers` over DEFAULT_ANSWERS, -ERR where neither has it; hang up after QUIT. Each
    line received is added to `heard`."""
    table = {**DEFAULT_ANSWERS, **(answers or {})}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if greeting is None:
            await reader.read()
            return
        writer.write(greeting)
        await writer.drain()
        while line := await reader.readline():
            if heard is not None:
                heard.append(line.rstrip(b"\r\n"))
            name, _, arguments = line.rstrip(b"\r\n").partition(b" ")
            command = name.decode("ascii", "replace").upper()
            answer = table.get(command, b"-ERR Unknown command.\r\n")
            if answer is None:
                return
            writer.write(answer(arguments) if callable(answer) else answer)
            await writer.drain()
            if command == "QUIT":
                return

    return serve


async def endless_greeting(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greet with a line that never ends: bytes without CRLF until the client hangs up."""
    writer.write(b"+OK ")
    await stream(writer, b"x" * 65536)
    await reader.read()
