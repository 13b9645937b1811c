"""How the reports show values: dates in the operators' zone, sizes, ratios."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

UNITS = ("B", "KiB", "MiB", "GiB", "TiB")


def local_time(timestamp: float | None, zone: ZoneInfo) -> str:
    """ISO 8601 time in the zone, to the second; empty when unknown."""
    if timestamp is None:
        return ""
    return dt.datetime.fromtimestamp(timestamp, zone).isoformat(timespec="seconds")


def local_day(timestamp: float | None, zone: ZoneInfo) -> str:
    """ISO 8601 date in the zone; empty when unknown."""
    if timestamp is None:
        return ""
    return dt.datetime.fromtimestamp(timestamp, zone).date().isoformat()


def size(value: int | None) -> str:
    """Bytes for people, in binary units; `-` when unknown."""
    if value is None:
        return "-"
    amount = float(value)
    for unit in UNITS:
        if amount < 1024 or unit == UNITS[-1]:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= 1024
    return str(value)


def percent(ratio: float | None) -> str:
    """A ratio as a whole percentage; `-` when unknown."""
    return "-" if ratio is None else f"{ratio:.0%}"
