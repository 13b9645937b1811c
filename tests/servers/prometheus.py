"""Private Prometheus and Alertmanager instances (Debian packages) on 127.0.0.1 for the tests.

Each keeps its config and a fresh storage directory under its workdir, listens on a free
port, and is ready only once it really works: Prometheus has scraped every target, found
its Alertmanager and evaluated its rules, which takes about 5 s after the start (the
discovery throttle of Prometheus 2.42 has no flag).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.servers.dovecot import free_port
from tests.servers.lifecycle import StartStop, poll_until

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
ALERTMANAGER = shutil.which("prometheus-alertmanager") or "/usr/bin/prometheus-alertmanager"
READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0
JOB = "bma-monitor"  # the job name the rules' `up{job=...}` alerts expect

Series = dict[str, Any]


class ServerNotReady(RuntimeError):
    """A private Prometheus or Alertmanager did not come up in time."""


def http_json(url: str, data: bytes | None = None) -> Any:
    """The decoded JSON answer of a GET (or a POST of `data`)."""
    headers = {"Content-Type": "application/json"} if data is not None else {}
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=5) as response:
        body = response.read()
    return json.loads(body) if body else None


def wait_for(check: Callable[[], bool], what: str, timeout: float = READY_TIMEOUT_SECONDS) -> None:
    """Poll `check` until it holds, or raise naming `what`."""
    if not poll_until(check, timeout):
        raise ServerNotReady(f"not reached within {timeout} s: {what}")


class _Process(StartStop):
    """A child process with a private listen port, its output kept in a log file."""

    name = "server"

    def __init__(self, workdir: Path) -> None:
        self.workdir = Path(workdir).absolute()
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where the process writes its log."""
        return self.workdir / f"{self.name}.log"

    def command(self, storage: Path) -> list[str]:
        """The command line, with the listen port already chosen."""
        raise NotImplementedError

    def write_config(self) -> None:
        """Write the config file before the start."""
        raise NotImplementedError

    def wait_until_ready(self) -> None:
        """Return once the server does its job, or raise ServerNotReady."""
        raise NotImplementedError

    def start(self) -> None:
        """Write the config, start on a free port with fresh storage, wait until ready."""
        if self._process is not None:
            raise RuntimeError(f"{self.name} already started")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.write_config()
        self.port = free_port()
        storage = self.workdir / f"storage-{time.monotonic_ns()}"
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(storage), stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        try:
            wait_for(self._answers, f"{self.name} /-/ready", timeout=10)
            self.wait_until_ready()
        except ServerNotReady as exc:
            self.stop()
            raise ServerNotReady(f"{exc}; log tail: {self._log_tail()}") from exc

    def stop(self) -> None:
        """Terminate the process and wait for it; idempotent."""
        process, self._process = self._process, None
        if process is None:
            return
        process.terminate()
        try:
            process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def get(self, path: str) -> Any:
        """The JSON answer of a GET on the API."""
        return http_json(self.url + path)

    def _answers(self) -> bool:
        if self._process is None or self._process.poll() is not None:
            raise ServerNotReady(f"{self.name} exited")
        with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as response:
            return bool(response.status == 200)

    def _log_tail(self) -> str:
        lines = (
            self.log_path.read_text(errors="replace").splitlines() if self.log_path.exists() else []
        )
        return "\n".join(lines[-15:])


class AlertmanagerServer(_Process):
    """A private Alertmanager running `config_text`, without clustering."""

    name = "alertmanager"

    def __init__(self, workdir: Path, config_text: str) -> None:
        super().__init__(workdir)
        self.config_text = config_text

    def write_config(self) -> None:
        """Write the config as given."""
        (self.workdir / "alertmanager.yml").write_text(self.config_text)

    def command(self, storage: Path) -> list[str]:
        """Alertmanager with its own storage and no gossip port (0.0.0.0:9094 by default)."""
        return [
            ALERTMANAGER,
            f"--config.file={self.workdir / 'alertmanager.yml'}",
            f"--storage.path={storage}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--cluster.listen-address=",
        ]

    def wait_until_ready(self) -> None:
        """/-/ready is enough: the config is loaded before it answers."""

    def alerts(self) -> list[dict[str, Any]]:
        """Every alert Alertmanager holds, with `status.state` active, suppressed or
        unprocessed and `status.inhibitedBy`."""
        return list(self.get("/api/v2/alerts"))

    def post_alerts(self, alerts: Sequence[dict[str, Any]]) -> None:
        """Send alerts as Prometheus does (each with `labels`, optional `annotations`)."""
        http_json(self.url + "/api/v2/alerts", json.dumps(list(alerts)).encode())


class PrometheusServer(_Process):
    """A private Prometheus scraping `scrape_targets` (host:port) as one job, with rules."""

    name = "prometheus"

    def __init__(
        self,
        workdir: Path,
        scrape_targets: Sequence[str],
        rule_files: Sequence[Path] = (),
        alertmanager_url: str | None = None,
        scrape_interval: str = "1s",
        evaluation_interval: str = "1s",
    ) -> None:
        super().__init__(workdir)
        self.scrape_targets = list(scrape_targets)
        self.rule_files = [Path(p).absolute() for p in rule_files]
        self.alertmanager_url = alertmanager_url
        self.scrape_interval = scrape_interval
        self.evaluation_interval = evaluation_interval

    def write_config(self) -> None:
        """prometheus.yml: one job, the rule files, the Alertmanager."""
        document: dict[str, Any] = {
            "global": {
                "scrape_interval": self.scrape_interval,
                "scrape_timeout": self.scrape_interval,
                "evaluation_interval": self.evaluation_interval,
            },
            "rule_files": [str(p) for p in self.rule_files],
            "scrape_configs": [
                {"job_name": JOB, "static_configs": [{"targets": self.scrape_targets}]}
            ],
        }
        if self.alertmanager_url is not None:
            target = urllib.parse.urlsplit(self.alertmanager_url).netloc
            document["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]}
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(document, sort_keys=False))

    def command(self, storage: Path) -> list[str]:
        """Prometheus with its own TSDB."""
        return [
            PROMETHEUS,
            f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={storage}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]

    def wait_until_ready(self) -> None:
        """Every target scraped, the Alertmanager discovered, every rule group evaluated."""
        wait_for(self._targets_up, "every scrape target up")
        if self.alertmanager_url is not None:
            wait_for(
                lambda: bool(self.get("/api/v1/alertmanagers")["data"]["activeAlertmanagers"]),
                "an active Alertmanager",
            )
        if self.rule_files:
            wait_for(self._rules_evaluated, "every rule group evaluated")

    def query(self, expr: str) -> list[Series]:
        """The instant vector of `expr` now: each series as {"metric": labels, "value": [t, v]}.

        An unknown metric gives an empty list, not an error: callers check for emptiness.
        """
        answer = self.get("/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        if answer["status"] != "success":
            raise ValueError(f"query {expr!r} failed: {answer}")
        data = answer["data"]
        if data["resultType"] != "vector":
            raise ValueError(f"query {expr!r} gave a {data['resultType']}, not a vector")
        return list(data["result"])

    def alerts(self) -> list[dict[str, Any]]:
        """Prometheus's own pending and firing alerts (labels, state, activeAt)."""
        return list(self.get("/api/v1/alerts")["data"]["alerts"])

    def _targets_up(self) -> bool:
        targets = self.get("/api/v1/targets")["data"]["activeTargets"]
        return len(targets) == len(self.scrape_targets) and all(
            t["health"] == "up" for t in targets
        )

    def _rules_evaluated(self) -> bool:
        groups = self.get("/api/v1/rules")["data"]["groups"]
        # A group not yet evaluated reports the zero time, year 1.
        return bool(groups) and all(not g["lastEvaluation"].startswith("0001") for g in groups)
