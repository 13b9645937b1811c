"""What the endpoint answers: /metrics (gzip when asked for), /healthz, / and the errors."""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Protocol

from monitor.metrics.http_request import Request, accepts_gzip

Health = Callable[[], tuple[bool, dict[str, Any]]]

ALLOWED_METHODS = ("GET", "HEAD")
# Measured on a 10,000-mailbox page (12.0 MB), best of five on a 2-core AMD EPYC virtual
# machine: level 1 costs 0.03 s of CPU, about what rendering the page does, and sends
# 0.85 MB; level 6 costs 0.09 s for 0.77 MB. zlib leaves the GIL while it compresses: an
# event loop in another thread stalled no longer (10 to 20 ms, noise included) than while
# an uncompressed page was rendered. With the server and protocol labels the page is
# 16.3 MB (fake statuses) and level 1 sends 0.69 MB for 0.06 s, on a slower day.
GZIP_LEVEL = 1
_GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer around the deflate stream


class Page(Protocol):
    """A metrics page: its media type, and its size and pieces rendered on demand."""

    @property
    def content_type(self) -> str:
        """The Content-Type of the rendered page."""

    def render(self) -> tuple[int, Iterator[bytes]]:
        """The page's size in bytes, and its pieces to send one after the other."""


@dataclass(frozen=True, slots=True)
class Response:
    """An answer: status, headers, and a body sent piece by piece (left out for HEAD)."""

    status: HTTPStatus
    headers: tuple[tuple[str, str], ...]
    body: Iterable[bytes] = ()

    def head(self) -> bytes:
        """The status line and headers; every answer closes its connection."""
        lines = [
            f"HTTP/1.1 {self.status.value} {self.status.phrase}",
            *(f"{name}: {value}" for name, value in self.headers),
            f"Date: {formatdate(usegmt=True)}",
            "Connection: close",
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def text_response(status: HTTPStatus, text: str, *headers: tuple[str, str]) -> Response:
    """A short plain-text answer."""
    return _sized(status, "text/plain; charset=utf-8", text.encode(), headers)


def _sized(
    status: HTTPStatus, content_type: str, body: bytes, headers: Iterable[tuple[str, str]] = ()
) -> Response:
    sized = (("Content-Type", content_type), ("Content-Length", str(len(body))), *headers)
    return Response(status, sized, (body,))


def gzipped(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """The pieces through one gzip stream, compressed as they come."""
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    for piece in pieces:
        if out := compressor.compress(piece):
            yield out
    yield compressor.flush()


class Routes:
    """Maps a request to its answer; exceptions are left to the caller."""

    def __init__(self, page: Page, health: Health) -> None:
        self._page = page
        self._health = health
        self._handlers: dict[str, Callable[[Request], Response]] = {
            "/metrics": self._metrics,
            "/healthz": self._healthz,
            "/": self._index,
        }

    def answer(self, request: Request) -> Response:
        """The answer to one request."""
        handler = self._handlers.get(request.path)
        if handler is None:
            return text_response(HTTPStatus.NOT_FOUND, "not found\n")
        if request.method not in ALLOWED_METHODS:
            return text_response(
                HTTPStatus.METHOD_NOT_ALLOWED,
                f"{request.method} not allowed; use GET\n",
                ("Allow", ", ".join(ALLOWED_METHODS)),
            )
        return handler(request)

    def _metrics(self, request: Request) -> Response:
        size, pieces = self._page.render()
        headers = (("Content-Type", self._page.content_type), ("Vary", "Accept-Encoding"))
        if accepts_gzip(request.headers.get("accept-encoding")):
            # No Content-Length: the compressed size is known only at the end, so the
            # connection's close ends the body, and the gzip trailer shows truncation.
            return Response(
                HTTPStatus.OK, (*headers, ("Content-Encoding", "gzip")), gzipped(pieces)
            )
        return Response(HTTPStatus.OK, (*headers, ("Content-Length", str(size))), pieces)

    def _healthz(self, request: Request) -> Response:
        healthy, details = self._health()
        body = json.dumps({"status": "ok" if healthy else "unhealthy", **details}).encode()
        status = HTTPStatus.OK if healthy else HTTPStatus.SERVICE_UNAVAILABLE
        return _sized(status, "application/json", body)

    def _index(self, request: Request) -> Response:
        return text_response(HTTPStatus.OK, "bma-monitor: see /metrics and /healthz\n")
