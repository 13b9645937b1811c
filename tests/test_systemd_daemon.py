"""The daemon started the way bma-monitor.service starts it: a notify socket and a watchdog,
credentials as LoadCredential= passes a folder, and memory that can never be writable and
executable at once (MemoryDenyWriteExecute=)."""

from __future__ import annotations

import ctypes
import itertools
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.credentials import SYSTEMD_CREDENTIAL_ID
from tests import fleet
from tests.daemon_process import DaemonProcess, eventually
from tests.notify_listener import Notice, NotifyListener
from tests.servers.dovecot import DovecotServer, free_port

SERVICE_MAILBOX = fleet.SPARES[50]
GUARDED_MAILBOX = fleet.SPARES[51]
WATCHDOG_USEC = 1_000_000  # a ping every 0.5 s
PR_SET_MDWE = 65  # prctl(2), Linux 6.3+
PR_MDWE_REFUSE_EXEC_GAIN = 1


def daemon_config(tmp_path: Path, dovecot: DovecotServer, local: str) -> tuple[Path, int]:
    """A fast-cycling config for one mailbox with its right password, and its HTTP port."""
    port = free_port()
    path = fleet.write_config(
        tmp_path,
        dovecot,
        "starttls",
        [local],
        probing={"interval": "1s", "timeout": "900ms"},
        extra={"http": {"listen": f"127.0.0.1:{port}"}, "logging": {"format": "json"}},
    )
    return path, port


def as_systemd_passes_them(config: Path) -> Path:
    """Move the credential files where LoadCredential=bma:FOLDER puts them, renamed
    bma_<file>, and drop credentials.directory so that $CREDENTIALS_DIRECTORY is used."""
    folder = config.parent / "credentials"
    passed = config.parent / "run-credentials"
    passed.mkdir(mode=0o700)
    for file in folder.iterdir():
        file.rename(passed / f"{SYSTEMD_CREDENTIAL_ID}_{file.name}")
    folder.rmdir()
    document: dict[str, Any] = yaml.safe_load(config.read_text())
    del document["credentials"]
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    return passed


def between(notices: list[Notice], first: float, last: float) -> list[Notice]:
    """The notices that arrived in [first, last]."""
    return [n for n in notices if first <= n.at <= last]


def test_the_daemon_talks_to_systemd(tmp_path: Path, dovecot: DovecotServer) -> None:
    """READY=1 once /healthz answers, watchdog pings at half the timeout, RELOADING=1 then
    READY=1 around SIGHUP, STOPPING=1 on SIGTERM and exit 0; logins use the credentials
    systemd passed."""
    config, port = daemon_config(tmp_path, dovecot, SERVICE_MAILBOX)
    credentials = as_systemd_passes_them(config)
    listener = NotifyListener()
    environment = {
        "NOTIFY_SOCKET": listener.address,
        "WATCHDOG_USEC": str(WATCHDOG_USEC),
        "CREDENTIALS_DIRECTORY": str(credentials),
    }
    daemon = DaemonProcess(config, port, "", env=environment)
    try:
        listener.wait_for(lambda notices: any(n.fields.get("READY") == "1" for n in notices))
        # Ready means serving: the endpoint answers at once, no retry needed.
        assert daemon.get("/healthz")[0] == 200
        ready = listener.notices()[0]
        assert ready.fields == {"READY": "1", "STATUS": "Monitoring 1 mailboxes"}
        eventually(lambda: daemon.by_mailbox("bma_mailbox_login_success") == {SERVICE_MAILBOX: 1})

        time.sleep(3.0)  # six watchdog intervals
        now = time.monotonic()
        pings = [n.at for n in between(listener.with_field("WATCHDOG"), now - 3.0, now)]
        assert 5 <= len(pings) <= 7
        gaps = [later - earlier for earlier, later in itertools.pairwise(pings)]
        assert max(gaps) < WATCHDOG_USEC / 1e6  # systemd would never time it out

        daemon.process.send_signal(signal.SIGHUP)
        listener.wait_for(lambda notices: len([n for n in notices if "READY" in n.fields]) == 2)
        reloading = listener.with_field("RELOADING")
        assert len(reloading) == 1 and int(reloading[0].fields["MONOTONIC_USEC"]) > 0
        ready_again = listener.with_field("READY")[1]
        assert reloading[0].at <= ready_again.at
        assert ready_again.fields["STATUS"] == "Monitoring 1 mailboxes"

        assert daemon.stop() == 0
        stopping = listener.with_field("STOPPING")
        assert len(stopping) == 1 and stopping[0].fields["STATUS"] == "Stopping"
        # Nothing after STOPPING=1 but possibly one last ping already under way.
        later = [n for n in listener.notices() if n.at > stopping[0].at]
        assert all(n.fields == {"WATCHDOG": "1"} for n in later) and len(later) <= 1
        events = {e["event"] for e in daemon.log_events()}
        assert "sd_notify_failed" not in events and "reloaded" in events
    finally:
        daemon.stop()
        listener.close()


def refuse_writable_executable_memory() -> None:
    """What MemoryDenyWriteExecute= does, applied by the kernel's own switch (kept across
    exec): no mapping may be writable and executable, nor become executable later."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_MDWE)")


def mdwe_works() -> bool:
    """Whether this kernel has PR_SET_MDWE and it really refuses a W+X mapping."""
    probe = "import mmap; mmap.mmap(-1, 4096, prot=mmap.PROT_WRITE | mmap.PROT_EXEC)"
    try:
        done = subprocess.run(
            [sys.executable, "-c", probe],
            preexec_fn=refuse_writable_executable_memory,
            capture_output=True,
            timeout=30,
        )
    except subprocess.SubprocessError:
        return False  # prctl failed in the child: an older kernel
    return done.returncode != 0 and b"PermissionError" in done.stderr


def test_the_daemon_runs_without_writable_executable_memory(
    tmp_path: Path, dovecot: DovecotServer
) -> None:
    """Under the kernel's memory-deny-write-execute the daemon logs in, serves its metrics
    and stops cleanly: MemoryDenyWriteExecute=yes in the unit costs it nothing."""
    if not mdwe_works():
        pytest.skip("this kernel has no PR_SET_MDWE (Linux 6.3+)")
    config, port = daemon_config(tmp_path, dovecot, GUARDED_MAILBOX)
    daemon = DaemonProcess(config, port, "", preexec=refuse_writable_executable_memory)
    try:
        eventually(lambda: daemon.by_mailbox("bma_mailbox_login_success") == {GUARDED_MAILBOX: 1})
        assert daemon.get("/healthz")[0] == 200
        assert "process_resident_memory_bytes" in daemon.samples()
        assert daemon.stop() == 0
    finally:
        daemon.stop()
