"""Benchmark: the daemon's probe engine against raw-client baselines, on one machine.

    python -m bench [--mailboxes 10000] [--concurrency 100] [--protocols imap,pop3,smtp]

Starts a Dovecot tuned for throughput with N mailboxes (IMAP and POP3) and an aiosmtpd
submission server (SMTP AUTH over implicit TLS), then for each run (IMAP over implicit
TLS and plain, POP3 over implicit TLS, SMTP AUTH over implicit TLS) runs, each in its own
process, the baseline client (bench/baseline.py) and one sweep of the daemon's engine over
that protocol (bench/engine.py) at the same concurrency. Then times /metrics for N
mailboxes x 3 protocols (bench/metrics_page.py), and checks pacing: a cycle held to a rate
limit, and a cycle spread by the interval alone. Prints every figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import resource
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from bench.report import report
from tests.servers.dovecot import DovecotServer, MailUser
from tests.servers.smtp import SmtpServer, SmtpUser

DOMAIN = "adm.cfwb.be"
ROOT = Path(__file__).resolve().parent.parent
PROTOCOLS = ("imap", "pop3", "smtp")


@dataclass(frozen=True)
class Run:
    """One measured pair: a baseline and a daemon sweep of one protocol on one port."""

    name: str  # e.g. "imap tls"
    protocol: str
    port: int
    tls: bool
    ca_file: Path


@dataclass(frozen=True)
class Account:
    """A mailbox's two secrets: for IMAP and POP3, and CERBERE's for SMTP AUTH."""

    address: str
    password: str
    cerbere: str


def _accounts(count: int) -> list[Account]:
    return [
        Account(f"ec{i:06d}@{DOMAIN}", secrets.token_urlsafe(12), secrets.token_urlsafe(12))
        for i in range(1, count + 1)
    ]


def _endpoints(
    dovecot: DovecotServer | None, smtp: SmtpServer | None, imap_tls: bool, concurrency: int
) -> dict[str, dict[str, Any]]:
    """The server's endpoints: each running service, IMAP on the port of the run."""
    found: dict[str, dict[str, Any]] = {}

    def endpoint(port: int, tls: bool, ca_file: Path) -> dict[str, Any]:
        return {
            "host": "127.0.0.1",
            "port": port,
            "tls": "implicit" if tls else "none",
            "ca_file": str(ca_file),
            "tls_server_name": "localhost",
            "max_connections": concurrency,  # a sweep starts one worker per connection
        }

    if dovecot is not None:
        imap_port = dovecot.imaps_port if imap_tls else dovecot.imap_port
        found["imap"] = endpoint(imap_port, imap_tls, dovecot.ca_file)
        found["pop3"] = endpoint(dovecot.pop3s_port, True, dovecot.ca_file)
    if smtp is not None:
        found["smtp"] = endpoint(smtp.port, True, smtp.ca_file)
    return found


def _write_config(
    path: Path,
    endpoints: dict[str, dict[str, Any]],
    accounts: list[Account],
    probing: dict[str, Any],
) -> Path:
    document = {
        "servers": {"bench": endpoints},
        "probing": probing,
        "credentials": {"directory": str(path.parent / "credentials")},
        "state": {"path": str(path.with_suffix(".db"))},
        "http": {"listen": "127.0.0.1:0"},
        "mailboxes": [{"address": a.address} for a in accounts],
    }
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _run(args: list[str], log: Path) -> dict[str, Any]:
    """Run one measured process; its figures, and the CPU this process spent meanwhile
    (the aiosmtpd server's: this process only waits otherwise)."""
    before = resource.getrusage(resource.RUSAGE_SELF)
    with log.open("w") as stderr:
        done = subprocess.run(
            [sys.executable, *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            check=False,
        )
    after = resource.getrusage(resource.RUSAGE_SELF)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed; see {log}")
    figures: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    figures["harness_cpu_seconds"] = (after.ru_utime - before.ru_utime) + (
        after.ru_stime - before.ru_stime
    )
    return figures


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


def _measure(args: argparse.Namespace, run: Run, config: Path, users: Path) -> dict[str, Any]:
    """Baseline, then the daemon's sweep, of one run; each in its own process."""
    baseline_args = ["-m", "bench.baseline", "--protocol", run.protocol, "--port", str(run.port)]
    baseline_args += ["--users", str(users), "--concurrency", str(args.concurrency)]
    if run.tls:
        baseline_args += ["--tls", "--ca", str(run.ca_file)]
    slug = run.name.replace(" ", "-")
    base = _run(baseline_args, args.workdir / f"{slug}-baseline.log")
    daemon = _run(
        ["-m", "bench.engine", "sweep", str(config), "--protocol", run.protocol],
        args.workdir / f"{slug}-daemon.log",
    )
    return {f"{run.name} baseline": base, f"{run.name} daemon": daemon}


def _pace(
    args: argparse.Namespace, dovecot: DovecotServer, accounts: list[Account]
) -> tuple[list[int], list[int], float]:
    """The normal IMAP cycle, held by a rate limit, then spread by the interval alone."""
    pace_accounts = accounts[: args.pace_mailboxes]
    target_cycle = args.pace_mailboxes / args.pace_rate
    endpoints = {"imap": _endpoints(dovecot, None, True, args.concurrency)["imap"]}
    limited = _write_config(
        args.workdir / "rate.yaml",
        endpoints,
        pace_accounts,
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
        endpoints,
        pace_accounts,
        {
            "interval": target_cycle,
            "timeout": min(30.0, target_cycle / 2),
            "rate_limit": 0,
            "concurrency": args.concurrency,
        },
    )
    _run(["-m", "bench.engine", "pace", str(spread)], args.workdir / "spread.log")
    spread_times = _probe_seconds(args.workdir / "spread.log")
    return (
        _per_second(_probe_seconds(args.workdir / "rate.log")),
        _per_second(spread_times),
        spread_times[-1] - spread_times[0],
    )


def _protocols(text: str) -> tuple[str, ...]:
    chosen = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in chosen if p not in PROTOCOLS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"choose among {','.join(PROTOCOLS)}")
    return chosen


def main() -> int:
    """Run the benchmark and print its figures."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--mailboxes", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--protocols", type=_protocols, default=PROTOCOLS)
    parser.add_argument("--metrics-mailboxes", type=int, default=10_000)
    parser.add_argument("--pace-mailboxes", type=int, default=500)
    parser.add_argument("--pace-rate", type=float, default=50.0)
    parser.add_argument("--workdir", type=Path, default=Path(f"/tmp/bma-bench-{os.getuid()}"))
    args = parser.parse_args()

    if args.workdir.exists():
        shutil.rmtree(args.workdir)
    credentials = args.workdir / "credentials"
    credentials.mkdir(parents=True, mode=0o700)
    accounts = _accounts(args.mailboxes)
    for account in accounts:
        (credentials / f"{account.address}.imap").write_text(account.password)
        (credentials / f"{account.address}.cerbere").write_text(account.cerbere)
    mailbox_users = args.workdir / "users.tsv"
    mailbox_users.write_text("".join(f"{a.address}\t{a.password}\n" for a in accounts))
    cerbere_users = args.workdir / "cerbere.tsv"
    cerbere_users.write_text("".join(f"{a.address}\t{a.cerbere}\n" for a in accounts))

    figures: dict[str, dict[str, Any]] = {}
    pacing = None
    wants_dovecot = "imap" in args.protocols or "pop3" in args.protocols
    with contextlib.ExitStack() as stack:
        dovecot = smtp = None
        if wants_dovecot:
            mail_users = [MailUser(a.address, a.password) for a in accounts]
            dovecot = stack.enter_context(
                DovecotServer(args.workdir / "dovecot", mail_users, quota=True, throughput=True)
            )
        if "smtp" in args.protocols:
            # aiosmtpd logs a deprecation warning on every successful AUTH: thousands of
            # lines, and their cost would count as the server's CPU.
            logging.getLogger("mail.log").setLevel(logging.ERROR)
            smtp_users = [SmtpUser(a.address, a.cerbere) for a in accounts]
            certs = args.workdir / "smtp-certs"  # its own CA: Dovecot's is in use
            certs.mkdir()
            smtp = stack.enter_context(SmtpServer(certs, smtp_users))
        probing = {"interval": "1h", "timeout": "30s", "concurrency": args.concurrency}
        probing["rate_limit"] = 0
        runs: list[tuple[Run, bool]] = []
        if dovecot is not None and "imap" in args.protocols:
            runs.append((Run("imap tls", "imap", dovecot.imaps_port, True, dovecot.ca_file), True))
            runs.append(
                (Run("imap plain", "imap", dovecot.imap_port, False, dovecot.ca_file), False)
            )
        if dovecot is not None and "pop3" in args.protocols:
            runs.append((Run("pop3 tls", "pop3", dovecot.pop3s_port, True, dovecot.ca_file), True))
        if smtp is not None:
            runs.append((Run("smtp tls", "smtp", smtp.port, True, smtp.ca_file), True))
        for run, imap_tls in runs:
            config = _write_config(
                args.workdir / f"{run.name.replace(' ', '-')}.yaml",
                _endpoints(dovecot, smtp, imap_tls, args.concurrency),
                accounts,
                probing,
            )
            users = cerbere_users if run.protocol == "smtp" else mailbox_users
            figures.update(_measure(args, run, config, users))
        if dovecot is not None and "imap" in args.protocols:
            pacing = _pace(args, dovecot, accounts)
    page = _run(
        ["-m", "bench.metrics_page", "--mailboxes", str(args.metrics_mailboxes)],
        args.workdir / "metrics-page.log",
    )

    report(args, figures, page, pacing)
    # Missed speed targets are figures to read; a failed probe means the run is not valid.
    return 1 if any(f["failed"] for f in figures.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
