"""Alerts end to end: the daemon against a real Dovecot, scraped by a real Prometheus with the
shipped rules, routed by a real Alertmanager with the shipped example to a webhook.

The tests run in file order: the last one stops the stack's Dovecot for good.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests import alerting, fleet
from tests.daemon_process import DaemonProcess, eventually
from tests.servers.dovecot import DovecotServer
from tests.servers.prometheus import AlertmanagerServer, PrometheusServer
from tests.servers.webhook import WebhookReceiver

pytestmark = pytest.mark.slow

PER_MAILBOX_INHIBITED = ("BmaMailboxLoginFailing",)


def _firing(webhook: WebhookReceiver, alertname: str, **labels: str) -> list[dict[str, Any]]:
    return [a for a in webhook.alerts(alertname=alertname, **labels) if a["status"] == "firing"]


def _held(alertmanager: AlertmanagerServer, alertname: str) -> list[dict[str, Any]]:
    """Alertmanager's alerts of that name for the stack's server."""
    return [
        a
        for a in alertmanager.alerts()
        if a["labels"]["alertname"] == alertname and a["labels"].get("server") == alerting.SERVER
    ]


def test_a_mailbox_filled_past_its_quota_pages(
    prometheus: PrometheusServer,
    alert_webhook: WebhookReceiver,
    alerting_dovecot: DovecotServer,
) -> None:
    """Twelve 1 MB messages in a 10 MiB mailbox: BmaMailboxFull reaches the pager."""
    mailbox = fleet.EMPTY
    assert prometheus.query(f'bma_mailbox_quota_used_bytes{{mailbox="{mailbox}"}}')
    assert not _firing(alert_webhook, "BmaMailboxFull", mailbox=mailbox)
    started = time.monotonic()
    alerting_dovecot.add_messages(fleet.address(mailbox), 12, fleet.MB)
    eventually(lambda: bool(_firing(alert_webhook, "BmaMailboxFull", mailbox=mailbox)), 30)
    print(f"BmaMailboxFull at the webhook {time.monotonic() - started:.1f} s after the fill")
    page = next(
        n for n in alert_webhook.notifications
        if any(a["labels"].get("mailbox") == mailbox for a in n["alerts"])
    )  # fmt: skip
    assert page["receiver"] == "pager"
    (alert,) = _firing(alert_webhook, "BmaMailboxFull", mailbox=mailbox)
    assert alert["labels"]["severity"] == "page"
    assert alert["labels"]["server"] == alerting.SERVER
    # The other mailboxes are not full: no page names them.
    assert {a["labels"]["mailbox"] for a in _firing(alert_webhook, "BmaMailboxFull")} == {mailbox}


def test_a_stopped_server_pages_once_and_its_mailbox_alerts_are_inhibited(
    prometheus: PrometheusServer,
    alertmanager: AlertmanagerServer,
    alert_webhook: WebhookReceiver,
    alerting_dovecot: DovecotServer,
    alerting_daemon: DaemonProcess,
) -> None:
    """Dovecot stopped: one BmaServerDown page for its server, and each mailbox's failing
    logins held by Alertmanager as inhibited, never sent."""
    assert prometheus.query(f'bma_server_up{{server="{alerting.SERVER}"}} == 1')
    assert not _firing(alert_webhook, "BmaServerDown")
    started = time.monotonic()
    alerting_dovecot.stop()

    eventually(lambda: bool(_firing(alert_webhook, "BmaServerDown")), 40)
    paged = time.monotonic() - started
    # Every mailbox's login alert reaches Alertmanager (later: its `for:` is longer) ...
    for name in PER_MAILBOX_INHIBITED:
        eventually(lambda name=name: len(_held(alertmanager, name)) == len(alerting.MAILBOXES), 40)
    print(f"page {paged:.1f} s, mailbox alerts held {time.monotonic() - started:.1f} s after stop")
    time.sleep(2.5)  # a notification sent on receipt would be here after group_wait (1 s)

    pages = [
        n for n in alert_webhook.notifications
        if any(a["labels"]["alertname"] == "BmaServerDown" for a in n["alerts"])
    ]  # fmt: skip
    assert len(pages) == 1 and pages[0]["receiver"] == "pager"
    (down,) = _firing(alert_webhook, "BmaServerDown")
    assert down["labels"]["server"] == alerting.SERVER
    assert down["labels"]["protocol"] == "imap" and down["labels"]["severity"] == "page"
    # ... held there as inhibited by the server-down alert, and never notified.
    source = _held(alertmanager, "BmaServerDown")[0]["fingerprint"]
    for name in PER_MAILBOX_INHIBITED:
        held = _held(alertmanager, name)
        assert {a["labels"]["mailbox"] for a in held} == set(alerting.MAILBOXES)
        assert all(a["status"]["state"] == "suppressed" for a in held), held
        assert all(a["status"]["inhibitedBy"] == [source] for a in held), held
        assert not alert_webhook.alerts(alertname=name)
