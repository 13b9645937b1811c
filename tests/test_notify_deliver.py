"""Warning mails through a real relay on loopback: what arrives, and the outbox's account."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from monitor.notify import outbox
from monitor.notify.deliver import BRUSSELS
from monitor.notify.outbox import OutboxState
from monitor.notify.templates import Audience
from monitor.state.store import StateStore
from tests.notify_support import (
    MORNING,
    REPLY_TO,
    SENDER,
    Clock,
    deliverer,
    entry,
    notify_config,
)
from tests.servers.relay import RecordingRelay

DAY = 86400.0


@pytest.fixture
def relay() -> Iterator[RecordingRelay]:
    with RecordingRelay() as server:
        yield server


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    opened = StateStore.open(tmp_path / "state.db")
    yield opened
    opened.close()


def states(store: StateStore) -> dict[str, OutboxState]:
    return {
        f"{r.entry.address}/{r.entry.threshold}/{r.entry.audience}": r.state
        for r in outbox.rows(store)
    }


def bodies(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return text.get_content(), html.get_content()


async def test_headers_and_both_bodies_arrive(relay: RecordingRelay, store: StateStore) -> None:
    """The relay receives multipart/alternative with every header RFC 3834 and the config ask."""
    clock = Clock()
    row = entry(1234, 5, 5, establishment="École <script> & Cie")
    outbox.enqueue(store, [row], clock())
    report = await deliverer(store, notify_config(relay.port), clock).work()
    assert report.sent == 1
    [got] = relay.messages()
    message = got.message
    assert got.recipients == ("ec001234@adm.cfwb.be",)
    assert got.sender == "noreply@monitor.test"
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in message.iter_parts())
    assert message["From"] == SENDER
    assert message["Reply-To"] == REPLY_TO
    assert message["To"] == "ec001234@adm.cfwb.be"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Message-ID"] == "<expiry.ec001234.20260614.5.bma@monitor.test>"
    assert message["Date"].datetime == dt.datetime.fromtimestamp(MORNING, dt.UTC)
    assert message["Subject"] == (
        "Votre mot de passe CERBERE expire le 14/6/2026 (dans 5 jours) - ec001234@adm.cfwb.be"
    )
    text, html = bodies(message)
    assert "École <script> & Cie" in text and "dans 5 jours" in text
    assert "École &lt;script&gt; &amp; Cie" in html and "<script>" not in html
    assert states(store) == {"ec001234@adm.cfwb.be/5/bma": OutboxState.SENT}


async def test_a_550_fails_that_row_only(relay: RecordingRelay, store: StateStore) -> None:
    """A recipient refused for good fails its own row, with the reason; the others go."""
    clock = Clock()
    refused = entry(2, 5, 5, audience=Audience.CONTACT, recipient="gone@ecole.test")
    relay.script.rcpt["gone@ecole.test"] = "550 5.1.1 User unknown"
    outbox.enqueue(store, [entry(1, 5, 5), refused, entry(3, 5, 5)], clock())
    report = await deliverer(store, notify_config(relay.port), clock).work()
    assert (report.sent, report.failed) == (2, 1)
    assert sorted(m.recipients[0] for m in relay.messages()) == [
        "ec000001@adm.cfwb.be",
        "ec000003@adm.cfwb.be",
    ]
    [failed] = [r for r in outbox.rows(store) if r.state is OutboxState.FAILED]
    assert failed.entry.recipient == "gone@ecole.test"
    assert (failed.reason, failed.last_error) == ("refused", "550 5.1.1 User unknown")
    assert outbox.counts(store).failed == {(5, "refused"): 1}
    clock.advance(DAY)
    assert (await deliverer(store, notify_config(relay.port), clock).work()).failed == 0


async def test_451_is_retried_with_backoff(relay: RecordingRelay, store: StateStore) -> None:
    """A 4xx keeps the row pending, due again after retry_initial, then twice as long."""
    clock = Clock()
    relay.script.data["ec000001@adm.cfwb.be"] = "451 4.3.0 Try again later"
    outbox.enqueue(store, [entry(1, 15, 15)], clock())
    work = deliverer(store, notify_config(relay.port), clock).work
    assert (await work()).deferred == 1
    [row] = outbox.rows(store)
    assert (row.state, row.attempts, row.next_attempt_at) == ("pending", 1, MORNING + 60)
    clock.advance(59)
    assert (await work()).deferred == 0  # not due yet
    clock.advance(1)
    assert (await work()).deferred == 1
    assert outbox.rows(store)[0].next_attempt_at == clock() + 120
    del relay.script.data["ec000001@adm.cfwb.be"]
    clock.advance(120)
    assert (await work()).sent == 1
    assert len(relay.messages()) == 1


async def test_relay_down_then_back_sends_each_once_late(
    relay: RecordingRelay, store: StateStore
) -> None:
    """Connections refused for a day and a half: each due mail then goes once, with the
    days left on the day it goes."""
    clock = Clock()
    relay.stop()
    rows = [entry(n, 5, 5) for n in range(1, 6)]
    outbox.enqueue(store, rows, clock())
    work = deliverer(store, notify_config(relay.port), clock).work
    with capture_logs() as logs:
        for _ in range(36):  # hourly rounds
            report = await work()
            assert report.sent == 0
            clock.advance(3600)
    assert {e["reason"] for e in logs if e["event"] == "notify_deferred"} == {"connection"}
    # One connection attempt per round, not one per row.
    assert len([e for e in logs if e["event"] == "notify_deferred"]) <= 36
    assert outbox.counts(store).pending == 5
    relay.start()
    clock.advance(3600)
    report = await work()
    assert report.sent == 5
    assert (await work()).sent == 0
    ids = [m.message["Message-ID"] for m in relay.messages()]
    assert sorted(ids) == sorted(r.message_id for r in rows)
    for got in relay.messages():
        assert "dans 4 jours" in bodies(got.message)[0]  # 10 June 21:00: 4 days left


async def test_rate_limit_and_daily_cap_follow_the_clock(
    relay: RecordingRelay, store: StateStore
) -> None:
    """per_minute mails a minute at most; daily_cap mails a Brussels day at most."""
    clock = Clock(dt.datetime(2026, 6, 9, 23, 30, tzinfo=BRUSSELS).timestamp())
    outbox.enqueue(store, [entry(n, 15, 15) for n in range(1, 31)], clock())
    work = deliverer(store, notify_config(relay.port, per_minute=4, daily_cap=10), clock).work
    assert (await work()).sent == 4
    assert (await work()).sent == 0
    clock.advance(30)
    assert (await work()).sent == 2  # half a minute refills half the bucket
    clock.advance(120)
    assert (await work()).sent == 4  # capped by the bucket's size, not by the gap
    clock.advance(600)  # 23:42:30, the bucket full again, the day's ten mails gone
    report = await work()
    assert (report.sent, report.capped) == (0, True)
    assert len(relay.messages()) == 10
    clock.advance(1200)  # 00:02:30 in Brussels: a new day
    assert (await work()).sent == 4
    assert len(relay.messages()) == 14


async def test_dry_run_logs_and_sends_nothing(relay: RecordingRelay, store: StateStore) -> None:
    """Until enabled, a due mail is rendered, logged and marked dry_run; the relay sees none."""
    clock = Clock()
    outbox.enqueue(store, [entry(7, 1, 1)], clock())
    with capture_logs() as logs:
        report = await deliverer(store, notify_config(relay.port, enabled=False), clock).work()
    assert report.dry_run == 1
    assert relay.messages() == []
    [event] = [e for e in logs if e["event"] == "notify_dry_run"]
    assert event["recipient"] == "ec000007@adm.cfwb.be"
    assert event["message_id"] == "<expiry.ec000007.20260610.1.bma@monitor.test>"
    assert "dans 1 jour" in event["subject"]
    assert outbox.thresholds_done(store, "ec000007@adm.cfwb.be", dt.date(2026, 6, 10)) == {1}


async def test_expired_before_sending_is_cancelled(
    relay: RecordingRelay, store: StateStore
) -> None:
    """A row still pending on the expiry day is dropped: no warning says '0 days'."""
    clock = Clock()
    outbox.enqueue(store, [entry(8, 1, 1)], clock())
    relay.stop()
    await deliverer(store, notify_config(relay.port), clock).work()
    relay.start()
    clock.advance(DAY)
    report = await deliverer(store, notify_config(relay.port), clock).work()
    assert (report.sent, report.cancelled) == (0, 1)
    assert outbox.rows(store)[0].reason == "expired"


async def test_starttls_and_auth_with_the_named_credential(
    tmp_path: Path, store: StateStore
) -> None:
    """STARTTLS verified against the CA file and the server name; AUTH with the file's
    password, which no log nor outcome shows, even when it is refused."""
    secret = "s3cr&t-relay-pw"
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700)
    (credentials / "relay-auth").write_text(secret + "\n")
    with RecordingRelay(tmp_path / "certs", tls="starttls", users={"monitor": secret}) as server:
        relay = {
            "tls": "starttls",
            "ca_file": server.ca_file,
            "tls_server_name": "localhost",
            "username": "monitor",
            "credential": "relay-auth",
        }
        clock = Clock()
        outbox.enqueue(store, [entry(9, 5, 5), entry(10, 5, 5)], clock())
        config = notify_config(server.port, relay=relay)
        assert (await deliverer(store, config, clock, credentials=credentials).work()).sent == 2
        assert server.auth_logins == ["monitor", "monitor"]
        (credentials / "relay-auth").write_text("wrong-" + secret)
        outbox.enqueue(store, [entry(11, 5, 5)], clock())
        with capture_logs() as logs:
            report = await deliverer(store, config, clock, credentials=credentials).work()
        assert report.deferred == 1
        assert outbox.rows(store, "ec000011@adm.cfwb.be")[0].reason == "auth"
        assert secret not in repr(logs) and secret not in repr(outbox.rows(store))


async def test_unverifiable_certificate_is_a_tls_outcome(tmp_path: Path, store: StateStore) -> None:
    """Without the CA file the relay's certificate is refused; the row waits."""
    with RecordingRelay(tmp_path / "certs", tls="implicit") as server:
        clock = Clock()
        outbox.enqueue(store, [entry(12, 5, 5)], clock())
        config = notify_config(server.port, relay={"tls": "implicit"})
        assert (await deliverer(store, config, clock).work()).deferred == 1
        assert outbox.rows(store)[0].reason == "tls"
        config = notify_config(server.port, relay={"tls": "implicit", "ca_file": server.ca_file})
        clock.advance(3600)
        assert (await deliverer(store, config, clock).work()).sent == 1


def test_new_expiry_date_cancels_the_old_cycle(store: StateStore) -> None:
    """A changed password: pending rows of the old date are cancelled, sent ones kept."""
    old, new = entry(1, 15, 15), entry(1, 15, 200)
    outbox.enqueue(store, [old, entry(1, 5, 15)], MORNING)
    outbox.mark_sent(store, (old.address, old.expiry_date, 15, Audience.BMA), MORNING)
    assert outbox.enqueue(store, [new], MORNING) == 1
    assert outbox.enqueue(store, [new], MORNING) == 0  # the key is the row's identity
    assert outbox.cancel_other_dates(store, new.address, new.expiry_date, MORNING) == 1
    got = {(r.entry.expiry_date, r.entry.threshold): r.state for r in outbox.rows(store)}
    assert got == {
        (old.expiry_date, 15): OutboxState.SENT,
        (old.expiry_date, 5): OutboxState.CANCELLED,
        (new.expiry_date, 15): OutboxState.PENDING,
    }
    assert outbox.thresholds_done(store, old.address, old.expiry_date) == {15}


def test_supersede_marks_skipped_thresholds_done(store: StateStore) -> None:
    """Catch-up: passed thresholds are superseded, pending or not, and count as done."""
    pending15 = entry(1, 15, 4)
    outbox.enqueue(store, [pending15], MORNING)
    outbox.supersede(store, pending15.address, pending15.expiry_date, [15, 5], MORNING)
    assert outbox.thresholds_done(store, pending15.address, pending15.expiry_date) == {15, 5}
    assert {r.state for r in outbox.rows(store)} == {OutboxState.SUPERSEDED}
    assert outbox.counts(store).pending == 0
