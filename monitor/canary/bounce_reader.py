"""The bounce mailbox, read over IMAP read-only: the raw text of reports not read before.

EXAMINE, UID SEARCH and `UID FETCH (UID BODY.PEEK[]<0.N>)` only (the BounceReads gate):
no flag changes, \\Seen included. Which reports say "mailbox full" is the DSN parser's
business (monitor/canary/bounces.py); this module hands it the messages' bytes.
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

from monitor.canary.imap_access import MailboxSession
from monitor.config.model import EndpointConfig
from monitor.credentials import Secret
from monitor.probes.contract import Clock
from monitor.probes.imap_replies import parse_fetched_bodies, parse_uidvalidity
from monitor.probes.readonly import MAX_PEEK_BYTES, BounceReads

INBOX = "INBOX"
# A DSN is multipart/report (RFC 3464), Exchange's NDRs and Dovecot's alike; searching
# for it leaves replies and other mail to the sender address unread.
REPORT_SEARCH = "HEADER Content-Type report"
# Messages per FETCH: 16 capped peeks are at most 1 MiB, far under the session's reply cap.
FETCH_CHUNK = 16


@dataclass(frozen=True, slots=True)
class BounceMark:
    """Where reading stopped: UIDs mean something only within one UIDVALIDITY."""

    uidvalidity: int
    last_uid: int


@dataclass(frozen=True, slots=True)
class BounceBatch:
    """Reports new since the mark, oldest first; `mark` is what the caller keeps."""

    messages: tuple[bytes, ...]
    mark: BounceMark
    more: bool  # reports beyond `limit` are waiting for the next read


class BounceReader(MailboxSession):
    """The mailbox the canary's bounces come back to, logged in read-only (`async with`)."""

    def __init__(
        self,
        endpoint: EndpointConfig,
        address: str,
        secret: Secret,
        *,
        context: ssl.SSLContext | None,
        deadline: float,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(
            endpoint,
            address,
            secret,
            context=context,
            deadline=deadline,
            gate=BounceReads(),
            clock=clock,
        )

    async def read_new(self, mark: BounceMark | None, *, limit: int = 100) -> BounceBatch:
        """The reports with a UID above the mark (all, without one or after a UIDVALIDITY
        change), at most `limit`, each cut at MAX_PEEK_BYTES."""
        opened = await self.ok(self.session.examine(INBOX), "EXAMINE INBOX")
        uidvalidity = parse_uidvalidity(opened.lines)
        after = mark.last_uid if mark is not None and mark.uidvalidity == uidvalidity else 0
        # `N:*` always includes the highest UID, even below N: filter again here.
        found = [
            uid
            for uid in await self.uid_search(f"UID {after + 1}:* {REPORT_SEARCH}")
            if uid > after
        ]
        wanted = found[:limit]
        bodies: dict[int, bytes] = {}
        for start in range(0, len(wanted), FETCH_CHUNK):
            chunk = ",".join(str(uid) for uid in wanted[start : start + FETCH_CHUNK])
            items = f"(UID BODY.PEEK[]<0.{MAX_PEEK_BYTES}>)"
            response = await self.ok(self.session.uid_fetch(chunk, items), "UID FETCH")
            bodies.update(parse_fetched_bodies(response.lines))
        # A UID expunged between SEARCH and FETCH is skipped, not waited for.
        last = wanted[-1] if wanted else after
        return BounceBatch(
            messages=tuple(bodies[uid] for uid in wanted if uid in bodies),
            mark=BounceMark(uidvalidity, last),
            more=len(found) > limit,
        )
