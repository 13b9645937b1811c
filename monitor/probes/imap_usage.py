"""Mailbox usage over IMAP: the server's quota, or an estimate where it gives none.

Exchange advertises neither QUOTA nor STATUS=SIZE, so there the only measure is the sum
of RFC822.SIZE over every message of every folder. That costs a FETCH per chunk of
messages, which is why the scheduler asks for an estimate far less often than a login.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from monitor.probes.imap_replies import (
    ReplyError,
    parse_exists,
    parse_fetch_sizes,
    parse_list,
    parse_quota_storage,
    parse_status_items,
    quote,
    status_text,
)
from monitor.probes.imap_session import ImapSession
from monitor.probes.redact import printable
from monitor.probes.result import QuotaReading, QuotaSource


async def read_usage(
    session: ImapSession,
    *,
    estimate: bool,
    fetch_chunk: int,
    clock: Callable[[], float] = time.time,
) -> QuotaReading | None:
    """Usage and limit from GETQUOTAROOT, else (when `estimate`) summed over folders."""
    limit: int | None = None
    if "QUOTA" in session.capabilities:
        response = await session.command("GETQUOTAROOT", "INBOX", untagged="QUOTA")
        _expect_ok("GETQUOTAROOT", response)
        storage = parse_quota_storage(response.lines[:-1])
        if storage is not None:
            used, limit = storage
            return QuotaReading(used, limit, QuotaSource.IMAP_QUOTA, clock())
        # A QUOTAROOT with no STORAGE resource: the server sets no limit, so only an
        # estimate can tell how full the mailbox is.
    if not estimate:
        return None
    folders = await _folders(session)
    if "STATUS=SIZE" in session.capabilities:
        used, messages = await _sum_status_sizes(session, folders)
        return QuotaReading(used, limit, QuotaSource.STATUS_SIZE, clock(), messages)
    used, messages = await _sum_message_sizes(session, folders, fetch_chunk)
    return QuotaReading(used, limit, QuotaSource.MESSAGE_SIZES, clock(), messages)


async def _folders(session: ImapSession) -> list[str]:
    response = await session.command("LIST", '""', '"*"')
    _expect_ok("LIST", response)
    folders = parse_list(response.lines[:-1])
    if not folders:
        raise ReplyError("LIST names no folder")
    return folders


async def _sum_status_sizes(session: ImapSession, folders: list[str]) -> tuple[int, int]:
    used = messages = 0
    for folder in folders:
        response = await session.command("STATUS", quote(folder), "(MESSAGES SIZE)")
        _expect_ok("STATUS", response)
        items = parse_status_items(response.lines[:-1])
        if "SIZE" not in items:
            raise ReplyError(f"STATUS gave no SIZE for {printable(folder)!r}")
        used += items["SIZE"]
        messages += items.get("MESSAGES", 0)
    return used, messages


async def _sum_message_sizes(
    session: ImapSession, folders: list[str], chunk: int
) -> tuple[int, int]:
    used = messages = 0
    for folder in folders:
        response = await session.examine(folder)
        _expect_ok("EXAMINE", response)
        exists = parse_exists(response.lines)
        # In chunks, so that even a mailbox of millions of messages stays within the
        # session's cap on one reply (100,000 lines).
        for first in range(1, exists + 1, chunk):
            last = min(first + chunk - 1, exists)
            reply = await session.fetch_sizes(first, last)
            _expect_ok("FETCH", reply)
            used += sum(parse_fetch_sizes(reply.lines[:-1]))
        messages += exists
    return used, messages


def _expect_ok(command: str, response: object) -> None:
    result = getattr(response, "result", None)
    if result != "OK":
        lines = getattr(response, "lines", [])
        raise ReplyError(f"{command} answered {result}: {printable(status_text(lines))}")
