"""A NOTIFY_SOCKET as systemd offers one: a datagram socket recording what arrives, and when."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.servers.lifecycle import poll_until

POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Notice:
    """One datagram: its fields, and its arrival in monotonic time."""

    at: float
    fields: dict[str, str]


class NotifyListener:
    """Receives sd_notify datagrams on a path, or on an abstract name when `path` is None."""

    def __init__(self, path: Path | None = None) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path is None:
            name = f"bma-test-notify-{os.getpid()}-{time.monotonic_ns()}"
            self._sock.bind("\0" + name)
            self.address = "@" + name
        else:
            self._sock.bind(str(path))
            self.address = str(path)
        self._sock.settimeout(POLL_SECONDS)
        self._notices: list[Notice] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closing.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            at = time.monotonic()
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if line)
            with self._lock:
                self._notices.append(Notice(at, fields))

    def notices(self) -> list[Notice]:
        """Every datagram received so far, in order."""
        with self._lock:
            return list(self._notices)

    def with_field(self, key: str, value: str = "1") -> list[Notice]:
        """The datagrams carrying `key=value`."""
        return [n for n in self.notices() if n.fields.get(key) == value]

    def wait_for(self, check: Callable[[list[Notice]], bool], timeout: float = 15.0) -> None:
        """Wait until `check(notices)` holds."""
        if not poll_until(lambda: check(self.notices()), timeout):
            raise AssertionError(f"not received in time; got {self.notices()}")

    def close(self) -> None:
        """Stop receiving."""
        self._closing.set()
        self._thread.join()
        self._sock.close()
