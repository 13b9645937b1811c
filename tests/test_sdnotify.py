"""The notify protocol on a real datagram socket: messages as systemd reads them, silence
outside systemd, and no watchdog ping while the scheduler is behind its schedule."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from monitor.health import DISPATCHER_STALE_AFTER, health_report
from monitor.sdnotify import ServiceNotifier, socket_address, watchdog_interval
from tests.notify_listener import NotifyListener
from tests.test_http import fake_view


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    """A notify socket on a path, as systemd's /run/systemd/notify."""
    receiving = NotifyListener(tmp_path / "notify")
    yield receiving
    receiving.close()


def test_socket_addresses_follow_systemd() -> None:
    """A path is used as is, '@' is the abstract namespace, anything else means no socket."""
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    assert socket_address("@private/notify") == "\0private/notify"
    assert socket_address("") is None
    assert socket_address("@") is None
    assert socket_address("vsock:2:1234") is None


def test_watchdog_interval_is_half_the_timeout_and_only_for_its_pid() -> None:
    """Pings come at half of WATCHDOG_USEC, and only in the process WATCHDOG_PID names."""
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}, 42) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "42"}, 42) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "7"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "0"}, 42) is None
    assert watchdog_interval({"WATCHDOG_USEC": "soon"}, 42) is None
    assert watchdog_interval({}, 42) is None


def test_messages_arrive_as_one_datagram_each(listener: NotifyListener) -> None:
    """READY, RELOADING and STOPPING arrive with their status lines, one datagram each."""
    notifier = ServiceNotifier({"NOTIFY_SOCKET": listener.address})
    assert notifier.ready("Monitoring 3 mailboxes")
    assert notifier.reloading()
    assert notifier.stopping()
    listener.wait_for(lambda notices: len(notices) == 3)
    ready, reloading, stopping = (n.fields for n in listener.notices())
    assert ready == {"READY": "1", "STATUS": "Monitoring 3 mailboxes"}
    assert reloading["RELOADING"] == "1" and int(reloading["MONOTONIC_USEC"]) > 0
    assert stopping == {"STOPPING": "1", "STATUS": "Stopping"}


def test_an_abstract_socket_is_reached() -> None:
    """An '@' address (systemd in a container, or a test) gets the message too."""
    listener = NotifyListener()
    try:
        assert listener.address.startswith("@")
        assert ServiceNotifier({"NOTIFY_SOCKET": listener.address}).ready("up")
        listener.wait_for(lambda notices: len(notices) == 1)
    finally:
        listener.close()


def test_without_systemd_nothing_is_sent() -> None:
    """With no NOTIFY_SOCKET every call is a quiet no-op."""
    notifier = ServiceNotifier({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    with capture_logs() as logs:
        assert not notifier.ready("up")
        assert not notifier.watch_once(lambda: True)
    assert logs == []


def test_a_send_failure_is_logged_once_and_never_raised(tmp_path: Path) -> None:
    """A socket that is gone makes sends fail quietly: one warning, then one on recovery."""
    path = tmp_path / "notify"
    notifier = ServiceNotifier({"NOTIFY_SOCKET": str(path)})
    with capture_logs() as logs:
        assert not notifier.ready("up")
        assert not notifier.send("WATCHDOG=1")
        listener = NotifyListener(path)
        try:
            assert notifier.send("WATCHDOG=1")
            listener.wait_for(lambda notices: len(notices) == 1)
        finally:
            listener.close()
    assert [entry["event"] for entry in logs] == ["sd_notify_failed", "sd_notify_working_again"]


def test_no_ping_while_the_dispatcher_is_overdue(listener: NotifyListener) -> None:
    """The watchdog pings while the dispatcher keeps its schedule, stops once it is overdue
    past the /healthz limit, and resumes when it catches up."""
    view = dataclasses.replace(fake_view(1), dispatcher_due=1000.0)
    now = [990.0]
    notifier = ServiceNotifier({"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "2000000"})

    def alive() -> bool:
        return health_report(view, now[0])[0]

    with capture_logs() as logs:
        assert notifier.watch_once(alive)
        now[0] = 1000.0 + DISPATCHER_STALE_AFTER - 0.5  # late, within the limit
        assert notifier.watch_once(alive)
        now[0] = 1000.0 + DISPATCHER_STALE_AFTER + 0.5  # stuck
        assert not notifier.watch_once(alive)
        assert not notifier.watch_once(alive)
        view = dataclasses.replace(view, dispatcher_due=now[0] + 1.0)  # caught up
        assert notifier.watch_once(alive)
    listener.wait_for(lambda notices: len(notices) == 3)
    assert all(n.fields == {"WATCHDOG": "1"} for n in listener.notices())
    assert [entry["event"] for entry in logs] == ["watchdog_withheld", "watchdog_resumed"]


async def test_keep_watchdog_pings_at_half_the_timeout(listener: NotifyListener) -> None:
    """The loop pings every WATCHDOG_USEC/2 while alive, and not at all once it is not."""
    notifier = ServiceNotifier(
        {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": ""}
    )
    healthy = [True]
    pinging = asyncio.create_task(notifier.keep_watchdog(lambda: healthy[0]))
    try:
        await asyncio.sleep(1.0)
        pings = len(listener.notices())
        healthy[0] = False
        await asyncio.sleep(0.5)
        assert len(listener.notices()) == pings
    finally:
        pinging.cancel()
    assert 8 <= pings <= 12  # one at start, then every 0.1 s for 1 s
    gaps = [b.at - a.at for a, b in itertools.pairwise(listener.notices())]
    assert max(gaps) < 0.2  # well before the 0.2 s timeout would run out


def test_watchdog_is_off_for_another_pid(listener: NotifyListener) -> None:
    """WATCHDOG_PID naming another process: this one sends no pings."""
    other = str(os.getpid() + 1)
    notifier = ServiceNotifier(
        {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": other}
    )
    assert notifier.watchdog_seconds is None
    asyncio.run(asyncio.wait_for(notifier.keep_watchdog(lambda: True), 1.0))
    assert listener.notices() == []
