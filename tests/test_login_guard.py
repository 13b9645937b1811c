"""The lock-out guard: one attempt per refused credential, whatever happens around it.

An attempt is on disk before its password leaves; a crash or a silent server after it holds
the next try; lock-outs written by one process stop the other.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.config import Config, load_config
from monitor.credentials import CredentialStore, SecretKind
from monitor.health import health_report
from monitor.probes.contract import ProbeOptions
from monitor.probes.imap import Phase
from monitor.probes.result import ProbeResult, Protocol, Reason
from monitor.scheduling.login_policy import Request, Rules, Verdict, decide
from monitor.scheduling.plan import slot_offsets
from monitor.scheduling.runner import Held, LockedOut, ProbeRunner
from monitor.scheduling.scheduler import Scheduler
from monitor.state import logins
from monitor.state.logins import Attempt, Lockout
from monitor.state.store import StateStore
from tests import fleet
from tests.servers.dovecot import DovecotServer
from tests.servers.scripted_imap import ScriptedImapServer
from tests.test_scheduler import metrics as scrape

ADDRESS = "ec001234@adm.cfwb.be"
RULES = Rules(hold=3600.0, retry_after=86400.0)
T0 = 1_800_000_000.0


def attempt(credential: str = "file|1", at: float = T0) -> Attempt:
    """An attempt of the mailbox at `at`."""
    return Attempt(ADDRESS, SecretKind.MAILBOX, Protocol.IMAP, credential, at)


def lockout(fingerprint: str = "f1", since: float = T0) -> Lockout:
    """A lock-out of the mailbox."""
    return Lockout(
        ADDRESS, SecretKind.MAILBOX, Protocol.IMAP, Reason.AUTH_FAILED, since, fingerprint
    )


# -- the rules, as pure functions ------------------------------------------------------------


def test_a_refused_credential_stays_locked_until_it_changes_or_the_retry_is_due() -> None:
    """Same fingerprint: locked; another fingerprint or the retry time: go."""
    later = attempt(at=T0 + 60)
    assert decide(Request(later), lockout(), None, RULES) is Verdict.NEEDS_FINGERPRINT
    assert decide(Request(later, "f1"), lockout(), None, RULES) is Verdict.LOCKED
    assert decide(Request(later, "f2"), lockout(), None, RULES) is Verdict.GO
    due = attempt(at=T0 + 86400)
    assert decide(Request(due, "f1"), lockout(), None, RULES) is Verdict.GO
    assert decide(Request(later, "f1", force=True), lockout(), None, RULES) is Verdict.GO


def test_an_attempt_without_outcome_holds_the_same_credential() -> None:
    """Held for the hold time, for the same credential only, and not for days after a
    clock set back."""
    pending = attempt()
    assert decide(Request(attempt(at=T0 + 3599)), None, pending, RULES) is Verdict.HELD
    assert decide(Request(attempt(at=T0 + 3600)), None, pending, RULES) is Verdict.GO
    assert decide(Request(attempt("file|2", T0 + 1)), None, pending, RULES) is Verdict.GO
    assert decide(Request(attempt(at=T0 - 7200)), None, pending, RULES) is Verdict.GO
    assert decide(Request(attempt(at=T0 + 1), force=True), None, pending, RULES) is Verdict.GO


# -- against servers -----------------------------------------------------------------------


class SilentLogin:
    """A server that greets, then never answers LOGIN; counts the LOGINs it received."""

    def __init__(self) -> None:
        self.logins = 0
        self.login_seen = asyncio.Event()

    async def __call__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")
        await writer.drain()
        while line := await reader.readline():
            tag, _, rest = line.partition(b" ")
            if rest.upper().startswith(b"LOGIN"):
                self.logins += 1
                self.login_seen.set()
                await reader.read()  # until the client gives up
                return
            writer.write(tag + b" OK done\r\n")
            await writer.drain()


def runner_for(config: Config, clock: list[float] | None = None) -> ProbeRunner:
    """A runner as the daemon builds it (a new one stands for a restart)."""
    store = StateStore.open(config.state.path)
    credentials = CredentialStore(config.credentials, store.salt())
    now = clock or [T0]
    return ProbeRunner(config, store, credentials, clock=lambda: now[0])


async def test_no_answer_after_the_password_holds_the_next_try(tmp_path: Path) -> None:
    """A LOGIN that times out is not sent again within the hold, across a restart too; after
    the hold, or with a new credential, it is."""
    server = SilentLogin()
    async with ScriptedImapServer(server) as scripted:
        config = fleet.config_for(
            tmp_path,
            None,
            "none",
            [fleet.SPARES[16]],
            port=scripted.port,
            probing={"timeout": "1s", "unknown_outcome_hold": "1h"},
        )
        mailbox = config.mailboxes[0]
        clock = [T0]
        first = await runner_for(config, clock).run(mailbox, Protocol.IMAP, options=ProbeOptions())
        assert isinstance(first, ProbeResult) and first.reason is Reason.TIMEOUT
        assert first.failed_phase is Phase.LOGIN
        clock[0] += 600
        for runner in (runner_for(config, clock), runner_for(config, clock)):
            held = await runner.run(mailbox, Protocol.IMAP, options=ProbeOptions())
            assert isinstance(held, Held) and held.until == T0 + 3600
        assert server.logins == 1 and scripted.connections == 1

        clock[0] = T0 + 3600
        again = await runner_for(config, clock).run(mailbox, Protocol.IMAP, options=ProbeOptions())
        assert isinstance(again, ProbeResult) and again.reason is Reason.TIMEOUT
        assert server.logins == 2

        assert config.credentials.directory is not None
        path = config.credentials.directory / f"{mailbox.address}.imap"
        path.write_text("a new password\n")
        changed = await runner_for(config, clock).run(
            mailbox, Protocol.IMAP, options=ProbeOptions()
        )
        assert isinstance(changed, ProbeResult) and server.logins == 3


async def probe_command(config: Path) -> asyncio.subprocess.Process:
    """`bma-monitor probe --json` as its own process."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "monitor",
        "probe",
        "--config",
        str(config),
        "--json",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_a_kill_after_the_password_was_sent_does_not_repeat_it(tmp_path: Path) -> None:
    """kill -9 while LOGIN waits for its answer: the next run does not send it again."""
    server = SilentLogin()
    async with ScriptedImapServer(server) as scripted:
        config = fleet.write_config(tmp_path, None, "none", [fleet.SPARES[17]], port=scripted.port)
        first = await probe_command(config)
        try:
            await asyncio.wait_for(server.login_seen.wait(), 30)
        finally:
            first.kill()
            await first.wait()
        second = await probe_command(config)
        out, _ = await asyncio.wait_for(second.communicate(), 60)
        row = json.loads(out)
        assert second.returncode == 1
        assert row["reason"] == "outcome_unknown" and row["login_ok"] is False
        assert server.logins == 1


async def test_a_lockout_written_by_probe_stops_the_running_daemon(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    """The daemon does not send a password that `bma-monitor probe` saw refused meanwhile."""
    first, target = sorted(
        (fleet.SPARES[18], fleet.SPARES[19]),
        key=lambda local: slot_offsets(
            [fleet.address(fleet.SPARES[18]), fleet.address(fleet.SPARES[19])], 8
        )[fleet.address(local)],
    )
    path = fleet.write_config(
        tmp_path,
        dovecot,
        "none",
        [first, target],
        passwords={target: "wrong"},
        probing={"interval": "8s", "timeout": "5s", "jitter": 0},
    )
    config = load_config(path)
    store = StateStore.open(config.state.path)
    runner = ProbeRunner(config, store, CredentialStore(config.credentials, store.salt()))
    scheduler = Scheduler(config, runner, store)
    started = asyncio.get_running_loop().time()
    daemon = asyncio.create_task(scheduler.run())
    try:
        # The target's slot is 4 s into the cycle; `probe` runs and is refused before it.
        cli = await probe_command(path)
        await asyncio.wait_for(cli.communicate(), 30)
        assert dovecot.auth_attempts(fleet.address(target)) == 1
        await asyncio.sleep(started + 5.5 - asyncio.get_running_loop().time())
    finally:
        daemon.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await daemon
    assert dovecot.auth_attempts(fleet.address(target)) == 1
    status = scheduler.view().mailboxes[fleet.address(target)].probe(Protocol.IMAP)
    assert status.lockout is not None and status.lockout.reason is Reason.AUTH_FAILED


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MiB filesystem of its own, to fill up; skipped where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = os.system(f"mount -t tmpfs -o size=2m tmpfs {mount} 2>/dev/null")
    if done != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    yield mount
    os.system(f"umount -l {mount}")  # lazily: a file of the test may still be open


def fill(directory: Path) -> Path:
    """Write a file until the filesystem is full; return it."""
    filler = directory / "filler"
    with filler.open("wb") as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
    return filler


async def test_a_full_disk_keeps_lockouts_in_memory_and_says_so(
    dovecot: DovecotServer, tmp_path: Path, small_disk: Path
) -> None:
    """With the state file unwritable the refused password is still tried once; metrics and
    /healthz say a lock-out is in memory only, and it is saved once there is room again."""
    local = fleet.SPARES[40]
    config = fleet.config_for(
        tmp_path,
        dovecot,
        "none",
        [local],
        passwords={local: "wrong"},
        extra={"state": {"path": str(small_disk / "state.db")}},
    )
    store = StateStore.open(config.state.path)
    runner = ProbeRunner(config, store, CredentialStore(config.credentials, store.salt()))
    scheduler = Scheduler(config, runner, store)
    filler = fill(small_disk)
    mailbox = config.mailboxes[0]

    refused = await runner.run(mailbox, Protocol.IMAP, options=ProbeOptions())
    assert isinstance(refused, ProbeResult) and refused.reason is Reason.AUTH_FAILED
    for _ in range(3):
        assert isinstance(
            await runner.run(mailbox, Protocol.IMAP, options=ProbeOptions()), LockedOut
        )
    assert dovecot.auth_attempts(fleet.address(local)) == 1

    healthy, report = health_report(scheduler.view(), time.monotonic())
    assert healthy  # a restart is what would lose the lock-out: do not ask for one
    assert report["state"]["writable"] is False
    assert report["state"]["unsaved_lockouts"] == 1
    assert "full" in report["state"]["last_error"]
    samples = scrape(scheduler)
    assert samples["bma_state_unsaved_lockouts"] == [({}, 1.0)]
    assert samples["bma_state_write_failures_total"][0][1] >= 1

    filler.unlink()
    await runner.guard.flush()
    assert scheduler.view().state.unsaved_lockouts == 0
    assert store.write_health().writable
    assert set(logins.load_lockouts(store)) == {(fleet.address(local), Protocol.IMAP)}
    store.close()
