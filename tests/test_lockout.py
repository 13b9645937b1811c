"""Lock-out safety against a real Dovecot: a refused password is tried once, not every cycle."""

from __future__ import annotations

import os
from pathlib import Path

from monitor.config import Config
from monitor.credentials import CredentialStore
from monitor.probes.contract import ProbeOptions
from monitor.probes.result import Protocol, Reason
from monitor.scheduling.runner import LockedOut, ProbeRunner
from monitor.state import logins
from monitor.state.store import StateStore
from tests import fleet
from tests.servers.dovecot import DovecotServer


class Clock:
    """A settable wall clock."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def runner_for(config: Config, clock: Clock | None = None) -> ProbeRunner:
    """A runner as the daemon builds it, over the config's state file."""
    store = StateStore.open(config.state.path)
    credentials = CredentialStore(config.credentials, store.salt())
    return ProbeRunner(config, store, credentials, clock=clock or Clock())


def credential_file(config: Config, local: str) -> Path:
    """Where the config's credential for a mailbox lives."""
    assert config.credentials.directory is not None
    return config.credentials.directory / f"{fleet.address(local)}.imap"


async def test_wrong_password_is_tried_once(dovecot: DovecotServer, tmp_path: Path) -> None:
    """Ten due probes with a wrong password make one login attempt, across a restart too."""
    local = fleet.SPARES[10]
    config = fleet.config_for(tmp_path, dovecot, "none", [local], passwords={local: "wrong"})
    mailbox = config.mailboxes[0]
    runner = runner_for(config)
    first = await runner.run(mailbox, Protocol.IMAP, options=ProbeOptions())
    assert not isinstance(first, LockedOut) and first.reason is Reason.AUTH_FAILED
    for _ in range(5):
        outcome = await runner.run(mailbox, Protocol.IMAP, options=ProbeOptions())
        assert isinstance(outcome, LockedOut)
        assert outcome.lockout.reason is Reason.AUTH_FAILED
    restarted = runner_for(config)
    for _ in range(4):
        assert isinstance(
            await restarted.run(mailbox, Protocol.IMAP, options=ProbeOptions()), LockedOut
        )
    assert dovecot.auth_attempts(fleet.address(local)) == 1


async def test_new_credential_unlocks(dovecot: DovecotServer, tmp_path: Path) -> None:
    """Writing a new credential file lifts the lock-out at the next due probe."""
    local = fleet.SPARES[11]
    config = fleet.config_for(tmp_path, dovecot, "none", [local], passwords={local: "wrong"})
    mailbox = config.mailboxes[0]
    runner = runner_for(config)
    assert (
        await runner.run(mailbox, Protocol.IMAP, options=ProbeOptions())
    ).reason is Reason.AUTH_FAILED  # type: ignore[union-attr]
    credential_file(config, local).write_text(fleet.password(local) + "\n")
    outcome = await runner.run(mailbox, Protocol.IMAP, options=ProbeOptions())
    assert not isinstance(outcome, LockedOut) and outcome.reason is Reason.OK
    assert runner.lockouts == {}
    assert logins.load_lockouts(StateStore.open(config.state.path)) == {}
    assert dovecot.auth_attempts(fleet.address(local)) == 2


async def test_touching_the_file_without_changing_it_keeps_the_lock(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    """A credential file rewritten with the same refused secret does not unlock."""
    local = fleet.SPARES[12]
    config = fleet.config_for(tmp_path, dovecot, "none", [local], passwords={local: "wrong"})
    runner = runner_for(config)
    await runner.run(config.mailboxes[0], Protocol.IMAP, options=ProbeOptions())
    path = credential_file(config, local)
    path.write_text("wrong\n")
    os.utime(path, (1, 1))
    assert isinstance(
        await runner.run(config.mailboxes[0], Protocol.IMAP, options=ProbeOptions()), LockedOut
    )
    assert dovecot.auth_attempts(fleet.address(local)) == 1


async def test_retry_after_the_back_off(dovecot: DovecotServer, tmp_path: Path) -> None:
    """After auth_retry_after, one more attempt is made, and the lock-out restarts."""
    local = fleet.EXPIRED
    config = fleet.config_for(
        tmp_path, dovecot, "none", [local], probing={"auth_retry_after": "1d"}
    )
    clock = Clock()
    runner = runner_for(config, clock)
    mailbox = config.mailboxes[0]
    before = dovecot.auth_attempts(fleet.address(local))
    assert (
        await runner.run(mailbox, Protocol.IMAP, options=ProbeOptions())
    ).reason is Reason.PASSWORD_EXPIRED  # type: ignore[union-attr]
    clock.now += 86_399
    assert isinstance(await runner.run(mailbox, Protocol.IMAP, options=ProbeOptions()), LockedOut)
    clock.now += 1
    again = await runner.run(mailbox, Protocol.IMAP, options=ProbeOptions())
    assert not isinstance(again, LockedOut) and again.reason is Reason.PASSWORD_EXPIRED
    assert isinstance(await runner.run(mailbox, Protocol.IMAP, options=ProbeOptions()), LockedOut)
    assert runner.lockouts[(fleet.address(local), Protocol.IMAP)].since == clock.now
    assert dovecot.auth_attempts(fleet.address(local)) == before + 2


async def test_missing_credential_makes_no_attempt(dovecot: DovecotServer, tmp_path: Path) -> None:
    """Without a credential the server is not contacted, and the reason says so."""
    local = fleet.SPARES[13]
    config = fleet.config_for(tmp_path, dovecot, "none", [local])
    credential_file(config, local).unlink()
    outcome = await runner_for(config).run(
        config.mailboxes[0], Protocol.IMAP, options=ProbeOptions()
    )
    assert not isinstance(outcome, LockedOut)
    assert outcome.reason is Reason.CREDENTIAL_MISSING
    assert "BMA_SECRET_EC000113_IMAP" in outcome.detail
    assert dovecot.auth_attempts(fleet.address(local)) == 0


async def test_environment_credential(dovecot: DovecotServer, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Where no file exists, the mailbox's environment variable is used."""
    local = fleet.SPARES[14]
    config = fleet.config_for(tmp_path, dovecot, "none", [local])
    credential_file(config, local).unlink()
    monkeypatch.setenv("BMA_SECRET_EC000114_IMAP", fleet.password(local))
    outcome = await runner_for(config).run(
        config.mailboxes[0], Protocol.IMAP, options=ProbeOptions()
    )
    assert not isinstance(outcome, LockedOut) and outcome.reason is Reason.OK


async def test_force_tries_a_locked_mailbox(dovecot: DovecotServer, tmp_path: Path) -> None:
    """An operator's forced probe tries again, and keeps the lock-out if refused again."""
    local = fleet.DISABLED
    config = fleet.config_for(tmp_path, dovecot, "none", [local])
    runner = runner_for(config)
    before = dovecot.auth_attempts(fleet.address(local))
    await runner.run(config.mailboxes[0], Protocol.IMAP, options=ProbeOptions())
    forced = await runner.run(
        config.mailboxes[0], Protocol.IMAP, options=ProbeOptions(), force=True
    )
    assert not isinstance(forced, LockedOut) and forced.reason is Reason.ACCOUNT_DISABLED
    assert isinstance(
        await runner.run(config.mailboxes[0], Protocol.IMAP, options=ProbeOptions()), LockedOut
    )
    assert dovecot.auth_attempts(fleet.address(local)) == before + 2


async def test_unsendable_credential_makes_no_attempt(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    """A secret with a line break inside is reported, never sent."""
    local = fleet.SPARES[15]
    config = fleet.config_for(tmp_path, dovecot, "none", [local])
    credential_file(config, local).write_text("first line\nsecond line\n")
    outcome = await runner_for(config).run(
        config.mailboxes[0], Protocol.IMAP, options=ProbeOptions()
    )
    assert not isinstance(outcome, LockedOut)
    assert outcome.reason is Reason.CREDENTIAL_MISSING
    assert "line break" in outcome.detail and "first line" not in outcome.detail
    assert dovecot.auth_attempts(fleet.address(local)) == 0
