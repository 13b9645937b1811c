"""The unit file in systemd/: accepted by systemd-analyze verify, as hardened as the README
says, and in step with what the daemon expects of it."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from monitor.config.shards import SHARD_ENV
from monitor.credentials import SYSTEMD_CREDENTIAL_ID
from monitor.health import DISPATCHER_STALE_AFTER

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "bma-monitor.service"
ENV_EXAMPLE = ROOT / "systemd" / "bma-monitor.env"
INSTALLED = "/opt/bma-monitor/bin/bma-monitor"
EXPOSURE = re.compile(r"Overall exposure level for bma-monitor\.service: (\d+\.\d)")


def settings(text: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file, by key, in order (a key may repeat)."""
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


def analyze() -> str:
    """The systemd-analyze command (scripts/setup installs Debian's systemd package)."""
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail("systemd-analyze is missing: run scripts/setup")
    return found


def unit_copy(directory: Path) -> Path:
    """The unit with its two commands pointed at this checkout's bma-monitor.

    verify checks that each Exec binary exists on this machine, and nothing installs
    /opt/bma-monitor here; every other line is the file's own.
    """
    here = Path(sys.executable).parent / "bma-monitor"
    assert here.is_file(), f"{here} is missing: install the package (scripts/setup)"
    text = UNIT.read_text()
    assert text.count(INSTALLED) == 2  # ExecStart and the check of ExecReload
    copy = directory / UNIT.name
    copy.write_text(text.replace(INSTALLED, str(here)))
    return copy


def test_verify_accepts_the_unit(tmp_path: Path) -> None:
    """systemd-analyze verify finds nothing to say about the unit."""
    done = subprocess.run(
        [analyze(), "verify", str(unit_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == ""


def test_verify_catches_a_mistake(tmp_path: Path) -> None:
    """The same check fails on a misspelt setting, so its silence above means something."""
    copy = unit_copy(tmp_path)
    copy.write_text(copy.read_text().replace("ProtectClock=yes", "ProtectClok=yes"))
    done = subprocess.run(
        [analyze(), "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert "ProtectClok" in done.stderr


def test_exposure_is_at_most_the_readme_figure() -> None:
    """systemd-analyze security (offline) rates the unit no worse than the README quotes,
    and the README quotes at most 2.0."""
    done = subprocess.run(
        [analyze(), "security", "--offline=true", "--no-pager", str(UNIT)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    measured = EXPOSURE.search(done.stdout)
    assert measured is not None, done.stdout + done.stderr
    quoted = EXPOSURE.search((ROOT / "README.md").read_text())
    assert quoted is not None, "the README quotes no exposure line"
    assert float(measured.group(1)) <= float(quoted.group(1)) <= 2.0


def test_unit_and_daemon_agree() -> None:
    """The credential folder's ID is the prefix the daemon looks for, the watchdog fires
    only past the lateness /healthz tolerates, and a stop has room for a worker thread."""
    unit = settings(UNIT.read_text())
    assert unit["Type"] == ["notify"]
    assert unit["LoadCredential"] == [f"{SYSTEMD_CREDENTIAL_ID}:/etc/bma-monitor/credentials"]
    assert unit["StateDirectory"] == ["bma-monitor"]  # the default state.path's folder
    assert unit["ExecReload"][-1] == "/bin/kill -HUP $MAINPID"
    assert unit["RestartPreventExitStatus"] == ["2"]  # the CLI's EXIT_USAGE
    watchdog = float(unit["WatchdogSec"][0].removesuffix("s"))
    stop = float(unit["TimeoutStopSec"][0].removesuffix("s"))
    assert watchdog > DISPATCHER_STALE_AFTER
    assert stop >= 20.0  # the default relay/IMAP connect_timeout (10 s) with room to spare
    assert unit["CapabilityBoundingSet"] == [""]
    assert unit["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]


def test_environment_example_sets_what_the_unit_reads() -> None:
    """Every variable of the example environment file is one the unit uses, or the
    daemon's own shard variable."""
    unit = UNIT.read_text()
    names = set(re.findall(r"^#?\s*([A-Z_]+)=", ENV_EXAMPLE.read_text(), re.MULTILINE))
    assert names == {"BMA_CONFIG", "BMA_OPTS", SHARD_ENV}
    used = names - {SHARD_ENV}
    assert all(f"${{{name}}}" in unit or f"${name}" in unit for name in used)
