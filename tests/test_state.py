"""The state file: migrations, durability across reopen, and refusal of unknown schemas."""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.credentials import SecretKind
from monitor.probes.imap import Phase
from monitor.probes.result import ProbeResult, Protocol, QuotaReading, QuotaSource, Reason
from monitor.state import logins
from monitor.state.codec import quota_to_json, result_to_json
from monitor.state.logins import Attempt, Lockout
from monitor.state.migrations import MIGRATIONS
from monitor.state.store import MailboxRecord, ProbeRecord, StateError, StateStore, StateUnreadable

ADDRESS = "ec001234@adm.cfwb.be"


def sample_result() -> ProbeResult:
    """A result with every field set."""
    quota = QuotaReading(1234, 2048, QuotaSource.MESSAGE_SIZES, 1700000000.5, 3)
    return ProbeResult(
        ADDRESS,
        Protocol.IMAP,
        Reason.OK,
        1700000000.0,
        {Phase.CONNECT: 0.01, Phase.LOGIN: 0.2},
        None,
        "",
        quota,
        "",
    )


def test_new_file_is_migrated_and_private(tmp_path: Path) -> None:
    """A new state file gets the latest schema and mode 0600."""
    path = tmp_path / "sub" / "state.db"
    StateStore.open(path).close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_records_and_lockouts_survive_reopen(tmp_path: Path) -> None:
    """What was saved is what a restarted daemon loads."""
    path = tmp_path / "state.db"
    store = StateStore.open(path)
    salt = store.salt()
    result = sample_result()
    store.save_mailboxes([stored(ADDRESS, result, 1700000001.0)])
    lockout = Lockout(
        ADDRESS,
        SecretKind.MAILBOX,
        Protocol.IMAP,
        Reason.AUTH_FAILED,
        1700000002.0,
        "ab" * 16,
        "NO",
    )
    logins.record_refusal(store, lockout)
    store.close()

    again = StateStore.open(path)
    assert again.salt() == salt
    assert again.load_mailboxes() == {ADDRESS: stored(ADDRESS, result, 1700000001.0)}
    assert logins.load_lockouts(again) == {(ADDRESS, SecretKind.MAILBOX): lockout}
    logins.clear_lockout(again, (ADDRESS, SecretKind.MAILBOX))
    assert logins.load_lockouts(again) == {}
    again.close()


def test_unreadable_row_is_dropped_not_fatal(tmp_path: Path) -> None:
    """A row written by another version loads as unknown rather than stopping the daemon."""
    path = tmp_path / "state.db"
    StateStore.open(path).close()
    with sqlite3.connect(path) as db:
        db.execute("INSERT INTO mailbox VALUES (?, ?)", (ADDRESS, "{}"))
        db.execute("INSERT INTO probe VALUES (?, 'imap', ?, NULL)", (ADDRESS, '{"reason": "new"}'))
        db.execute("INSERT INTO probe VALUES (?, 'x400', NULL, NULL)", (ADDRESS,))
    store = StateStore.open(path)
    unknown = ProbeRecord(ADDRESS, Protocol.IMAP, None, None)
    assert store.load_mailboxes() == {
        ADDRESS: MailboxRecord(ADDRESS, None, {Protocol.IMAP: unknown})
    }
    store.close()


def stored(address: str, result: ProbeResult, success: float) -> MailboxRecord:
    """A mailbox record holding one IMAP result and its usage."""
    probe = ProbeRecord(address, Protocol.IMAP, result, success)
    return MailboxRecord(address, result.quota, {Protocol.IMAP: probe})


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    """A file from a newer bma-monitor is left alone, with a clear error."""
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(StateError, match="newer than this bma-monitor"):
        StateStore.open(path)


def test_unwritable_location_is_a_state_error(tmp_path: Path) -> None:
    """A path that cannot be created is reported as a StateError."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError, match="cannot open state file"):
        StateStore.open(blocker / "state.db")


def damaged_copy(tmp_path: Path, name: str) -> Path:
    """A state file with lock-outs, then one of its pages overwritten."""
    good = tmp_path / "good.db"
    store = StateStore.open(good)
    store.salt()
    store.save_mailboxes(
        [stored(f"ec{i:06d}@adm.cfwb.be", sample_result(), 1.0) for i in range(300)]
    )
    logins.record_refusal(
        store,
        Lockout(ADDRESS, SecretKind.MAILBOX, Protocol.IMAP, Reason.AUTH_FAILED, 1.0, "ab" * 16),
    )
    store.close()
    data = bytearray(good.read_bytes())
    data[8192:12288] = b"\x41" * 4096  # the third page, inside a table's b-tree
    path = tmp_path / name
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"", "the file is empty (0 bytes)"),
        (b"not a database at all\n" * 100, "the file is not an SQLite database"),
        (None, "the database is damaged"),
    ],
)
def test_an_unreadable_state_file_is_a_clear_error_not_a_new_file(
    tmp_path: Path, content: bytes | None, problem: str
) -> None:
    """An empty, foreign or damaged file stops the start, names the problem and the way out,
    and is left exactly as it was."""
    path = damaged_copy(tmp_path, "state.db")
    if content is not None:
        path.write_bytes(content)
    before = path.read_bytes()
    with pytest.raises(StateUnreadable) as raised:
        StateStore.open(path)
    message = str(raised.value)
    assert f"state file {path} cannot be used: {problem}" in message
    assert "--reset-state" in message
    assert path.read_bytes() == before


def test_another_applications_database_is_refused(tmp_path: Path) -> None:
    """A valid SQLite file that is not a state file is not migrated into one."""
    path = tmp_path / "state.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(StateUnreadable, match="not a bma-monitor state file"):
        StateStore.open(path)


def test_reset_moves_an_unreadable_file_aside_and_starts_afresh(tmp_path: Path) -> None:
    """--reset-state keeps the damaged file beside the new one, renamed, never deleted."""
    path = damaged_copy(tmp_path, "state.db")
    damaged = path.read_bytes()
    store = StateStore.open(path, reset=True)
    assert store.load_mailboxes() == {}
    store.close()
    kept = list(tmp_path.glob("state.db.unreadable-*"))
    assert len(kept) == 1 and kept[0].read_bytes() == damaged


def test_reset_leaves_a_good_file_alone(tmp_path: Path) -> None:
    """--reset-state only acts on a file that cannot be used."""
    path = tmp_path / "state.db"
    store = StateStore.open(path)
    store.salt()
    logins.record_refusal(
        store,
        Lockout(ADDRESS, SecretKind.MAILBOX, Protocol.IMAP, Reason.AUTH_FAILED, 1.0, "ab" * 16),
    )
    store.close()
    again = StateStore.open(path, reset=True)
    assert set(logins.load_lockouts(again)) == {(ADDRESS, Protocol.IMAP)}
    again.close()


def test_salt_missing_beside_lockouts_is_refused(tmp_path: Path) -> None:
    """Without its salt no lock-out could match its credential: the file is not usable."""
    path = tmp_path / "state.db"
    store = StateStore.open(path)
    logins.record_refusal(
        store,
        Lockout(ADDRESS, SecretKind.MAILBOX, Protocol.IMAP, Reason.AUTH_FAILED, 1.0, "ab" * 16),
    )
    store.close()
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM meta")
    with pytest.raises(StateUnreadable, match="fingerprint salt is missing"):
        StateStore.open(path)


def test_journal_files_are_private_from_the_start(tmp_path: Path) -> None:
    """The -wal and -shm files, which hold fingerprints too, are 0600 under umask 022."""
    previous = os.umask(0o022)
    try:
        path = tmp_path / "fresh" / "state.db"
        store = StateStore.open(path)
        store.salt()
        logins.record_refusal(
            store,
            Lockout(ADDRESS, SecretKind.MAILBOX, Protocol.IMAP, Reason.AUTH_FAILED, 1.0, "ab" * 16),
        )
        files = sorted(path.parent.iterdir())
        assert [f.name for f in files] == ["state.db", "state.db-shm", "state.db-wal"]
        for file in files:
            assert stat.S_IMODE(file.stat().st_mode) == 0o600, file.name
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        store.close()
    finally:
        os.umask(previous)


def test_probe_exits_2_on_an_unreadable_state_file(tmp_path: Path) -> None:
    """The command line says what is wrong and exits 2, without a traceback."""
    config = tmp_path / "bma.yaml"
    config.write_text(
        "servers: {s: {host: 127.0.0.1, port: 1, tls: none}}\n"
        "state: {path: state.db}\n"
        "credentials: {directory: .}\n"
        "mailboxes: [{address: ec001234@adm.cfwb.be}]\n"
    )
    (tmp_path / "state.db").write_bytes(b"")
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "probe", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("state error: state file ")
    assert "the file is empty" in done.stderr and "Traceback" not in done.stderr


def test_a_file_of_the_imap_only_schema_keeps_its_results_and_lockouts(tmp_path: Path) -> None:
    """Migrating a file written before POP3 and SMTP: the IMAP result becomes the IMAP
    record, and an IMAP lock-out becomes the mailbox password's, so POP3 obeys it too."""
    path = tmp_path / "state.db"
    result = sample_result()
    with sqlite3.connect(path) as db:
        for script in MIGRATIONS[:2]:
            for statement in script:
                db.execute(statement)
        db.execute("PRAGMA user_version = 2")
        db.execute("INSERT INTO meta VALUES ('fingerprint_salt', ?)", (b"salt" * 4,))
        db.execute(
            "INSERT INTO mailbox VALUES (?, ?, ?, ?)",
            (ADDRESS, result_to_json(result), 1700000001.0, quota_to_json(result.quota)),
        )
        db.execute(
            "INSERT INTO lockout VALUES (?, 'imap', 'auth_failed', 1.5, ?, 'NO')",
            (ADDRESS, "ab" * 16),
        )
        db.execute("INSERT INTO login_attempt VALUES (?, 'imap', 'file|1.2', 2.5)", (ADDRESS,))
    store = StateStore.open(path)
    assert store.load_mailboxes() == {ADDRESS: stored(ADDRESS, result, 1700000001.0)}
    key = (ADDRESS, SecretKind.MAILBOX)
    assert logins.load_lockouts(store) == {
        key: Lockout(
            ADDRESS, SecretKind.MAILBOX, Protocol.IMAP, Reason.AUTH_FAILED, 1.5, "ab" * 16, "NO"
        )
    }
    assert logins.load_attempts(store) == {
        key: Attempt(ADDRESS, SecretKind.MAILBOX, Protocol.IMAP, "file|1.2", 2.5)
    }
    store.close()
