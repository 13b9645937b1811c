"""Command line: `run` the daemon, `check` a configuration, `probe` mailboxes now."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monitor import __version__
from monitor.config import Config, ConfigError, Mailbox, load_config
from monitor.config.model import QuotaConfig
from monitor.credentials import (
    PROBLEMS_SHOWN,
    CredentialMissing,
    CredentialStore,
    SecretKind,
    credential_directory_problems,
)
from monitor.logs import configure_logging
from monitor.metrics.http import EndpointError
from monitor.probes.result import QuotaReading
from monitor.quota import quota_level, usage_ratio
from monitor.scheduling.events import quota_fields
from monitor.scheduling.runner import Held, LockedOut, Outcomes, ProbeRunner
from monitor.scheduling.scheduler import Scheduler
from monitor.state.store import StateError, StateStore

EXIT_OK = 0
EXIT_PROBE_FAILED = 1
EXIT_USAGE = 2  # bad configuration, unknown mailbox, unusable state file
HELD_REASON = "outcome_unknown"  # shown for a mailbox the lock-out guard holds back


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bma-monitor` command."""
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ConfigError as exc:
        print(f"configuration error ({len(exc.problems)} problem(s)):", file=sys.stderr)
        for problem in exc.listed():
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE
    except StateError as exc:
        print(f"state error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EndpointError as exc:
        print(f"http error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bma-monitor", description=__doc__)
    parser.add_argument("--version", action="version", version=f"bma-monitor {__version__}")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    reset_state = {
        "action": "store_true",
        "help": "if the state file cannot be used (damaged, empty, not a state file), move it "
        "aside and start afresh: its lock-outs are lost, so refused passwords may be tried "
        "once more",
    }
    run = commands.add_parser("run", help="run the monitoring daemon")
    run.add_argument("--config", required=True, type=Path, help="configuration file")
    run.add_argument("--reset-state", **reset_state)  # type: ignore[arg-type]
    run.set_defaults(handler=_run)

    check = commands.add_parser("check", help="validate a configuration and exit")
    check.add_argument("--config", required=True, type=Path, help="configuration file")
    check.set_defaults(handler=_check)

    probe = commands.add_parser("probe", help="probe mailboxes now and print the results")
    probe.add_argument("--config", required=True, type=Path, help="configuration file")
    probe.add_argument(
        "addresses",
        nargs="*",
        metavar="ADDRESS",
        help="mailboxes to probe (address or local part); all when omitted",
    )
    probe.add_argument("--json", action="store_true", help="one JSON object per mailbox")
    probe.add_argument(
        "--force",
        action="store_true",
        help="also try mailboxes locked out after a refused password",
    )
    probe.add_argument("--reset-state", **reset_state)  # type: ignore[arg-type]
    probe.set_defaults(handler=_probe)
    return parser


def _run(args: argparse.Namespace) -> int:
    from monitor.daemon import run_daemon

    asyncio.run(run_daemon(args.config, reset_state=args.reset_state))
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    store = CredentialStore(config.credentials, salt=b"")
    missing: list[tuple[str, CredentialMissing]] = []
    for mailbox in config.mailboxes:
        found = store.lookup(mailbox.address, SecretKind.IMAP)
        if isinstance(found, CredentialMissing):
            missing.append((mailbox.address, found))
    kinds = {kind: sum(1 for m in config.mailboxes if m.kind == kind) for kind in ("ec", "po")}
    print(
        f"{config.source}: valid; {len(config.mailboxes)} mailboxes "
        f"({kinds['ec']} ec, {kinds['po']} po) on {len(config.servers)} server(s)"
    )
    for problem in credential_directory_problems(config.credentials.directory):
        print(f"warning: {problem}")
    if missing:
        # The detail names the file or variable and what is wrong with it, never the secret.
        print(f"warning: {len(missing)} mailbox(es) have no usable IMAP credential:")
        for address, why in missing[:PROBLEMS_SHOWN]:
            print(f"  {address}: {why.detail}")
        if len(missing) > PROBLEMS_SHOWN:
            print(f"  ... and {len(missing) - PROBLEMS_SHOWN} more")
    return EXIT_OK


def _probe(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    configure_logging("error", "console" if sys.stderr.isatty() else "json")
    selected = _select(config, args.addresses)
    if selected is None:
        return EXIT_USAGE
    results = asyncio.run(
        _probe_all(config, selected, force=args.force, reset_state=args.reset_state)
    )
    rows = [_row(config, mailbox, *found) for mailbox, found in zip(selected, results, strict=True)]
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    else:
        _print_table(rows)
    return EXIT_OK if all(row["login_ok"] for row in rows) else EXIT_PROBE_FAILED


def _select(config: Config, wanted: list[str]) -> list[Mailbox] | None:
    if not wanted:
        return list(config.mailboxes)
    by_name = {m.address: m for m in config.mailboxes} | {m.local_part: m for m in config.mailboxes}
    unknown = [w for w in wanted if w.lower() not in by_name]
    if unknown:
        print(f"not in the configuration: {', '.join(unknown)}", file=sys.stderr)
        return None
    return list(dict.fromkeys(by_name[w.lower()] for w in wanted))  # each mailbox once


async def _probe_all(
    config: Config, mailboxes: list[Mailbox], *, force: bool, reset_state: bool
) -> list[tuple[Outcomes, QuotaReading | None]]:
    """Each mailbox's outcome, with the last usage known for it (from the state file too)."""
    store = await asyncio.to_thread(StateStore.open, config.state.path, reset=reset_state)
    try:
        credentials = CredentialStore(config.credentials, store.salt())
        runner = ProbeRunner(config, store, credentials)
        scheduler = Scheduler(config, runner, store)
        outcomes = await scheduler.sweep(mailboxes, force=force)
        statuses = scheduler.view().mailboxes
        return [(outcomes[m.address], statuses[m.address].quota) for m in mailboxes]
    finally:
        store.close()


def _row(
    config: Config,
    mailbox: Mailbox,
    outcome: Outcomes,
    last_quota: QuotaReading | None,
) -> dict[str, Any]:
    """One JSON row; every outcome fills the same keys, null where they do not apply."""
    held_until: float | None = None
    if isinstance(outcome, LockedOut):
        lockout = outcome.lockout
        probed, reason = None, str(lockout.reason)
        detail = (
            f"not tried: refused before ({lockout.detail}); change the credential or use --force"
        )
        reading = last_quota  # nothing was measured now: the last reading is the best known
    elif isinstance(outcome, Held):
        probed, reason, held_until, reading = None, HELD_REASON, outcome.until, last_quota
        detail = (
            "not tried: the last login with this credential got no answer, and the server may "
            f"have counted it; held until {_when(outcome.until)} (or change the credential, "
            "or use --force)"
        )
    else:
        probed, reason, detail, reading = (
            outcome,
            str(outcome.reason),
            outcome.detail,
            outcome.quota,
        )
    return {
        "address": mailbox.address,
        "mailbox": mailbox.local_part,
        "kind": str(mailbox.kind),
        "server": mailbox.server,
        "login_ok": probed is not None and probed.login_ok,
        "reason": reason,
        "locked_out": isinstance(outcome, LockedOut),
        "held_until": held_until,
        "detail": detail,
        **_quota_columns(reading, config.quota),
        "quota_error": (probed.quota_error or None) if probed else None,
        "duration_seconds": round(probed.total_seconds, 4) if probed else None,
    }


_QUOTA_COLUMNS = (
    "quota_used_bytes",
    "quota_limit_bytes",
    "quota_server_limit_bytes",
    "quota_source",
    "quota_measured_at",
    "quota_usage_ratio",
    "quota_level",
)


def _quota_columns(reading: QuotaReading | None, config: QuotaConfig) -> dict[str, Any]:
    if reading is None:
        return dict.fromkeys(_QUOTA_COLUMNS)
    return quota_fields(reading, config) | {
        "quota_measured_at": reading.measured_at,
        "quota_usage_ratio": round(usage_ratio(reading, config), 4),
        "quota_level": str(quota_level(reading, config)),
    }


def _when(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(timestamp))


def _print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        *("MAILBOX", "KIND", "SERVER", "RESULT"),
        *("USED", "LIMIT", "USE", "LEVEL", "SOURCE"),
        *("TIME", "DETAIL"),
    )
    lines = [header]
    for row in rows:
        ratio, seconds = row["quota_usage_ratio"], row["duration_seconds"]
        lines.append(
            (
                row["mailbox"],
                row["kind"],
                row["server"],
                row["reason"] + (" (locked)" if row["locked_out"] else ""),
                _bytes(row["quota_used_bytes"]),
                _bytes(row["quota_limit_bytes"]),
                f"{ratio:.0%}" if ratio is not None else "-",
                row["quota_level"] or "-",
                row["quota_source"] or "-",
                f"{seconds:.2f}s" if seconds is not None else "-",
                row["detail"] or row["quota_error"] or "",
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header) - 1)]
    for line in lines:
        cells = [str(c).ljust(w) for c, w in zip(line[:-1], widths, strict=True)]
        print("  ".join([*cells, str(line[-1])]).rstrip())


def _bytes(value: int | None) -> str:
    if value is None:
        return "-"
    size = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(value)


if __name__ == "__main__":
    sys.exit(main())
