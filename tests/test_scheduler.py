"""The scheduler over a real Dovecot: cycles, lock-outs, quota cadence, outages, reloads."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from monitor.config import Config, load_config
from monitor.credentials import CredentialStore
from monitor.metrics.collector import BmaCollector, ReloadStatus
from monitor.metrics.page import MetricsPage
from monitor.probes.result import Protocol, QuotaSource, Reason
from monitor.scheduling.runner import ProbeRunner
from monitor.scheduling.scheduler import Scheduler, SkipCause
from monitor.state import logins
from monitor.state.store import StateStore
from tests import fleet
from tests.servers import scripted_imap
from tests.servers.dovecot import DovecotServer, free_port
from tests.servers.scripted_imap import ScriptedImapServer

FAST = {"interval": "1s", "timeout": "900ms", "jitter": 0.2, "rate_limit": 0}


def scheduler_for(config: Config, **options: Any) -> tuple[Scheduler, StateStore]:
    """A scheduler wired as the daemon wires it (`options`: the scheduler's clock and the like)."""
    store = StateStore.open(config.state.path)
    credentials = CredentialStore(config.credentials, store.salt())
    runner = ProbeRunner(config, store, credentials)
    return Scheduler(config, runner, store, **options), store


async def run_for(scheduler: Scheduler, seconds: float) -> None:
    """Let the scheduler work for a while, then stop it as SIGTERM would."""
    task = asyncio.create_task(scheduler.run())
    await asyncio.sleep(seconds)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def metrics(scheduler: Scheduler) -> dict[str, list[tuple[dict[str, str], float]]]:
    """The scheduler's metrics as Prometheus would scrape and parse them."""
    registry = CollectorRegistry()
    registry.register(BmaCollector(scheduler.view, lambda: ReloadStatus(True, 1.0)))
    size, pieces = MetricsPage(registry, scheduler.view).render()
    body = b"".join(pieces)
    assert len(body) == size
    text = body.decode()
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def by_protocol(samples: list[tuple[dict[str, str], float]]) -> dict[str, float]:
    """A family's samples by their protocol label."""
    return {labels["protocol"]: value for labels, value in samples}


async def test_cycles_probe_everyone_and_a_wrong_password_once(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    """Over three cycles each mailbox is probed each cycle, except the refused one: once."""
    good = [fleet.EMPTY, fleet.NEARLY_FULL, fleet.FULL]
    bad = fleet.SPARES[20]
    config = fleet.config_for(
        tmp_path, dovecot, "implicit", [*good, bad], passwords={bad: "wrong"}, probing=FAST
    )
    before = {local: dovecot.auth_attempts(fleet.address(local)) for local in good}
    scheduler, store = scheduler_for(config)
    await run_for(scheduler, 3.5)

    for local in good:
        assert dovecot.auth_attempts(fleet.address(local)) - before[local] in (3, 4, 5)
    assert dovecot.auth_attempts(fleet.address(bad)) == 1
    view = scheduler.view()
    assert view.counters.skipped[(Protocol.IMAP, SkipCause.LOCKED_OUT)] >= 2
    assert view.mailboxes[fleet.address(bad)].probe(Protocol.IMAP).lockout is not None
    assert view.cycle_seconds[Protocol.IMAP] < 1.0

    samples = metrics(scheduler)
    login = {labels["mailbox"]: value for labels, value in samples["bma_mailbox_login_success"]}
    assert login == {fleet.EMPTY: 1.0, fleet.NEARLY_FULL: 1.0, fleet.FULL: 1.0, bad: 0.0}
    reasons = {
        labels["mailbox"]: labels["reason"] for labels, _ in samples["bma_mailbox_probe_reason"]
    }
    assert reasons[bad] == "auth_failed"
    locked = {labels["mailbox"]: value for labels, value in samples["bma_mailbox_auth_locked"]}
    assert locked[bad] == 1.0 and locked[fleet.EMPTY] == 0.0
    limits = {
        labels["mailbox"]: value for labels, value in samples["bma_mailbox_quota_limit_bytes"]
    }
    assert limits[fleet.FULL] == fleet.TEN_MIB
    failures = {(lb["protocol"], lb["reason"]): v for lb, v in samples["bma_probe_failures_total"]}
    assert failures[("imap", "auth_failed")] == 1.0
    assert failures[("imap", "tls_error")] == 0.0  # every reason is exported from the start
    assert by_protocol(samples["bma_quota_read_failures_total"])["imap"] == 0.0
    phases = {lb["phase"] for lb, _ in samples["bma_mailbox_probe_phase_duration_seconds"]}
    assert phases == {"connect", "tls", "greeting", "login", "quota", "logout"}

    # What a restarted daemon finds in the state file.
    records = store.load_mailboxes()
    assert records[fleet.address(fleet.FULL)].quota is not None
    assert records[fleet.address(bad)].probes[Protocol.IMAP].result.reason is Reason.AUTH_FAILED  # type: ignore[union-attr]
    assert set(logins.load_lockouts(store)) == {(fleet.address(bad), "imap")}


async def test_size_estimate_runs_at_its_own_cadence(
    exchange_like: DovecotServer, tmp_path: Path
) -> None:
    """Without QUOTA, sizes are summed once per quota_estimate_interval, not at every login."""
    config = fleet.config_for(
        tmp_path,
        exchange_like,
        "none",
        [fleet.FOLDERS],
        probing={**FAST, "quota_estimate_interval": "1h"},
    )
    scheduler, _ = scheduler_for(config)
    await run_for(scheduler, 2.5)
    status = scheduler.view().mailboxes[fleet.address(fleet.FOLDERS)]
    assert (
        status.probe(Protocol.IMAP).result is not None
        and status.probe(Protocol.IMAP).result.reason is Reason.OK
    )
    assert (
        status.probe(Protocol.IMAP).result.quota is None
    )  # the latest probe did not estimate again
    assert status.quota is not None and status.quota.source is QuotaSource.MESSAGE_SIZES
    assert status.quota.used_bytes == fleet.expected_usage(fleet.FOLDERS)
    assert scheduler.view().counters.probes[Protocol.IMAP] >= 2


async def test_server_outage_pauses_probes_and_recovers(tmp_path: Path) -> None:
    """A refusing server is marked down once, mailbox probes stop, and a check brings it back."""
    port = free_port()
    mailboxes = [fleet.EMPTY, *fleet.SPARES[21:27]]
    outage = {
        "window": "30s",
        "min_probes": 5,
        "failure_ratio": 0.8,
        "backoff_initial": "500ms",
        "backoff_max": "1s",
    }
    config = fleet.config_for(
        tmp_path, None, "none", mailboxes, port=port, probing={**FAST, "outage": outage}
    )
    scheduler, _ = scheduler_for(config)
    task = asyncio.create_task(scheduler.run())
    try:
        await asyncio.sleep(2.2)
        view = scheduler.view()
        assert not view.servers[("dovecot", Protocol.IMAP)].up
        assert view.counters.skipped.get((Protocol.IMAP, SkipCause.SERVER_DOWN), 0) >= len(
            mailboxes
        )
        probes_while_down = view.counters.probes[Protocol.IMAP]
        assert probes_while_down < 2 * len(mailboxes)
        async with ScriptedImapServer(scripted_imap.close_after_greeting, port=port):
            await asyncio.sleep(2.5)
            assert scheduler.view().servers[("dovecot", Protocol.IMAP)].up
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_reload_adds_and_removes_mailboxes(dovecot: DovecotServer, tmp_path: Path) -> None:
    """After a reload, removed mailboxes vanish from the metrics and new ones are probed."""
    first = fleet.config_for(
        tmp_path, dovecot, "none", [fleet.EMPTY, fleet.NEARLY_FULL], probing=FAST
    )
    scheduler, _ = scheduler_for(first)
    task = asyncio.create_task(scheduler.run())
    try:
        await asyncio.sleep(1.2)
        second = fleet.config_for(
            tmp_path, dovecot, "none", [fleet.EMPTY, fleet.FULL], probing=FAST
        )
        scheduler.reconfigure(second)
        await asyncio.sleep(1.5)
        probed = {
            labels["mailbox"] for labels, _ in metrics(scheduler)["bma_mailbox_login_success"]
        }
        assert probed == {fleet.EMPTY, fleet.FULL}
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_failed_estimate_waits_its_turn(tmp_path: Path) -> None:
    """A size estimate that fails is not retried at every login, only at its own cadence."""
    seen: list[bytes] = []

    async def list_refused(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
        await writer.drain()
        while line := await reader.readline():
            tag, _, rest = line.partition(b" ")
            command = rest.split(b" ", 1)[0].strip().upper()
            seen.append(command)
            if command == b"LOGIN":
                writer.write(tag + b" OK [CAPABILITY IMAP4rev1] Logged in\r\n")
            elif command == b"LIST":
                writer.write(tag + b" NO [UNAVAILABLE] try later\r\n")
            else:
                writer.write(tag + b" OK done\r\n")
            await writer.drain()

    async with ScriptedImapServer(list_refused) as server:
        config = fleet.config_for(
            tmp_path,
            None,
            "none",
            [fleet.EMPTY],
            port=server.port,
            probing={**FAST, "quota_estimate_interval": "1h"},
        )
        scheduler, _ = scheduler_for(config)
        await run_for(scheduler, 3.5)
    assert seen.count(b"LOGIN") >= 3
    assert seen.count(b"LIST") == 1
    status = scheduler.view().mailboxes[fleet.address(fleet.EMPTY)]
    assert (
        status.probe(Protocol.IMAP).result is not None
        and status.probe(Protocol.IMAP).result.reason is Reason.OK
    )
    assert by_protocol(metrics(scheduler)["bma_quota_read_failures_total"])["imap"] == 1.0


async def test_reload_during_a_probe_drops_its_stale_result(tmp_path: Path) -> None:
    """A probe still running when a reload moves its mailbox to another server neither
    crashes the scheduler nor records a result against the new configuration."""

    async def slow_login(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
        await writer.drain()
        while line := await reader.readline():
            tag = line.partition(b" ")[0]
            await asyncio.sleep(1.0)
            writer.write(tag + b" OK [CAPABILITY IMAP4rev1 QUOTA] done\r\n")
            await writer.drain()

    async with ScriptedImapServer(slow_login) as server:
        before = fleet.config_for(
            tmp_path / "a",
            None,
            "none",
            [fleet.EMPTY],
            port=server.port,
            probing={"interval": "10s", "timeout": "5s", "jitter": 0},
        )
        scheduler, _ = scheduler_for(before)
        task = asyncio.create_task(scheduler.run())
        try:
            await asyncio.sleep(0.5)  # the first probe is waiting for its LOGIN answer
            assert scheduler.view().in_flight == 1
            document = yaml.safe_load((tmp_path / "a" / "bma.yaml").read_text())
            document["servers"] = {"other": document["servers"]["dovecot"]}
            (tmp_path / "a" / "bma.yaml").write_text(yaml.safe_dump(document))
            scheduler.reconfigure(load_config(tmp_path / "a" / "bma.yaml"))
            await asyncio.sleep(2.0)  # the old probe has finished by now
            assert not task.done()
            status = scheduler.view().mailboxes[fleet.address(fleet.EMPTY)]
            assert status.mailbox.server == "other"
            assert status.probe(Protocol.IMAP).result is None
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def test_reload_while_the_dispatcher_waits_for_a_slot(tmp_path: Path) -> None:
    """A reload that renames the server while the dispatcher sleeps until a mailbox's slot
    does not stop the scheduler; that mailbox is probed under the new configuration."""
    async with ScriptedImapServer(scripted_imap.close_after_greeting) as server:
        path = fleet.write_config(
            tmp_path,
            None,
            "none",
            [fleet.EMPTY, fleet.FULL],
            port=server.port,
            probing={"interval": "2s", "timeout": "1s", "jitter": 0},
        )
        scheduler, _ = scheduler_for(load_config(path))
        task = asyncio.create_task(scheduler.run())
        try:
            await asyncio.sleep(0.5)  # one mailbox probed at 0 s, the other is due at 1 s
            document = yaml.safe_load(path.read_text())
            document["servers"] = {"other": document["servers"]["dovecot"]}
            path.write_text(yaml.safe_dump(document))
            scheduler.reconfigure(load_config(path))
            await asyncio.sleep(1.0)
            assert not task.done()
            results = [s.probe(Protocol.IMAP).result for s in scheduler.view().mailboxes.values()]
            assert any(r is not None for r in results)
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
