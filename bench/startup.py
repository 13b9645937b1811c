"""How long the daemon takes to become ready, and to stop, at fleet size: the figures
systemd's TimeoutStartSec=, WatchdogSec= and TimeoutStopSec= must leave room for.

Writes a state file as a daemon leaves it (bench/audit_state.py) and a credential file per
mailbox and password, starts `bma-monitor run` with a NOTIFY_SOCKET of its own, and times
READY=1, the first watchdog ping, and the exit after SIGTERM. The servers it names refuse
connections, so the probes end at once: it is the start-up that is timed.

    python -m bench.startup [--mailboxes 10000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.audit_state import write_fleet

WATCHDOG_SECONDS = 60  # the unit's WatchdogSec=
WAIT_SECONDS = 300.0


def add_credentials(config: Path, count: int) -> None:
    """A mailbox password and a CERBERE password file for each mailbox."""
    folder = config.parent / "credentials"
    for n in range(1, count + 1):
        for kind in ("imap", "cerbere"):
            path = folder / f"ec{n:06d}@adm.cfwb.be.{kind}"
            path.write_text(f"bench-{kind}-{n}\n")
            path.chmod(0o600)
    document = yaml.safe_load(config.read_text())
    document["http"] = {"listen": "127.0.0.1:0"}
    document["logging"] = {"format": "json", "level": "warning"}
    config.write_text(yaml.safe_dump(document))


def wait_for(sock: socket.socket, field: str, deadline: float) -> float | None:
    """Monotonic time at which a datagram carrying `field` arrived; None if none in time."""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(4096).decode()
        except TimeoutError:
            return None
        if field in data.splitlines():
            return time.monotonic()
    return None


def main() -> None:
    """Write the fleet, start the daemon, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mailboxes", type=int, default=10_000)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bma-startup-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    config = write_fleet(workdir, args.mailboxes)
    add_credentials(config, args.mailboxes)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(workdir / "notify"))
    env = dict(os.environ, NOTIFY_SOCKET=str(workdir / "notify"))
    env["WATCHDOG_USEC"] = str(WATCHDOG_SECONDS * 1_000_000)
    started = time.monotonic()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(config)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(workdir / "daemon.log").open("wb"),
    )
    try:
        ready = wait_for(sock, "READY=1", started + WAIT_SECONDS)
        ping = wait_for(sock, "WATCHDOG=1", time.monotonic() + WATCHDOG_SECONDS)
    finally:
        stopping = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        status = daemon.wait(timeout=WAIT_SECONDS)
        stopped = time.monotonic()
    print(f"{args.mailboxes} mailboxes, 2 passwords each, a state file with their histories")
    print(f"READY=1 after {ready - started:.1f} s" if ready else "no READY=1")
    print(f"first WATCHDOG=1 after {ping - started:.1f} s" if ping else "no watchdog ping")
    print(f"exit {status} {stopped - stopping:.1f} s after SIGTERM")


if __name__ == "__main__":
    main()
