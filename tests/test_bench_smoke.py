"""The benchmark keeps working: a small run end to end (figures are not judged here)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_runs_on_a_small_fleet(tmp_path: Path) -> None:
    """`python -m bench` on 200 mailboxes completes with no failed probe and every figure,
    for IMAP, POP3 and SMTP AUTH, each beside its raw baseline."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--mailboxes",
            "200",
            "--concurrency",
            "20",
            "--pace-mailboxes",
            "60",
            "--pace-rate",
            "30",
            "--metrics-mailboxes",
            "200",
            "--workdir",
            str(tmp_path / "bench"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for run in ("imap tls", "imap plain", "pop3 tls", "smtp tls"):
        assert f"{run} baseline" in out
        assert f"{run} daemon" in out
        assert f"{run}: daemon/baseline throughput" in out
    for figure in (
        "throughput",
        "CPU",
        "peak RSS",
        "/metrics with 200 mailboxes after",
        "/metrics with 200 mailboxes x 3 protocols",
        "event-loop stall",
        "rate_limit 30/s",
        "interval spread",
    ):
        assert figure in out
    assert "[ok] failed probes: 0" in out
