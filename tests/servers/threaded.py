"""An aiosmtpd server on 127.0.0.1 in a thread of its own, as the SMTP harnesses run it."""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading

from aiosmtpd.smtp import SMTP

from tests.servers.lifecycle import StartStop

START_TIMEOUT_SECONDS = 10.0


class ThreadedSmtp(StartStop):
    """Serves `session()` connections on `port` (0: any free one, kept across restarts)."""

    name = "SMTP test server"

    def __init__(self, tls: str) -> None:
        self.tls = tls
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def session(self) -> SMTP:
        """A new aiosmtpd session for one connection."""
        raise NotImplementedError

    def server_context(self) -> ssl.SSLContext:
        """The server's TLS context (implicit TLS, or STARTTLS)."""
        raise NotImplementedError

    def prepare(self) -> None:
        """What must exist before serving (certificates)."""

    def start(self) -> None:
        """Listen (on the same port as before, if started before) and serve in a thread."""
        # aiosmtpd logs a client's failed handshake with a traceback: the tests that make
        # one judge the client's result, and the traceback would bury the test output.
        logging.getLogger("mail.log").setLevel(logging.CRITICAL)
        self.prepare()
        ready = threading.Event()
        self._error = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._serve, args=(ready,), daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT_SECONDS) or self._error is not None:
            raise RuntimeError(f"{self.name} did not start: {self._error!r}")

    def stop(self) -> None:
        """Stop listening and close every connection: new connections are refused."""
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(START_TIMEOUT_SECONDS)
        self._thread = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop | None:
        """The server thread's event loop, while it runs."""
        return self._loop

    def _serve(self, ready: threading.Event) -> None:
        loop = self._loop
        assert loop is not None
        asyncio.set_event_loop(loop)
        try:
            implicit = self.server_context() if self.tls == "implicit" else None
            server = loop.run_until_complete(
                loop.create_server(self.session, "127.0.0.1", self.port, ssl=implicit)
            )
        except BaseException as exc:
            self._error = exc
            ready.set()
            return
        self.port = server.sockets[0].getsockname()[1]
        ready.set()
        loop.run_forever()
        server.close()
        pending = asyncio.all_tasks(loop)
        for task in pending:
            task.cancel()
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(server.wait_closed())
        loop.close()
