"""The shipped rules and Alertmanager example, made fit for a test run lasting seconds.

Only timings change; expressions, labels, routes and inhibitions are the shipped ones.
- Every `for:` is divided by FOR_SPEEDUP, kept between 1 s and FOR_CAP_SECONDS. The rules'
  `for:` durations are minutes, picked for ops; scaled, they keep their order (a server
  down fires before its mailboxes' login failures, which is what lets the inhibition work
  from the first notification) and a single scrape still pages nobody.
- Alertmanager's receivers all become the test's webhook (the route still decides which
  receiver name the notification carries), and group_wait/group_interval drop to 1 s.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from tests import fleet
from tests.servers.dovecot import DovecotServer

ROOT = Path(__file__).parent.parent
SHIPPED_RULES = ROOT / "config" / "prometheus" / "bma-monitor.rules.yml"
STANDIN_RULES = Path(__file__).parent / "testdata" / "alerting" / "bma-monitor.rules.yml"
ALERTMANAGER_EXAMPLE = ROOT / "config" / "alertmanager" / "alertmanager.yml"
FOR_SPEEDUP = 60  # 5m -> 5s, 10m -> 10s: minutes of ops time become seconds of test time
FOR_CAP_SECONDS = 15.0  # an hour-long `for:` would otherwise outlast the test

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def rules_source() -> Path:
    """The shipped rule file, or the stand-in until it lands."""
    return SHIPPED_RULES if SHIPPED_RULES.exists() else STANDIN_RULES


def seconds(duration: str) -> float:
    """A Prometheus duration ("1h30m", "5m", "500ms") in seconds."""
    parts = re.findall(r"(\d+)(ms|[smhdwy])", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return sum(int(n) * _UNITS[u] for n, u in parts)


def rules_for_test(directory: Path) -> Path:
    """Write the rules with every `for:` scaled down; return the file's path."""
    document = yaml.safe_load(rules_source().read_text())
    for group in document["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                scaled = min(max(seconds(str(rule["for"])) / FOR_SPEEDUP, 1.0), FOR_CAP_SECONDS)
                rule["for"] = f"{round(scaled * 1000)}ms"
    path = directory / "bma-monitor.rules.yml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def alertmanager_config_for_test(webhook_url: str) -> str:
    """The example's routes and inhibitions, every receiver posting to `webhook_url`."""
    document: dict[str, Any] = yaml.safe_load(ALERTMANAGER_EXAMPLE.read_text())
    document.pop("global", None)  # only the placeholders' SMTP settings live there
    document["receivers"] = [
        {"name": receiver["name"], "webhook_configs": [{"url": webhook_url, "send_resolved": True}]}
        for receiver in document["receivers"]
    ]
    routes = [document["route"], *document["route"].get("routes", [])]
    for route in routes:
        route.update(group_wait="1s", group_interval="1s", repeat_interval="1h")
    return yaml.safe_dump(document, sort_keys=False)


MAILBOXES = [fleet.EMPTY, fleet.NEARLY_FULL, fleet.FOLDERS]
SERVER = "dovecot"  # the server name fleet.write_config gives


def write_daemon_config(directory: Path, server: DovecotServer, port: int) -> Path:
    """A daemon probing MAILBOXES over IMAP every second, quick to call the server down."""
    return fleet.write_config(
        directory,
        server,
        "none",
        MAILBOXES,
        probing={
            "interval": "1s",
            "timeout": "900ms",
            # Down after two failed probes within 3 s: seconds, as the test's `for:` are.
            "outage": {
                "window": "3s",
                "min_probes": 2,
                "failure_ratio": 0.5,
                "backoff_initial": "1s",
                "backoff_max": "2s",
            },
        },
        extra={"http": {"listen": f"127.0.0.1:{port}"}, "logging": {"format": "json"}},
    )
