"""The HTTP endpoint: /metrics for Prometheus, /healthz for liveness checks.

One thread of its own runs an event loop of its own. Not the daemon's loop: rendering a
10,000-mailbox page (12.6 MB) there would stall every probe. Not a thread per request:
each thread brings its own malloc arena, tens of megabytes at that size. On its own loop
the endpoint serves many clients at once, so a slow or silent one never holds up a scrape
or a liveness probe, and each client is bounded: a cap on connections, one deadline for
reading the whole request (not restarted by each byte) and one for writing the answer.
Every answer closes its connection, as HTTP/1.0 did: scrapes are seconds apart, and a
kept-alive connection would only be one more idle client to bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from http import HTTPStatus
from typing import Any

import structlog

from monitor.metrics.http_request import MAX_LINE, Request, RequestError, read_request
from monitor.metrics.http_routes import Health, Page, Response, Routes, text_response

__all__ = ["EndpointError", "Health", "HttpEndpoint"]

log = structlog.get_logger("bma_monitor.http")

BACKLOG = 128
MAX_CONNECTIONS = 64  # served at once; more are answered 503 straight away
REQUEST_TIMEOUT = 5.0  # seconds to send the whole request line and headers
RESPONSE_TIMEOUT = 30.0  # seconds to take the whole answer (12.6 MB to a slow reader)
LINGER = 1.0  # seconds to wait for the client's close once answered
LINGER_BYTES = 64 * 1024  # unread request bytes discarded while waiting
STOP_TIMEOUT = 5.0


class EndpointError(Exception):
    """The HTTP endpoint cannot be served (address in use, not allowed...)."""


class HttpEndpoint:
    """The HTTP server: listens from construction, serves from start() until stop()."""

    def __init__(
        self,
        host: str,
        port: int,
        page: Page,
        health: Health,
        *,
        max_connections: int = MAX_CONNECTIONS,
        request_timeout: float = REQUEST_TIMEOUT,
        response_timeout: float = RESPONSE_TIMEOUT,
    ) -> None:
        self._socket = _listen(host, port)
        self._port = int(self._socket.getsockname()[1])
        self._routes = Routes(page, health)
        self._max_connections = max_connections
        self._request_timeout = request_timeout
        self._response_timeout = response_timeout
        self._loop = asyncio.new_event_loop()
        self._loop.set_exception_handler(_log_loop_error)
        self._stopping = asyncio.Event()
        self._thread = threading.Thread(target=self._run, name="http", daemon=True)
        self._connections: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._serving = 0
        self._saturated = False

    @property
    def port(self) -> int:
        """The bound port (useful when 0 was asked for)."""
        return self._port

    def start(self) -> None:
        """Serve in the endpoint's own thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, drop every connection and free the port."""
        if self._thread.ident is None:  # never started
            self._socket.close()
            self._loop.close()
            return
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive():
                log.warning("http_stop_timeout", seconds=STOP_TIMEOUT)

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self._serve())
        except Exception:
            log.exception("http_endpoint_failed")
        finally:
            self._socket.close()
            self._loop.close()

    async def _serve(self) -> None:
        server = await asyncio.start_server(
            self._on_connection, sock=self._socket, backlog=BACKLOG, limit=MAX_LINE
        )
        await self._stopping.wait()
        server.close()
        # Aborting wakes every read and write with end-of-stream, so each connection
        # ends by itself. Not task.cancel(): Python 3.11.7's stream server reports a
        # cancelled connection task as an unhandled error.
        for writer in self._connections.values():
            writer.transport.abort()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await server.wait_closed()
        await asyncio.sleep(0)  # let the aborted transports close their sockets

    async def _on_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            if self._serving >= self._max_connections:
                await self._refuse(reader, writer)
                return
            self._serving += 1
            self._saturated = False
            try:
                await self._converse(reader, writer)
            finally:
                self._serving -= 1
        finally:
            writer.transport.abort()  # no-op after a clean close; frees the socket otherwise
            del self._connections[task]

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A 503 rather than a silent close or a wait in the backlog: a scraper or liveness
        # probe learns at once that the endpoint is busy, not broken, and never queues
        # behind slow clients for their whole deadlines.
        if not self._saturated:
            log.warning("http_connections_capped", max_connections=self._max_connections)
            self._saturated = True
        busy = text_response(
            HTTPStatus.SERVICE_UNAVAILABLE, "too many connections\n", ("Retry-After", "1")
        )
        if await self._send(writer, busy, None):
            await _linger(reader, writer)

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request: Request | None = None
        try:
            async with asyncio.timeout(self._request_timeout):
                request = await read_request(reader)
        except TimeoutError:
            response = text_response(HTTPStatus.REQUEST_TIMEOUT, "request not received in time\n")
        except RequestError as exc:
            log.debug("http_request_rejected", status=int(exc.status), problem=str(exc))
            response = text_response(exc.status, f"{exc}\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            return  # the client left before finishing its request
        else:
            response = self._answer(request)
        if await self._send(writer, response, request):
            await _linger(reader, writer)

    def _answer(self, request: Request) -> Response:
        try:
            return self._routes.answer(request)
        except Exception:
            log.exception("http_handler_failed", method=request.method, path=request.path)
            return text_response(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error\n")

    async def _send(
        self, writer: asyncio.StreamWriter, response: Response, request: Request | None
    ) -> bool:
        """Write the whole answer (no body for HEAD) before the deadline; False if not."""
        head_only = request is not None and request.method == "HEAD"
        try:
            async with asyncio.timeout(self._response_timeout):
                writer.write(response.head())
                for piece in () if head_only else response.body:
                    writer.write(piece)
                    await writer.drain()
                # Wait until the last byte is with the kernel, not just below the
                # transport's high-water mark, so the deadline covers all of it.
                writer.transport.set_write_buffer_limits(high=0)
                await writer.drain()
        except (TimeoutError, ConnectionError):
            return False  # a reader too slow, or gone: the connection is dropped
        except Exception:
            # The page failed half-way: the headers are gone, so no 500; the short body
            # (or the missing gzip trailer) shows the client it is incomplete.
            method, path = (request.method, request.path) if request else (None, None)
            log.exception("http_handler_failed", method=method, path=path)
            return False
        return True


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Half-close, then wait briefly for the client to close.

    Closing with request bytes still unread (a POST's body, the rest of a malformed
    request) makes the kernel reset the connection, and a reset can destroy the answer
    before the client has read it.
    """
    with contextlib.suppress(OSError):
        writer.write_eof()
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(LINGER):
            discarded = 0
            while discarded < LINGER_BYTES and (chunk := await reader.read(LINGER_BYTES)):
                discarded += len(chunk)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, bound now so a taken port fails the daemon's start-up."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        # IPv4 first: a name such as localhost that resolves to both keeps answering on
        # 127.0.0.1, as it did when only IPv4 was served; IPv6 literals still work.
        family, _, _, _, address = min(found, key=lambda info: info[0] != socket.AF_INET)
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        raise EndpointError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Errors asyncio itself reports (a failed accept...) go to the log as events."""
    log.error("http_loop_error", message=context.get("message"), exc_info=context.get("exception"))
