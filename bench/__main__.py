"""Benchmark: the daemon's probe engine against a raw-client baseline, on one machine.

    python -m bench [--mailboxes 10000] [--concurrency 100]

Starts a Dovecot tuned for throughput with N mailboxes, then for implicit TLS and plain
IMAP runs, each in its own process, the baseline client (bench/baseline.py) and one sweep
of the daemon's engine (bench/engine.py) at the same concurrency. Then checks pacing: a
cycle held to a rate limit, and a cycle spread by the interval alone. Prints every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from tests.servers.dovecot import DovecotServer, MailUser

DOMAIN = "adm.cfwb.be"
ROOT = Path(__file__).resolve().parent.parent
TARGET_RATIO = 0.85
TARGET_TLS_CPU_MS = 2.0
TARGET_RSS_MB = 150.0
TARGET_RENDER_S = 0.3


def _users(count: int) -> list[MailUser]:
    return [MailUser(f"ec{i:06d}@{DOMAIN}", secrets.token_urlsafe(12)) for i in range(1, count + 1)]


def _write_config(
    path: Path, server: DovecotServer, tls: bool, users: list[MailUser], probing: dict[str, Any]
) -> Path:
    document = {
        "servers": {
            "dovecot": {
                "host": "127.0.0.1",
                "port": server.imaps_port if tls else server.imap_port,
                "tls": "implicit" if tls else "none",
                "ca_file": str(server.ca_file),
                "tls_server_name": "localhost",
                "max_connections": probing.get("concurrency", 100),
            }
        },
        "probing": probing,
        "credentials": {"directory": str(path.parent / "credentials")},
        "state": {"path": str(path.with_suffix(".db"))},
        "http": {"listen": "127.0.0.1:0"},
        "mailboxes": [{"address": u.address} for u in users],
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _run(args: list[str], log: Path) -> dict[str, Any]:
    with log.open("w") as stderr:
        done = subprocess.run(
            [sys.executable, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed; see {log}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _probe_seconds(log: Path) -> list[float]:
    """Completion times of the probes, from the daemon's own canonical events."""
    times = []
    for line in log.read_text().splitlines():
        event = json.loads(line)
        if event.get("event") == "probe":
            times.append(datetime.fromisoformat(event["timestamp"]).timestamp())
    return sorted(times)


def _per_second(times: list[float]) -> list[int]:
    origin = times[0]
    counts = [0] * (int(times[-1] - origin) + 1)
    for t in times:
        counts[int(t - origin)] += 1
    return counts[:-1] or counts  # the last second is partial


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--mailboxes", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--pace-mailboxes", type=int, default=500)
    parser.add_argument("--pace-rate", type=float, default=50.0)
    parser.add_argument("--workdir", type=Path, default=Path(f"/tmp/bma-bench-{os.getuid()}"))
    args = parser.parse_args()

    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    credentials = args.workdir / "credentials"
    credentials.mkdir(parents=True, mode=0o700)
    users = _users(args.mailboxes)
    for user in users:
        (credentials / f"{user.address}.imap").write_text(user.password)
    table = args.workdir / "users.tsv"
    table.write_text("".join(f"{u.address}\t{u.password}\n" for u in users))

    figures: dict[str, dict[str, Any]] = {}
    with DovecotServer(args.workdir / "dovecot", users, quota=True, throughput=True) as server:
        for mode in ("tls", "plain"):
            tls = mode == "tls"
            baseline_args = [
                "-m",
                "bench.baseline",
                "--port",
                str(server.imaps_port if tls else server.imap_port),
                "--users",
                str(table),
                "--concurrency",
                str(args.concurrency),
            ]
            if tls:
                baseline_args += ["--tls", "--ca", str(server.ca_file)]
            figures[f"{mode} baseline"] = _run(baseline_args, args.workdir / f"{mode}-baseline.log")
            config = _write_config(
                args.workdir / f"{mode}.yaml",
                server,
                tls,
                users,
                {
                    "interval": "1h",
                    "timeout": "30s",
                    "concurrency": args.concurrency,
                    "rate_limit": 0,
                },
            )
            figures[f"{mode} daemon"] = _run(
                ["-m", "bench.engine", "sweep", str(config)], args.workdir / f"{mode}-daemon.log"
            )

        pace_users = users[: args.pace_mailboxes]
        target_cycle = args.pace_mailboxes / args.pace_rate
        limited = _write_config(
            args.workdir / "rate.yaml",
            server,
            True,
            pace_users,
            # The interval alone would ask for twice the rate: the limiter must hold it back.
            {
                "interval": target_cycle / 2,
                "timeout": target_cycle / 4,
                "rate_limit": args.pace_rate,
                "concurrency": args.concurrency,
            },
        )
        _run(["-m", "bench.engine", "pace", str(limited)], args.workdir / "rate.log")
        spread = _write_config(
            args.workdir / "spread.yaml",
            server,
            True,
            pace_users,
            {
                "interval": target_cycle,
                "timeout": min(30.0, target_cycle / 2),
                "rate_limit": 0,
                "concurrency": args.concurrency,
            },
        )
        _run(["-m", "bench.engine", "pace", str(spread)], args.workdir / "spread.log")
        rate_counts = _per_second(_probe_seconds(args.workdir / "rate.log"))
        spread_times = _probe_seconds(args.workdir / "spread.log")
        spread_counts = _per_second(spread_times)

    _report(args, figures, rate_counts, spread_counts, spread_times[-1] - spread_times[0])
    # Missed speed targets are figures to read; a failed probe means the run is not valid.
    return 1 if any(f["failed"] for f in figures.values()) else 0


def _report(
    args: argparse.Namespace,
    figures: dict[str, dict[str, Any]],
    rate_counts: list[int],
    spread_counts: list[int],
    spread_seconds: float,
) -> None:
    print(f"bma-monitor benchmark: {args.mailboxes} mailboxes, concurrency {args.concurrency}")
    print(
        f"machine: {_cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        "Dovecot on the same machine"
    )
    print()
    print(
        f"{'run':<16}{'probes/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/probe':>14}"
        f"{'peak RSS MB':>13}{'failed':>8}"
    )
    for name, f in figures.items():
        rate = f["probes"] / f["seconds"]
        cpu_ms = 1000 * f["cpu_seconds"] / f["probes"]
        print(
            f"{name:<16}{rate:>10.0f}{1000 * f['p50']:>9.1f}{1000 * f['p99']:>9.1f}"
            f"{cpu_ms:>14.2f}{f['max_rss_mb']:>13.0f}{f['failed']:>8}"
        )
    print()
    checks = []
    for mode in ("tls", "plain"):
        base, daemon = figures[f"{mode} baseline"], figures[f"{mode} daemon"]
        ratio = (daemon["probes"] / daemon["seconds"]) / (base["probes"] / base["seconds"])
        checks.append(
            (
                f"{mode}: daemon/baseline throughput {ratio:.2f} (target >= {TARGET_RATIO})",
                ratio >= TARGET_RATIO,
            )
        )
    tls = figures["tls daemon"]
    tls_cpu = 1000 * tls["cpu_seconds"] / tls["probes"]
    checks.append(
        (
            f"tls: daemon CPU {tls_cpu:.2f} ms per probe (target <= {TARGET_TLS_CPU_MS})",
            tls_cpu <= TARGET_TLS_CPU_MS,
        )
    )
    rss = max(figures["tls daemon"]["max_rss_mb"], figures["plain daemon"]["max_rss_mb"])
    checks.append(
        (f"daemon peak RSS {rss:.0f} MB (target <= {TARGET_RSS_MB:.0f})", rss <= TARGET_RSS_MB)
    )
    render = max(tls["metrics_render_seconds"], tls["metrics_http_seconds"])
    checks.append(
        (
            f"/metrics with {args.mailboxes} mailboxes: "
            f"{tls['metrics_render_seconds']:.3f} s rendered, "
            f"{tls['metrics_http_seconds']:.3f} s over HTTP, {tls['metrics_bytes'] / 1e6:.1f} MB "
            f"(target <= {TARGET_RENDER_S})",
            render <= TARGET_RENDER_S,
        )
    )
    stall = 1000 * max(tls["loop_stall_during_scrapes"], tls["loop_stall_final_scrape"])
    print(
        f"event-loop stall while /metrics is scraped: worst {stall:.0f} ms "
        f"(worst over the whole sweep {1000 * tls['loop_stall_outside_scrapes_p_max']:.0f} ms); "
        f"scrapes during the TLS sweep took {tls['scrapes_during_sweep']} s"
    )
    failed = sum(f["failed"] for f in figures.values())
    checks.append((f"failed probes: {failed}", failed == 0))
    checks.append(
        (
            f"rate_limit {args.pace_rate:.0f}/s over {args.pace_mailboxes} mailboxes: max "
            f"{max(rate_counts)} probes in any second, min {min(rate_counts)}",
            max(rate_counts) <= args.pace_rate * 1.05,
        )
    )
    target = args.pace_mailboxes / (args.pace_mailboxes / args.pace_rate)
    checks.append(
        (
            f"interval spread over {args.pace_mailboxes} mailboxes (target {target:.0f}/s): max "
            f"{max(spread_counts)} in any second, min {min(spread_counts)}, "
            f"cycle {spread_seconds:.1f} s",
            max(spread_counts) <= target * 1.3,
        )
    )
    for text, ok in checks:
        print(f"[{'ok' if ok else 'MISS'}] {text}")


if __name__ == "__main__":
    sys.exit(main())
