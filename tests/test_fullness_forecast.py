"""The growth forecast (Theil-Sen over the recent trend) and the bounded usage history."""

from __future__ import annotations

import random

import pytest

from monitor.config.values import DAY, HOUR, MINUTE
from monitor.fullness.forecast import Point, forecast_full, last_cleanup
from monitor.fullness.history import bound, compact

NOW = 1_800_000_000.0
MIB = 1024**2
LIMIT = 2048 * MIB
WINDOW = 14 * DAY


def growth(days: float, start: int, per_day: int, every: float = 6 * HOUR) -> list[Point]:
    """Readings every `every` seconds over the last `days`, growing `per_day` bytes a day."""
    count = int(days * DAY / every)
    return [
        (NOW - (count - i) * every, start + round(per_day * (days - (count - i) * every / DAY)))
        for i in range(count + 1)
    ]


def truth(points: list[Point], per_day: int) -> float:
    """When the steady growth of `points` reaches LIMIT."""
    at, used = points[-1]
    return at + (LIMIT - used) / per_day * DAY


@pytest.mark.parametrize(
    ("per_day", "every"),
    [(20 * MIB, 6 * HOUR), (3 * MIB, 15 * MINUTE), (100 * MIB, 4 * HOUR), (MIB, HOUR)],
)
def test_steady_growth_is_forecast_within_an_hour(per_day: int, every: float) -> None:
    """A mailbox growing X bytes a day is forecast full within an hour of the truth."""
    points = growth(14, 1000 * MIB, per_day, every)
    forecast = forecast_full(points, LIMIT, NOW, WINDOW)
    assert forecast is not None and abs(forecast - truth(points, per_day)) < HOUR


@pytest.mark.parametrize("odd", [0, 5 * LIMIT, -1000 * MIB])
def test_one_odd_reading_moves_the_forecast_less_than_a_day(odd: int) -> None:
    """One reading far off the trend (zero, five times the limit, far below) barely counts."""
    points = growth(14, 1000 * MIB, 20 * MIB)
    steady = forecast_full(points, LIMIT, NOW, WINDOW)
    for index in (5, len(points) // 2, len(points) - 1):
        spoiled = list(points)
        spoiled[index] = (points[index][0], max(0, points[index][1] + odd) if odd else 0)
        forecast = forecast_full(spoiled, LIMIT, NOW, WINDOW)
        assert steady is not None and forecast is not None
        assert abs(forecast - steady) < DAY, index


def test_noise_is_tolerated() -> None:
    """Exchange's estimates wobble around the trend; the forecast stays within a day."""
    jitter = random.Random(15)
    points = [
        (at, used + jitter.randint(-5 * MIB, 5 * MIB))
        for at, used in growth(14, 1000 * MIB, 30 * MIB)
    ]
    forecast = forecast_full(points, LIMIT, NOW, WINDOW)
    assert (
        forecast is not None
        and abs(forecast - truth(growth(14, 1000 * MIB, 30 * MIB), 30 * MIB)) < DAY
    )


def test_a_cleanup_restarts_the_trend() -> None:
    """After a large drop only the readings since count: the old steeper growth is gone."""
    before = [(at - 7 * DAY, used) for at, used in growth(7, 1000 * MIB, 80 * MIB)]
    after = [(at, used) for at, used in growth(7, 300 * MIB, 10 * MIB)][1:]
    points = before + after
    assert last_cleanup(points) == len(before)
    forecast = forecast_full(points, LIMIT, NOW, WINDOW)
    assert forecast is not None and abs(forecast - truth(after, 10 * MIB)) < HOUR


def test_right_after_a_cleanup_there_is_no_forecast() -> None:
    """Fewer than a day of readings since the clean-up: too few to say anything."""
    cleaned = [(NOW + HOUR, 300 * MIB), (NOW + 2 * HOUR, 301 * MIB)]
    points = [*growth(7, 1500 * MIB, 80 * MIB), *cleaned]
    assert forecast_full(points, LIMIT, NOW + 2 * HOUR, WINDOW) is None


@pytest.mark.parametrize(
    ("points", "reason"),
    [
        (growth(14, 1000 * MIB, 0), "flat"),
        (growth(14, 1500 * MIB, -5 * MIB), "shrinking"),
        (growth(14, 1000 * MIB, 20 * MIB)[-2:], "two points"),
        (growth(0.5, 1000 * MIB, 20 * MIB, HOUR), "half a day"),
        ([], "none"),
        (growth(14, 100 * MIB, 1), "a byte a day: thousands of years"),
    ],
)
def test_no_forecast(points: list[Point], reason: str) -> None:
    """No forecast where the mailbox is not growing, or too little is known."""
    assert forecast_full(points, LIMIT, NOW, WINDOW) is None, reason


def test_only_the_window_counts() -> None:
    """Growth older than the window is left out: a mailbox that stopped growing is flat."""
    old = [(at - 30 * DAY, used) for at, used in growth(30, 100 * MIB, 30 * MIB)]
    flat = growth(14, old[-1][1], 0)[1:]
    assert forecast_full(old + flat, LIMIT, NOW, WINDOW) is None


def test_many_points_are_thinned_evenly_in_time() -> None:
    """A reading a minute for 14 days still gives the forecast (on at most 200 points)."""
    points = growth(14, 1000 * MIB, 20 * MIB, MINUTE)
    forecast = forecast_full(points, LIMIT, NOW, WINDOW)
    assert forecast is not None and abs(forecast - truth(points, 20 * MIB)) < HOUR


@pytest.mark.parametrize(
    ("cadence", "keep"), [(MINUTE, 90 * DAY), (7 * MINUTE, 90 * DAY), (HOUR, 30 * DAY)]
)
def test_compaction_is_bounded(cadence: float, keep: float) -> None:
    """Whatever the cadence, the history holds at most `bound(keep)` points, thinner with age."""
    points: list[Point] = []
    for i in range(int(120 * DAY / cadence)):
        at = NOW - 120 * DAY + i * cadence
        points = compact([*points, (at, i)], at, keep) if i % 97 == 0 else [*points, (at, i)]
    last = points[-1][0]
    kept = compact(points, last, keep)
    assert len(kept) <= bound(keep)
    assert bound(90 * DAY) == 559
    assert kept == sorted(kept) and kept[-1] == points[-1]
    assert min(at for at, _ in kept) >= last - keep
    recent = [at for at, _ in kept if at >= last - 2 * DAY]
    hourly = [at for at, _ in kept if last - 14 * DAY <= at < last - 2 * DAY]
    daily = [at for at, _ in kept if at < last - 14 * DAY]
    assert (
        len(recent) <= 2 * 96 + 1
        and len(hourly) <= 12 * 24 + 1
        and len(daily) <= keep / DAY - 14 + 1
    )
    assert compact(kept, last, keep) == kept  # compacting again changes nothing


def test_compaction_keeps_every_point_of_a_sparse_mailbox() -> None:
    """Exchange estimates every few hours are all kept for two weeks."""
    points = growth(14, 1000 * MIB, 20 * MIB, 4 * HOUR)
    assert compact(points, NOW, 90 * DAY) == points
