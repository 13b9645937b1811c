"""The HTTP endpoint on a real socket: slow clients cannot starve scrapes or liveness
probes, every request gets a proper answer, and errors are log events."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from monitor.config.fullness_model import QuotaConfig
from monitor.config.model import (
    Config,
    CredentialsConfig,
    EndpointConfig,
    HttpConfig,
    Kind,
    LoggingConfig,
    Mailbox,
    ProbingConfig,
    ServerConfig,
    StateConfig,
)
from monitor.metrics.http import EndpointError, Health, HttpEndpoint
from monitor.metrics.page import MetricsPage
from monitor.probes.imap import Phase
from monitor.probes.result import ProbeResult, Protocol, QuotaReading, QuotaSource, Reason
from monitor.scheduling.scheduler import MailboxStatus, SchedulerView
from monitor.scheduling.view import Counters, ProbeStatus, StateHealth
from monitor.state.store import WriteHealth

MAILBOXES = 1500  # over one slice of the page, so it comes in several pieces
WAIT = 10.0  # generous: how long a client waits for anything before the test fails


def fake_view(count: int) -> SchedulerView:
    """A scheduler's view of `count` mailboxes that all logged in and read their quota."""
    mailboxes = tuple(
        Mailbox(f"ec{i:06d}@adm.cfwb.be", Kind.EC, f"{i:06d}", "main") for i in range(count)
    )
    sections = (ProbingConfig(), QuotaConfig(), CredentialsConfig(), StateConfig(), HttpConfig())
    server = ServerConfig(imap=EndpointConfig(host="127.0.0.1"))
    head = (Path("bma.yaml"), "adm.cfwb.be", {"main": server}, "main")
    config = Config(*head, *sections, LoggingConfig(), mailboxes)
    statuses = {}
    for i, mailbox in enumerate(mailboxes):
        reading = QuotaReading(1_000_000 + i, 2**31, QuotaSource.IMAP_QUOTA, 1.7e9 + i)
        durations = {phase: 0.001 * (i % 50) for phase in Phase}
        result = ProbeResult(
            mailbox.address, Protocol.IMAP, Reason.OK, 1.7e9 + i, durations, quota=reading
        )
        probe = ProbeStatus(Protocol.IMAP, result, 1.7e9 + i)
        statuses[mailbox.address] = MailboxStatus(mailbox, {Protocol.IMAP: probe}, reading)
    return SchedulerView(
        config=config,
        mailboxes=statuses,
        servers={},
        tls={},
        counters=Counters({Protocol.IMAP: count}, {}, {}, {}, {}, {}),
        in_flight=0,
        cycle_seconds={},
        lag_seconds=0.0,
        dispatcher_due=time.monotonic(),
        state=StateHealth(WriteHealth(True, 0, ""), 0),
    )


class BigPage:
    """A page far larger than the socket buffers, to keep the endpoint writing."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"
    piece = b"x" * 65536
    pieces = 256  # 16 MiB

    def render(self) -> tuple[int, Iterator[bytes]]:
        """The size and the same piece over and over."""
        return len(self.piece) * self.pieces, iter([self.piece] * self.pieces)


def healthy() -> tuple[bool, dict[str, Any]]:
    """A daemon whose scheduler ticks."""
    return True, {"mailboxes": MAILBOXES}


@pytest.fixture(scope="module")
def page() -> MetricsPage:
    """A real metrics page over a fake fleet; no process metrics, so it never changes."""
    view = fake_view(MAILBOXES)
    return MetricsPage(CollectorRegistry(), lambda: view)


@pytest.fixture(scope="module")
def page_body(page: MetricsPage) -> bytes:
    """What /metrics must serve."""
    size, pieces = page.render()
    body = b"".join(pieces)
    assert len(body) == size
    return body


@pytest.fixture
def serve() -> Iterator[Callable[..., HttpEndpoint]]:
    """Starts endpoints on 127.0.0.1:0; stops them after the test."""
    started: list[HttpEndpoint] = []

    def start(page: Any, health: Health = healthy, **options: Any) -> HttpEndpoint:
        endpoint = HttpEndpoint("127.0.0.1", 0, page, health, **options)
        endpoint.start()
        started.append(endpoint)
        return endpoint

    yield start
    for endpoint in started:
        endpoint.stop()


def get(
    port: int, path: str, method: str = "GET", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers (lower-case names) and raw body of one request."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT)
    try:
        connection.request(
            method, path, body=b"x=1" if method == "POST" else None, headers=headers or {}
        )
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def connect(port: int) -> socket.socket:
    """A raw client connection."""
    return socket.create_connection(("127.0.0.1", port), timeout=WAIT)


def read_until_closed(client: socket.socket) -> bytes:
    """Everything the server sends until it closes (a reset counts as closed)."""
    received = bytearray()
    with contextlib.suppress(ConnectionResetError):
        while chunk := client.recv(65536):
            received += chunk
    return bytes(received)


def exchange(port: int, request: bytes) -> bytes:
    """Send raw bytes; return the whole answer, read until the server closes."""
    with connect(port) as client:
        client.sendall(request)
        return read_until_closed(client)


@contextlib.contextmanager
def slow_clients(port: int, count: int) -> Iterator[list[socket.socket]]:
    """`count` connections: half silent, half trickling a request one byte a second."""
    clients = [connect(port) for _ in range(count)]
    trickling = clients[: count // 2]
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(1.0):
            for client in trickling:
                with contextlib.suppress(OSError):
                    client.send(b"G")

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        yield clients
    finally:
        stop.set()
        thread.join()
        for client in clients:
            client.close()


def eventually(check: Callable[[], bool]) -> None:
    """Wait until `check` holds."""
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def test_scrape_and_health_answered_while_slow_clients_hold_connections(
    serve: Callable[..., HttpEndpoint], page: MetricsPage, page_body: bytes
) -> None:
    """Fifty slow or silent clients connected first do not delay a scrape or a health check."""
    endpoint = serve(page)
    with slow_clients(endpoint.port, 50):
        status, _, body = get(endpoint.port, "/metrics")
        assert (status, body) == (200, page_body)
        status, _, body = get(endpoint.port, "/healthz")
        assert status == 200
        assert json.loads(body) == {"status": "ok", "mailboxes": MAILBOXES}


def test_request_trickled_past_the_deadline_is_answered_408_and_closed(
    serve: Callable[..., HttpEndpoint], page: MetricsPage
) -> None:
    """The deadline covers the whole request: bytes that keep coming do not extend it."""
    endpoint = serve(page, request_timeout=1.0)
    still_sending = threading.Event()
    with connect(endpoint.port) as client:
        client.sendall(b"GET /metrics HTTP/1.1\r\nX-Slow: ")

        def trickle() -> None:
            still_sending.set()
            with contextlib.suppress(OSError):
                for _ in range(int(WAIT * 10)):
                    client.send(b"a")
                    time.sleep(0.1)
            still_sending.clear()

        threading.Thread(target=trickle, daemon=True).start()
        answer = read_until_closed(client)
        assert still_sending.is_set(), "the server waited until the client stopped sending"
    assert answer.startswith(b"HTTP/1.1 408 ")


def test_connections_over_the_cap_get_503_and_the_endpoint_recovers(
    serve: Callable[..., HttpEndpoint], page: MetricsPage, page_body: bytes
) -> None:
    """Over the cap a client is told 503 at once; once the holders leave, scrapes work."""
    endpoint = serve(page, max_connections=3, request_timeout=60.0)
    answers: list[int] = []
    with slow_clients(endpoint.port, 3):

        def refused() -> bool:
            status, headers, _ = get(endpoint.port, "/metrics")
            answers.append(status)
            return status == 503 and headers["retry-after"] == "1"

        eventually(refused)
    assert set(answers) <= {200, 503}

    def served() -> bool:
        status, _, body = get(endpoint.port, "/metrics")
        return status == 200 and body == page_body

    eventually(served)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_other_methods_get_405_with_allow(
    serve: Callable[..., HttpEndpoint], page: MetricsPage, method: str
) -> None:
    """Only GET and HEAD are served, and the answer says so."""
    endpoint = serve(page)
    status, headers, _ = get(endpoint.port, "/metrics", method)
    assert status == 405
    assert headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /metrics\r\n", b"400"),  # no HTTP version
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET  /metrics HTTP/1.1\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/1.1\r\nName : value\r\n\r\n", b"400"),
        (b"GET /metrics HTTP/2.0\r\n\r\n", b"505"),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\n\r\n", b"414"),
        (b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 9000 + b"\r\n\r\n", b"431"),
        (b"GET /metrics HTTP/1.1\r\n" + b"X: a\r\n" * 100 + b"\r\n", b"431"),
        (b"GET /metrics HTTP/1.1\r\n" + (b"X: " + b"a" * 4000 + b"\r\n") * 5 + b"\r\n", b"431"),
    ],
)
def test_malformed_requests_get_an_error_answer(
    serve: Callable[..., HttpEndpoint], page: MetricsPage, request_bytes: bytes, status: bytes
) -> None:
    """A bad or oversized request is answered with its status, then closed; never a hang."""
    endpoint = serve(page)
    answer = exchange(endpoint.port, request_bytes)
    assert answer.startswith(b"HTTP/1.1 " + status + b" ")
    assert b"\r\nConnection: close\r\n" in answer


@pytest.mark.parametrize(
    "accept",
    ["gzip", "deflate, gzip;q=0.5", "br, *", "GZIP", "x-gzip", "gzip;q=0.001"],
)
def test_gzip_is_sent_when_asked_and_decodes_to_the_same_page(
    serve: Callable[..., HttpEndpoint], page: MetricsPage, page_body: bytes, accept: str
) -> None:
    """Accept-Encoding: gzip gives one gzip stream of exactly the uncompressed page."""
    endpoint = serve(page)
    status, headers, body = get(endpoint.port, "/metrics", headers={"Accept-Encoding": accept})
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert headers["vary"] == "Accept-Encoding"
    assert len(body) < len(page_body) / 5
    assert gzip.decompress(body) == page_body


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "identity",
        "deflate",
        "gzip;q=0",
        "gzip; q=0.0, deflate",
        "*;q=0",
        "*;q=0.5, gzip;q=0",  # the explicit weight wins over the wildcard's
        "gzip;q=x",  # an unreadable weight is no consent
        "gzip;q=1.5",
    ],
)
def test_no_gzip_unless_accepted(
    serve: Callable[..., HttpEndpoint], page: MetricsPage, page_body: bytes, accept: str | None
) -> None:
    """Without the header, or with q=0, the page goes uncompressed with its length."""
    endpoint = serve(page)
    status, headers, body = get(
        endpoint.port, "/metrics", headers={"Accept-Encoding": accept} if accept else {}
    )
    assert status == 200
    assert "content-encoding" not in headers
    assert headers["vary"] == "Accept-Encoding"
    assert int(headers["content-length"]) == len(page_body)
    assert body == page_body


@pytest.mark.parametrize("accept", ["identity", "gzip"])
def test_head_sends_the_headers_only(
    serve: Callable[..., HttpEndpoint], page: MetricsPage, page_body: bytes, accept: str
) -> None:
    """HEAD gets GET's status and headers, then the connection closes with no body."""
    endpoint = serve(page)
    answer = exchange(
        endpoint.port,
        f"HEAD /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: {accept}\r\n\r\n".encode(),
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body == b""
    if accept == "gzip":
        assert b"\r\nContent-Encoding: gzip" in head
    else:
        assert f"\r\nContent-Length: {len(page_body)}".encode() in head


def test_routes(serve: Callable[..., HttpEndpoint], page: MetricsPage) -> None:
    """/ is a pointer, an unknown path 404, /healthz 503 with its JSON when unhealthy."""
    endpoint = serve(page, lambda: (False, {"scheduler_idle_seconds": 20.0}))
    assert get(endpoint.port, "/")[0] == 200
    assert get(endpoint.port, "/nothing")[0] == 404
    assert get(endpoint.port, "/metrics?debug=1")[0] == 200
    status, headers, body = get(endpoint.port, "/healthz")
    assert status == 503
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"status": "unhealthy", "scheduler_idle_seconds": 20.0}


def test_a_failing_handler_answers_500_and_logs_an_event(
    serve: Callable[..., HttpEndpoint], capfd: pytest.CaptureFixture[str]
) -> None:
    """A bug behind /metrics or /healthz is a 500 and an error event, not a stderr dump."""

    def broken_view() -> SchedulerView:
        raise RuntimeError("view broke")

    def broken_health() -> tuple[bool, dict[str, Any]]:
        raise RuntimeError("health broke")

    with capture_logs() as events:
        endpoint = serve(MetricsPage(CollectorRegistry(), broken_view), broken_health)
        assert get(endpoint.port, "/metrics")[0] == 500
        assert get(endpoint.port, "/healthz")[0] == 500
        assert get(endpoint.port, "/")[0] == 200
    failures = [e for e in events if e["event"] == "http_handler_failed"]
    assert [(e["log_level"], e["path"]) for e in failures] == [
        ("error", "/metrics"),
        ("error", "/healthz"),
    ]
    assert all(e["exc_info"] is True for e in failures)
    assert capfd.readouterr().err == ""


def test_a_page_failing_half_way_is_cut_short_and_logged(
    serve: Callable[..., HttpEndpoint], capfd: pytest.CaptureFixture[str]
) -> None:
    """Once the headers are sent a 500 is too late: the body stops short, the error is logged."""

    class FailingPage(BigPage):
        def render(self) -> tuple[int, Iterator[bytes]]:
            def pieces() -> Iterator[bytes]:
                yield self.piece
                raise RuntimeError("page broke")

            return len(self.piece) * self.pieces, pieces()

    with capture_logs() as events:
        endpoint = serve(FailingPage())
        answer = exchange(endpoint.port, b"GET /metrics HTTP/1.1\r\n\r\n")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ")
    assert body == BigPage.piece
    assert [(e["event"], e["path"]) for e in events] == [("http_handler_failed", "/metrics")]
    assert capfd.readouterr().err == ""


def test_a_reader_too_slow_for_the_answer_is_dropped(serve: Callable[..., HttpEndpoint]) -> None:
    """The answer must be taken within its deadline, or the connection goes."""
    endpoint = serve(BigPage(), response_timeout=1.0)
    client = socket.socket()
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.settimeout(WAIT)
    with client:
        client.connect(("127.0.0.1", endpoint.port))
        client.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
        time.sleep(3.0)  # not reading, past the deadline
        answer = read_until_closed(client)
    assert answer.startswith(b"HTTP/1.1 200 ")
    assert len(answer) < BigPage.pieces * len(BigPage.piece)


def test_stop_returns_with_slow_clients_connected(capfd: pytest.CaptureFixture[str]) -> None:
    """stop() drops silent, trickling, not-reading and answered clients, frees the port."""
    with capture_logs() as events:
        endpoint = HttpEndpoint("127.0.0.1", 0, BigPage(), healthy)
        endpoint.start()
        with slow_clients(endpoint.port, 20) as clients:
            for path in ("/metrics", "/healthz"):  # one being written, one answered
                client = connect(endpoint.port)
                client.sendall(f"GET {path} HTTP/1.1\r\n\r\n".encode())
                clients.append(client)
                assert client.recv(1, socket.MSG_PEEK) == b"H"
            stopping = threading.Thread(target=endpoint.stop)
            stopping.start()
            stopping.join(WAIT)
            assert not stopping.is_alive()
            for client in clients:
                read_until_closed(client)  # a timeout here fails the test
        with pytest.raises(ConnectionRefusedError):
            connect(endpoint.port)
    assert [e for e in events if e["log_level"] != "debug"] == []  # no stop timeout, no error
    assert capfd.readouterr().err == ""


def test_a_taken_port_is_an_endpoint_error(page: MetricsPage) -> None:
    """Another listener on the port stops the daemon's start with a clear message."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(EndpointError, match=f"^cannot listen on 127.0.0.1:{port}: "):
            HttpEndpoint("127.0.0.1", port, page, healthy)
