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
    (
        # The CERBERE password each mailbox last had accepted by SMTP AUTH: its file
        # identity and scrypt fingerprint, and when a new one was first accepted (NULL
        # while only the first password ever seen is known: its change date is not).
        """CREATE TABLE cerbere_accepted (
            address TEXT PRIMARY KEY,
            credential TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            first_accepted_at REAL NOT NULL,
            changed_at REAL
        )""",
        # The directory's word on each account, as of its last successful read: kept, so
        # that a directory down at start does not leave expiries unknown.
        """CREATE TABLE directory_password (
            address TEXT PRIMARY KEY,
            changed_at REAL,
            expires_at REAL,
            read_at REAL NOT NULL
        )""",
    ),
    (
        # The warning mails' outbox: one row per (mailbox, expiry date, threshold, audience),
        # written before any SMTP transaction starts, so a crash can at worst re-send a mail
        # whose 250 arrived just before it, under the same Message-ID. Dates are ISO text in
        # the establishment's calendar; times are Unix seconds.
        """CREATE TABLE outbox (
            address TEXT NOT NULL,
            expiry_date TEXT NOT NULL,
            threshold INTEGER NOT NULL,
            audience TEXT NOT NULL,
            recipient TEXT NOT NULL,
            establishment TEXT NOT NULL DEFAULT '',
            contact TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL,
            message_id TEXT NOT NULL,
            created_at REAL NOT NULL,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt_at REAL NOT NULL,
            last_attempt_at REAL,
            reason TEXT NOT NULL DEFAULT '',
            last_error TEXT NOT NULL DEFAULT '',
            sent_at REAL,
            PRIMARY KEY (address, expiry_date, threshold, audience)
        )""",
        "CREATE INDEX outbox_due ON outbox (state, next_attempt_at)",
    ),
    (
        # Each mailbox's quota state and when it entered it, so that a restart neither
        # resets nor re-announces it; and its usage history, compacted (90 days at most,
        # thinner with age) for the growth forecast that Prometheus may not retain.
        """CREATE TABLE quota_state (
            address TEXT PRIMARY KEY,
            state TEXT NOT NULL,
            entered_at REAL NOT NULL
        )""",
        """CREATE TABLE usage_history (
            address TEXT NOT NULL,
            at REAL NOT NULL,
            used INTEGER NOT NULL,
            PRIMARY KEY (address, at)
        ) WITHOUT ROWID""",
    ),
    (
        # The delivery canary: each mailbox's last canary, and the standing evidence that a
        # mailbox is full beyond its quota reading (a rejection, a bounce).
        """CREATE TABLE canary_result (
            address TEXT PRIMARY KEY,
            canary_id TEXT NOT NULL,
            sent_at REAL NOT NULL,
            outcome TEXT NOT NULL,
            latency REAL,
            detail TEXT NOT NULL DEFAULT ''
        )""",
        """CREATE TABLE full_evidence (
            address TEXT NOT NULL,
            evidence TEXT NOT NULL,
            at REAL NOT NULL,
            detail TEXT NOT NULL DEFAULT '',
            PRIMARY KEY (address, evidence)
        )""",
    ),
)
