"""The observation source: a new CERBERE password accepted by SMTP AUTH dates its change."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.config import load_config
from monitor.expiry.model import ExpirySource
from monitor.expiry.observed import ObservedChanges, cerbere_listener
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
