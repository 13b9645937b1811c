"""The scheduler under pressure: caps across reloads, a slow server beside a healthy one, a
crashing server check, a stalled dispatcher."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.config import Config, load_config
from monitor.credentials import CredentialStore
from monitor.health import health_report
from monitor.probes.registry import PROBERS
from monitor.probes.result import Protocol, Reason
from monitor.scheduling.runner import ProbeRunner
from monitor.scheduling.scheduler import Scheduler
from monitor.state.store import StateStore
from tests import fleet
from tests.servers.dovecot import DovecotServer, free_port
from tests.servers.scripted_imap import ScriptedImapServer
from tests.test_scheduler import metrics


class HeldGreeting:
    """A server that greets only once released, then accepts any LOGIN; tracks how many
    connections it holds at once."""

    def __init__(self) -> None:
        self.open = 0
        self.most = 0
        self.release = asyncio.Event()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.open += 1
        self.most = max(self.most, self.open)
        try:
            await self.release.wait()
            writer.write(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
            await writer.drain()
            while line := await reader.readline():
                tag, _, rest = line.partition(b" ")
                command = rest.split(b" ", 1)[0].strip().upper()
                if command == b"LOGIN":
                    writer.write(tag + b" OK [CAPABILITY IMAP4rev1] Logged in\r\n")
                elif command == b"LOGOUT":
                    writer.write(b"* BYE\r\n" + tag + b" OK bye\r\n")
                    await writer.drain()
                    return
                else:
                    writer.write(tag + b" NO not here\r\n")
                await writer.drain()
        finally:
            self.open -= 1


IMAP = ("dovecot", Protocol.IMAP)


def edited(path: Path, edit: Callable[[dict[str, Any]], None]) -> Config:
    """Load a config written by fleet.write_config after changing its document."""
    document = yaml.safe_load(path.read_text())
    edit(document)
    path.write_text(yaml.safe_dump(document))
    return load_config(path)


def scheduler_for(config: Config, **options: Any) -> Scheduler:
    """A scheduler wired as the daemon wires it."""
    store = StateStore.open(config.state.path)
    runner = ProbeRunner(config, store, CredentialStore(config.credentials, store.salt()))
    return Scheduler(config, runner, store, **options)


@contextlib.asynccontextmanager
async def running(scheduler: Scheduler) -> Any:
    """The scheduler's run() for the block, cancelled (as SIGTERM does) at its end."""
    task = asyncio.create_task(scheduler.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_reloads_keep_the_per_server_connection_cap(tmp_path: Path) -> None:
    """With max_connections 2, two reloads during probes never let a third connection open."""
    server = HeldGreeting()
    async with ScriptedImapServer(server) as scripted:
        path = fleet.write_config(
            tmp_path,
            None,
            "none",
            list(fleet.SPARES[41:45]),
            port=scripted.port,
            probing={"interval": "4s", "timeout": "3500ms", "jitter": 0, "rate_limit": 0},
        )
        config = edited(path, lambda d: d["servers"]["dovecot"]["imap"].update(max_connections=2))
        scheduler = scheduler_for(config)
        async with running(scheduler):  # one mailbox dispatched every second
            for _ in range(2):
                await asyncio.sleep(0.7)
                scheduler.reconfigure(load_config(path))
            await asyncio.sleep(1.9)
            assert server.most == 2
            server.release.set()


async def test_a_slow_capped_server_does_not_starve_a_healthy_one(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    """Probes waiting for a slow server's only connection hold no global slot meanwhile."""
    slow = HeldGreeting()
    async with ScriptedImapServer(slow) as scripted:
        stuck, healthy = list(fleet.SPARES[41:44]), [fleet.EMPTY, fleet.FULL, fleet.FOLDERS]
        path = fleet.write_config(
            tmp_path, dovecot, "none", [*stuck, *healthy], probing={"concurrency": 2}
        )

        def two_servers(document: dict[str, Any]) -> None:
            slow_imap = dict(document["servers"]["dovecot"]["imap"], port=scripted.port)
            document["servers"]["slow"] = {"imap": slow_imap | {"max_connections": 1}}
            document["default_server"] = "dovecot"
            for entry in document["mailboxes"]:
                if entry["address"].split("@")[0] in stuck:
                    entry["server"] = "slow"

        config = edited(path, two_servers)
        scheduler = scheduler_for(config)
        order = [
            m for local in [*stuck, *healthy] for m in config.mailboxes if m.local_part == local
        ]
        sweep = asyncio.create_task(scheduler.sweep(order))
        try:
            for _ in range(30):  # well before the slow server's greeting deadline (5 s)
                done = [
                    scheduler.statuses[fleet.address(local)].probe(Protocol.IMAP).result
                    for local in healthy
                ]
                if all(r is not None for r in done):
                    break
                await asyncio.sleep(0.1)
            assert all(r is not None and r.reason is Reason.OK for r in done)
            assert slow.most == 1
        finally:
            slow.release.set()
            await sweep


async def test_a_crashing_server_check_is_counted_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug in the credential-free check is logged and counted; the daemon keeps running."""

    async def broken_check(*args: object, **kwargs: object) -> None:
        raise RuntimeError("a bug in the check")

    imap = PROBERS[Protocol.IMAP]
    monkeypatch.setitem(PROBERS, Protocol.IMAP, dataclasses.replace(imap, check=broken_check))
    outage = {"min_probes": 3, "backoff_initial": "200ms", "backoff_max": "400ms"}
    config = fleet.config_for(
        tmp_path,
        None,
        "none",
        list(fleet.SPARES[41:45]),
        port=free_port(),  # nothing listens: connections are refused
        probing={"interval": "1s", "timeout": "900ms", "rate_limit": 0, "outage": outage},
    )
    scheduler = scheduler_for(config)
    async with running(scheduler) as task:
        await asyncio.sleep(2.5)
        assert not task.done()
        view = scheduler.view()
        assert not view.servers[IMAP].up
        assert view.counters.server_check_failures[(IMAP, Reason.INTERNAL_ERROR)] >= 2
        assert (
            view.counters.server_checks[IMAP]
            == view.counters.server_check_failures[(IMAP, Reason.INTERNAL_ERROR)]
        )
        failed = {
            labels["reason"]: value
            for labels, value in metrics(scheduler)["bma_server_check_failures_total"]
            if labels["server"] == "dovecot"
        }
        assert failed["internal_error"] >= 2 and failed["timeout"] == 0.0


async def test_health_sees_a_stalled_dispatcher(dovecot: DovecotServer, tmp_path: Path) -> None:
    """The dispatcher stuck past its next slot makes the daemon unhealthy, while every other
    task (the server watch, the state flush) still runs."""

    async def stuck(delay: float) -> None:
        await asyncio.Event().wait()

    config = fleet.config_for(
        tmp_path, dovecot, "none", [fleet.EMPTY], probing={"interval": "1s", "timeout": "900ms"}
    )
    scheduler = scheduler_for(config, sleep=stuck)
    async with running(scheduler):
        await asyncio.sleep(0.5)
        healthy, report = health_report(scheduler.view(), time.monotonic(), stale_after=1.0)
        assert healthy
        await asyncio.sleep(2.0)
        healthy, report = health_report(scheduler.view(), time.monotonic(), stale_after=1.0)
        assert not healthy and report["dispatcher_overdue_seconds"] > 1.0
