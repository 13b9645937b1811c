"""Command line for CERBERE expiry: `expiry`, `notify preview` and `outbox`.

Each reads the configuration and the state file and sends nothing: `--at DATE` evaluates
as on that date (at the first sending hour), in the configured zone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from monitor.cli_shard import add_shard_option
from monitor.config import Config, Mailbox, load_config
from monitor.config.shards import Shard
from monitor.expiry.book import ExpiryBook
from monitor.expiry.calendar import days_left, local_date
from monitor.expiry.directory_store import load_directory
from monitor.expiry.jobs import WORDING, checked_templates
from monitor.expiry.model import Expiry
from monitor.expiry.observed import ObservedChanges
from monitor.expiry.warnings import next_warning
from monitor.notify import outbox
from monitor.notify.message import build_message, message_id
from monitor.notify.templates import Audience, MailValues
from monitor.scheduling.statuses import restored_statuses
from monitor.scheduling.view import MailboxStatus
from monitor.state.store import StateStore

EXIT_OK = 0
EXIT_USAGE = 2


def add_commands(commands: Any) -> None:
    """Register the expiry commands on the main parser's subcommands."""
    at = {"type": dt.date.fromisoformat, "metavar": "DATE", "help": "as on this date, YYYY-MM-DD"}
    expiry = commands.add_parser("expiry", help="list CERBERE expiry dates and next warnings")
    expiry.add_argument("--config", required=True, type=Path, help="configuration file")
    expiry.add_argument("--at", **at)
    expiry.add_argument("--json", action="store_true", help="one JSON object per mailbox")
    add_shard_option(expiry)
    expiry.set_defaults(handler=_expiry)

    notify = commands.add_parser("notify", help="the warning mails")
    actions = notify.add_subparsers(required=True, metavar="ACTION")
    preview = actions.add_parser("preview", help="render a mailbox's warning mail, send nothing")
    preview.add_argument("address", metavar="ADDRESS", help="address or local part")
    preview.add_argument("--config", required=True, type=Path, help="configuration file")
    preview.add_argument("--threshold", type=int, help="the warning of this many days before")
    preview.add_argument("--at", **at)
    preview.add_argument("--json", action="store_true", help="subject, bodies and headers")
    add_shard_option(preview)
    preview.set_defaults(handler=_preview)

    box = commands.add_parser("outbox", help="list the warning mails queued and sent")
    box.add_argument("--config", required=True, type=Path, help="configuration file")
    box.add_argument("--json", action="store_true", help="one JSON object per row")
    add_shard_option(box)
    box.set_defaults(handler=_outbox)


class _Context:
    """The configuration, the state file and the expiry book, for one command."""

    def __init__(self, path: Path, at: dt.date | None, shard: Shard | None) -> None:
        self.config: Config = load_config(path, shard=shard)
        expiry = self.config.expiry
        self.zone = ZoneInfo(expiry.timezone)
        if at is None:
            self.now = dt.datetime.now(self.zone)
        else:
            self.now = dt.datetime.combine(at, expiry.local_time(expiry.send_from), self.zone)
        self.store = StateStore.open(self.config.state.path)
        observed = ObservedChanges(self.store)
        directory = load_directory(self.store)
        statuses = _statuses(self.config, self.store)
        self.book = ExpiryBook(
            lambda: self.config.expiry, observed, lambda: directory, lambda: statuses
        )

    def expiries(self) -> dict[str, Expiry]:
        return self.book.expiries(self.config.mailboxes)

    def done(self, address: str, day: dt.date) -> frozenset[int]:
        return outbox.thresholds_done(self.store, address, day)


def _statuses(config: Config, store: StateStore) -> dict[str, MailboxStatus]:
    """The mailboxes' last probe results as the state file keeps them (SMTP's says whether
    the password expired)."""
    return restored_statuses(config.mailboxes, store.load_mailboxes(), {})


def _expiry(args: argparse.Namespace) -> int:
    context = _Context(args.config, args.at, args.shard)
    try:
        expiries = context.expiries()
        rows = [
            _expiry_row(context, mailbox, expiries.get(mailbox.address))
            for mailbox in context.config.mailboxes
        ]
    finally:
        context.store.close()
    if args.json:
        for row in rows:
            print(json.dumps(row, ensure_ascii=False))
        return EXIT_OK
    header = ("MAILBOX", "EXPIRES", "DAYS", "SOURCE", "NEXT", "ON")
    lines = [header]
    for row in rows:
        lines.append(
            (
                row["mailbox"],
                row["expiry_date"] or "-",
                "expired" if row["expired"] else _text(row["days_left"]),
                row["source"] or "-",
                _text(row["next_threshold"]),
                row["next_threshold_date"] or "-",
            )
        )
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())
    return EXIT_OK


def _expiry_row(context: _Context, mailbox: Mailbox, expiry: Expiry | None) -> dict[str, Any]:
    """One mailbox's expiry, in the same keys whether one is known or not."""
    row: dict[str, Any] = {
        "address": mailbox.address,
        "mailbox": mailbox.local_part,
        "kind": str(mailbox.kind),
        "name": mailbox.name,
        "expires_at": None,
        "expiry_date": None,
        "source": None,
        "days_left": None,
        "expired": None,
        "next_threshold": None,
        "next_threshold_date": None,
        "thresholds_done": [],
    }
    if expiry is None:
        return row
    day = local_date(expiry.expires_at, context.zone)
    left = days_left(expiry.expires_at, context.now, context.zone)
    done = context.done(mailbox.address, day)
    upcoming = next_warning(expiry, context.now, context.config.expiry, done)
    return row | {
        "expires_at": expiry.expires_at.isoformat(),
        "expiry_date": day.isoformat(),
        "source": str(expiry.source),
        "days_left": left,
        "expired": expiry.expired_now or left <= 0,
        "next_threshold": upcoming[0] if upcoming else None,
        "next_threshold_date": upcoming[1].isoformat() if upcoming else None,
        "thresholds_done": sorted(done, reverse=True),
    }


def _preview(args: argparse.Namespace) -> int:
    context = _Context(args.config, args.at, args.shard)
    try:
        templates = checked_templates(context.config)
        mailbox = _find(context.config, args.address)
        if mailbox is None:
            print(f"not in the configuration: {args.address}", file=sys.stderr)
            return EXIT_USAGE
        expiry = context.expiries().get(mailbox.address)
        if expiry is None:
            print(f"no expiry date is known for {mailbox.address}", file=sys.stderr)
            return EXIT_USAGE
        day = local_date(expiry.expires_at, context.zone)
        left = days_left(expiry.expires_at, context.now, context.zone)
        upcoming = next_warning(expiry, context.now, context.config.expiry, frozenset())
        threshold = args.threshold or (upcoming[0] if upcoming else max(left, 1))
    finally:
        context.store.close()
    notify = context.config.notify
    sender = notify.sender or f"bma-monitor@{context.config.domain}"
    recipients = [(Audience.BMA, mailbox.address)]
    if mailbox.contact:
        recipients.append((Audience.CONTACT, mailbox.contact))
    shown: list[dict[str, Any]] = []
    for audience, recipient in recipients:
        values = MailValues(
            mailbox=mailbox.address,
            establishment=mailbox.name,
            fase=mailbox.fase,
            expiry_date=WORDING.date(day),
            days_left=left,
            days_text=WORDING.days(left),
            threshold=threshold,
            contact=mailbox.contact,
        )
        rendered = templates.render(audience, values)
        message = build_message(
            rendered,
            sender=sender,
            recipient=recipient,
            reply_to=notify.reply_to,
            message_id=message_id(mailbox.address, day, threshold, audience, sender),
            date=context.now,
        )
        shown.append(
            {
                "audience": str(audience),
                "headers": dict(message.items()),
                "subject": rendered.subject,
                "text": rendered.text,
                "html": rendered.html,
                "message": message.as_string(),
            }
        )
    for mail in shown:
        if args.json:
            print(json.dumps({k: v for k, v in mail.items() if k != "message"}, ensure_ascii=False))
        else:
            print(mail["message"])
    return EXIT_OK


def _outbox(args: argparse.Namespace) -> int:
    config = load_config(args.config, shard=args.shard)
    store = StateStore.open(config.state.path)
    try:
        found = outbox.rows(store)
    finally:
        store.close()
    for row in found:
        entry = row.entry
        data = {
            "address": entry.address,
            "expiry_date": entry.expiry_date.isoformat(),
            "threshold": entry.threshold,
            "audience": str(entry.audience),
            "recipient": entry.recipient,
            "state": str(row.state),
            "message_id": entry.message_id,
            "created_at": row.created_at,
            "attempts": row.attempts,
            "reason": row.reason or None,
            "sent_at": row.sent_at,
        }
        if args.json:
            print(json.dumps(data, ensure_ascii=False))
        else:
            print(
                f"{entry.address}  {data['expiry_date']}  J-{entry.threshold:<3} "
                f"{data['audience']:<7} {data['state']:<10} {entry.recipient}"
                + (f"  ({row.reason})" if row.reason else "")
            )
    return EXIT_OK


def _find(config: Config, wanted: str) -> Mailbox | None:
    by_name: Mapping[str, Mailbox] = {m.address: m for m in config.mailboxes} | {
        m.local_part: m for m in config.mailboxes
    }
    return by_name.get(wanted.lower())


def _text(value: object) -> str:
    return "-" if value is None else str(value)
