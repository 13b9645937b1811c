"""The daemon as ops run it: a process with /metrics, /healthz, SIGHUP reload, SIGTERM stop,
state kept across restarts, and no password anywhere in what it writes or serves."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests import fleet
from tests.daemon_process import DaemonProcess, eventually
from tests.servers.dovecot import DovecotServer, free_port

GOOD = [fleet.EMPTY, fleet.FULL, fleet.FOLDERS]
_spares = iter(fleet.SPARES[31:])  # each test's refused mailbox is its own, so counts are exact


DaemonConfig = tuple[Path, int, str]


@pytest.fixture
def daemon_config(dovecot: DovecotServer, tmp_path: Path) -> DaemonConfig:
    """A fast-cycling daemon's config: path, HTTP port, and the mailbox with a wrong password."""
    port = free_port()
    bad = next(_spares)
    path = fleet.write_config(
        tmp_path,
        dovecot,
        "starttls",
        [*GOOD, bad],
        passwords={bad: "wrong"},
        probing={"interval": "1s", "timeout": "900ms"},
        extra={
            "http": {"listen": f"127.0.0.1:{port}"},
            "logging": {"format": "json", "level": "debug"},
        },
    )
    return path, port, bad


@pytest.fixture
def daemon(daemon_config: DaemonConfig) -> Iterator[DaemonProcess]:
    """A running daemon, stopped after the test."""
    process = DaemonProcess(*daemon_config)
    yield process
    process.stop()


def test_daemon_serves_metrics_and_health(daemon: DaemonProcess, dovecot: DovecotServer) -> None:
    """The daemon probes the fleet, serves metrics and health, and tries the bad password once."""
    eventually(lambda: daemon.get("/healthz")[0] == 200)
    eventually(lambda: len(daemon.by_mailbox("bma_mailbox_login_success")) == 4)
    time.sleep(2.2)  # two more cycles
    login = daemon.by_mailbox("bma_mailbox_login_success")
    assert login == {fleet.EMPTY: 1.0, fleet.FULL: 1.0, fleet.FOLDERS: 1.0, daemon.bad: 0.0}
    assert daemon.by_mailbox("bma_mailbox_auth_locked")[daemon.bad] == 1.0
    assert daemon.by_mailbox("bma_mailbox_quota_used_bytes")[fleet.FULL] > fleet.TEN_MIB
    samples = daemon.samples()
    assert samples["bma_server_up"] == [({"server": "dovecot", "protocol": "imap"}, 1.0)]
    assert samples["bma_config_last_reload_successful"][0][1] == 1.0
    assert "process_resident_memory_bytes" in samples
    assert dovecot.auth_attempts(fleet.address(daemon.bad)) == 1
    health = json.loads(daemon.get("/healthz")[1])
    assert health["status"] == "ok" and health["mailboxes"] == 4
    assert daemon.get("/nowhere")[0] == 404

    assert daemon.stop() == 0
    events = daemon.log_events()
    probes = [e for e in events if e["event"] == "probe"]
    assert {e["mailbox"] for e in probes} == {*GOOD, daemon.bad}
    assert all(
        {"reason", "phases", "duration_seconds", "level", "timestamp"} <= e.keys() for e in probes
    )
    assert events[-1]["event"] == "stopped"


def test_reload_whole_or_not_at_all(daemon: DaemonProcess, dovecot: DovecotServer) -> None:
    """SIGHUP with a broken file keeps the old config and says so; a good one is applied."""
    eventually(lambda: len(daemon.by_mailbox("bma_mailbox_login_success")) == 4)
    original = daemon.config.read_text()
    daemon.config.write_text(original + "\nbogus: 1\n")
    daemon.process.send_signal(signal.SIGHUP)
    eventually(lambda: daemon.samples()["bma_config_last_reload_successful"][0][1] == 0.0)
    assert len(daemon.by_mailbox("bma_mailbox_login_success")) == 4

    document = yaml.safe_load(original)
    document["mailboxes"] = [{"address": fleet.address(fleet.EMPTY)}]
    daemon.config.write_text(yaml.safe_dump(document))
    daemon.process.send_signal(signal.SIGHUP)
    eventually(lambda: daemon.samples()["bma_config_last_reload_successful"][0][1] == 1.0)
    assert set(daemon.by_mailbox("bma_mailbox_login_success")) == {fleet.EMPTY}
    failed = [e for e in daemon.log_events() if e["event"] == "reload_failed"]
    assert failed and failed[0]["problems"] == [
        f"{daemon.config}:{len(original.splitlines()) + 2}: bogus: unknown key"
    ]


def test_state_survives_restart(daemon_config: DaemonConfig, dovecot: DovecotServer) -> None:
    """After a restart the last results and the lock-out are back before any new probe."""
    first = DaemonProcess(*daemon_config)
    try:
        eventually(lambda: len(first.by_mailbox("bma_mailbox_login_success")) == 4)
    finally:
        assert first.stop() == 0
    document = yaml.safe_load(daemon_config[0].read_text())
    document["probing"]["interval"] = "1h"  # nothing is due again soon after the restart
    document["probing"]["timeout"] = "10s"
    daemon_config[0].write_text(yaml.safe_dump(document))
    second = DaemonProcess(*daemon_config)
    try:
        eventually(lambda: second.get("/healthz")[0] == 200)
        assert second.by_mailbox("bma_mailbox_auth_locked")[daemon_config[2]] == 1.0
        assert second.by_mailbox("bma_mailbox_login_success")[fleet.EMPTY] == 1.0
        assert fleet.FULL in second.by_mailbox("bma_mailbox_quota_used_bytes")
    finally:
        second.stop()
    assert dovecot.auth_attempts(fleet.address(daemon_config[2])) == 1


def test_no_password_in_logs_metrics_or_state(
    daemon: DaemonProcess, daemon_config: DaemonConfig
) -> None:
    """Recognisable passwords appear in no log line, metric, HTTP answer or state file."""
    eventually(lambda: len(daemon.by_mailbox("bma_mailbox_login_success")) == 4)
    served = daemon.get("/metrics")[1] + daemon.get("/healthz")[1]
    daemon.stop()
    written = daemon.stderr_path.read_text()
    state = b"".join(p.read_bytes() for p in daemon_config[0].parent.glob("state.db*"))
    secrets = [fleet.password(local) for local in GOOD] + ["wrong"]
    for secret in secrets:
        assert secret not in served
        assert secret not in written
        assert secret.encode() not in state
    assert "Sekret" not in written


def test_bad_config_exits_with_a_clear_error(tmp_path: Path) -> None:
    """`run` on a broken file exits 2 naming the file, line, path and rule."""
    path = tmp_path / "bma.yaml"
    path.write_text("servers:\n  a: {host: x, tls: ssl}\n")
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "run", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ},
    )
    assert done.returncode == 2
    assert (
        f"{path}:2: servers.a.tls: input should be 'implicit', 'starttls' or 'none'" in done.stderr
    )


def test_port_in_use_exits_with_a_clear_error(
    daemon: DaemonProcess, daemon_config: DaemonConfig
) -> None:
    """A second daemon on the same port says so and exits 2."""
    eventually(lambda: daemon.get("/healthz")[0] == 200)
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "run", "--config", str(daemon_config[0])],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert f"http error: cannot listen on 127.0.0.1:{daemon_config[1]}" in done.stderr


def test_a_reload_that_blows_up_keeps_the_config_and_says_so(
    daemon: DaemonProcess, dovecot: DovecotServer
) -> None:
    """A file nested a thousand levels deep, sent by SIGHUP: reload_failed, metric at 0, and
    the daemon goes on probing with its running configuration."""
    eventually(lambda: len(daemon.by_mailbox("bma_mailbox_login_success")) == 4)
    original = daemon.config.read_text()
    daemon.config.write_text(original + "deep: " + "{a: " * 1200 + "1" + "}" * 1200 + "\n")
    daemon.process.send_signal(signal.SIGHUP)
    eventually(lambda: daemon.samples()["bma_config_last_reload_successful"][0][1] == 0.0)
    assert daemon.process.poll() is None
    assert len(daemon.by_mailbox("bma_mailbox_login_success")) == 4
    assert daemon.stop() == 0
    assert [e for e in daemon.log_events() if e["event"] == "reload_failed"]


def test_a_reload_changes_logging_and_names_the_settings_still_in_use(
    daemon: DaemonProcess, dovecot: DovecotServer
) -> None:
    """A new log level and format take effect at SIGHUP; a setting that needs a restart is
    reported against the value in use, not the one the last reload read."""
    eventually(lambda: len(daemon.by_mailbox("bma_mailbox_login_success")) == 4)
    document = yaml.safe_load(daemon.config.read_text())
    running = document["http"]["listen"]
    ports = [free_port(), free_port()]
    for port in ports:
        document["http"]["listen"] = f"127.0.0.1:{port}"
        daemon.config.write_text(yaml.safe_dump(document))
        daemon.process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
    document["logging"] = {"level": "warning", "format": "console"}
    daemon.config.write_text(yaml.safe_dump(document))
    for _ in range(2):  # the second reload warns again, now in the new format
        daemon.process.send_signal(signal.SIGHUP)
        time.sleep(1.5)  # more than a cycle: info events of the good mailboxes would show
    assert daemon.stop() == 0

    lines = daemon.stderr_path.read_text().splitlines()
    json_lines = [json.loads(line) for line in lines if line.startswith("{")]
    restarts = [e for e in json_lines if e["event"] == "reload_needs_restart"]
    configured = [f"127.0.0.1:{port}" for port in ports]
    assert [(e["running"], e["configured"]) for e in restarts] == [
        (running, configured[0]),
        (running, configured[1]),
        (running, configured[1]),  # the reload that changed the logging, still in JSON
    ]
    after = lines[len(json_lines) :]
    assert all(not line.startswith("{") for line in after)
    assert not [line for line in after if "[info" in line or "[debug" in line]
    warned = [line for line in after if "reload_needs_restart" in line]
    assert len(warned) == 1 and f"running={running}" in warned[0]
