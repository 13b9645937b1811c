"""The state file: migrations, durability across reopen, and refusal of unknown schemas."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from monitor.probes.result import Phase, ProbeResult, Protocol, QuotaReading, QuotaSource, Reason
from monitor.state.migrations import MIGRATIONS
from monitor.state.store import Lockout, MailboxRecord, StateError, StateStore

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
    store.save_mailboxes([MailboxRecord(ADDRESS, result, 1700000001.0, result.quota)])
    lockout = Lockout(ADDRESS, Protocol.IMAP, Reason.AUTH_FAILED, 1700000002.0, "ab" * 16, "NO")
    store.save_lockout(lockout)
    store.close()

    again = StateStore.open(path)
    assert again.salt() == salt
    assert again.load_mailboxes() == {
        ADDRESS: MailboxRecord(ADDRESS, result, 1700000001.0, result.quota)
    }
    assert again.load_lockouts() == {(ADDRESS, Protocol.IMAP): lockout}
    again.clear_lockout(ADDRESS, Protocol.IMAP)
    assert again.load_lockouts() == {}
    again.close()


def test_unreadable_row_is_dropped_not_fatal(tmp_path: Path) -> None:
    """A row written by another version loads as unknown rather than stopping the daemon."""
    path = tmp_path / "state.db"
    StateStore.open(path).close()
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO mailbox VALUES (?, ?, NULL, ?)", (ADDRESS, '{"reason": "new"}', "{}")
        )
    store = StateStore.open(path)
    assert store.load_mailboxes() == {ADDRESS: MailboxRecord(ADDRESS, None, None, None)}
    store.close()


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
