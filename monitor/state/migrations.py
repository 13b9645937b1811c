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
    (
        # A login attempt is written before its secret is sent and removed once its outcome
        # is known; a row left behind (crash, timeout after the secret) holds the next try.
        # `credential` names the secret's source and its file identity, never the secret.
        """CREATE TABLE login_attempt (
            address TEXT NOT NULL,
            protocol TEXT NOT NULL,
            credential TEXT NOT NULL,
            started_at REAL NOT NULL,
            PRIMARY KEY (address, protocol)
        )""",
    ),
)
