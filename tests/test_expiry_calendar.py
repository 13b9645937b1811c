"""Expiry calendar, without a clock: calendar months, Brussels dates and days left across
DST changes, and the choice of one expiry among the sources."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest

from monitor.expiry.calendar import add_months, days_left, expiry_from_change, local_date, merge
from monitor.expiry.model import Expiry, ExpirySource, PasswordDate

BRUSSELS = ZoneInfo("Europe/Brussels")
UTC = dt.UTC
ADDRESS = "ec001234@adm.cfwb.be"


def local(*parts: int, fold: int = 0) -> dt.datetime:
    """A Brussels wall-clock time."""
    return dt.datetime(*parts, tzinfo=BRUSSELS, fold=fold)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("day", "months", "expected"),
    [
        (dt.date(2026, 8, 31), 6, dt.date(2027, 2, 28)),  # 31st onto a short February
        (dt.date(2027, 8, 31), 6, dt.date(2028, 2, 29)),  # ...of a leap year
        (dt.date(2027, 11, 30), 3, dt.date(2028, 2, 29)),
        (dt.date(2028, 1, 31), 1, dt.date(2028, 2, 29)),
        (dt.date(2026, 10, 31), 1, dt.date(2026, 11, 30)),  # 31st onto a 30-day month
        (dt.date(2028, 2, 29), 12, dt.date(2029, 2, 28)),  # leap day onto a common year
        (dt.date(2026, 12, 15), 1, dt.date(2027, 1, 15)),  # over the new year
        (dt.date(2026, 7, 10), 6, dt.date(2027, 1, 10)),
        (dt.date(2026, 12, 31), 12, dt.date(2027, 12, 31)),
        (dt.date(2026, 12, 31), 6, dt.date(2027, 6, 30)),
        (dt.date(2027, 3, 31), -1, dt.date(2027, 2, 28)),  # backwards too
        (dt.date(2027, 1, 15), -1, dt.date(2026, 12, 15)),
        (dt.date(2027, 5, 9), 0, dt.date(2027, 5, 9)),
    ],
)
def test_add_months_maps_a_missing_day_to_the_month_end(
    day: dt.date, months: int, expected: dt.date
) -> None:
    """Calendar months; a day the target month lacks becomes that month's last day."""
    assert add_months(day, months) == expected


def test_expiry_keeps_the_local_date_and_wall_time_of_the_change() -> None:
    """22:30 UTC on 30 September is 1 October in Brussels: the expiry is 1 April, 00:30."""
    changed = dt.datetime(2026, 9, 30, 22, 30, tzinfo=UTC)
    expires = expiry_from_change(changed, 6, BRUSSELS)
    assert expires == local(2027, 4, 1, 0, 30)
    assert (expires.date(), expires.time()) == (dt.date(2027, 4, 1), dt.time(0, 30))
    # Summer time in April: the instant is two hours before, not one.
    assert expires.astimezone(UTC) == dt.datetime(2027, 3, 31, 22, 30, tzinfo=UTC)


def test_expiry_on_a_skipped_wall_time_moves_forward() -> None:
    """02:30 does not exist on 28 March 2027 in Brussels: the expiry is 03:30 summer time."""
    expires = expiry_from_change(local(2026, 9, 28, 2, 30), 6, BRUSSELS)
    assert expires.astimezone(UTC) == dt.datetime(2027, 3, 28, 1, 30, tzinfo=UTC)
    assert (expires.date(), expires.time()) == (dt.date(2027, 3, 28), dt.time(3, 30))


def test_expiry_on_a_repeated_wall_time_is_the_first_occurrence() -> None:
    """02:30 happens twice on 31 October 2027: the expiry is the first, in summer time."""
    expires = expiry_from_change(local(2026, 10, 31, 2, 30), 12, BRUSSELS)
    assert expires.astimezone(UTC) == dt.datetime(2027, 10, 31, 0, 30, tzinfo=UTC)
    assert local_date(expires, BRUSSELS) == dt.date(2027, 10, 31)


def test_naive_datetimes_are_refused() -> None:
    """A naive datetime would be read in the host's zone: it is a bug, said at once."""
    with pytest.raises(ValueError, match="timezone-aware"):
        days_left(dt.datetime(2027, 1, 1), dt.datetime(2026, 12, 1, tzinfo=UTC), BRUSSELS)


@pytest.mark.parametrize(
    ("expires_at", "now", "expected"),
    [
        # Spring change on 28 March 2027 (a 23-hour day).
        (local(2027, 3, 29, 0, 30), local(2027, 3, 28, 0, 30), 1),  # 23 h left, still 1 day
        (local(2027, 3, 29, 0, 30), local(2027, 3, 28, 2, 30), 1),  # skipped time: 03:30
        (local(2027, 3, 29, 0, 30), local(2027, 3, 28, 23, 59), 1),
        (local(2027, 3, 29, 0, 30), local(2027, 3, 29, 0, 0), 0),
        (local(2027, 3, 28, 23, 0), local(2027, 3, 27, 23, 59), 1),
        (local(2027, 3, 28, 23, 0), local(2027, 3, 28, 0, 30), 0),
        (local(2027, 3, 28, 23, 0), local(2027, 3, 28, 2, 30), 0),
        (local(2027, 3, 28, 23, 0), local(2027, 3, 28, 23, 59), 0),  # just after: still 0
        (local(2027, 3, 28, 0, 30), local(2027, 3, 29, 0, 30), -1),
        # Autumn change on 31 October 2027 (a 25-hour day).
        (local(2027, 11, 1, 0, 30), local(2027, 10, 31, 0, 30), 1),  # 25 h left, still 1 day
        (local(2027, 11, 1, 0, 30), local(2027, 10, 31, 2, 30), 1),
        (local(2027, 11, 1, 0, 30), local(2027, 10, 31, 2, 30, fold=1), 1),
        (local(2027, 11, 1, 0, 30), local(2027, 10, 31, 23, 59), 1),
        (local(2027, 11, 1, 0, 30), local(2027, 11, 1, 0, 0), 0),
        (local(2027, 10, 31, 2, 30, fold=1), local(2027, 10, 30, 23, 59), 1),
        (local(2027, 10, 31, 2, 30, fold=1), local(2027, 10, 31, 0, 30), 0),
        (local(2027, 10, 31, 2, 30, fold=1), local(2027, 10, 31, 2, 30), 0),
        (local(2027, 10, 31, 2, 30), local(2027, 10, 31, 2, 30, fold=1), 0),  # 1 h after
        (local(2027, 10, 31, 2, 30), local(2027, 10, 31, 23, 59), 0),
        (local(2027, 10, 31, 0, 30), local(2027, 11, 1, 0, 30), -1),
    ],
)
def test_days_left_counts_brussels_dates_across_dst(
    expires_at: dt.datetime, now: dt.datetime, expected: int
) -> None:
    """Days left are the difference of Brussels dates, whatever the length of the day."""
    assert days_left(expires_at, now, BRUSSELS) == expected


@pytest.mark.parametrize("expiry_day", [dt.date(2027, 3, 28), dt.date(2027, 10, 31)])
@pytest.mark.parametrize("wall", [dt.time(0, 0), dt.time(2, 30), dt.time(23, 59)])
def test_days_left_steps_once_per_local_midnight(expiry_day: dt.date, wall: dt.time) -> None:
    """Stepping every 10 minutes over three days around a DST change, days left only fall,
    by one at each Brussels midnight, and are 0 all through the expiry date, never 1."""
    expires_at = dt.datetime.combine(expiry_day, wall, tzinfo=BRUSSELS)
    start = dt.datetime.combine(expiry_day - dt.timedelta(days=2), dt.time(), tzinfo=BRUSSELS)
    steps = [start.astimezone(UTC) + dt.timedelta(minutes=10 * i) for i in range(5 * 144)]
    counts = [days_left(expires_at, now, BRUSSELS) for now in steps]
    for before, after, (count, next_count) in zip(
        steps, steps[1:], itertools.pairwise(counts), strict=False
    ):
        crosses_midnight = local_date(before, BRUSSELS) != local_date(after, BRUSSELS)
        assert next_count == count - (1 if crosses_midnight else 0)
    by_date: dict[dt.date, set[int]] = {}
    for now, count in zip(steps, counts, strict=True):
        by_date.setdefault(local_date(now, BRUSSELS), set()).add(count)
    assert by_date[expiry_day - dt.timedelta(days=2)] == {2}
    assert by_date[expiry_day - dt.timedelta(days=1)] == {1}
    assert by_date[expiry_day] == {0}
    assert by_date[expiry_day + dt.timedelta(days=1)] == {-1}
    assert all(count >= 0 for now, count in zip(steps, counts, strict=True) if now < expires_at)


def word(
    source: ExpirySource, changed: dt.datetime | None = None, **kw: dt.datetime
) -> PasswordDate:
    """One source's word on the mailbox's password."""
    return PasswordDate(ADDRESS, source, changed_at=changed, expires_at=kw.get("expires"))


def test_the_most_recent_change_wins_across_sources() -> None:
    """Inventory, directory and observation disagree: the latest change gives the expiry."""
    dates = [
        word(ExpirySource.INVENTORY, local(2026, 1, 10, 9, 0)),
        word(ExpirySource.OBSERVED, local(2026, 3, 5, 14, 20)),
        word(ExpirySource.LDAP, local(2026, 2, 1, 11, 0)),
    ]
    for ordering in itertools.permutations(dates):
        assert merge(ordering, 6, BRUSSELS) == Expiry(
            ADDRESS, ExpirySource.OBSERVED, local(2026, 9, 5, 14, 20), local(2026, 3, 5, 14, 20)
        )


def test_an_explicit_expiry_is_kept_as_given_and_ordered_by_its_implied_change() -> None:
    """An inventory expiry of 1 December implies a change on 1 June, later than the
    observed change of 5 March: the explicit date wins, as given, with no change known."""
    dates = [
        word(ExpirySource.OBSERVED, local(2026, 3, 5, 14, 20)),
        word(ExpirySource.INVENTORY, expires=local(2026, 12, 1, 0, 0)),
    ]
    kept = merge(dates, 6, BRUSSELS)
    assert kept == Expiry(ADDRESS, ExpirySource.INVENTORY, local(2026, 12, 1, 0, 0), None)
    # A later observed change then wins over it.
    later = [*dates, word(ExpirySource.OBSERVED, local(2026, 6, 2, 8, 0))]
    assert merge(later, 6, BRUSSELS) == Expiry(
        ADDRESS, ExpirySource.OBSERVED, local(2026, 12, 2, 8, 0), local(2026, 6, 2, 8, 0)
    )


def test_a_source_giving_change_and_expiry_keeps_its_expiry() -> None:
    """A directory with its own (shorter) policy gives both: its expiry stands, its change
    orders it."""
    ldap = word(ExpirySource.LDAP, local(2026, 4, 1, 10, 0), expires=local(2026, 7, 1, 10, 0))
    inventory = word(ExpirySource.INVENTORY, local(2026, 3, 1, 10, 0))
    assert merge([inventory, ldap], 6, BRUSSELS) == Expiry(
        ADDRESS, ExpirySource.LDAP, local(2026, 7, 1, 10, 0), local(2026, 4, 1, 10, 0)
    )


def test_ties_are_broken_by_source_then_earlier_expiry() -> None:
    """The same change from two sources: the directory's word is kept, in any input order;
    one source saying two expiries for one change: the earlier is kept."""
    changed = local(2026, 5, 4, 9, 0)
    dates = [
        word(ExpirySource.INVENTORY, changed, expires=local(2026, 11, 1, 9, 0)),
        word(ExpirySource.LDAP, changed),
        word(ExpirySource.OBSERVED, changed),
    ]
    for ordering in itertools.permutations(dates):
        kept = merge(ordering, 6, BRUSSELS)
        assert kept is not None and kept.source is ExpirySource.LDAP
    twice = [
        word(ExpirySource.INVENTORY, changed, expires=local(2026, 11, 4, 9, 0)),
        word(ExpirySource.INVENTORY, changed, expires=local(2026, 10, 4, 9, 0)),
    ]
    for ordering in itertools.permutations(twice):
        kept = merge(ordering, 6, BRUSSELS)
        assert kept is not None and kept.expires_at == local(2026, 10, 4, 9, 0)


def test_smtp_expired_marks_the_kept_expiry_expired_now() -> None:
    """SMTP AUTH said expired after the latest change: expired now, whatever the date."""
    dates = [
        word(ExpirySource.INVENTORY, local(2026, 3, 1, 10, 0)),
        word(ExpirySource.SMTP, expires=local(2026, 6, 15, 12, 0)),
    ]
    assert merge(dates, 6, BRUSSELS) == Expiry(
        ADDRESS,
        ExpirySource.INVENTORY,
        local(2026, 9, 1, 10, 0),
        local(2026, 3, 1, 10, 0),
        expired_now=True,
    )


def test_smtp_expired_before_the_latest_change_is_about_the_old_password() -> None:
    """A refusal older than the kept change does not mark the new password expired."""
    dates = [
        word(ExpirySource.SMTP, expires=local(2026, 9, 1, 12, 0)),
        word(ExpirySource.OBSERVED, local(2026, 9, 2, 9, 0)),
    ]
    kept = merge(dates, 6, BRUSSELS)
    assert kept is not None and not kept.expired_now
    assert kept.expires_at == local(2027, 3, 2, 9, 0)


def test_smtp_expired_alone_gives_an_expiry_at_the_first_refusal() -> None:
    """No date known: the expiry is the first refusal seen, from SMTP, expired now."""
    dates = [
        word(ExpirySource.SMTP, expires=local(2026, 9, 3, 12, 0)),
        word(ExpirySource.SMTP, expires=local(2026, 9, 1, 12, 0)),
        word(ExpirySource.INVENTORY),  # a row without dates says nothing
    ]
    assert merge(dates, 6, BRUSSELS) == Expiry(
        ADDRESS, ExpirySource.SMTP, local(2026, 9, 1, 12, 0), None, expired_now=True
    )


def test_nothing_known_is_no_expiry() -> None:
    """No dates, or only empty words: no expiry."""
    assert merge([], 6, BRUSSELS) is None
    assert merge([word(ExpirySource.LDAP)], 6, BRUSSELS) is None


def test_merge_refuses_two_mailboxes() -> None:
    """Dates of two mailboxes in one merge are a caller's bug."""
    other = PasswordDate("ec000001@adm.cfwb.be", ExpirySource.LDAP, local(2026, 1, 1, 0, 0))
    with pytest.raises(ValueError, match="one mailbox"):
        merge([word(ExpirySource.LDAP, local(2026, 1, 1, 0, 0)), other], 6, BRUSSELS)
