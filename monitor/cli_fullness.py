"""Command line for mailbox fullness: what `probe` adds, `forecast`, and `canary`."""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from monitor.canary.evidence import Evidence, load_evidence, load_results
from monitor.canary.job import CanaryJob
from monitor.cli_shard import add_shard_option
from monitor.config import Config, Mailbox, load_config
from monitor.credentials import CredentialStore
from monitor.fullness.states import QuotaLevel, bounds_for
from monitor.fullness.store import load_history, load_states
from monitor.fullness.tracker import FullnessTracker
from monitor.scheduling.runner import ProbeRunner
from monitor.scheduling.scheduler import Scheduler
from monitor.state.store import StateStore

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
DAY = 86400.0


def add_commands(commands: Any) -> None:
    """Register `forecast` and `canary` on the main parser's subcommands."""
    forecast = commands.add_parser(
        "forecast", help="list the mailboxes forecast full within some days"
    )
    forecast.add_argument("--config", required=True, type=Path, help="configuration file")
    forecast.add_argument("--within", type=float, default=7.0, metavar="DAYS", help="default 7")
    forecast.add_argument("--json", action="store_true", help="one JSON object per mailbox")
    add_shard_option(forecast)
    forecast.set_defaults(handler=_forecast)

    canary = commands.add_parser("canary", help="send one delivery canary now")
    canary.add_argument("address", metavar="ADDRESS", help="address or local part")
    canary.add_argument("--config", required=True, type=Path, help="configuration file")
    canary.add_argument("--json", action="store_true", help="the result as JSON")
    add_shard_option(canary)
    canary.set_defaults(handler=_canary)


def fullness_of(
    scheduler: Scheduler, store: StateStore, mailboxes: Iterable[Mailbox]
) -> dict[str, dict[str, Any]]:
    """Each mailbox's quota state, forecast, evidence of full and last canary, for `probe`."""
    evidence = load_evidence(store)
    canaries = load_results(store)
    forecasts = scheduler.forecasts
    found: dict[str, dict[str, Any]] = {}
    for mailbox in mailboxes:
        address = mailbox.address
        state = scheduler.fullness.state(address)
        full = [e for e in (Evidence.REJECTION, Evidence.BOUNCE) if (address, e) in evidence]
        if state is not None and state[0] is QuotaLevel.FULL:
            full.insert(0, Evidence.QUOTA)
        canary = canaries.get(address)
        found[address] = {
            "quota_state": str(state[0]) if state else None,
            "quota_state_since": state[1] if state else None,
            "quota_full_forecast_at": forecasts.get(address),
            "full_evidence": [str(e) for e in full],
            "canary_outcome": str(canary.outcome) if canary else None,
            "canary_sent_at": canary.sent_at if canary else None,
            "canary_latency_seconds": canary.latency if canary else None,
        }
    return found


def _forecast(args: argparse.Namespace) -> int:
    config = load_config(args.config, shard=args.shard)
    store = StateStore.open(config.state.path)
    try:
        rows = _within(config, store, args.within * DAY, time.time())
    finally:
        store.close()
    for row in rows:
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
        else:
            print(f"{row['mailbox']:<10} {row['full_on']}  ({row['days']:.1f} days)  {row['name']}")
    return EXIT_OK


def _within(config: Config, store: StateStore, horizon: float, now: float) -> list[dict[str, Any]]:
    """Mailboxes whose trend reaches their limit within `horizon` seconds, soonest first."""
    tracker = FullnessTracker()
    tracker.restore(load_states(store), load_history(store))
    records = store.load_mailboxes()
    rows = []
    for mailbox in config.mailboxes:
        record = records.get(mailbox.address)
        if record is None or record.quota is None:
            continue
        limit = bounds_for(record.quota, mailbox.tiers, config.quota).full
        at = tracker.forecast(mailbox.address, limit, now, config.quota)
        if at is None or at - now > horizon:
            continue
        rows.append(
            {
                "address": mailbox.address,
                "mailbox": mailbox.local_part,
                "name": mailbox.name,
                "server": mailbox.server,
                "full_at": at,
                "full_on": dt.datetime.fromtimestamp(at).date().isoformat(),
                "days": max(0.0, (at - now) / DAY),
                "used_bytes": record.quota.used_bytes,
                "limit_bytes": limit,
            }
        )
    return sorted(rows, key=lambda row: row["full_at"])


def _canary(args: argparse.Namespace) -> int:
    config = load_config(args.config, shard=args.shard)
    wanted = args.address.lower()
    mailbox = next((m for m in config.mailboxes if wanted in (m.address, m.local_part)), None)
    if mailbox is None:
        print(f"not in the configuration: {args.address}", file=sys.stderr)
        return EXIT_USAGE
    if not config.canary.sender:
        print("canary.sender is not configured", file=sys.stderr)
        return EXIT_USAGE
    result = asyncio.run(_one_canary(config, mailbox))
    if result is None:
        print(f"{mailbox.address}: not sent (its mailbox password is locked out or held)")
        return EXIT_FAILED
    data = {
        "address": result.address,
        "outcome": str(result.outcome),
        "latency_seconds": result.latency,
        "detail": result.detail or None,
    }
    print(json.dumps(data, ensure_ascii=False) if args.json else " ".join(map(str, data.values())))
    return EXIT_OK if result.latency is not None else EXIT_FAILED


async def _one_canary(config: Config, mailbox: Mailbox) -> Any:
    store = await asyncio.to_thread(StateStore.open, config.state.path)
    try:
        credentials = CredentialStore(config.credentials, store.salt())
        runner = ProbeRunner(config, store, credentials)
        scheduler = Scheduler(config, runner, store)
        job = CanaryJob(
            lambda: config, store, lambda: credentials, runner, lambda: scheduler.statuses
        )
        return await job.run_one(mailbox, force=True)
    finally:
        store.close()
