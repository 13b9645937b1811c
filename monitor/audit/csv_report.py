"""The audit as CSV: one row per mailbox and protocol, plain values a spreadsheet sorts."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from monitor.audit.rows import AuditRow
from monitor.audit.values import local_day, local_time

COLUMNS = (
    "establishment",
    "fase",
    "address",
    "kind",
    "server",
    "protocol",
    "login_ok",
    "reason",
    "detail",
    "checked_at",
    "quota_used_bytes",
    "quota_limit_bytes",
    "quota_ratio",
    "quota_state",
    "forecast_full_date",
    "password_expiry_date",
    "password_days_left",
    "password_expiry_source",
    "locked_out",
    "credential_missing",
    "needs_action",
    "actions",
)


def row_values(row: AuditRow, zone: ZoneInfo) -> dict[str, Any]:
    """One row's columns, as the CSV and JSON give them (None where unknown)."""
    facts, mailbox = row.facts, row.mailbox
    return {
        "establishment": mailbox.name,
        "fase": mailbox.fase,
        "address": mailbox.address,
        "kind": str(mailbox.kind),
        "server": mailbox.server,
        "protocol": str(row.protocol),
        "login_ok": row.login_ok,
        "reason": row.reason,
        "detail": row.detail,
        "checked_at": local_time(row.checked_at, zone) or None,
        "quota_used_bytes": facts.used_bytes,
        "quota_limit_bytes": facts.limit_bytes,
        "quota_ratio": round(facts.ratio, 4) if facts.ratio is not None else None,
        "quota_state": str(facts.quota_state) if facts.quota_state is not None else None,
        "forecast_full_date": local_day(facts.forecast_full_at, zone) or None,
        "password_expiry_date": facts.expiry_date.isoformat() if facts.expiry_date else None,
        "password_days_left": facts.expiry_days_left,
        "password_expiry_source": facts.expiry_source,
        "locked_out": row.locked_out,
        "credential_missing": row.credential_missing,
        "needs_action": row.needs_action,
        "actions": "; ".join(action.en for action in row.actions),
    }


def write_csv(path: Path, rows: Iterable[AuditRow], zone: ZoneInfo) -> None:
    """Write the CSV (UTF-8, a header row, booleans as true/false, empty where unknown)."""
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _cell(v) for k, v in row_values(row, zone).items()})


# A spreadsheet runs a cell starting with one of these as a formula; a server's reply or
# an inventory name could start so ("-ERR ..."). Such text gets a leading apostrophe.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value
