"""Reading one HTTP/1.x request head from a stream, bounded in size, and what it asks for."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from http import HTTPStatus
from urllib.parse import urlsplit

MAX_LINE = 8 * 1024  # bytes in the request line or one header line
MAX_HEAD = 16 * 1024  # bytes in the request line and all headers together
MAX_HEADERS = 64

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_VERSION = re.compile(rb"HTTP/(\d)\.(\d)")
_BLANK = (b"\r\n", b"\n")


class RequestError(Exception):
    """A request that cannot be served as sent; answered with `status` and closed."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class Request:
    """What a client asked for: method, path (query dropped) and headers by lower-case name."""

    method: str
    path: str
    headers: dict[str, str]


async def read_request(reader: asyncio.StreamReader) -> Request:
    """Read a request line and its headers; the stream's limit must be at most MAX_LINE.

    Raises RequestError for what is malformed or too large, asyncio.IncompleteReadError
    when the client leaves before finishing.
    """
    line = await _read_line(reader, HTTPStatus.REQUEST_URI_TOO_LONG)
    while line in _BLANK:  # RFC 9112 2.2: ignore empty lines before the request line
        line = await _read_line(reader, HTTPStatus.REQUEST_URI_TOO_LONG)
    method, path = _request_line(line)
    received = len(line)
    headers: dict[str, str] = {}
    for count in range(MAX_HEADERS + 1):
        line = await _read_line(reader, HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
        received += len(line)
        end = line in _BLANK
        if received > MAX_HEAD or (count == MAX_HEADERS and not end):
            raise RequestError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "headers too large")
        if end:
            break
        name, value = _header(line)
        # Repeated list-valued fields are one field joined by commas (RFC 9110 5.3).
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return Request(method, path, headers)


async def _read_line(reader: asyncio.StreamReader, too_long: HTTPStatus) -> bytes:
    try:
        return await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError as exc:
        raise RequestError(too_long, f"line longer than {MAX_LINE} bytes") from exc


def _request_line(line: bytes) -> tuple[str, str]:
    parts = line.rstrip(b"\r\n").split(b" ")
    if len(parts) == 2:
        raise RequestError(HTTPStatus.BAD_REQUEST, "request line has no HTTP version")
    if len(parts) != 3:
        raise RequestError(HTTPStatus.BAD_REQUEST, "malformed request line")
    method, target, version = parts
    if not _TOKEN.fullmatch(method):
        raise RequestError(HTTPStatus.BAD_REQUEST, "malformed method")
    matched = _VERSION.fullmatch(version)
    if matched is None:
        raise RequestError(HTTPStatus.BAD_REQUEST, "malformed HTTP version")
    if matched.group(1) != b"1":
        raise RequestError(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "only HTTP/1.x is served")
    return method.decode("ascii"), _path(target)


def _path(target: bytes) -> str:
    try:
        text = target.decode("ascii")
    except UnicodeDecodeError as exc:
        raise RequestError(HTTPStatus.BAD_REQUEST, "request target is not ASCII") from exc
    if not text.isprintable():
        raise RequestError(HTTPStatus.BAD_REQUEST, "control characters in request target")
    if text.startswith("/"):
        return text.split("?", 1)[0]
    split = urlsplit(text)  # absolute form, as sent to proxies (RFC 9112 3.2.2)
    if split.scheme in ("http", "https") and split.netloc:
        return split.path or "/"
    raise RequestError(HTTPStatus.BAD_REQUEST, "malformed request target")


def _header(line: bytes) -> tuple[str, str]:
    name, colon, value = line.partition(b":")
    # No whitespace before the colon, no obsolete line folding (RFC 9112 5.1, 5.2).
    if not colon or not _TOKEN.fullmatch(name):
        raise RequestError(HTTPStatus.BAD_REQUEST, "malformed header line")
    return name.decode("ascii").lower(), value.strip().decode("latin-1")


def accepts_gzip(accept_encoding: str | None) -> bool:
    """Whether an Accept-Encoding value allows gzip (RFC 9110 12.5.3; q=0 means no)."""
    if not accept_encoding:
        return False
    wildcard: bool | None = None
    for element in accept_encoding.split(","):
        coding, *params = (part.strip() for part in element.split(";"))
        coding = coding.lower()
        if coding in ("gzip", "x-gzip"):
            return _quality(params) > 0
        if coding == "*":
            wildcard = _quality(params) > 0
    return bool(wildcard)


def _quality(params: list[str]) -> float:
    for param in params:
        key, _, value = param.partition("=")
        if key.strip().lower() == "q":
            try:
                quality = float(value.strip())
            except ValueError:
                return 0.0  # an unreadable weight is not consent
            return quality if 0.0 <= quality <= 1.0 else 0.0
    return 1.0
