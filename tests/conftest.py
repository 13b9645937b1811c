"""Shared fixtures: private Dovecot servers holding the test fleet."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from tests import fleet
from tests.servers.dovecot import DovecotServer


def _fleet_server(
    factory: pytest.TempPathFactory, name: str, **options: Any
) -> Iterator[DovecotServer]:
    """A started Dovecot with the fleet's users and mail, stopped at the end of the session."""
    with DovecotServer(factory.mktemp(name), fleet.users(), **options) as server:
        fleet.fill(server)
        yield server
        # The canary removes itself: none may be left in any mailbox after the suite.
        assert server.canaries() == []


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """A Dovecot that advertises QUOTA (RFC 2087)."""
    yield from _fleet_server(tmp_path_factory, "dovecot-quota", quota=True)


@pytest.fixture(scope="session")
def exchange_like(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """A Dovecot advertising neither QUOTA nor STATUS=SIZE, as Exchange does."""
    yield from _fleet_server(
        tmp_path_factory,
        "dovecot-exchange",
        quota=False,
        capability_override=fleet.EXCHANGE_CAPABILITY,
    )


@pytest.fixture(scope="session")
def status_size(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """A Dovecot without QUOTA that offers STATUS=SIZE (RFC 8438)."""
    yield from _fleet_server(tmp_path_factory, "dovecot-status", quota=False)


@pytest.fixture(scope="session")
def pop3_locking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """A Dovecot that locks a mailbox against a second POP3 session (pop3_lock_session)."""
    yield from _fleet_server(tmp_path_factory, "dovecot-pop3-lock", pop3_lock_session=True)


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults, whatever an earlier test configured."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
