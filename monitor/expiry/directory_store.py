"""The directory's last word on each account, kept in the state file between reads."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from monitor.expiry.model import ExpirySource, PasswordDate
from monitor.state.store import StateStore


def load_directory(store: StateStore) -> dict[str, PasswordDate]:
    """What the last successful directory read gave, by address."""
    with store.reading() as db:
        rows = db.execute(
            "SELECT address, changed_at, expires_at FROM directory_password"
        ).fetchall()
    return {
        address: PasswordDate(address, ExpirySource.LDAP, _instant(changed), _instant(expires))
        for address, changed, expires in rows
    }


def save_directory(store: StateStore, read: Mapping[str, PasswordDate], read_at: float) -> None:
    """Replace the kept read with a new one, whole: an account gone from the directory goes."""
    rows = [
        (address, _seconds(date.changed_at), _seconds(date.expires_at), read_at)
        for address, date in read.items()
    ]
    with store.writing() as db:
        db.execute("DELETE FROM directory_password")
        db.executemany(
            "INSERT INTO directory_password (address, changed_at, expires_at, read_at) "
            "VALUES (?, ?, ?, ?)",
            rows,
        )


def _instant(seconds: float | None) -> dt.datetime | None:
    return None if seconds is None else dt.datetime.fromtimestamp(seconds, dt.UTC)


def _seconds(instant: dt.datetime | None) -> float | None:
    return None if instant is None else instant.timestamp()
