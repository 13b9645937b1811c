"""systemd's notify protocol: readiness, reloads, stopping and watchdog pings.

The protocol is one datagram of `KEY=value` lines sent to the AF_UNIX socket named in
$NOTIFY_SOCKET (a leading '@' is Linux's abstract namespace). Outside systemd the variable
is unset and every call does nothing, so the daemon runs the same in a terminal.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger("bma_monitor.sdnotify")

USEC = 1_000_000


def socket_address(value: str) -> str | None:
    """The address to send to, from $NOTIFY_SOCKET; None when unset or unusable."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    # systemd also knows vsock: addresses (252+, for VMs); this daemon runs on the host.
    return None


def watchdog_interval(environ: Mapping[str, str], pid: int) -> float | None:
    """Seconds between pings: half of $WATCHDOG_USEC, as sd_watchdog_enabled(3) advises;
    None when no watchdog is asked of this process."""
    owner = environ.get("WATCHDOG_PID", "")
    if owner and owner != str(pid):
        return None  # the watchdog is meant for another process (a wrapper's child)
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec / USEC / 2 if usec > 0 else None


class ServiceNotifier:
    """Tells systemd how the daemon is doing; a no-op when not started by systemd."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self._address = socket_address(environ.get("NOTIFY_SOCKET", ""))
        self.watchdog_seconds = watchdog_interval(environ, os.getpid())
        self._failed = False  # a send error is logged once, not at every watchdog ping
        self._withheld = False  # likewise for a watchdog ping held back

    @property
    def enabled(self) -> bool:
        """Whether a notify socket was given."""
        return self._address is not None

    def send(self, *fields: str) -> bool:
        """Send one message of `KEY=value` fields; False when it could not be sent."""
        if self._address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # Never wait on systemd: a full socket buffer loses one message, not the loop.
                sock.setblocking(False)
                sock.sendto("\n".join(fields).encode(), self._address)
        except OSError as exc:
            # Losing a status message must not stop the monitoring; a lost watchdog ping
            # shows itself anyway, as a restart by systemd.
            if not self._failed:
                log.warning("sd_notify_failed", error=exc.strerror or str(exc))
                self._failed = True
            return False
        if self._failed:
            log.info("sd_notify_working_again")
            self._failed = False
        return True

    def ready(self, status: str) -> bool:
        """Start-up (or a reload) is complete."""
        return self.send("READY=1", f"STATUS={status}")

    def reloading(self) -> bool:
        """A reload has begun; ready() ends it."""
        # MONOTONIC_USEC goes with RELOADING=1 from systemd 253 on; 252 ignores it.
        now = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={now}", "STATUS=Reloading configuration")

    def stopping(self) -> bool:
        """Shutdown has begun."""
        return self.send("STOPPING=1", "STATUS=Stopping")

    async def keep_watchdog(self, alive: Callable[[], bool]) -> None:
        """Ping the watchdog while `alive()` holds, until cancelled; nothing without one.

        Run on the event loop on purpose: a stalled loop sends nothing, and `alive` is the
        scheduler's own liveness, so a stuck dispatcher sends nothing either, and systemd
        restarts the daemon after WatchdogSec.
        """
        if self.watchdog_seconds is None or not self.enabled:
            return
        while True:
            self.watch_once(alive)
            await asyncio.sleep(self.watchdog_seconds)

    def watch_once(self, alive: Callable[[], bool]) -> bool:
        """One watchdog turn: a ping if `alive()` holds; whether one was sent."""
        if not alive():
            if not self._withheld:
                log.error("watchdog_withheld", reason="the scheduler is not keeping its schedule")
                self._withheld = True
            return False
        if self._withheld:
            log.info("watchdog_resumed")
            self._withheld = False
        return self.send("WATCHDOG=1")
