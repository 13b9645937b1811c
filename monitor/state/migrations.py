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
    (
        # Each protocol keeps its own last result. The mailbox row keeps what is the
        # mailbox's whatever the protocol: its usage.
        """CREATE TABLE probe (
            address TEXT NOT NULL,
            protocol TEXT NOT NULL,
            last_result TEXT,
            last_success_at REAL,
            PRIMARY KEY (address, protocol)
        )""",
        "INSERT INTO probe (address, protocol, last_result, last_success_at) "
        "SELECT address, 'imap', last_result, last_success_at FROM mailbox "
        "WHERE last_result IS NOT NULL OR last_success_at IS NOT NULL",
        "ALTER TABLE mailbox DROP COLUMN last_result",
        "ALTER TABLE mailbox DROP COLUMN last_success_at",
        # A lock-out protects an account, so it is keyed by the secret (`imap`: the mailbox
        # password, which IMAP and POP3 share; `cerbere`), not by the protocol; `protocol`
        # says which one was refused. Rows so far were IMAP's, hence the mailbox password.
        "ALTER TABLE lockout RENAME TO lockout_by_protocol",
        """CREATE TABLE lockout (
            address TEXT NOT NULL,
            secret TEXT NOT NULL,
            protocol TEXT NOT NULL,
            reason TEXT NOT NULL,
            since REAL NOT NULL,
            fingerprint TEXT NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (address, secret)
        )""",
        "INSERT INTO lockout (address, secret, protocol, reason, since, fingerprint, detail) "
        "SELECT address, 'imap', protocol, reason, since, fingerprint, detail "
        "FROM lockout_by_protocol",
        "DROP TABLE lockout_by_protocol",
        "ALTER TABLE login_attempt RENAME TO login_attempt_by_protocol",
        """CREATE TABLE login_attempt (
            address TEXT NOT NULL,
            secret TEXT NOT NULL,
            protocol TEXT NOT NULL,
            credential TEXT NOT NULL,
            started_at REAL NOT NULL,
            PRIMARY KEY (address, secret)
        )""",
        "INSERT INTO login_attempt (address, secret, protocol, credential, started_at) "
        "SELECT address, 'imap', protocol, credential, started_at FROM login_attempt_by_protocol",
        "DROP TABLE login_attempt_by_protocol",
    ),
)
