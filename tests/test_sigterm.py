"""SIGTERM, as `systemctl stop` sends it, in the middle of the daemon's work: a login the
server holds unanswered, a warning mail the relay holds after its last byte. The daemon
exits 0 well within the unit's TimeoutStopSec, and what it wrote stays true: the login is
still on record as sent, the mail still owed, and sent exactly once after a restart."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml

from monitor.credentials import SecretKind
from monitor.notify import outbox
from monitor.notify.outbox import OutboxState
from monitor.state import logins
from monitor.state.store import StateStore
from tests import fleet
from tests.daemon_process import DaemonProcess, eventually
from tests.servers.dovecot import free_port
from tests.servers.relay import RecordingRelay
from tests.servers.scripted import ScriptedServer
from tests.servers.scripted_imap import CAPS

ROOT = Path(__file__).resolve().parents[1]
PROBED = fleet.SPARES[48]
WARNED = fleet.SPARES[49]
# Far inside the unit's TimeoutStopSec (checked below): a stop must not depend on a
# server's or a relay's timeouts.
STOP_WITHIN_SECONDS = 5.0
START_SECONDS = 20.0


def unit_stop_timeout() -> float:
    """TimeoutStopSec of systemd/bma-monitor.service, in seconds."""
    for line in (ROOT / "systemd" / "bma-monitor.service").read_text().splitlines():
        if line.startswith("TimeoutStopSec="):
            return float(line.partition("=")[2].removesuffix("s"))
    raise AssertionError("the unit sets no TimeoutStopSec")


def stopped_while(config: Path, port: int, busy: threading.Event) -> None:
    """Start the daemon, SIGTERM it once `busy` is set, and check it stopped cleanly and
    in time."""
    daemon = DaemonProcess(config, port, "")
    try:
        assert busy.wait(START_SECONDS), "the daemon never got to the point to stop it at"
        started = time.monotonic()
        status = daemon.stop()
        took = time.monotonic() - started
    finally:
        daemon.stop()
    assert status == 0 and took < STOP_WITHIN_SECONDS, (status, took)
    assert daemon.log_events()[-1]["event"] == "stopped"


def state_is_whole(path: Path) -> StateStore:
    """The state file, opened after an integrity check."""
    store = StateStore.open(path)
    with store.reading() as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    return store


def held_back(daemon: DaemonProcess) -> float:
    """How many due IMAP probes the daemon held back after a login with no known outcome."""
    return sum(
        value
        for labels, value in daemon.samples().get("bma_probes_skipped_total", [])
        if labels == {"protocol": "imap", "cause": "outcome_unknown"}
    )


class HeldLogin:
    """An IMAP server (scripted, in its own thread) that greets, then never answers LOGIN."""

    def __init__(self) -> None:
        self.logins = 0
        self.login_seen = threading.Event()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server = ScriptedServer(self._hold)

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY " + CAPS + b"] ready\r\n")
        await writer.drain()
        while line := await reader.readline():
            if b" LOGIN " in line.upper():
                self.logins += 1
                self.login_seen.set()
                await reader.read()  # until the client gives up
                return
            tag = line.split(b" ", 1)[0]
            writer.write(tag + b" OK done\r\n")
            await writer.drain()

    def __enter__(self) -> HeldLogin:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._server.__aenter__(), self._loop).result(10)
        self.port = self._server.port
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._server.__aexit__(), self._loop).result(20)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def test_the_unit_leaves_room_for_these_stops() -> None:
    """The deadline these tests hold the daemon to is well within the unit's."""
    assert unit_stop_timeout() >= STOP_WITHIN_SECONDS * 4


def test_sigterm_while_a_login_is_held(tmp_path: Path) -> None:
    """A probe waiting on an unanswered LOGIN does not hold up the stop, and its attempt
    stays on record: after a restart the password is not sent again."""
    port = free_port()
    with HeldLogin() as server:
        config = fleet.write_config(
            tmp_path,
            None,
            "none",
            [PROBED],
            port=server.port,
            probing={"interval": "10s", "timeout": "9s"},
            extra={
                "servers": {
                    "held": {
                        "imap": {
                            "host": "127.0.0.1",
                            "port": server.port,
                            "tls": "none",
                            "command_timeout": "8s",
                        }
                    }
                },
                "http": {"listen": f"127.0.0.1:{port}"},
                "logging": {"format": "json"},
            },
        )
        stopped_while(config, port, server.login_seen)

        store = state_is_whole(tmp_path / "state.db")
        try:
            held = logins.load_attempts(store)
        finally:
            store.close()
        assert (fleet.address(PROBED), SecretKind.MAILBOX) in held

        again = DaemonProcess(config, port, "")
        try:
            eventually(lambda: held_back(again) >= 1)
        finally:
            assert again.stop() == 0
        assert server.logins == 1


@pytest.fixture
def relay() -> Iterator[RecordingRelay]:
    """A relay that never answers the DATA of the first mail it is given."""
    with RecordingRelay() as server:
        server.script.hold_data = 1
        yield server


def warning_config(tmp_path: Path, relay: RecordingRelay, http_port: int) -> Path:
    """A mailbox whose CERBERE password expires in five days, warned through `relay` at
    any hour; its probes go to a closed port (they are not what this test is about)."""
    path = fleet.write_config(
        tmp_path,
        None,
        "none",
        [WARNED],
        port=1,
        extra={"http": {"listen": f"127.0.0.1:{http_port}"}, "logging": {"format": "json"}},
    )
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    today = dt.datetime.now(ZoneInfo("Europe/Brussels")).date()
    document["mailboxes"][0]["password_expires"] = (today + dt.timedelta(days=5)).isoformat()
    document["mailboxes"][0]["name"] = "École de l'arrêt"
    document["expiry"] = {
        "sources": {"observed": False},
        "send_from": "00:00",
        "send_until": "23:59",
    }
    document["notify"] = {
        "enabled": True,
        "sender": "ETNIC <noreply@etnic.be>",
        "relay": {"host": "127.0.0.1", "port": relay.port, "tls": "none"},
        "every": "1s",
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return path


def test_sigterm_while_the_relay_holds_a_mail(tmp_path: Path, relay: RecordingRelay) -> None:
    """A mail whose DATA the relay never answers does not hold up the stop, is not marked
    sent, and goes out exactly once after a restart."""
    port = free_port()
    config = warning_config(tmp_path, relay, port)
    stopped_while(config, port, relay.holding)
    assert relay.messages() == []

    store = state_is_whole(tmp_path / "state.db")
    try:
        rows = outbox.rows(store)
    finally:
        store.close()
    # The 5-day warning, owed; the 15-day one, already past, is superseded by it.
    (row,) = [r for r in rows if r.state is not OutboxState.SUPERSEDED]
    assert row.state is OutboxState.PENDING and row.entry.threshold == 5

    again = DaemonProcess(config, port, "")
    try:
        eventually(lambda: len(relay.messages()) == 1)
        time.sleep(2.0)  # two more rounds of the notify job, which must send nothing
    finally:
        assert again.stop() == 0
    ids = Counter(m.message["Message-ID"] for m in relay.messages())
    assert ids == {row.entry.message_id: 1}
    store = state_is_whole(tmp_path / "state.db")
    try:
        states = {r.entry.threshold: r.state for r in outbox.rows(store)}
    finally:
        store.close()
    assert states == {15: OutboxState.SUPERSEDED, 5: OutboxState.SENT}
