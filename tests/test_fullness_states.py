"""Quota states: bounds from ratios or Exchange tiers, and hysteresis that does not flap."""

from __future__ import annotations

import pytest
from pydantic import ByteSize

from monitor.config.fullness_model import QuotaConfig, QuotaTiers
from monitor.config.model import Kind, Mailbox
from monitor.fullness.states import Bounds, QuotaLevel, bounds_for, next_state
from monitor.fullness.tracker import FullnessTracker
from monitor.probes.result import QuotaReading, QuotaSource
from monitor.quota import quota_level

OK, WARNING, CRITICAL, FULL = (
    QuotaLevel.OK,
    QuotaLevel.WARNING,
    QuotaLevel.CRITICAL,
    QuotaLevel.FULL,
)
MIB = 1024**2
LIMIT = 10_000  # bytes: 1 % is 100 bytes, so percentages read directly
PERCENT_BOUNDS = Bounds(8_500, 9_500, 10_000)
MARGIN = 200  # 2 % of the limit


def at_percent(percent: float) -> int:
    """Bytes used at `percent` of LIMIT."""
    return round(percent * LIMIT / 100)


def walk(percents: list[float], start: QuotaLevel | None = None) -> list[QuotaLevel]:
    """The states a mailbox passes through as its usage takes each value in turn."""
    states, state = [], start
    for percent in percents:
        state = next_state(state, at_percent(percent), PERCENT_BOUNDS, MARGIN)
        states.append(state)
    return states


@pytest.mark.parametrize(
    ("percents", "expected"),
    [
        # Hovering at the warning threshold: enters once, does not flap back.
        ([84.9, 85.1, 84.9, 85.1, 84.9, 83.5], [OK, WARNING, WARNING, WARNING, WARNING, WARNING]),
        # Leaves only below bound - margin: 83 % is still warning, 82.99 % is ok.
        ([85, 83, 82.99], [WARNING, WARNING, OK]),
        ([95, 93.5, 93, 92.99], [CRITICAL, CRITICAL, CRITICAL, WARNING]),
        ([100, 98, 97.99], [FULL, FULL, CRITICAL]),
        # Jumps several states at once, up and down.
        ([10, 100], [OK, FULL]),
        ([100, 50], [FULL, OK]),
        # Down from critical to 84 %: below critical's 93 %, still above warning's 83 %.
        ([96, 84], [CRITICAL, WARNING]),
        # Hovering at the critical threshold from warning.
        ([90, 95, 94.9, 95.1, 94], [WARNING, CRITICAL, CRITICAL, CRITICAL, CRITICAL]),
        # No previous state (first reading, or classification alone): no hysteresis.
        ([84.0], [OK]),
    ],
)
def test_hysteresis(percents: list[float], expected: list[QuotaLevel]) -> None:
    """A state is entered at its bound and left only below its bound minus the margin."""
    assert walk(percents) == expected


def test_a_restored_state_keeps_its_hysteresis() -> None:
    """A mailbox known to be in warning stays there at 84 %; unknown, it would be ok."""
    assert walk([84], start=WARNING) == [WARNING]
    assert walk([84]) == [OK]


def reading(used: int, limit: int | None = None) -> QuotaReading:
    """An IMAP QUOTA reading."""
    return QuotaReading(used, limit, QuotaSource.IMAP_QUOTA, 1_800_000_000.0)


FLEET_TIERS = QuotaTiers(
    issue_warning=ByteSize(40 * MIB),
    prohibit_send=ByteSize(45 * MIB),
    prohibit_send_receive=ByteSize(50 * MIB),
)
OWN_TIERS = QuotaTiers(
    issue_warning=ByteSize(90 * MIB),
    prohibit_send=ByteSize(95 * MIB),
    prohibit_send_receive=ByteSize(100 * MIB),
)


@pytest.mark.parametrize(
    ("limit", "own", "fleet", "expected"),
    [
        (1000, None, None, Bounds(850, 950, 1000)),
        (None, None, None, Bounds(1_825_361_101, 2_040_109_466, 2 * 1024**3)),
        (1000, None, FLEET_TIERS, Bounds(40 * MIB, 45 * MIB, 50 * MIB)),
        (1000, OWN_TIERS, FLEET_TIERS, Bounds(90 * MIB, 95 * MIB, 100 * MIB)),
        (1000, OWN_TIERS, None, Bounds(90 * MIB, 95 * MIB, 100 * MIB)),
    ],
)
def test_bounds(
    limit: int | None, own: QuotaTiers | None, fleet: QuotaTiers | None, expected: Bounds
) -> None:
    """The mailbox's own tiers win over the fleet's, which win over the limit's ratios."""
    assert bounds_for(reading(0, limit), own, QuotaConfig(tiers=fleet)) == expected


@pytest.mark.parametrize(
    ("used", "own", "expected"),
    [
        (39 * MIB, None, OK),
        (40 * MIB, None, WARNING),
        (45 * MIB, None, CRITICAL),
        (50 * MIB, None, FULL),
        (50 * MIB, OWN_TIERS, OK),  # its own tiers are larger than the fleet's
        (99 * MIB, OWN_TIERS, CRITICAL),
    ],
)
def test_exchange_tiers(used: int, own: QuotaTiers | None, expected: QuotaLevel) -> None:
    """With tiers, the states follow IssueWarning, ProhibitSend and ProhibitSendReceive,
    whatever limit the server's own (estimated) reading gives."""
    config = QuotaConfig(tiers=FLEET_TIERS)
    bounds = bounds_for(reading(used, 10 * 1024**3), own, config)
    assert next_state(None, used, bounds, bounds.margin(config.hysteresis)) is expected


def test_fleet_tiers_classify_a_single_reading_too() -> None:
    """`quota_level` (the probe command's column) follows the fleet's tiers as well."""
    assert quota_level(reading(45 * MIB, 10 * 1024**3), QuotaConfig(tiers=FLEET_TIERS)) is CRITICAL


MAILBOX = Mailbox("ec000001@adm.cfwb.be", Kind.EC, "000001", "main")


def test_the_tracker_announces_each_change_once() -> None:
    """Readings hovering at 85 % give one transition into warning, with its time kept."""
    tracker, config = FullnessTracker(), QuotaConfig()
    transitions = []
    for hour, percent in enumerate([50, 84.9, 85.1, 84.9, 85.1, 84.9, 82.9]):
        at = 1_800_000_000.0 + hour * 3600
        used = at_percent(percent)
        found = tracker.observe(
            MAILBOX, QuotaReading(used, LIMIT, QuotaSource.IMAP_QUOTA, at), config
        )
        if found is not None:
            transitions.append((found.previous, found.current, found.at - 1_800_000_000.0))
    assert transitions == [(None, OK, 0.0), (OK, WARNING, 7200.0), (WARNING, OK, 21600.0)]
    assert tracker.state(MAILBOX.address) == (OK, 1_800_000_000.0 + 21600)


def test_pop3_stat_readings_are_left_out() -> None:
    """STAT counts the inbox alone: it neither sets a state nor enters the history."""
    tracker, config = FullnessTracker(), QuotaConfig()
    stat = QuotaReading(at_percent(99), LIMIT, QuotaSource.POP3_STAT, 1_800_000_000.0)
    assert tracker.observe(MAILBOX, stat, config) is None
    assert tracker.state(MAILBOX.address) is None and tracker.history(MAILBOX.address) == []
    assert tracker.dirty() == set()


def test_a_late_or_repeated_reading_adds_no_point() -> None:
    """The same reading seen twice, or an older one arriving late, leaves the history alone."""
    tracker, config = FullnessTracker(), QuotaConfig()
    for at, used in [(1_800_003_600.0, 500), (1_800_003_600.0, 500), (1_800_000_000.0, 400)]:
        tracker.observe(MAILBOX, QuotaReading(used, LIMIT, QuotaSource.IMAP_QUOTA, at), config)
    assert tracker.history(MAILBOX.address) == [(1_800_003_600.0, 500)]
    assert tracker.take_dirty() == {MAILBOX.address} and tracker.dirty() == set()
