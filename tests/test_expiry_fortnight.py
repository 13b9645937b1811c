"""A fortnight of the daemon's warning-mail job on a virtual clock, through a DST change,
against a real relay: exactly the expected mails, each once, never before 08:00."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from monitor.cli import main
from monitor.config import load_config
from monitor.credentials import CredentialStore
from monitor.expiry.jobs import ExpiryJobs, checked_templates
from monitor.metrics.expiry import ExpiryCollector, ExpiryText, ExpiryView
from monitor.notify import outbox
from monitor.scheduling.runner import ProbeRunner
from monitor.state.store import StateStore
from tests import fleet
from tests.exposition import text_families
from tests.servers.relay import RecordingRelay

BRUSSELS = ZoneInfo("Europe/Brussels")
# A week before each DST change of 2027 (28 March, 31 October).
STARTS = [
    dt.datetime(2027, 3, 21, 10, 0, tzinfo=BRUSSELS),
    dt.datetime(2027, 10, 24, 10, 0, tzinfo=BRUSSELS),
]
STEP = dt.timedelta(minutes=20)
DAYS_AT_START = {  # local part: days left at START
    "ec000201": 16,
    "ec000202": 15,
    "ec000203": 5,
    "ec000204": 1,
    "ec000205": 0,
    "ec000206": -3,
}
CONTACT = "direction@example.org"  # ec000202's


@pytest.fixture
def relay() -> Iterator[RecordingRelay]:
    """The SMTP relay the warnings go through, recording every message."""
    with RecordingRelay() as server:
        yield server


def write_fleet(tmp_path: Path, relay: RecordingRelay, start: dt.datetime) -> Path:
    """Mailboxes whose CERBERE passwords expire on known dates (from the inventory)."""
    path = fleet.write_config(tmp_path, None, "none", list(DAYS_AT_START), port=1)
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    for entry in document["mailboxes"]:
        local = entry["address"].split("@")[0]
        entry["password_expires"] = (start.date() + dt.timedelta(DAYS_AT_START[local])).isoformat()
        entry["name"] = f"École {local}"
        if local == "ec000202":
            entry["contact"] = CONTACT
    document["expiry"] = {"sources": {"observed": False}}
    document["notify"] = {
        "enabled": True,
        "sender": "ETNIC <noreply@etnic.be>",
        "relay": {"host": "127.0.0.1", "port": relay.port, "tls": "none"},
        "every": "10m",
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return path


@pytest.mark.parametrize("start", STARTS, ids=["spring", "autumn"])
async def test_a_fortnight_sends_each_warning_once_at_or_after_eight(
    tmp_path: Path, relay: RecordingRelay, capsys: pytest.CaptureFixture[str], start: dt.datetime
) -> None:
    """Stepping every 20 minutes through 15 days, midnights and a DST change: each mail at
    its threshold's first sending hour (or at once where it was already due), once."""
    path = write_fleet(tmp_path, relay, start)
    config = load_config(path)
    now = [start.timestamp()]
    store = StateStore.open(config.state.path)
    credentials = CredentialStore(config.credentials, store.salt())
    runner = ProbeRunner(config, store, credentials, clock=lambda: now[0])
    jobs = ExpiryJobs(config, store, credentials, runner, dict, clock=lambda: now[0])
    end = start + dt.timedelta(days=15, hours=4)
    while now[0] <= end.timestamp():
        await jobs.notifier.tick()
        now[0] += STEP.total_seconds()

    sent = []
    for received in relay.received:
        message = received.message
        identity = message["Message-ID"].strip("<>").split("@")[0]
        _, local, _, threshold, audience = identity.split(".")
        at = parsedate_to_datetime(message["Date"]).astimezone(BRUSSELS)
        assert at.time() >= dt.time(8, 0), (local, threshold, at)
        sent.append((local, int(threshold), audience, (at.date() - start.date()).days))
    assert sorted(sent) == sorted(
        [
            ("ec000201", 15, "bma", 1),
            ("ec000201", 5, "bma", 11),
            ("ec000201", 1, "bma", 15),
            ("ec000202", 15, "bma", 0),
            ("ec000202", 15, "contact", 0),
            ("ec000202", 5, "bma", 10),
            ("ec000202", 5, "contact", 10),
            ("ec000202", 1, "bma", 14),
            ("ec000202", 1, "contact", 14),
            ("ec000203", 5, "bma", 0),
            ("ec000203", 1, "bma", 4),
            ("ec000204", 1, "bma", 0),
        ]
    )
    # The mail states the true days left; the contact's tells why it gets one too.
    five_days = next(r for r in relay.received if ".ec000203." in r.message["Message-ID"])
    assert "5 jours" in five_days.message.get_body(("plain",)).get_content()
    store.close()

    # The CLI and the metrics agree with what was sent, on dates and days left.
    capsys.readouterr()
    at = (start.date() + dt.timedelta(days=12)).isoformat()
    assert main(["expiry", "--config", str(path), "--json", "--at", at]) == 0
    rows = {r["mailbox"]: r for r in map(json.loads, capsys.readouterr().out.splitlines())}
    first = rows["ec000201"]
    expires = start.date() + dt.timedelta(days=16)
    assert first["expiry_date"] == expires.isoformat() and first["days_left"] == 4
    assert first["next_threshold"] is None  # all three sent, the last the day before
    assert first["thresholds_done"] == [15, 5, 1]
    assert rows["ec000206"]["expired"] is True and rows["ec000206"]["next_threshold"] is None
    notifier = jobs.notifier
    view = ExpiryView(
        config, notifier.expiries, notifier.counts, notifier.warned, jobs.directory.health()
    )
    families = {f.name: f for f in ExpiryCollector(lambda: view).collect()}
    families |= text_families(ExpiryText(lambda: view, clock=lambda: now[0]).render)
    expiry = {
        s.labels["mailbox"]: s.value
        for s in families["bma_password_expiry_timestamp_seconds"].samples
    }
    assert expiry["ec000201"] == dt.datetime.combine(expires, dt.time(), BRUSSELS).timestamp()
    sent_by_threshold = {
        s.labels["threshold"]: s.value for s in families["bma_notifications_sent"].samples
    }
    assert sent_by_threshold == {"15": 3.0, "5": 4.0, "1": 5.0}
    warned = {
        s.labels["mailbox"]: s.labels["threshold"]
        for s in families["bma_password_warning_last_sent_timestamp_seconds"].samples
    }
    # The most urgent warning of each password not yet expired at the fortnight's end.
    assert warned == {"ec000201": "1", "ec000202": "1"}


async def test_a_changed_password_cancels_the_old_cycle_before_it_is_sent(
    tmp_path: Path, relay: RecordingRelay
) -> None:
    """A warning still queued (the relay down) when the expiry date moves is never sent;
    the new date starts its own cycle."""
    start = STARTS[1]
    path = write_fleet(tmp_path, relay, start)
    relay.stop()
    config = load_config(path)
    now = [start.timestamp()]
    store = StateStore.open(config.state.path)
    credentials = CredentialStore(config.credentials, store.salt())
    runner = ProbeRunner(config, store, credentials, clock=lambda: now[0])
    jobs = ExpiryJobs(config, store, credentials, runner, dict, clock=lambda: now[0])
    await jobs.notifier.tick()  # ec000202's J-15 is queued, and cannot go
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    for entry in document["mailboxes"]:
        entry["password_expires"] = (start.date() + dt.timedelta(days=180)).isoformat()
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    changed = load_config(path)
    jobs.reconfigure(changed, credentials, checked_templates(changed))
    relay.start()
    now[0] += 3600
    await jobs.notifier.tick()
    assert relay.received == []
    states = {(r.entry.address, r.entry.threshold): str(r.state) for r in outbox.rows(store)}
    assert states[(fleet.address("ec000202"), 15)] == "cancelled"
    store.close()
