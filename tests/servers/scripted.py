"""A scripted server on 127.0.0.1 for faults a real server will not produce on demand.

Each behaviour is a coroutine that talks to one client; the protocols' own scripts are in
scripted_imap.py and scripted_pop3.py. Real behaviour is tested against Dovecot, not here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

Behaviour = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

STREAM_LIMIT_BYTES = 32 * 1024 * 1024
STREAM_LIMIT_SECONDS = 10.0


async def stream(writer: asyncio.StreamWriter, chunk: bytes) -> None:
    """Send `chunk` again and again until the client hangs up, within STREAM_LIMIT_BYTES
    and STREAM_LIMIT_SECONDS so that a client that keeps reading cannot keep a test going."""
    loop = asyncio.get_running_loop()
    stop_at = loop.time() + STREAM_LIMIT_SECONDS
    sent = 0
    while sent < STREAM_LIMIT_BYTES and loop.time() < stop_at:
        writer.write(chunk)
        await writer.drain()
        sent += len(chunk)


class ScriptedServer:
    """Serves one behaviour on 127.0.0.1; counts the connections it accepted."""

    def __init__(self, behaviour: Behaviour, port: int = 0) -> None:
        self._behaviour = behaviour
        self._server: asyncio.Server | None = None
        self._clients: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.connections = 0
        self.port = port

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()
        # Python 3.11's wait_closed() does not wait for open connections; a behaviour still
        # running when the test's loop closes would be cancelled and logged as an error.
        for writer in self._clients.values():
            writer.transport.abort()
        if self._clients:
            await asyncio.wait(self._clients, timeout=STREAM_LIMIT_SECONDS)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._clients[task] = writer
        try:
            await self._behaviour(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            del self._clients[task]
