"""A webhook receiver for Alertmanager: an HTTP server in a thread recording every POST."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.servers.lifecycle import StartStop


class WebhookReceiver(StartStop):
    """Records each Alertmanager notification (its JSON body) in arrival order."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Where Alertmanager should POST."""
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}/alerts"

    def start(self) -> None:
        """Listen on a free port of 127.0.0.1 and serve in a daemon thread."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver._record(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Keep the test output quiet."""

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def alerts(self, **labels: str) -> list[dict[str, Any]]:
        """Every alert of every notification so far (each with `status` and `labels`) whose
        labels include `labels`."""
        with self._lock:
            received = [a for n in self.notifications for a in n["alerts"]]
        return [a for a in received if labels.items() <= a["labels"].items()]

    def _record(self, notification: dict[str, Any]) -> None:
        with self._lock:
            self.notifications.append(notification)
