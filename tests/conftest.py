"""Shared fixtures: private Dovecot servers holding the test fleet."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from tests import alerting, fleet
from tests.daemon_process import DaemonProcess
from tests.servers.dovecot import DovecotServer, free_port
from tests.servers.prometheus import AlertmanagerServer, PrometheusServer
from tests.servers.webhook import WebhookReceiver


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


# The alerting stack: Prometheus and Alertmanager take ~5 s to settle, so one per session.
# Its Dovecot is its own, not the shared `dovecot`: the end-to-end test stops it.


@pytest.fixture(scope="session")
def alert_webhook() -> Iterator[WebhookReceiver]:
    """The receiver every Alertmanager notification of the session goes to."""
    with WebhookReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def alertmanager(
    tmp_path_factory: pytest.TempPathFactory, alert_webhook: WebhookReceiver
) -> Iterator[AlertmanagerServer]:
    """An Alertmanager running the shipped example, its receivers posting to the webhook."""
    config = alerting.alertmanager_config_for_test(alert_webhook.url)
    with AlertmanagerServer(tmp_path_factory.mktemp("alertmanager"), config) as server:
        yield server


@pytest.fixture(scope="session")
def alerting_dovecot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """A Dovecot with a few fleet mailboxes, for the end-to-end alerting test to break."""
    users = [u for u in fleet.users() if u.address in map(fleet.address, alerting.MAILBOXES)]
    with DovecotServer(tmp_path_factory.mktemp("dovecot-alerting"), users) as server:
        yield server


@pytest.fixture(scope="session")
def alerting_daemon(
    tmp_path_factory: pytest.TempPathFactory, alerting_dovecot: DovecotServer
) -> Iterator[DaemonProcess]:
    """The monitor daemon probing `alerting_dovecot` every second."""
    port = free_port()
    config = alerting.write_daemon_config(tmp_path_factory.mktemp("daemon"), alerting_dovecot, port)
    daemon = DaemonProcess(config, port, bad="")
    try:
        yield daemon
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def prometheus(
    tmp_path_factory: pytest.TempPathFactory,
    alerting_daemon: DaemonProcess,
    alertmanager: AlertmanagerServer,
) -> Iterator[PrometheusServer]:
    """A Prometheus scraping the daemon every second with the rules, sending to Alertmanager."""
    workdir = tmp_path_factory.mktemp("prometheus")
    with PrometheusServer(
        workdir,
        [f"127.0.0.1:{alerting_daemon.port}"],
        [alerting.rules_for_test(workdir)],
        alertmanager.url,
        scrape_interval="1s",
        evaluation_interval="1s",
    ) as server:
        yield server
