"""Command line for the fleet audit: `audit`.

Exit status: 0 nothing needs action; 1 something does (see monitor/audit/rows.py and the
README's "Fleet audit"); 2 a usage, configuration or state file error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from monitor.audit.csv_report import row_values, write_csv
from monitor.audit.html_report import write_html
from monitor.audit.probing import probe_fleet
from monitor.audit.rows import build_rows, missing_credentials
from monitor.audit.snapshot import merged, read_snapshot
from monitor.audit.summary import summarise
from monitor.audit.text_report import summary_lines
from monitor.cli_shard import add_shard_option
from monitor.config import Config, load_config
from monitor.config.shards import Shard, sharded
from monitor.logs import configure_logging

EXIT_OK = 0
EXIT_ACTION = 1
EXIT_USAGE = 2


def add_commands(commands: Any) -> None:
    """Register `audit` on the main parser's subcommands."""
    audit = commands.add_parser(
        "audit",
        help="report on the whole fleet from the state file (or --probe it now)",
        description="Report on every mailbox: login failures, fullness and forecasts, CERBERE "
        "expiry, lock-outs and missing credentials. Reads the daemon's state file read-only "
        "(no login) unless --probe is given. Exit status: 0 nothing needs action, 1 something "
        "does, 2 usage, configuration or state file error.",
    )
    audit.add_argument("--config", required=True, type=Path, help="configuration file")
    audit.add_argument(
        "--probe",
        action="store_true",
        help="probe every mailbox once first (same lock-out rules and limits as the daemon; "
        "results are kept in the state file)",
    )
    audit.add_argument(
        "--within",
        type=_days,
        default=7.0,
        metavar="DAYS",
        help="list mailboxes forecast full within DAYS (default 7)",
    )
    audit.add_argument(
        "--csv", type=Path, metavar="FILE", help="write one row per mailbox and protocol"
    )
    audit.add_argument(
        "--html", type=Path, metavar="FILE", help="write a self-contained HTML page (French)"
    )
    audit.add_argument(
        "--json",
        action="store_true",
        help="one JSON object per mailbox and protocol instead of the summary",
    )
    add_shard_option(audit)
    audit.add_argument(
        "--all-shards",
        action="store_true",
        help="report on every shard at once, reading each one's state file (state.shard-I.db "
        "beside the configured path); the count comes from --shard, $BMA_SHARD or the "
        "configuration's `shard`",
    )
    audit.set_defaults(handler=_audit)


def _shards(config: Config) -> list[Config]:
    """The configuration cut to each of its shards; none when it names no shard count."""
    if config.sharding is None:
        return []
    count = config.sharding.shard.count
    return [sharded(config, Shard(index, count)) for index in range(count)]


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value <= 3650:
        raise argparse.ArgumentTypeError(f"expected a number of days from 0 to 3650 (got {text!r})")
    return value


def _audit(args: argparse.Namespace) -> int:
    config = load_config(args.config, shard=args.shard)
    parts = _shards(config) if args.all_shards else [config]
    if not parts:
        print(
            "--all-shards needs the shard count: give --shard, $BMA_SHARD or the "
            "configuration's `shard`",
            file=sys.stderr,
        )
        return EXIT_USAGE
    if args.probe:
        if args.all_shards:
            # Each shard's mailboxes are its own daemon's to probe, under its own lock-outs.
            print("--probe probes one shard: leave out --all-shards", file=sys.stderr)
            return EXIT_USAGE
        configure_logging("error", "console" if sys.stderr.isatty() else "json")
        probe_fleet(config)
    snapshots = []
    rows = []
    for part in parts:
        snapshots.append(read_snapshot(part, args.within))
        rows += build_rows(part, snapshots[-1], missing_credentials(part), args.within)
    snapshot = merged(snapshots) if len(snapshots) > 1 else snapshots[0]
    summary = summarise(rows, snapshot, args.within, config.expiry.thresholds[0])
    zone = ZoneInfo(config.expiry.timezone)
    try:
        if args.csv is not None:
            write_csv(args.csv, rows, zone)
        if args.html is not None:
            write_html(args.html, summary, rows, zone)
    except OSError as exc:
        print(f"cannot write the report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    lines = (
        (json.dumps(row_values(row, zone), ensure_ascii=False) for row in rows)
        if args.json
        else summary_lines(summary, zone)
    )
    try:
        for line in lines:
            print(line)
        sys.stdout.flush()
    except BrokenPipeError:
        # `audit | head`: the reader has seen enough; the exit status still tells.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_ACTION if summary.needs_action else EXIT_OK
