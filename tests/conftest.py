"""Shared fixtures: private Dovecot servers holding the test fleet."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from tests import fleet
from tests.servers.dovecot import DovecotServer


@pytest.fixture(scope="session")
def dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """A Dovecot that advertises QUOTA (RFC 2087), with the fleet's mail in place."""
    with DovecotServer(
        tmp_path_factory.mktemp("dovecot-quota"), fleet.users(), quota=True
    ) as server:
        fleet.fill(server)
        yield server


@pytest.fixture(scope="session")
def exchange_like(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """A Dovecot advertising neither QUOTA nor STATUS=SIZE, as Exchange does."""
    with DovecotServer(
        tmp_path_factory.mktemp("dovecot-exchange"),
        fleet.users(),
        quota=False,
        capability_override=fleet.EXCHANGE_CAPABILITY,
    ) as server:
        fleet.fill(server)
        yield server


@pytest.fixture(scope="session")
def status_size(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """A Dovecot without QUOTA that offers STATUS=SIZE (RFC 8438)."""
    with DovecotServer(
        tmp_path_factory.mktemp("dovecot-status"), fleet.users(), quota=False
    ) as server:
        fleet.fill(server)
        yield server


@pytest.fixture(autouse=True)
def _fresh_structlog() -> Iterator[None]:
    """Each test starts from structlog's defaults, whatever an earlier test configured."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()
