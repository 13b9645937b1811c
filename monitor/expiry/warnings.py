"""Which expiry warning mail is due, and when the next one falls. Pure: the clock is passed in."""

from __future__ import annotations

import datetime as dt
from collections.abc import Collection
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from monitor.config.expiry_model import ExpiryConfig
from monitor.expiry.calendar import days_left, local_date
from monitor.expiry.model import Expiry


@dataclass(frozen=True)
class Due:
    """The warning to send now, with the true days left, and the thresholds it supersedes."""

    threshold: int
    days_left: int
    expiry_date: dt.date  # local date in the configured zone
    superseded: tuple[int, ...]  # passed without a mail: record them as never to be sent


def due_warning(
    expiry: Expiry, now: dt.datetime, config: ExpiryConfig, done: Collection[int]
) -> Due | None:
    """The warning mail due now for this expiry date, given the thresholds already done
    (sent or superseded); None outside the send window, after expiry, or when nothing is new."""
    zone = ZoneInfo(config.timezone)
    left = days_left(expiry.expires_at, now, zone)
    # After expiry the expired state is a metric for an alert, not a mail.
    if expiry.expired_now or left <= 0 or not _in_window(now, config, zone):
        return None
    threshold = _most_urgent_pending(left, config.thresholds, done)
    if threshold is None:
        return None
    # Catch-up after an outage: only the most urgent mail goes; the larger thresholds
    # passed meanwhile would tell a stale count.
    superseded = tuple(
        t
        for t in sorted(config.thresholds, reverse=True)
        if t > threshold and t >= left and t not in done
    )
    return Due(threshold, left, local_date(expiry.expires_at, zone), superseded)


def next_warning(
    expiry: Expiry, now: dt.datetime, config: ExpiryConfig, done: Collection[int]
) -> tuple[int, dt.date] | None:
    """The next warning still to go for this expiry date and the local date it goes out on,
    provided the daemon runs; None when no more will."""
    zone = ZoneInfo(config.timezone)
    left = days_left(expiry.expires_at, now, zone)
    if expiry.expired_now:
        return None
    until = config.local_time(config.send_until)
    first_day = 0 if now.astimezone(zone).time() < until else 1  # today's window closed
    # At most one pass over the days left (a few hundred): clearer than solving for the day.
    for day in range(first_day, left):
        threshold = _most_urgent_pending(left - day, config.thresholds, done)
        if threshold is not None:
            return threshold, local_date(now, zone) + dt.timedelta(days=day)
    return None


def _most_urgent_pending(
    left: int, thresholds: Collection[int], done: Collection[int]
) -> int | None:
    """The smallest threshold reached with `left` days to go, unless it is done already:
    once the most urgent reached is done, larger ones never go (no burst)."""
    reached = [t for t in thresholds if left <= t]
    if not reached or min(reached) in done:
        return None
    return min(reached)


def _in_window(now: dt.datetime, config: ExpiryConfig, zone: ZoneInfo) -> bool:
    """Whether `now` is within the local send window [send_from, send_until): never at night."""
    local = now.astimezone(zone).time()
    return config.local_time(config.send_from) <= local < config.local_time(config.send_until)
