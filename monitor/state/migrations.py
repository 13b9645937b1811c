"""Schema migrations: append new steps, never edit a released one."""

from __future__ import annotations

# MIGRATIONS[n] brings a file at schema version n to version n + 1.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
        """CREATE TABLE mailbox (
            address TEXT PRIMARY KEY,
            last_result TEXT,
            last_success_at REAL,
            quota TEXT
        )""",
        """CREATE TABLE lockout (
            address TEXT NOT NULL,
            protocol TEXT NOT NULL,
            reason TEXT NOT NULL,
            since REAL NOT NULL,
            fingerprint TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (address, protocol)
        )""",
    ),
)
