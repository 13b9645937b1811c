"""Shards over the real test fleet: each probes only its share, each keeps its own state file,
and a state file recorded for another shard is refused."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from monitor.cli import EXIT_OK, EXIT_USAGE, main
from monitor.config.shards import Shard, owner
from monitor.state.shard_identity import WrongShard, claim_shard
from monitor.state.store import StateStore
from tests import fleet
from tests.daemon_process import DaemonProcess, eventually
from tests.servers.dovecot import DovecotServer, free_port

SPARES = fleet.SPARES[56:60]  # kept for these tests: their login counts are exact
SHARDS = 2


def share(index: int) -> set[str]:
    """The spare mailboxes (local parts) that shard `index` of SHARDS owns."""
    return {local for local in SPARES if owner(fleet.address(local), SHARDS) == index}


def attempts(dovecot: DovecotServer) -> dict[str, int]:
    """Logins the server has seen so far for each spare mailbox."""
    return {local: dovecot.auth_attempts(fleet.address(local)) for local in SPARES}


def test_spares_fall_on_both_shards() -> None:
    """Each shard owns some spares, so the tests below can tell the shards apart."""
    assert share(0) and share(1) and share(0) | share(1) == set(SPARES)


def test_probe_with_shard_probes_its_share_only(
    dovecot: DovecotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`probe --shard I/2` logs in to the mailboxes of shard I only, keeping its own file."""
    path = fleet.write_config(tmp_path, dovecot, "starttls", list(SPARES))
    for index in range(SHARDS):
        before = attempts(dovecot)
        assert main(["probe", "--config", str(path), "--shard", f"{index}/2", "--json"]) == EXIT_OK
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert {row["mailbox"] for row in rows} == share(index)
        assert all(row["login_ok"] for row in rows)
        after = attempts(dovecot)
        assert {local for local in SPARES if after[local] != before[local]} == share(index)
        assert (tmp_path / f"state.shard-{index}.db").is_file()
    assert not (tmp_path / "state.db").exists()


def test_probe_names_the_shard_of_another_shards_mailbox(
    dovecot: DovecotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Asking shard 0 to probe a mailbox of shard 1 is a usage error that says which shard."""
    path = fleet.write_config(tmp_path, dovecot, "starttls", list(SPARES))
    theirs = sorted(share(1))[0]
    before = attempts(dovecot)
    assert main(["probe", "--config", str(path), "--shard", "0/2", theirs]) == EXIT_USAGE
    assert f"in another shard: {theirs} (--shard 1/2)" in capsys.readouterr().err
    assert attempts(dovecot) == before


def test_state_file_of_another_shard_is_refused(tmp_path: Path) -> None:
    """A file recorded for shard 0 is refused as shard 1's; a new count on index 0 is fine."""
    path = tmp_path / "state.db"
    store = StateStore.open(path)
    try:
        assert claim_shard(store, Shard(0, 2)).before is None
        with pytest.raises(WrongShard, match=r"belongs to shard 0/2 \(index 0\), not to shard 1/2"):
            claim_shard(store, Shard(1, 2))
        with pytest.raises(WrongShard):
            claim_shard(store, Shard(1, 3))
        moved = claim_shard(store, Shard(0, 3))
        assert moved.count_changed and moved.before == Shard(0, 2)
        assert claim_shard(store, Shard(0, 3)).count_changed is False
        assert claim_shard(store, None).before == Shard(0, 3)  # the whole fleet again
        assert claim_shard(store, Shard(1, 3)).before is None
    finally:
        store.close()


def test_probe_refuses_another_shards_file(
    dovecot: DovecotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A shard's file renamed to another index stops `probe` before any login."""
    path = fleet.write_config(tmp_path, dovecot, "starttls", list(SPARES))
    store = StateStore.open(tmp_path / "state.shard-1.db")
    claim_shard(store, Shard(0, 2))
    store.close()
    before = attempts(dovecot)
    assert main(["probe", "--config", str(path), "--shard", "1/2"]) == EXIT_USAGE
    assert "belongs to shard 0/2" in capsys.readouterr().err
    assert attempts(dovecot) == before


@pytest.fixture
def shard_daemon(dovecot: DovecotServer, tmp_path: Path) -> Iterator[DaemonProcess]:
    """A daemon running shard 1 of 2 from its config's `shard` key."""
    port = free_port()
    path = fleet.write_config(
        tmp_path,
        dovecot,
        "starttls",
        list(SPARES),
        probing={"interval": "1s", "timeout": "900ms"},
        extra={
            "shard": "1/2",
            "http": {"listen": f"127.0.0.1:{port}"},
            "logging": {"format": "json", "level": "info"},
        },
    )
    process = DaemonProcess(path, port, "")
    yield process
    process.stop()


def test_daemon_shard_probes_its_share_and_says_so(
    shard_daemon: DaemonProcess, dovecot: DovecotServer
) -> None:
    """Shard 1/2 probes only its mailboxes, in its own state file, shows its shard in the
    metrics, /healthz and the start-up log, and keeps it across a reload."""
    mine = share(1)
    before = attempts(dovecot)
    eventually(lambda: set(shard_daemon.by_mailbox("bma_mailbox_login_success")) == mine)
    samples = shard_daemon.samples()
    assert samples["bma_shard_info"] == [({"shard": "1", "shards": "2"}, 1.0)]
    assert samples["bma_shards"] == [({}, 2.0)]
    health = json.loads(shard_daemon.get("/healthz")[1])
    assert health["shard"] == {"index": 1, "count": 2} and health["mailboxes"] == len(mine)

    document = yaml.safe_load(shard_daemon.config.read_text())
    document["shard"] = "0/2"
    shard_daemon.config.write_text(yaml.safe_dump(document))
    shard_daemon.process.send_signal(signal.SIGHUP)
    eventually(lambda: any(e["event"] == "reloaded" for e in shard_daemon.log_events()))
    assert set(shard_daemon.by_mailbox("bma_mailbox_login_success")) == mine
    assert shard_daemon.stop() == 0

    after = attempts(dovecot)
    assert {local for local in SPARES if after[local] != before[local]} == mine
    events = shard_daemon.log_events()
    [started] = [e for e in events if e["event"] == "started"]
    assert started["shard"] == "1/2" and started["fleet"] == len(SPARES)
    assert started["state"] == str(shard_daemon.config.parent / "state.shard-1.db")
    restart = [e for e in events if e["event"] == "reload_needs_restart"]
    assert restart == [{**restart[0], "setting": "shard", "running": "1/2", "configured": "0/2"}]
    assert not (shard_daemon.config.parent / "state.db").exists()
