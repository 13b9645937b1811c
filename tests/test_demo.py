"""The demo: fleet size as asked, every state shown per protocol, and a busy port refused
before any server starts."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from demo.__main__ import (
    MIN_MAILBOXES,
    NO_CERBERE,
    POP3_IN_USE,
    SPECIAL,
    WRONG_CERBERE,
    DemoFleet,
    build,
    fleet_locals,
    probing_settings,
)
from monitor.config import load_config

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("total", [MIN_MAILBOXES, 20, 44, 200, 1000])
def test_fleet_has_the_size_asked(total: int) -> None:
    """`--mailboxes N` is N mailboxes in all, schools and organising bodies together."""
    locals_ = fleet_locals(total)
    assert len(locals_) == len(set(locals_)) == total
    assert {"ec000001", *SPECIAL} <= set(locals_)  # healthy + special cases
    assert sum(local.startswith("po") for local in locals_) >= 2


def test_fleet_below_the_minimum_is_refused() -> None:
    """A fleet too small for the special cases is an error, not a smaller demo."""
    with pytest.raises(ValueError, match=f"at least {MIN_MAILBOXES}"):
        fleet_locals(MIN_MAILBOXES - 1)


def dovecot_processes_under(folder: Path) -> list[int]:
    """Dovecot processes whose configuration lies in `folder`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                command = (entry / "cmdline").read_bytes()
                if b"dovecot" in command and str(folder).encode() in command:
                    found.append(int(entry.name))
    return found


def test_built_fleet_configures_that_many_mailboxes(tmp_path: Path) -> None:
    """The built configuration holds exactly the fleet asked for; its servers stop with it."""
    workdir = tmp_path / "demo"
    with contextlib.ExitStack() as running:
        path = build(workdir, 16, "127.0.0.1:0", probing_settings("30s"), running).config
        assert len(dovecot_processes_under(workdir)) == 2
        config = load_config(path)
    assert dovecot_processes_under(workdir) == []
    kinds = [str(m.kind) for m in config.mailboxes]
    assert (len(kinds), kinds.count("po")) == (16, 2)
    assert all(m.protocols == ("imap", "pop3", "smtp") for m in config.mailboxes)


@dataclass(frozen=True)
class ProbedFleet:
    """A built demo fleet, what `check` printed and `probe --json`'s rows by (mailbox, protocol)."""

    fleet: DemoFleet
    check: str
    probe: str
    rows: dict[tuple[str, str], dict[str, Any]]


def run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m MODULE ARGS` from the repository, as scripts/demo and operators run it."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def probed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProbedFleet]:
    """The smallest demo fleet, checked and probed once over every protocol (~15 s: the
    in-use POP3 login waits out Dovecot's 10 s lock)."""
    workdir = tmp_path_factory.mktemp("probed") / "demo"
    with contextlib.ExitStack() as running:
        fleet = build(workdir, MIN_MAILBOXES, "127.0.0.1:0", probing_settings("30s"), running)
        check = run_module("monitor", "check", "--config", str(fleet.config))
        assert check.returncode == 0, check.stderr
        probe = run_module("monitor", "probe", "--config", str(fleet.config), "--json")
        assert probe.returncode == 1, probe.stderr  # some logins fail, by design
        rows = [json.loads(line) for line in probe.stdout.splitlines()]
        yield ProbedFleet(
            fleet, check.stdout, probe.stdout, {(r["mailbox"], r["protocol"]): r for r in rows}
        )


# What the server side of each special case answers, per protocol (rows not listed: ok).
EXPECTED = {
    ("ec000007", "imap"): "credential_missing",
    ("ec000007", "pop3"): "credential_missing",
    ("ec000008", "smtp"): "auth_failed",
    ("ec000009", "smtp"): "password_expired",
    ("ec000010", "smtp"): "account_disabled",
    ("ec000011", "smtp"): "no_credential",
    ("ec000012", "pop3"): "in_use",
}
# IMAP and POP3 share the mailbox password: whichever goes first is refused, the other is
# then not tried. Dovecot's POP3 says `[AUTH]` for an expired password too.
SHARED_REFUSALS = {
    "ec000004": {"imap": "auth_failed", "pop3": "auth_failed"},
    "ec000005": {"imap": "password_expired", "pop3": "auth_failed"},
    "ec000006": {"imap": "account_disabled", "pop3": "account_disabled"},
}


def test_every_protocol_shows_its_states(probed: ProbedFleet) -> None:
    """Each mailbox has an IMAP, a POP3 and an SMTP row, each in the state the demo set up."""
    locals_ = fleet_locals(MIN_MAILBOXES)
    assert set(probed.rows) == {(m, p) for m in locals_ for p in ("imap", "pop3", "smtp")}
    for (mailbox, protocol), row in probed.rows.items():
        if mailbox in SHARED_REFUSALS and protocol != "smtp":
            continue
        assert row["reason"] == EXPECTED.get((mailbox, protocol), "ok"), row
        assert not row["locked_out"]


def test_a_refused_mailbox_password_is_tried_once_for_imap_and_pop3(probed: ProbedFleet) -> None:
    """A wrong, expired or disabled mailbox password: one login at Dovecot, the other protocol
    locked out with the same reason, and SMTP (another password) still ok."""
    for mailbox, reasons in SHARED_REFUSALS.items():
        rows = [probed.rows[(mailbox, p)] for p in ("imap", "pop3")]
        tried = [r for r in rows if not r["locked_out"]]
        assert len(tried) == 1, rows
        assert {r["reason"] for r in rows} == {reasons[tried[0]["protocol"]]}
        assert probed.fleet.exchange.auth_attempts(f"{mailbox}@adm.cfwb.be") == 1
        assert probed.rows[(mailbox, "smtp")]["reason"] == "ok"


def test_smtp_server_saw_the_cerbere_logins(probed: ProbedFleet) -> None:
    """The wrong CERBERE password reached the SMTP server once; a mailbox without a CERBERE
    file never did, and `check` names it as not probed over SMTP."""
    smtp = probed.fleet.smtp
    assert smtp.attempts(f"{WRONG_CERBERE}@adm.cfwb.be") == 1
    assert smtp.attempts(f"{NO_CERBERE}@adm.cfwb.be") == 0
    assert probed.rows[(NO_CERBERE, "smtp")]["duration_seconds"] is None
    assert "have no CERBERE password (<address>.cerbere), so no smtp probe:" in probed.check
    assert f"  {NO_CERBERE}@adm.cfwb.be: no file " in probed.check


def test_pop3_in_use_is_the_held_session(probed: ProbedFleet) -> None:
    """The POP3 probe of the held mailbox waited out Dovecot's lock and says `[IN-USE]`,
    while IMAP and SMTP of that mailbox are ok."""
    row = probed.rows[(POP3_IN_USE, "pop3")]
    assert row["detail"].startswith("[IN-USE]")
    assert row["duration_seconds"] >= 9  # Dovecot's lock wait, not a quick refusal
    assert probed.rows[(POP3_IN_USE, "imap")]["reason"] == "ok"


def test_no_secret_in_the_output(probed: ProbedFleet) -> None:
    """No password or CERBERE password of the fleet appears in `check` or `probe` output."""
    credentials = probed.fleet.config.parent / "credentials"
    secrets = [path.read_text().strip() for path in credentials.iterdir()]
    assert len(secrets) == 2 * MIN_MAILBOXES - 2  # one .imap and one .cerbere missing
    for secret in secrets:
        assert secret not in probed.probe
        assert secret not in probed.check


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m demo ARGS`."""
    return run_module("demo", *args)


def test_busy_port_fails_in_one_line_before_starting_anything(tmp_path: Path) -> None:
    """A port already taken ends the demo with exit 2 and one line, like `run`, no Dovecot."""
    workdir = tmp_path / "demo"
    with socket.create_server(("127.0.0.1", 0)) as holder:
        port = holder.getsockname()[1]
        demo = run_demo("--listen", f"127.0.0.1:{port}", "--workdir", str(workdir))
    assert demo.returncode == 2
    assert demo.stderr.splitlines() == [
        f"http error: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
    assert not workdir.exists()  # refused before building anything
    assert dovecot_processes_under(workdir) == []


def test_a_folder_of_other_files_is_not_wiped(tmp_path: Path) -> None:
    """`--workdir` pointing at someone's files is refused, and the files stay."""
    keep = tmp_path / "thesis.tex"
    keep.write_text("years of work\n")
    demo = run_demo("--listen", "127.0.0.1:0", "--workdir", str(tmp_path))
    assert demo.returncode == 2
    assert demo.stderr.splitlines() == [
        f"demo error: {tmp_path} holds files that are not an earlier demo's; "
        "give an empty or new folder with --workdir"
    ]
    assert keep.read_text() == "years of work\n"


def test_too_short_an_interval_is_refused_before_building() -> None:
    """The interval must leave room for the demo's probe timeout; said before any start."""
    with pytest.raises(ValueError, match=r"longer than the demo's probe timeout \(15s\)"):
        probing_settings("15s")
    with pytest.raises(ValueError, match="must be a duration like 30s"):
        probing_settings("soon")
