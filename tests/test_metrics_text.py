"""The /metrics page after real probes on two servers: labels, the info series, absent phases."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import Config
from monitor.metrics import mailbox_text
from monitor.metrics.collector import BmaCollector, ReloadStatus
from monitor.metrics.page import MetricsPage
from monitor.scheduling.scheduler import Scheduler
from tests import fleet
from tests.servers.dovecot import DovecotServer, free_port
from tests.test_http import fake_view
from tests.test_scheduler import metrics, scheduler_for

# Free text as an inventory gives it: accents, a quote, a backslash, a line break.
SCHOOL = 'École "Les Tilleuls" \\ Namur\nannexe'
REACHED = fleet.EMPTY  # on the real Dovecot
UNREACHED = fleet.FOLDERS  # on a port nothing listens on


def two_server_config(tmp_path: Path, dovecot: DovecotServer) -> Config:
    """One mailbox on a real Dovecot, one on a server that refuses connections."""
    closed = {"host": "127.0.0.1", "port": free_port(), "tls": "none", "connect_timeout": "2s"}
    return fleet.config_for(
        tmp_path,
        dovecot,
        "none",
        [REACHED, UNREACHED],
        extra={
            "servers": {
                "dovecot": {"host": "127.0.0.1", "port": dovecot.imap_port, "tls": "none"},
                "closed": closed,
            },
            "default_server": "dovecot",
            "mailboxes": [
                {"address": fleet.address(REACHED), "name": SCHOOL},
                {"address": fleet.address(UNREACHED), "name": "PO de Liège", "server": "closed"},
            ],
        },
    )


@pytest.fixture
async def swept(dovecot: DovecotServer, tmp_path: Path) -> AsyncIterator[Scheduler]:
    """A scheduler that has probed both mailboxes once."""
    scheduler, store = scheduler_for(two_server_config(tmp_path, dovecot))
    await scheduler.sweep()
    yield scheduler
    store.close()


def by_mailbox(samples: list[tuple[dict[str, str], float]]) -> dict[str, dict[str, str]]:
    """Each mailbox's labels in a family that has one sample per mailbox."""
    labels = {lb["mailbox"]: lb for lb, _ in samples}
    assert len(labels) == len(samples)
    return labels


async def test_every_mailbox_series_names_its_server(swept: Scheduler) -> None:
    """Per-mailbox series carry the mailbox's server; probe series also their protocol."""
    samples = metrics(swept)
    login = by_mailbox(samples["bma_mailbox_login_success"])
    assert login[REACHED] == {
        "mailbox": REACHED,
        "kind": "ec",
        "server": "dovecot",
        "protocol": "imap",
    }
    assert login[UNREACHED]["server"] == "closed" and login[UNREACHED]["kind"] == "po"
    for family in (
        "bma_mailbox_probe_reason",
        "bma_mailbox_last_probe_timestamp_seconds",
        "bma_mailbox_auth_locked",
    ):
        labels = by_mailbox(samples[family])
        assert {m: (lb["server"], lb["protocol"]) for m, lb in labels.items()} == {
            REACHED: ("dovecot", "imap"),
            UNREACHED: ("closed", "imap"),
        }
    used = by_mailbox(samples["bma_mailbox_quota_used_bytes"])
    assert used[REACHED] == {"mailbox": REACHED, "kind": "ec", "server": "dovecot"}
    counts = {(lb["kind"], lb["server"]): v for lb, v in samples["bma_mailboxes"]}
    assert counts == {
        ("ec", "dovecot"): 1.0,
        ("po", "dovecot"): 0.0,
        ("ec", "closed"): 0.0,
        ("po", "closed"): 1.0,
    }


async def test_info_series_names_the_establishment(swept: Scheduler) -> None:
    """One info series per mailbox; a name with accents, quotes and a newline survives."""
    info = {lb["mailbox"]: (lb, v) for lb, v in metrics(swept)["bma_mailbox_info"]}
    assert info[REACHED] == (
        {
            "mailbox": REACHED,
            "kind": "ec",
            "fase": REACHED[2:],
            "name": SCHOOL,
            "server": "dovecot",
        },
        1.0,
    )
    assert info[UNREACHED][0]["name"] == "PO de Liège"


async def test_phases_not_reached_are_not_exported(swept: Scheduler) -> None:
    """A probe refused at connect exports its connect time only, no login or quota time."""
    phases: dict[str, set[str]] = {}
    for labels, _ in metrics(swept)["bma_mailbox_probe_phase_duration_seconds"]:
        phases.setdefault(labels["mailbox"], set()).add(labels["phase"])
    assert phases[UNREACHED] == {"connect"}
    assert phases[REACHED] == {"connect", "greeting", "login", "quota", "logout"}  # no TLS


async def test_a_renamed_mailbox_is_rendered_anew(swept: Scheduler) -> None:
    """A reload that changes a name or a server shows at the next scrape (the cache follows)."""
    page = MetricsPage(CollectorRegistry(), swept.view)
    b"".join(page.render()[1])  # fills the per-mailbox cache
    config = swept.view().config
    moved = [
        replace(m, name="Athénée royal", server="closed") if m.local_part == REACHED else m
        for m in config.mailboxes
    ]
    swept.reconfigure(replace(config, mailboxes=tuple(moved)))
    text = b"".join(page.render()[1]).decode()
    servers = {
        (sample.name, sample.labels["mailbox"]): (
            sample.labels["server"],
            sample.labels.get("name"),
        )
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert servers[("bma_mailbox_info", REACHED)] == ("closed", "Athénée royal")
    assert servers[("bma_mailbox_login_success", REACHED)] == ("closed", None)


def test_promtool_accepts_the_page(swept: Scheduler) -> None:
    """The whole page passes `promtool check metrics` (where Prometheus is installed)."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (Debian package prometheus)")
    registry = CollectorRegistry()
    registry.register(BmaCollector(swept.view, lambda: ReloadStatus(True, 1.0)))
    body = b"".join(MetricsPage(registry, swept.view).render()[1])
    check = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30, check=False
    )
    assert check.returncode == 0, check.stderr.decode() + check.stdout.decode()


def test_warming_renders_every_mailbox_ahead_of_the_scrape(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After warm(), a scrape of unchanged statuses renders no mailbox again."""
    view = fake_view(50)
    page = MetricsPage(CollectorRegistry(), lambda: view)
    page.warm()

    def no_render(*args: object) -> None:
        raise AssertionError("a mailbox was rendered at scrape time")

    monkeypatch.setattr(mailbox_text, "_chunks", no_render)
    size, pieces = page.render()
    body = b"".join(pieces)
    assert len(body) == size
    assert body.count(b"bma_mailbox_login_success{") == 50
