"""`[IN-USE]` through the scheduler: an answer from a reachable server, not an outage."""

from __future__ import annotations

import asyncio
from pathlib import Path

from monitor.probes.result import Protocol, Reason
from tests import fleet
from tests.servers.dovecot import DovecotServer
from tests.test_scheduler import metrics, scheduler_for

HELD = fleet.SPARES[4]


async def test_a_mailbox_in_use_keeps_the_server_up_and_the_mailbox_unlocked(
    pop3_locking: DovecotServer, tmp_path: Path
) -> None:
    """While the school's client holds the POP3 lock, the scheduler's probe is told
    [IN-USE]: counted as in_use, the server stays up though one failure would take it
    down, the password is not locked out, and the next probe after the client leaves logs in."""
    address = fleet.address(HELD)
    config = fleet.config_for(
        tmp_path,
        pop3_locking,
        "none",
        [HELD],
        # Dovecot waits its 10 s lock timeout before answering [IN-USE].
        protocols={"pop3": {"port": pop3_locking.pop3_port, "command_timeout": "15s"}},
        probing={
            "interval": "1m",
            "timeout": "20s",
            "outage": {"min_probes": 1, "failure_ratio": 0.5},
        },
    )
    scheduler, _ = scheduler_for(config)
    reader, writer = await asyncio.open_connection(pop3_locking.host, pop3_locking.pop3_port)
    try:
        assert (await reader.readline()).startswith(b"+OK")
        for command in (f"USER {address}", f"PASS {fleet.password(HELD)}"):
            writer.write(command.encode() + b"\r\n")
            assert (await reader.readline()).startswith(b"+OK")
        outcomes = await scheduler.sweep()
    finally:
        writer.close()
    assert list(outcomes) == [(address, Protocol.POP3)]
    view = scheduler.view()
    status = view.mailboxes[address].probe(Protocol.POP3)
    assert status.result is not None and status.result.reason is Reason.IN_USE
    assert status.lockout is None
    assert view.servers[("dovecot", Protocol.POP3)].up
    failures = {
        (lb["protocol"], lb["reason"]): v
        for lb, v in metrics(scheduler)["bma_probe_failures_total"]
    }
    assert failures[("pop3", "in_use")] == 1.0
    locked = {lb["protocol"]: v for lb, v in metrics(scheduler)["bma_mailbox_auth_locked"]}
    assert locked == {"pop3": 0.0}

    await scheduler.sweep()
    status = scheduler.view().mailboxes[address].probe(Protocol.POP3)
    assert status.result is not None and status.result.reason is Reason.OK
