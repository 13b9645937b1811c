"""The demo: fleet size as asked, and a busy port refused before any server starts."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from demo.__main__ import MIN_MAILBOXES, build, fleet_locals, probing_settings
from monitor.config import load_config

REPOSITORY = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("total", [MIN_MAILBOXES, 10, 44, 200, 1000])
def test_fleet_has_the_size_asked(total: int) -> None:
    """`--mailboxes N` is N mailboxes in all, schools and organising bodies together."""
    locals_ = fleet_locals(total)
    assert len(locals_) == len(set(locals_)) == total
    assert {f"ec00000{i}" for i in range(1, 8)} <= set(locals_)  # healthy + special cases
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
        path = build(workdir, 12, "127.0.0.1:0", probing_settings("30s"), running)
        assert len(dovecot_processes_under(workdir)) == 2
        config = load_config(path)
    assert dovecot_processes_under(workdir) == []
    kinds = [str(m.kind) for m in config.mailboxes]
    assert (len(kinds), kinds.count("po")) == (12, 2)


def run_demo(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m demo ARGS` from the repository, as scripts/demo runs it."""
    return subprocess.run(
        [sys.executable, "-m", "demo", *args],
        cwd=REPOSITORY,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


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
    with pytest.raises(ValueError, match=r"longer than the demo's probe timeout \(5s\)"):
        probing_settings("2s")
    with pytest.raises(ValueError, match="must be a duration like 30s"):
        probing_settings("soon")
