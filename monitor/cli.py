"""Command line: `run` the daemon, `check` a configuration, `probe` mailboxes now."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from monitor import __version__
from monitor.cli_audit import add_commands as add_audit_commands
from monitor.cli_expiry import add_commands as add_expiry_commands
from monitor.cli_fullness import add_commands as add_fullness_commands
from monitor.cli_fullness import fullness_of
from monitor.cli_shard import add_shard_option
from monitor.config import Config, ConfigError, Mailbox, load_config
from monitor.config.fullness_model import QuotaConfig
from monitor.config.shards import owner
from monitor.credentials import (
    PROBLEMS_SHOWN,
    CredentialMissing,
    CredentialStore,
    SecretKind,
    credential_directory_problems,
)
from monitor.expiry.jobs import checked_templates
from monitor.logs import configure_logging
from monitor.metrics.http import EndpointError
from monitor.probes.registry import PROBERS
from monitor.probes.result import Protocol, QuotaReading
from monitor.quota import better_reading, quota_level, usage_ratio
from monitor.scheduling.events import quota_fields
from monitor.scheduling.runner import (
    OPTIONAL_SECRETS,
    Held,
    LockedOut,
    NoCredential,
    Outcomes,
    ProbeRunner,
)
from monitor.scheduling.scheduler import Scheduler
from monitor.state.shard_identity import claim_shard
from monitor.state.store import StateError, StateStore

EXIT_OK = 0
EXIT_PROBE_FAILED = 1
EXIT_USAGE = 2  # bad configuration, unknown mailbox, unusable state file
HELD_REASON = "outcome_unknown"  # shown for a mailbox the lock-out guard holds back
NOT_PROBED_REASON = "no_credential"  # shown where an optional secret (CERBERE) is absent


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
    add_shard_option(run)
    run.add_argument("--reset-state", **reset_state)  # type: ignore[arg-type]
    run.set_defaults(handler=_run)

    check = commands.add_parser("check", help="validate a configuration and exit")
    check.add_argument("--config", required=True, type=Path, help="configuration file")
    add_shard_option(check)
    check.set_defaults(handler=_check)

    probe = commands.add_parser("probe", help="probe mailboxes now and print the results")
    probe.add_argument("--config", required=True, type=Path, help="configuration file")
    add_shard_option(probe)
    probe.add_argument(
        "addresses",
        nargs="*",
        metavar="ADDRESS",
        help="mailboxes to probe (address or local part); all when omitted",
    )
    probe.add_argument(
        "--protocol",
        type=_protocols,
        metavar="LIST",
        help="comma-separated protocols to probe, e.g. imap,pop3,smtp (default: each "
        "mailbox's configured protocols)",
    )
    probe.add_argument(
        "--json", action="store_true", help="one JSON object per mailbox and protocol"
    )
    probe.add_argument(
        "--force",
        action="store_true",
        help="also try mailboxes locked out after a refused password",
    )
    probe.add_argument("--reset-state", **reset_state)  # type: ignore[arg-type]
    probe.set_defaults(handler=_probe)
    add_expiry_commands(commands)
    add_fullness_commands(commands)
    add_audit_commands(commands)
    return parser


def _protocols(text: str) -> tuple[Protocol, ...]:
    """The `--protocol` list."""
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    known = ", ".join(Protocol)
    unknown = [name for name in names if name not in set(Protocol)]
    if not names or unknown:
        raise argparse.ArgumentTypeError(f"expected some of {known} (got {text!r})")
    return tuple(Protocol(name) for name in dict.fromkeys(names))


def _run(args: argparse.Namespace) -> int:
    from monitor.daemon import run_daemon

    asyncio.run(run_daemon(args.config, reset_state=args.reset_state, shard=args.shard))
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    config = load_config(args.config, shard=args.shard)
    templates = checked_templates(config)  # an unknown variable in one is a config error
    store = CredentialStore(config.credentials, salt=b"")
    missing: dict[SecretKind, list[tuple[str, CredentialMissing]]] = {}
    needed_by: dict[SecretKind, set[Protocol]] = {}
    for mailbox in config.mailboxes:
        for kind in sorted({PROBERS[p].secret for p in mailbox.protocols}):
            found = store.lookup(mailbox.address, kind)
            if isinstance(found, CredentialMissing):
                missing.setdefault(kind, []).append((mailbox.address, found))
                using = {p for p in mailbox.protocols if PROBERS[p].secret is kind}
                needed_by.setdefault(kind, set()).update(using)
    kinds = {kind: sum(1 for m in config.mailboxes if m.kind == kind) for kind in ("ec", "po")}
    print(
        f"{config.source}: valid; {len(config.mailboxes)} mailboxes "
        f"({kinds['ec']} ec, {kinds['po']} po) on {len(config.servers)} server(s)"
    )
    probed = {p: sum(1 for m in config.mailboxes if p in m.protocols) for p in PROBERS}
    print("probed over: " + ", ".join(f"{p} {n}" for p, n in probed.items() if n))
    print(f"warning mail templates: {templates.folder}")
    if config.sharding is not None:
        print(
            f"shard {config.sharding.shard} (indexes from 0): {len(config.mailboxes)} of the "
            f"fleet's {len(config.fleet)} mailboxes; state file {config.state.path}"
        )
    for problem in credential_directory_problems(config.credentials.directory):
        print(f"warning: {problem}")
    for kind in (k for k in SecretKind if k in missing):  # the mailbox password first
        lacking = missing[kind]
        users = "/".join(str(p) for p in Protocol if p in needed_by[kind])
        what = f"{kind.label} (<address>.{kind})"
        if kind in OPTIONAL_SECRETS:
            print(f"note: {len(lacking)} mailbox(es) have no {what}, so no {users} probe:")
        else:
            print(f"warning: {len(lacking)} mailbox(es) have no usable {what} for {users}:")
        # The detail names the file or variable and what is wrong with it, never the secret.
        for address, why in lacking[:PROBLEMS_SHOWN]:
            print(f"  {address}: {why.detail}")
        if len(lacking) > PROBLEMS_SHOWN:
            print(f"  ... and {len(lacking) - PROBLEMS_SHOWN} more")
    return EXIT_OK


def _probe(args: argparse.Namespace) -> int:
    config = load_config(args.config, shard=args.shard)
    configure_logging("error", "console" if sys.stderr.isatty() else "json")
    selected = _select(config, args.addresses)
    if selected is None:
        return EXIT_USAGE
    wanted = args.protocol or tuple(Protocol)
    if not any(p in wanted for m in selected for p in m.protocols):
        names = ", ".join(str(p) for p in wanted)
        print(f"no selected mailbox is probed over {names}", file=sys.stderr)
        return EXIT_USAGE
    found = asyncio.run(
        _probe_all(config, selected, args.protocol, force=args.force, reset_state=args.reset_state)
    )
    rows = [_row(config, *probed) for probed in found]
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
    else:
        _print_table(rows)
    failed = [r for r in rows if not r["login_ok"] and r["reason"] != NOT_PROBED_REASON]
    return EXIT_PROBE_FAILED if failed else EXIT_OK


def _select(config: Config, wanted: list[str]) -> list[Mailbox] | None:
    if not wanted:
        return list(config.mailboxes)
    by_name = {m.address: m for m in config.mailboxes} | {m.local_part: m for m in config.mailboxes}
    unknown = [w for w in wanted if w.lower() not in by_name]
    elsewhere = _other_shards(config, unknown)
    if elsewhere:
        print(f"in another shard: {', '.join(elsewhere.values())}", file=sys.stderr)
    unknown = [w for w in unknown if w not in elsewhere]
    if unknown:
        print(f"not in the configuration: {', '.join(unknown)}", file=sys.stderr)
    if unknown or elsewhere:
        return None
    return list(dict.fromkeys(by_name[w.lower()] for w in wanted))  # each mailbox once


def _other_shards(config: Config, names: list[str]) -> dict[str, str]:
    """Of `names`, those another shard owns, each with the --shard that probes it."""
    if config.sharding is None:
        return {}
    count = config.sharding.shard.count
    by_name = {m.address: m for m in config.fleet} | {m.local_part: m for m in config.fleet}
    return {
        name: f"{name} (--shard {owner(by_name[name.lower()].address, count)}/{count})"
        for name in names
        if name.lower() in by_name
    }


async def _probe_all(
    config: Config,
    mailboxes: list[Mailbox],
    protocols: tuple[Protocol, ...] | None,
    *,
    force: bool,
    reset_state: bool,
    on_outcome: Callable[[Mailbox, Protocol, Outcomes], None] | None = None,
) -> list[tuple[Mailbox, Protocol, Outcomes, QuotaReading | None, dict[str, Any]]]:
    """Each (mailbox, protocol) outcome, in mailbox then protocol order, with the best usage
    known for the mailbox (from the state file too) and its fullness; `on_outcome` hears of
    each outcome as it comes (`audit --probe` shows progress)."""
    store = await asyncio.to_thread(StateStore.open, config.state.path, reset=reset_state)
    try:
        await asyncio.to_thread(claim_shard, store, config.shard)
        credentials = CredentialStore(config.credentials, store.salt())
        runner = ProbeRunner(config, store, credentials)
        scheduler = Scheduler(config, runner, store)
        outcomes = await scheduler.sweep(mailboxes, protocols, force=force, on_outcome=on_outcome)
        statuses = scheduler.view().mailboxes
        fullness = fullness_of(scheduler, store, mailboxes)
        return [
            (m, p, outcomes[(m.address, p)], statuses[m.address].quota, fullness[m.address])
            for m in mailboxes
            for p in m.protocols
            if (m.address, p) in outcomes
        ]
    finally:
        store.close()


def _row(
    config: Config,
    mailbox: Mailbox,
    protocol: Protocol,
    outcome: Outcomes,
    best_quota: QuotaReading | None,
    fullness: dict[str, Any],
) -> dict[str, Any]:
    """One JSON row; every outcome fills the same keys, null where they do not apply."""
    held_until: float | None = None
    reading = best_quota  # unless this probe measured: the best reading known
    if isinstance(outcome, LockedOut):
        lockout = outcome.lockout
        probed, reason = None, str(lockout.reason)
        over = "" if lockout.protocol is protocol else f" over {lockout.protocol}"
        detail = (
            f"not tried: this password was refused before{over} ({lockout.detail}); "
            "change the credential or use --force"
        )
    elif isinstance(outcome, NoCredential):
        probed, reason = None, NOT_PROBED_REASON
        detail = f"not probed: {outcome.detail}"
    elif isinstance(outcome, Held):
        probed, reason, held_until = None, HELD_REASON, outcome.until
        detail = (
            "not tried: the last login with this credential got no answer, and the server may "
            f"have counted it; held until {_when(outcome.until)} (or change the credential, "
            "or use --force)"
        )
    else:
        probed, reason, detail = outcome, str(outcome.reason), outcome.detail
        # The mailbox's best reading, not the probe's own: POP3's inbox size judged
        # against the default limit would call a mailbox full over IMAP "ok" at 1%.
        reading = better_reading(best_quota, outcome.quota)
    return {
        "address": mailbox.address,
        "mailbox": mailbox.local_part,
        "kind": str(mailbox.kind),
        "server": mailbox.server,
        "protocol": str(protocol),
        "login_ok": probed is not None and probed.login_ok,
        "reason": reason,
        "locked_out": isinstance(outcome, LockedOut),
        "held_until": held_until,
        "detail": detail,
        **_quota_columns(reading, config.quota),
        "quota_error": (probed.quota_error or None) if probed else None,
        "duration_seconds": round(probed.total_seconds, 4) if probed else None,
        **fullness,
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
    """Rows grouped by mailbox: its name, kind and server on its first row only."""
    header = (
        *("MAILBOX", "KIND", "SERVER", "PROTOCOL", "RESULT"),
        *("USED", "LIMIT", "USE", "LEVEL", "SOURCE"),
        *("TIME", "DETAIL"),
    )
    lines = [header]
    previous = None
    for row in rows:
        ratio, seconds = row["quota_usage_ratio"], row["duration_seconds"]
        first = row["address"] != previous
        previous = row["address"]
        lines.append(
            (
                row["mailbox"] if first else "",
                row["kind"] if first else "",
                row["server"] if first else "",
                row["protocol"],
                row["reason"] + (" (locked)" if row["locked_out"] else ""),
                _bytes(row["quota_used_bytes"]),
                _bytes(row["quota_limit_bytes"]),
                f"{ratio:.0%}" if ratio is not None else "-",
                row["quota_state"] or row["quota_level"] or "-",
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
