"""The HTTP endpoint: /metrics for Prometheus, /healthz for liveness checks.

Served from one thread beside the event loop, so a scrape never waits for probes, and
reads only an immutable copy of the scheduler's state. Requests are answered one at a
time: scrapes are seconds apart, and a thread per request would give each its own
malloc arena, which at 10,000 mailboxes costs tens of megabytes.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from monitor.metrics.page import MetricsPage

CLIENT_TIMEOUT = 10.0  # seconds a client may take to send its request or read the answer

Health = Callable[[], tuple[bool, dict[str, Any]]]
StartResponse = Callable[..., Any]


class EndpointError(Exception):
    """The HTTP endpoint cannot be served (address in use, not allowed...)."""


class _Server(WSGIServer):
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    timeout = CLIENT_TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes every few seconds would drown the daemon's own log."""


def build_app(page: MetricsPage, health: Health) -> Callable[..., Iterable[bytes]]:
    """A WSGI app routing /metrics and /healthz."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            # Uncompressed on purpose: gzip of a 10,000-mailbox page costs more CPU than
            # rendering it, and Prometheus accepts identity encoding.
            size, pieces = page.render()
            start_response(
                "200 OK", [("Content-Type", page.content_type), ("Content-Length", str(size))]
            )
            return pieces
        if path == "/healthz":
            healthy, details = health()
            body = json.dumps({"status": "ok" if healthy else "unhealthy", **details}).encode()
            status = "200 OK" if healthy else "503 Service Unavailable"
            start_response(
                status, [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            )
            return [body]
        if path == "/":
            body = b"bma-monitor: see /metrics and /healthz\n"
            start_response(
                "200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
            )
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    return app


class HttpEndpoint:
    """The running HTTP server."""

    def __init__(self, host: str, port: int, page: MetricsPage, health: Health) -> None:
        try:
            self._server = make_server(
                host,
                port,
                build_app(page, health),
                server_class=_Server,
                handler_class=_QuietHandler,
            )
        except OSError as exc:
            raise EndpointError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
        self._thread = threading.Thread(target=self._server.serve_forever, name="http", daemon=True)

    @property
    def port(self) -> int:
        """The bound port (useful when 0 was asked for)."""
        return int(self._server.server_address[1])

    def start(self) -> None:
        """Serve in a background thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and free the port."""
        self._server.shutdown()
        self._server.server_close()
