"""The canary's IMAP side: see it arrive, time its delivery, then delete it and only it.

Looking is read-only (EXAMINE, UID SEARCH by the canary header). Deleting is the single
write exception of monitor/probes/readonly.py (CanaryWrites), whose gate checks each step:
SELECT INBOX, UID SEARCH of the canary header narrowed to the UIDs asked for, then UID
STORE +FLAGS.SILENT (\\Deleted) and UID EXPUNGE of exactly what that search found.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from monitor.canary.imap_access import MailboxAccessError, MailboxSession
from monitor.config.model import EndpointConfig
from monitor.credentials import Secret
from monitor.probes.contract import Clock
from monitor.probes.imap_replies import quote
from monitor.probes.readonly import CANARY_HEADER, CANARY_ID, CanaryWrites

INBOX = "INBOX"


class RemoveOutcome(StrEnum):
    """What became of the canaries asked to be deleted."""

    REMOVED = "removed"  # every one still carrying the header is gone
    # Without UIDPLUS only plain EXPUNGE is left, which would also remove the school's own
    # \Deleted messages: the canary stays, and the caller says so.
    NO_UIDPLUS = "no_uidplus"
    ERROR = "error"


@dataclass(frozen=True, slots=True)
class RemoveResult:
    """The outcome of one removal, the UIDs expunged, and why it failed if it did."""

    outcome: RemoveOutcome
    removed: tuple[int, ...] = ()
    detail: str = ""


class CanaryMailbox(MailboxSession):
    """One mailbox, logged in, where canaries are looked for and deleted (`async with`)."""

    def __init__(
        self,
        endpoint: EndpointConfig,
        address: str,
        secret: Secret,
        *,
        context: ssl.SSLContext | None,
        deadline: float,
        clock: Clock = time.time,
        monotonic: Clock = time.monotonic,
    ) -> None:
        super().__init__(
            endpoint,
            address,
            secret,
            context=context,
            deadline=deadline,
            gate=CanaryWrites(),
            clock=clock,
        )
        self._monotonic = monotonic
        self._examined = False
        self._found_by: dict[int, str] = {}  # UID -> the header value it was found by

    async def find(self, canary_id: str | None) -> list[int]:
        """UIDs in INBOX whose canary header holds this id; with None, every canary's."""
        term = _search_term(canary_id)
        if self._examined:
            # Dovecot shows a message delivered since the folder was opened only after NOOP.
            await self.ok(self.session.command("NOOP"), "NOOP")
        else:
            await self.ok(self.session.examine(INBOX), "EXAMINE INBOX")
            self._examined = True
        uids = await self.uid_search(f"HEADER {CANARY_HEADER} {quote(term)}")
        for uid in uids:
            # The id itself narrows a later deletion better than "any canary" does.
            if term or uid not in self._found_by:
                self._found_by[uid] = term
        return uids

    async def wait_for(
        self, canary_id: str, deadline: float, poll: float, *, since: float | None = None
    ) -> float | None:
        """Seconds from `since` (a `monotonic` reading; default now) until the canary is
        seen, looking every `poll` seconds; None if not seen within `deadline` of `since`."""
        start = self._monotonic() if since is None else since
        while True:
            if await self.find(canary_id):
                return self._monotonic() - start
            left = start + deadline - self._monotonic()
            if left <= 0:
                return None
            await asyncio.sleep(min(poll, left))

    async def remove(self, uids: Iterable[int]) -> RemoveResult:
        """Delete the canaries among these UIDs with UID EXPUNGE; never anything else."""
        wanted = sorted(set(uids))
        if not wanted:
            return RemoveResult(RemoveOutcome.REMOVED)
        if "UIDPLUS" not in self.session.capabilities:
            return RemoveResult(
                RemoveOutcome.NO_UIDPLUS,
                detail="server lacks UIDPLUS: canary left in place, since plain EXPUNGE "
                "would also remove the mailbox's own deleted messages",
            )
        # Narrowed by its header again after SELECT: a UID found earlier, or given by the
        # caller, is deleted only if the server says now that it carries a canary header.
        terms = {self._found_by.get(uid, "") for uid in wanted}
        term = terms.pop() if len(terms) == 1 else ""
        listed = ",".join(str(uid) for uid in wanted)
        session = self.session
        try:
            self._examined = False
            await self.ok(session.select(INBOX), "SELECT INBOX")
            found = await self.uid_search(f"UID {listed} HEADER {CANARY_HEADER} {quote(term)}")
            if not found:
                return RemoveResult(RemoveOutcome.REMOVED)
            marked = ",".join(str(uid) for uid in sorted(found))
            await self.ok(session.uid("STORE", marked, "+FLAGS.SILENT", "(\\Deleted)"), "STORE")
            await self.ok(session.uid("EXPUNGE", marked), "UID EXPUNGE")
        except MailboxAccessError as exc:
            return RemoveResult(RemoveOutcome.ERROR, detail=exc.detail)
        for uid in found:
            self._found_by.pop(uid, None)
        return RemoveResult(RemoveOutcome.REMOVED, tuple(sorted(found)))


def _search_term(canary_id: str | None) -> str:
    """The header value to search for: the id, or "" (any canary) for leftovers."""
    if canary_id is None:
        return ""
    if not CANARY_ID.fullmatch(canary_id):
        raise ValueError("a canary id is 8 to 128 letters, digits or ._@+=-")
    return canary_id
