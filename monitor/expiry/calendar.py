"""Calendar arithmetic of CERBERE password expiry: months, local dates, days left, and the
choice of one expiry among the sources' words. Pure: no clock, no I/O."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from monitor.expiry.model import Expiry, ExpirySource, PasswordDate

# Where two sources report the same change, the directory is the authority, then the
# daemon's own observation, then the hand-kept inventory.
_RANK = {ExpirySource.LDAP: 3, ExpirySource.OBSERVED: 2, ExpirySource.INVENTORY: 1}


def add_months(day: dt.date, months: int) -> dt.date:
    """`day` plus calendar months; a day the target month lacks becomes its last day
    (31 August + 6 months = 28 February, or 29 in a leap year)."""
    index = day.year * 12 + day.month - 1 + months
    year, month = index // 12, index % 12 + 1
    return dt.date(year, month, min(day.day, _days_in_month(year, month)))


def _days_in_month(year: int, month: int) -> int:
    """How many days the month has."""
    first_of_next = dt.date(year + month // 12, month % 12 + 1, 1)
    return (first_of_next - dt.timedelta(days=1)).day


def expiry_from_change(changed_at: dt.datetime, months: int, zone: ZoneInfo) -> dt.datetime:
    """The local date of a change plus `months`, at the change's local wall-clock time."""
    local = _aware(changed_at).astimezone(zone)
    wall = dt.datetime.combine(add_months(local.date(), months), local.time(), tzinfo=zone)
    # fold=0: a wall time that a spring DST change skips is read with the offset before the
    # change (02:30 becomes 03:30 summer time); one that autumn repeats is its first, the
    # earlier instant (the safe side for a warning). The round trip through UTC gives the
    # canonical local form of that instant.
    return wall.astimezone(dt.UTC).astimezone(zone)


def local_date(instant: dt.datetime, zone: ZoneInfo) -> dt.date:
    """The calendar date of an instant in the zone."""
    return _aware(instant).astimezone(zone).date()


def days_left(expires_at: dt.datetime, now: dt.datetime, zone: ZoneInfo) -> int:
    """Calendar days from today's local date to the expiry's local date, never counted in
    hours: 1 on the whole day before, 0 on the expiry date, negative after."""
    return (local_date(expires_at, zone) - local_date(now, zone)).days


@dataclass(frozen=True, slots=True)
class _Word:
    """One source's dated word, with the change that orders it among the others."""

    source: ExpirySource
    expires_at: dt.datetime
    changed_at: dt.datetime | None
    order_by: dt.datetime  # its change, or the change its explicit expiry implies

    def key(self) -> tuple[dt.datetime, int, float]:
        """Most recent change first, then the higher-ranked source, then the earlier expiry."""
        return self.order_by, _RANK[self.source], -self.expires_at.timestamp()


def merge(dates: Iterable[PasswordDate], months: int, zone: ZoneInfo) -> Expiry | None:
    """The expiry of one mailbox from its sources' words: the most recent change wins, and an
    SMTP refusal as expired, not older than that change, marks it expired now."""
    words: list[_Word] = []
    refusals: list[dt.datetime] = []
    addresses: set[str] = set()
    for date in dates:
        addresses.add(date.address)
        if date.source is ExpirySource.SMTP:
            if date.expires_at is None:
                raise ValueError("an SMTP expiry word needs its observation time in expires_at")
            refusals.append(_aware(date.expires_at))
        elif (word := _word(date, months, zone)) is not None:
            words.append(word)
    if len(addresses) > 1:
        raise ValueError("merge takes the dates of one mailbox")
    if not addresses:
        return None
    address = addresses.pop()
    if not words:
        if not refusals:
            return None
        # Nothing dated: the first refusal is the latest the password can have expired.
        return Expiry(address, ExpirySource.SMTP, min(refusals), None, expired_now=True)
    kept = max(words, key=_Word.key)
    # A refusal from before the kept change is about the previous password.
    expired = any(seen >= kept.order_by for seen in refusals)
    return Expiry(address, kept.source, kept.expires_at, kept.changed_at, expired_now=expired)


def _word(date: PasswordDate, months: int, zone: ZoneInfo) -> _Word | None:
    """A source's word as an expiry; None where it gives no date.

    An explicit expiry is the source's own word on the date (a directory knows its policy
    better than our configuration) and is kept as given. Where the source gives no change,
    the change the configured policy implies (expiry minus months) only orders it."""
    if date.expires_at is not None:
        expires_at = _aware(date.expires_at)
        implied = expiry_from_change(expires_at, -months, zone)
        changed_at = _aware(date.changed_at) if date.changed_at is not None else None
        return _Word(date.source, expires_at, changed_at, changed_at or implied)
    if date.changed_at is not None:
        changed_at = _aware(date.changed_at)
        expires_at = expiry_from_change(changed_at, months, zone)
        return _Word(date.source, expires_at, changed_at, changed_at)
    return None


def _aware(instant: dt.datetime) -> dt.datetime:
    """The instant itself; a naive datetime is a bug (it would be read as the host's zone)."""
    if instant.utcoffset() is None:
        raise ValueError("expiry arithmetic needs timezone-aware datetimes")
    return instant
