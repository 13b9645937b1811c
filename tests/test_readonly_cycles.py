"""Probes are read-only end to end: cycles of IMAP and POP3 leave every message as it was.

tests/test_readonly.py proves the gate refuses writing commands; this proves, from the
server's side, that what the probes do send changes nothing a school would see.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from pathlib import Path

from monitor.probes.result import ProbeResult, Protocol, QuotaSource, Reason
from monitor.scheduling.scheduler import Scheduler
from tests import fleet
from tests.servers.dovecot import DovecotServer
from tests.test_scheduler import FAST, scheduler_for

BOTH = fleet.SPARES[2]  # probed over IMAP and POP3
IMAP_ONLY = fleet.SPARES[3]
FOLDERS = ("INBOX", "Sent Items", "Archive/2024")
CYCLES = 3
# One second of the test is a minute and a half of the scheduler's clock, so the size sum,
# due once a minute at the shortest, is due again at every one-second cycle.
CLOCK_SPEED = 90.0


def fill(server: DovecotServer, local: str) -> None:
    """Unseen messages in three folders, a few of them seen, flagged or answered."""
    address = fleet.address(local)
    for folder, count in zip(FOLDERS, (4, 3, 2), strict=True):
        server.add_messages(address, count, 2500, folder=folder)
    server.add_flags(address, "\\Seen \\Flagged", "INBOX", "2")
    server.add_flags(address, "\\Seen", "Sent Items", "1:2")
    server.add_flags(address, "\\Answered", "Archive/2024", "1")


def messages(server: DovecotServer, local: str) -> dict[tuple[str, str], tuple[str, ...]]:
    """Each message by (folder, UID): its flags, GUID, size and a hash of its full text."""
    rows = server.fetch(fleet.address(local), "mailbox uid flags guid size.virtual text")
    return {
        (row["mailbox"], row["uid"]): (
            row["flags"],
            row["guid"],
            row["size.virtual"],
            hashlib.sha256(row["text"].encode()).hexdigest(),
        )
        for row in rows
    }


def without_recent(
    found: dict[tuple[str, str], tuple[str, ...]], folder: str
) -> dict[tuple[str, str], tuple[str, ...]]:
    """The same messages with `\\Recent` left out of one folder's flags."""
    return {
        key: (" ".join(f for f in flags.split() if f != "\\Recent"), *rest)
        if key[0] == folder
        else (flags, *rest)
        for key, (flags, *rest) in found.items()
    }


async def run_collecting(scheduler: Scheduler, seconds: float) -> list[ProbeResult]:
    """Run the scheduler for a while and keep every distinct probe result it records."""
    seen: dict[tuple[str, Protocol, float], ProbeResult] = {}
    task = asyncio.create_task(scheduler.run())
    try:
        stop = asyncio.get_running_loop().time() + seconds
        while asyncio.get_running_loop().time() < stop:
            await asyncio.sleep(0.05)
            for status in scheduler.view().mailboxes.values():
                for protocol in Protocol:
                    result = status.probe(protocol).result
                    if result is not None:
                        seen[(result.address, protocol, result.started_at)] = result
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return list(seen.values())


async def test_cycles_of_imap_and_pop3_change_no_uid_flag_or_message(
    exchange_like: DovecotServer, tmp_path: Path
) -> None:
    """Several full cycles over IMAP, summing sizes with EXAMINE and FETCH RFC822.SIZE in
    every folder, and over POP3, leave every UID, flag (`\\Seen` included), message and
    maildir file as it was; `\\Recent` survives everywhere POP3 does not log in."""
    for local in (BOTH, IMAP_ONLY):
        fill(exchange_like, local)
    before = {local: messages(exchange_like, local) for local in (BOTH, IMAP_ONLY)}
    files = {local: exchange_like.maildir_snapshot(fleet.address(local)) for local in before}
    unseen = [key for key, (flags, *_) in before[BOTH].items() if "\\Seen" not in flags]
    assert len(unseen) == 6 and {folder for folder, _ in unseen} == set(FOLDERS)
    # The folders hold messages no session has selected yet: a SELECT would clear \Recent.
    assert all("\\Recent" in flags for flags, *_ in before[IMAP_ONLY].values())

    config = fleet.config_for(
        tmp_path,
        exchange_like,
        "none",
        [BOTH, IMAP_ONLY],
        protocols={"imap": {}, "pop3": {"port": exchange_like.pop3_port}},
        mailbox_protocols={IMAP_ONLY: ["imap"]},
        probing={**FAST, "quota_estimate_interval": "1m"},
    )
    started = time.time()
    scheduler, _ = scheduler_for(
        config, clock=lambda: started + (time.time() - started) * CLOCK_SPEED
    )
    results = await run_collecting(scheduler, CYCLES + 0.6)

    for local in (BOTH, IMAP_ONLY):
        imap = [
            r for r in results if r.address == fleet.address(local) and r.protocol is Protocol.IMAP
        ]
        assert len(imap) >= CYCLES
        for result in imap:
            assert result.reason is Reason.OK, result.detail
            assert result.quota is not None and result.quota.source is QuotaSource.MESSAGE_SIZES
            assert result.quota.used_bytes == 9 * 2500 and result.quota.messages == 9
    pop3 = [r for r in results if r.protocol is Protocol.POP3]
    assert len(pop3) >= CYCLES and {r.address for r in pop3} == {fleet.address(BOTH)}
    assert all(r.reason is Reason.OK and r.quota is not None for r in pop3)

    assert messages(exchange_like, IMAP_ONLY) == before[IMAP_ONLY]
    # Dovecot's POP3 clears INBOX's \Recent at login (unless pop3_no_flag_updates): the
    # server's habit, whatever the session sends, so the INBOX of BOTH is compared without it.
    after = messages(exchange_like, BOTH)
    assert without_recent(after, "INBOX") == without_recent(before[BOTH], "INBOX")
    assert all("\\Recent" in after[key][0] for key in after if key[0] != "INBOX")
    for local, snapshot in files.items():
        assert exchange_like.maildir_snapshot(fleet.address(local)) == snapshot
