"""Opening the state file safely: private from the first byte, never silently replaced.

The file holds the lock-outs that keep the monitor from retrying a refused password. An
existing file that cannot be read must therefore stop the start-up: taking it as new would
lose every lock-out and send refused passwords again. Only an operator's explicit
`--reset-state` moves it aside (it is kept, never deleted) and starts afresh.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import structlog

from monitor.state.migrations import MIGRATIONS

log = structlog.get_logger("bma_monitor.state")

SQLITE_HEADER = b"SQLite format 3\x00"
SIDE_FILES = ("-wal", "-shm", "-journal")
PRIVATE = 0o600


class StateError(Exception):
    """The state file cannot be opened, read or written."""


class StateUnreadable(StateError):
    """An existing state file is damaged or is not a bma-monitor state file."""


def connect(path: Path, *, reset: bool = False) -> sqlite3.Connection:
    """Open the state file at `path`, creating it privately, checking an existing one."""
    try:
        with _private_umask():
            if path.exists() or _any_side_file(path):
                connection = _open_existing(path, reset)
            else:
                _create_private(path)
                connection = _sqlite(path)
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute("PRAGMA synchronous=NORMAL")
                migrate(connection)
            except BaseException:
                connection.close()
                raise
    except StateError:
        raise
    except (OSError, sqlite3.Error) as exc:
        raise StateError(f"cannot open state file {path}: {_why(exc)}") from exc
    return connection


def connect_readonly(path: Path) -> sqlite3.Connection:
    """Open an existing, up-to-date state file for reading only: nothing is created,
    migrated or written, so a report can read it while the daemon runs."""
    if not path.exists():
        raise StateError(f"state file {path} does not exist (has the daemon run yet?)")
    problem = _file_problem(path)
    if problem is not None:
        raise StateUnreadable(f"state file {path} cannot be used: {problem}")
    connection: sqlite3.Connection | None = None
    try:
        # mode=ro: SQLite neither creates the file nor writes it; a WAL file the daemon
        # holds is read through its shared memory, as any reader's. Where no daemon holds
        # it, SQLite makes an empty -wal and the -shm index beside it: private, as ours.
        with _private_umask():
            connection = sqlite3.connect(
                f"{path.absolute().as_uri()}?mode=ro",
                uri=True,
                timeout=10.0,
                check_same_thread=False,
                isolation_level=None,
            )
            connection.execute("PRAGMA busy_timeout=10000")
            connection.execute("PRAGMA query_only=ON")
            version = int(connection.execute("PRAGMA user_version").fetchone()[0])
    except (OSError, sqlite3.Error) as exc:
        if connection is not None:
            connection.close()
        raise StateError(f"cannot open state file {path} for reading: {_why(exc)}") from exc
    if version != len(MIGRATIONS):
        connection.close()
        age = "older" if version < len(MIGRATIONS) else "newer"
        raise StateUnreadable(
            f"state file {path} has schema version {version}, {age} than this bma-monitor's "
            f"({len(MIGRATIONS)}); a read-only reader does not migrate it: start the daemon "
            "of this version once, or use the matching bma-monitor"
        )
    return connection


def _open_existing(path: Path, reset: bool) -> sqlite3.Connection:
    """Open a state file that exists, or move it aside when unusable and `reset` is asked."""
    connection: sqlite3.Connection | None = None
    problem = _file_problem(path)
    if problem is None:
        for suffix in ("", *SIDE_FILES):
            side = Path(f"{path}{suffix}")
            if side.exists():
                os.chmod(side, PRIVATE)
        connection = _sqlite(path)
        problem = _database_problem(connection)
    if problem is None:
        assert connection is not None
        return connection
    if connection is not None:
        connection.close()
    if not reset:
        raise StateUnreadable(
            f"state file {path} cannot be used: {problem}. It may hold lock-outs that keep "
            "refused passwords from being sent again, so it is not replaced silently; run "
            "with --reset-state to move it aside and start afresh"
        )
    moved = move_aside(path)
    log.warning("state_file_moved_aside", path=str(path), moved_to=str(moved), problem=problem)
    _create_private(path)
    return _sqlite(path)


def _sqlite(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=10.0, check_same_thread=False, isolation_level=None)
    connection.execute("PRAGMA busy_timeout=10000")
    return connection


def _file_problem(path: Path) -> str | None:
    """What is wrong with the file itself, before SQLite is given it."""
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return "the database file is missing beside its journal files"
    if size == 0:
        return "the file is empty (0 bytes)"
    if header != SQLITE_HEADER:
        return "the file is not an SQLite database"
    return None


def _database_problem(db: sqlite3.Connection) -> str | None:
    """What is wrong with an SQLite file as a state file, or None."""
    try:
        check = [row[0] for row in db.execute("PRAGMA quick_check(5)")]
        if check != ["ok"]:
            return f"the database is damaged ({'; '.join(map(str, check))})"
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    except sqlite3.Error as exc:
        return f"the database cannot be read ({_why(exc)})"
    if version > len(MIGRATIONS):
        return None  # a newer bma-monitor's file: migrate() refuses it, and nothing moves it
    if version == 0 and tables:
        return "the database is not a bma-monitor state file"
    if version > 0 and not {"meta", "mailbox", "lockout"} <= tables:
        return "tables of the state file are missing"
    if version > 0:
        salt = db.execute("SELECT 1 FROM meta WHERE key = 'fingerprint_salt'").fetchone()
        locked = db.execute("SELECT 1 FROM lockout LIMIT 1").fetchone()
        if locked is not None and salt is None:
            # Without the salt no credential matches its lock-out: every one would unlock.
            return "lock-outs are stored but their fingerprint salt is missing"
    return None


def move_aside(path: Path) -> Path:
    """Rename an unusable state file (and its journal files) out of the way; return where."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = path.with_name(f"{path.name}.unreadable-{stamp}")
    for suffix in ("", *SIDE_FILES):
        source = Path(f"{path}{suffix}")
        if source.exists():
            source.rename(Path(f"{target}{suffix}"))
    return target


def migrate(connection: sqlite3.Connection) -> int:
    """Bring the schema up to date; returns the version reached."""
    version = int(connection.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise StateError(
            f"state file has schema version {version}, newer than this bma-monitor "
            f"understands ({len(MIGRATIONS)}); refusing to touch it"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in script:
                connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {number}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)


def _create_private(path: Path) -> None:
    """Create the directory (0700) and an empty file (0600) before SQLite does.

    SQLite gives its -wal and -shm files the mode of the database file; a file it creates
    itself gets the process umask (0644 usually), and so would they, and they hold password
    fingerprints too.
    """
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE))


@contextlib.contextmanager
def _private_umask() -> Iterator[None]:
    """Files created meanwhile (SQLite's journals included) are readable by the owner only."""
    previous = os.umask(0o077)
    try:
        yield
    finally:
        os.umask(previous)


def _any_side_file(path: Path) -> bool:
    return any(Path(f"{path}{suffix}").exists() for suffix in SIDE_FILES)


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
