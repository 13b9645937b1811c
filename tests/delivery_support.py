"""A private Dovecot with LMTP and its own mailboxes for the delivery and canary tests.

Its own users, not the shared fleet's: these tests deliver mail, and no test message may be
left in a mailbox other tests read.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.servers.dovecot import DovecotServer, MailUser

DOMAIN = "canary.test"
ROOMY = MailUser(f"roomy@{DOMAIN}", "roomy-secret", quota_rule="10M")
# 1 MiB quota holding 1.2 MB: over quota, and past Dovecot's 10 % grace too.
FULL = MailUser(f"full@{DOMAIN}", "full-secret", quota_rule="1M")
FULL_FILL = (2, 600_000)  # count, bytes each
SENDER = MailUser(f"monitor@{DOMAIN}", "sender-secret", quota_rule="10M")
USERS = (ROOMY, FULL, SENDER)


def delivery_server(workdir: Path, **options: Any) -> Iterator[DovecotServer]:
    """A started Dovecot with LMTP, FULL filled past its quota; stopped when exhausted."""
    with DovecotServer(workdir, USERS, lmtp=True, **options) as server:
        server.add_messages(FULL.address, *FULL_FILL)
        yield server


def inbox_messages(server: DovecotServer, address: str) -> list[bytes]:
    """The raw messages in the user's INBOX, read from its Maildir files."""
    root = server.maildir(address)
    return [
        path.read_bytes()
        for sub in ("new", "cur")
        if (root / sub).is_dir()
        for path in sorted((root / sub).iterdir())
    ]
