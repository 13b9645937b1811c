"""The directory job against a private slapd: its dates feed the expiry book, and a
refused service bind stays refused across restarts until the password file changes."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.config import Config, load_config
from monitor.credentials import CredentialStore
from monitor.expiry.book import ExpiryBook
from monitor.expiry.directory_job import DirectoryJob
from monitor.expiry.model import ExpirySource
from monitor.expiry.observed import ObservedChanges
from monitor.state.store import StateStore
from tests import fleet
from tests.servers.slapd import PEOPLE_DN, POLICY_DN, SERVICE_DN, Account, SlapdServer

PASSWORD = "Service-pw-31a7"
CHANGED = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
LOCAL = fleet.SPARES[6]


@pytest.fixture(scope="module")
def slapd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlapdServer]:
    """A directory holding the mailbox's account, changed on a known date."""
    accounts = [Account("school", fleet.address(LOCAL), CHANGED)]
    with SlapdServer(
        tmp_path_factory.mktemp("slapd"), accounts, service_password=PASSWORD
    ) as server:
        yield server


def config_with_directory(tmp_path: Path, slapd: SlapdServer, password: str) -> Config:
    """The mailbox, the directory as its expiry source, the bind password in its file."""
    path = fleet.write_config(tmp_path, None, "none", [LOCAL], port=1)
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    document["expiry"] = {
        "sources": {
            "ldap": {
                "url": slapd.url,
                "bind_dn": SERVICE_DN,
                "base_dn": PEOPLE_DN,
                "policy_dn": POLICY_DN,
                "timeout": "2s",
            }
        }
    }
    path.write_text(yaml.safe_dump(document))
    secret = tmp_path / "credentials" / "ldap-bind"
    secret.write_text(password + "\n")
    secret.chmod(0o600)
    return load_config(path)


def job_for(config: Config) -> tuple[DirectoryJob, StateStore]:
    """A directory job on the config's state file, as the daemon builds it."""
    store = StateStore.open(config.state.path)
    credentials = CredentialStore(config.credentials, store.salt())
    return DirectoryJob(lambda: config, store, lambda: credentials), store


async def test_directory_dates_feed_the_expiry_and_survive_a_restart(
    tmp_path: Path, slapd: SlapdServer
) -> None:
    """The account's pwdChangedTime becomes the mailbox's expiry, source ldap; a restarted
    daemon knows it before reading again."""
    config = config_with_directory(tmp_path, slapd, PASSWORD)
    job, store = job_for(config)
    await job.read_once()
    assert job.health().last_success_at is not None
    book = ExpiryBook(lambda: config.expiry, ObservedChanges(store), lambda: job.dates, dict)
    expiry = book.expiries(config.mailboxes)[fleet.address(LOCAL)]
    assert expiry.source is ExpirySource.LDAP and expiry.changed_at == CHANGED
    store.close()
    restarted, store = job_for(config)
    assert restarted.dates == job.dates
    store.close()


async def test_a_refused_bind_is_not_tried_again_after_a_restart(
    tmp_path: Path, slapd: SlapdServer
) -> None:
    """One bind with the wrong password, in all, across a restart; a new password file
    binds at the next read."""
    config = config_with_directory(tmp_path, slapd, "not-the-service-password")
    before = slapd.binds()
    job, store = job_for(config)
    await job.read_once()
    await job.read_once()
    assert job.health().bind_refused and job.health().failures == {"bind": 1}
    store.close()
    restarted, store = job_for(config)
    await restarted.read_once()
    assert restarted.health().bind_refused
    assert slapd.binds() - before == 1
    store.close()

    fixed = config_with_directory(tmp_path, slapd, PASSWORD)
    again, store = job_for(fixed)
    await again.read_once()
    assert not again.health().bind_refused and again.dates
    assert slapd.binds() - before == 2
    store.close()
