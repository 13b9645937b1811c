"""The observation source: a new CERBERE password accepted by SMTP AUTH dates its change."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.credentials import Credential, CredentialStore
from monitor.expiry.model import ExpirySource
from monitor.expiry.observed import ObservedChanges, cerbere_listener
from monitor.probes.result import ProbeResult, Protocol
from monitor.state.store import StateStore
from tests import fleet
from tests.servers.dovecot import DovecotServer, write_certificate
from tests.servers.smtp import SmtpServer, SmtpUser
from tests.test_scheduler import scheduler_for

LOCAL = fleet.SPARES[5]
ADDRESS = fleet.address(LOCAL)


@pytest.fixture
def submission(tmp_path: Path) -> Iterator[SmtpServer]:
    """A submission server that knows the mailbox's CERBERE password."""
    certs = tmp_path / "certs"
    certs.mkdir()
    write_certificate(certs)
    with SmtpServer(certs, [SmtpUser(ADDRESS, "first-password")], tls="implicit") as server:
        yield server


def config_path(tmp_path: Path, dovecot: DovecotServer, submission: SmtpServer) -> Path:
    """A mailbox probed over SMTP only, with a first CERBERE password."""
    smtp = {
        "port": submission.port,
        "tls": "implicit",
        "ca_file": str(submission.ca_file),
        "tls_server_name": "localhost",
    }
    return fleet.write_config(
        tmp_path,
        dovecot,
        "none",
        [LOCAL],
        protocols={"imap": {}, "smtp": smtp},
        mailbox_protocols={LOCAL: ["smtp"]},
        cerbere={LOCAL: "first-password"},
    )


async def test_a_new_password_accepted_dates_its_change_and_a_rewrite_does_not(
    dovecot: DovecotServer, submission: SmtpServer, tmp_path: Path
) -> None:
    """The first password seen dates nothing; the same one rewritten dates nothing; a new
    one, once accepted, is a change at the time it was first accepted, kept across restarts."""
    path = config_path(tmp_path, dovecot, submission)
    secret = tmp_path / "credentials" / f"{ADDRESS}.cerbere"
    now = [1_800_000_000.0]

    async def sweep() -> ObservedChanges:
        config = load_config(path)
        scheduler, store = scheduler_for(config, clock=lambda: now[0])
        observed = ObservedChanges(store)
        scheduler.runner.on_accepted = cerbere_listener(observed, lambda: now[0])
        await scheduler.sweep()
        await observed.drain()
        return observed

    first = await sweep()
    assert first.accepted[ADDRESS].changed_at is None
    assert first.password_dates() == {}

    now[0] += 3600
    secret.write_text("first-password\n")  # the same password, the file rewritten
    assert (await sweep()).password_dates() == {}

    now[0] += 3600
    submission.users[ADDRESS] = SmtpUser(ADDRESS, "second-password")
    secret.write_text("second-password\n")
    changed = await sweep()
    date = changed.password_dates()[ADDRESS]
    assert date.source is ExpirySource.OBSERVED
    assert date.changed_at is not None and date.changed_at.timestamp() == now[0]

    now[0] += 3600
    store = StateStore.open(load_config(path).state.path)
    kept = ObservedChanges(store).password_dates()[ADDRESS]
    store.close()
    assert kept == date  # restored, not moved by the next probe
    again = await sweep()
    assert again.password_dates()[ADDRESS] == date


async def test_a_probe_is_recorded_without_waiting_for_the_fingerprint(
    dovecot: DovecotServer,
    submission: SmtpServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the fingerprint held back, the SMTP probe still ends and its result is kept;
    the fingerprint is then computed in its own thread, dated by the acceptance."""
    release = threading.Event()
    threads: list[str] = []
    slow = CredentialStore.fingerprint

    def held(self: CredentialStore, address: str, credential: Credential) -> str:
        threads.append(threading.current_thread().name)
        assert release.wait(30)
        return slow(self, address, credential)

    monkeypatch.setattr(CredentialStore, "fingerprint", held)
    now = [1_800_000_000.0]
    config = load_config(config_path(tmp_path, dovecot, submission))
    scheduler, store = scheduler_for(config, clock=lambda: now[0])
    observed = ObservedChanges(store)
    scheduler.runner.on_accepted = cerbere_listener(observed, lambda: now[0])
    try:
        outcomes = await asyncio.wait_for(scheduler.sweep(), 20)
        result = outcomes[(ADDRESS, Protocol.SMTP)]
        assert isinstance(result, ProbeResult) and result.login_ok
        assert scheduler.statuses[ADDRESS].probe(Protocol.SMTP).result == result
        assert observed.pending == 1 and ADDRESS not in observed.accepted
        accepted_at = now[0]
        now[0] += 600
    finally:
        release.set()
    await observed.drain()
    assert threads == ["bma-fingerprint_0"]
    assert observed.accepted[ADDRESS].first_accepted_at == accepted_at
    store.close()


def held_print(gate: threading.Event, value: str) -> Callable[[], str]:
    """A fingerprint that waits for `gate`, as a slow scrypt would."""

    def fingerprint() -> str:
        assert gate.wait(30)
        return value

    return fingerprint


async def stop_once_under_way(observed: ObservedChanges, gate: threading.Event) -> None:
    """Stop the queue while its first fingerprint is being computed, then let it end."""
    stopping = asyncio.create_task(observed.stop())
    await asyncio.sleep(0)
    gate.set()
    await stopping


async def test_a_stop_records_what_may_date_a_change_and_drops_first_passwords(
    tmp_path: Path,
) -> None:
    """Queued behind a slow fingerprint, a new password of a known mailbox is recorded at a
    stop, in the order accepted, dated by its acceptance; a first password is dropped, and
    recorded at its next acceptance."""
    store = StateStore.open(tmp_path / "state.db")
    observed = ObservedChanges(store)
    known, first = "a@adm.cfwb.be", "b@adm.cfwb.be"
    observed.password_accepted(known, "file-1", lambda: "print-1", 100.0)
    await observed.drain()
    gate = threading.Event()
    observed.password_accepted(known, "file-2", held_print(gate, "print-2"), 200.0)
    observed.password_accepted(known, "file-3", lambda: "print-3", 300.0)
    observed.password_accepted(first, "file-b", lambda: "print-b", 250.0)
    assert observed.pending == 3
    await stop_once_under_way(observed, gate)
    assert observed.dropped == 1 and observed.pending == 0
    store.close()

    store = StateStore.open(tmp_path / "state.db")
    again = ObservedChanges(store)
    assert set(again.accepted) == {known}
    assert again.accepted[known].credential == "file-3"
    assert again.accepted[known].changed_at == 300.0  # print-2, then print-3: two changes
    again.password_accepted(first, "file-b", lambda: "print-b", 400.0)
    await again.drain()
    assert again.accepted[first].first_accepted_at == 400.0
    assert again.accepted[first].changed_at is None
    store.close()


async def test_a_full_queue_drops_what_it_cannot_hold(tmp_path: Path) -> None:
    """Past its limit the queue takes nothing more, and says how much it dropped."""
    store = StateStore.open(tmp_path / "state.db")
    observed = ObservedChanges(store, limit=2)
    for i in range(3):
        observed.password_accepted(f"m{i}@adm.cfwb.be", "file", lambda: "print", 1.0)
    observed.password_accepted("m0@adm.cfwb.be", "file", lambda: "print", 2.0)  # queued
    assert observed.pending == 2 and observed.dropped == 1
    await observed.drain()
    assert set(observed.accepted) == {"m0@adm.cfwb.be", "m1@adm.cfwb.be"}
    assert observed.accepted["m0@adm.cfwb.be"].first_accepted_at == 1.0
    store.close()


async def test_a_stop_keeps_a_new_password_queued_behind_the_first_one_seen(
    tmp_path: Path,
) -> None:
    """A mailbox's first password, its fingerprint under way at the stop, and a second one
    queued behind it: both are recorded, and the second dates a change."""
    store = StateStore.open(tmp_path / "state.db")
    observed = ObservedChanges(store)
    address = "c@adm.cfwb.be"
    gate = threading.Event()
    observed.password_accepted(address, "file-1", held_print(gate, "print-1"), 100.0)
    observed.password_accepted(address, "file-2", lambda: "print-2", 200.0)
    await stop_once_under_way(observed, gate)
    assert observed.dropped == 0
    assert observed.accepted[address].credential == "file-2"
    assert observed.accepted[address].changed_at == 200.0
    store.close()
