"""When a growing mailbox will be full: a Theil-Sen trend over its recent usage history."""

from __future__ import annotations

from bisect import bisect_right, insort
from collections.abc import Sequence
from statistics import median

from monitor.config.values import DAY

Point = tuple[float, int]  # (Unix time, used bytes)

MIN_POINTS = 3
MIN_SPAN = DAY  # a few readings an hour apart say nothing of a daily habit
# Theil-Sen compares every pair: 200 points are 19 900 slopes, 4 ms measured. Over two
# weeks that is a point every 100 minutes, plenty for a trend counted in days.
MAX_POINTS = 200
# Past ten years the trend is noise around a flat mailbox, not a date anyone can act on.
HORIZON = 10 * 365 * DAY
# A drop of more than a fifth of the usage before it is a clean-up (a school emptying its
# trash or archiving), not a measurement wobble; the trend restarts after it.
CLEANUP_SHARE = 0.2


def last_cleanup(points: Sequence[Point]) -> int:
    """The index where the current trend starts: just after the last confirmed clean-up.

    A drop counts once the reading after it stays low too, so that one odd low reading is
    left to the median rather than throwing the history away.
    """
    for index in range(len(points) - 2, 0, -1):
        floor = points[index - 1][1] * (1 - CLEANUP_SHARE)
        if points[index][1] < floor and points[index + 1][1] < floor:
            return index
    return 0


def forecast_full(
    points: Sequence[Point],
    limit: int,
    now: float,
    window: float,
    within: float | None = None,
) -> float | None:
    """The Unix time usage reaches `limit` on its trend, or None if it is not growing.

    Given `within`, None also where the trend certainly cannot reach `limit` within that
    many seconds of `now` (checked cheaply first, see may_reach): for callers that only
    want the mailboxes full soon.
    """
    trend = [p for p in points[last_cleanup(points) :] if now - window <= p[0] <= now]
    trend = _thinned(trend, MAX_POINTS)
    if limit <= 0 or len(trend) < MIN_POINTS or trend[-1][0] - trend[0][0] < MIN_SPAN:
        return None
    if within is not None and not may_reach(trend, limit, now, within):
        return None
    slope = median(
        (b[1] - a[1]) / (b[0] - a[0])
        for i, a in enumerate(trend)
        for b in trend[i + 1 :]
        if b[0] > a[0]
    )
    if slope <= 0:
        return None
    # The median intercept, taken at `now` to keep the arithmetic on small numbers.
    used_now = median(used - slope * (at - now) for at, used in trend)
    full_at = now + (limit - used_now) / slope
    # A time before `now` is kept: the trend says the limit is already reached.
    return full_at if full_at - now <= HORIZON else None


def may_reach(trend: Sequence[Point], limit: int, now: float, within: float) -> bool:
    """Whether the Theil-Sen trend of these points (in time order) could reach `limit`
    within `within` seconds of `now`. False is certain, and costs O(n log n) where the
    forecast's median of all pairwise slopes costs O(n² log n).

    Usage now on the trend is a median of `used + slope * age`, at most the median reading
    plus the slope times the oldest age; so reaching the limit needs a slope of at least
    `need`. The median slope is that steep only if at least half of the pairs are, and a
    pair (a, b) is exactly when `used - need * at` is no lower at b than at a: counted by
    keeping the earlier readings' values sorted.
    """
    middle = median(used for _, used in trend)
    if middle >= limit:
        return True
    # A hair under the bound: a pair right at it must not be lost to float rounding.
    need = (limit - middle) / (now - trend[0][0] + within) * (1 - 1e-9)
    earlier: list[float] = []  # `used - need * at` of strictly earlier readings, sorted
    steep = pairs = 0
    start = 0
    while start < len(trend):
        end = start
        while end < len(trend) and trend[end][0] == trend[start][0]:
            end += 1  # readings at the same time make no pair (the forecast skips them)
        values = [used - need * at for at, used in trend[start:end]]
        for value in values:
            steep += bisect_right(earlier, value)
            pairs += len(earlier)
        for value in values:
            insort(earlier, value)
        start = end
    return 2 * steep >= pairs


def _thinned(points: list[Point], most: int) -> list[Point]:
    """At most `most` + 1 points, the last of each equal slice of time, so that the dense
    recent readings do not outweigh the older hourly and daily ones."""
    if len(points) <= most:
        return points
    start, step = points[0][0], (points[-1][0] - points[0][0]) / most
    kept: dict[int, Point] = {}
    for point in points:
        kept[int((point[0] - start) / step)] = point
    return list(kept.values())
