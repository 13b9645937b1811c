"""A bounded usage history: every recent reading, thinner with age, nothing past `keep`."""

from __future__ import annotations

from collections.abc import Iterable

from monitor.config.values import DAY, HOUR, MINUTE
from monitor.fullness.forecast import Point

# (age below which, one point per): the last of each slot is kept. Slots are aligned on
# Unix time, so compacting twice changes nothing. With `keep` = 90 days a mailbox holds at
# most 2 * 96 + 12 * 24 + 76 + 3 = 559 points (the slots of each tier plus one at each
# tier edge), whatever its probe cadence.
RECENT = 2 * DAY
RECENT_SLOT = 15 * MINUTE
HOURLY = 14 * DAY


def compact(points: Iterable[Point], now: float, keep: float) -> list[Point]:
    """The points to keep, in time order: one per 15 minutes for 2 days, per hour to 14 days,
    per day up to `keep`; older ones dropped."""
    slots: dict[tuple[float, int], Point] = {}
    for at, used in sorted(points):
        age = now - at
        if age > keep:
            continue
        width = RECENT_SLOT if age <= RECENT else HOUR if age <= HOURLY else DAY
        slots[(width, int(at // width))] = (at, used)
    return sorted(slots.values())


def bound(keep: float) -> int:
    """The most points `compact` keeps for a history of `keep` seconds."""
    hourly_days = max(0.0, min(keep, HOURLY) - RECENT) / DAY
    daily_days = max(0.0, keep - HOURLY) / DAY
    return int(RECENT / RECENT_SLOT + hourly_days * 24 + daily_days) + 3
