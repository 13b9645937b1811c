"""The monitor daemon as a child process, as ops run it, and a wait for what it serves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.servers.lifecycle import poll_until


class DaemonProcess:
    """A `bma-monitor run` child process."""

    def __init__(
        self,
        config: Path,
        port: int,
        bad: str,
        *,
        env: dict[str, str] | None = None,
        preexec: Callable[[], None] | None = None,
    ) -> None:
        """Start it; `env` is added to this process's environment, `preexec` runs in the
        child before the daemon starts (e.g. a restriction systemd would apply)."""
        self.config = config
        self.port = port
        self.bad = bad
        self.stderr_path = config.parent / f"daemon-{time.monotonic_ns()}.log"
        self._stderr = self.stderr_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            env={**os.environ, **(env or {})},
            preexec_fn=preexec,
        )

    def get(self, path: str) -> tuple[int, str]:
        """Status and body of an HTTP GET on the daemon."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def samples(self) -> dict[str, list[tuple[dict[str, str], float]]]:
        """The scraped metrics, by sample name."""
        out: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(self.get("/metrics")[1]):
            for sample in family.samples:
                out.setdefault(sample.name, []).append((sample.labels, sample.value))
        return out

    def by_mailbox(self, name: str) -> dict[str, float]:
        """One per-mailbox metric as {mailbox: value}."""
        return {labels["mailbox"]: value for labels, value in self.samples().get(name, [])}

    def stop(self) -> int:
        """SIGTERM, and the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=10)
        finally:
            self._stderr.close()

    def log_events(self) -> list[dict[str, Any]]:
        """Every JSON log line written so far."""
        return [
            json.loads(line) for line in self.stderr_path.read_text().splitlines() if line.strip()
        ]


def eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    """Wait until `check` holds."""
    if not poll_until(check, timeout):
        raise AssertionError("condition not reached in time")
