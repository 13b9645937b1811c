"""Which warning mail is due, without a clock or a relay: a simulated fortnight through
midnights and a DST change, catch-up after an outage, the send window, and French dates."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from zoneinfo import ZoneInfo

import pytest

from monitor.config.expiry_model import ExpiryConfig
from monitor.expiry.calendar import local_date
from monitor.expiry.model import Expiry, ExpirySource
from monitor.expiry.warnings import Due, due_warning, next_warning
from monitor.notify.french import french_date, french_days

BRUSSELS = ZoneInfo("Europe/Brussels")
CONFIG = ExpiryConfig()  # thresholds 15, 5, 1; window 08:00-18:00 in Brussels
STEP = dt.timedelta(minutes=10)

# (mailbox, threshold, days left, local time it goes out, thresholds superseded)
Sent = tuple[str, int, int, dt.datetime, tuple[int, ...]]


def local(day: dt.date, hour: int = 0, minute: int = 0) -> dt.datetime:
    """A Brussels wall-clock time on a day."""
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=BRUSSELS)


def expiring(address: str, at: dt.datetime, *, expired_now: bool = False) -> Expiry:
    """An expiry at `at`, as an inventory change would give it."""
    return Expiry(address, ExpirySource.INVENTORY, at, None, expired_now=expired_now)


def run(
    fleet: list[Expiry], start: dt.datetime, end: dt.datetime, done: dict[str, set[int]]
) -> list[Sent]:
    """Steps the clock every 10 minutes from start to end as the daemon would, feeding each
    warning sent (and the thresholds it supersedes) back as done."""
    sent: list[Sent] = []
    now = start.astimezone(dt.UTC)
    while now < end:
        for expiry in fleet:
            mailbox_done = done.setdefault(expiry.address, set())
            due = due_warning(expiry, now, CONFIG, mailbox_done)
            if due is not None:
                local_now = now.astimezone(BRUSSELS)
                sent.append(
                    (expiry.address, due.threshold, due.days_left, local_now, due.superseded)
                )
                mailbox_done.update({due.threshold, *due.superseded})
        now += STEP
    return sent


@pytest.mark.parametrize(
    "first_day",
    [dt.date(2027, 3, 20), dt.date(2027, 10, 23)],  # through 28 March / 31 October 2027
    ids=["spring", "autumn"],
)
def test_a_fortnight_sends_each_expected_mail_once(first_day: dt.date) -> None:
    """A fleet expiring in 16, 15, 5, 1, 0 and -3 days, the clock stepping every 10 minutes
    for 17 days through midnights and a DST change: each expected mail goes once, at
    08:00 Brussels on its day, with the true days left; none on or after an expiry date."""
    walls = {16: (0, 30), 15: (10, 0), 5: (23, 45), 1: (8, 0), 0: (12, 0), -3: (9, 0)}
    fleet = [
        expiring(f"ec{100 + n:06d}@adm.cfwb.be", local(first_day + dt.timedelta(days=n), *wall))
        for n, wall in walls.items()
    ]
    upcoming = {e.address: next_warning(e, local(first_day), CONFIG, ()) for e in fleet}
    sent = run(fleet, local(first_day), local(first_day + dt.timedelta(days=17)), {})

    def mail(n: int, threshold: int, day: int, superseded: tuple[int, ...] = ()) -> Sent:
        at = local(first_day + dt.timedelta(days=day), 8, 0)
        return (f"ec{100 + n:06d}@adm.cfwb.be", threshold, n - day, at, superseded)

    assert sent == [
        mail(15, 15, 0),
        mail(5, 5, 0, (15,)),
        mail(1, 1, 0, (15, 5)),
        mail(16, 15, 1),
        mail(5, 1, 4),
        mail(15, 5, 10),
        mail(16, 5, 11),
        mail(15, 1, 14),
        mail(16, 1, 15),
    ]
    assert all(at.time() == dt.time(8, 0) and at.utcoffset() is not None for *_, at, _s in sent)
    # The CLI's "next threshold and its date" announced each mailbox's first mail.
    first_mail = {}
    for address, threshold, _left, at, _superseded in sent:
        first_mail.setdefault(address, (threshold, at.date()))
    assert upcoming == {e.address: first_mail.get(e.address) for e in fleet}


def test_catch_up_after_an_outage_sends_only_the_most_urgent_mail() -> None:
    """Down from 16 days to 4 days before expiry: back at 13:30, one mail for threshold 5
    with 4 days left goes at once, 15 is superseded; then threshold 1 the day before."""
    expiry_day = dt.date(2027, 11, 10)
    fleet = [expiring("ec004321@adm.cfwb.be", local(expiry_day, 10, 0))]
    done: dict[str, set[int]] = {}
    before = run(
        fleet,
        local(expiry_day - dt.timedelta(days=17)),
        local(expiry_day, 0) - dt.timedelta(days=16),
        done,
    )
    assert before == []
    back = local(expiry_day - dt.timedelta(days=4), 13, 30)
    after = run(fleet, back, local(expiry_day + dt.timedelta(days=2)), done)
    assert after == [
        ("ec004321@adm.cfwb.be", 5, 4, back, (15,)),
        ("ec004321@adm.cfwb.be", 1, 1, local(expiry_day - dt.timedelta(days=1), 8, 0), ()),
    ]
    assert done == {"ec004321@adm.cfwb.be": {15, 5, 1}}


def test_back_in_the_evening_waits_for_the_morning() -> None:
    """Back at 19:00 two days before expiry: nothing at night; at 08:00 the day before, the
    mail for threshold 1 goes, 15 and 5 superseded."""
    expiry_day = dt.date(2027, 3, 29)
    fleet = [expiring("po000777@adm.cfwb.be", local(expiry_day, 9, 0))]
    back = local(expiry_day - dt.timedelta(days=2), 19, 0)
    assert next_warning(fleet[0], back, CONFIG, ()) == (1, dt.date(2027, 3, 28))
    sent = run(fleet, back, local(expiry_day + dt.timedelta(days=1)), {})
    assert sent == [("po000777@adm.cfwb.be", 1, 1, local(dt.date(2027, 3, 28), 8, 0), (15, 5))]


@pytest.mark.parametrize(
    ("hour", "minute", "due"),
    [(0, 0, False), (7, 59, False), (8, 0, True), (17, 59, True), (18, 0, False), (23, 50, False)],
)
def test_mails_go_only_within_the_send_window(hour: int, minute: int, due: bool) -> None:
    """The window is [08:00, 18:00) Brussels time: never at night."""
    day = dt.date(2027, 6, 1)
    expiry = expiring("ec000001@adm.cfwb.be", local(day + dt.timedelta(days=5), 12, 0))
    result = due_warning(expiry, local(day, hour, minute), CONFIG, ())
    assert (result is not None) is due


def test_a_configured_window_and_thresholds_are_followed() -> None:
    """Thresholds 10 and 3 from 09:30 to 12:00: threshold 3 at 09:30, not at 09:20."""
    config = CONFIG.model_copy(
        update={"thresholds": (10, 3), "send_from": "09:30", "send_until": "12:00"}
    )
    day = dt.date(2027, 6, 1)
    expiry = expiring("ec000001@adm.cfwb.be", local(day + dt.timedelta(days=3), 12, 0))
    assert due_warning(expiry, local(day, 9, 20), config, ()) is None
    assert due_warning(expiry, local(day, 9, 30), config, ()) == Due(
        3, 3, dt.date(2027, 6, 4), (10,)
    )


def test_no_warning_on_the_expiry_date_or_after() -> None:
    """On the expiry date, at any hour, nothing is due: never "1 day" on the day itself."""
    day = dt.date(2027, 10, 31)
    expiry = expiring("ec000002@adm.cfwb.be", local(day, 23, 0))
    for hour in range(8, 18):
        assert due_warning(expiry, local(day, hour), CONFIG, ()) is None
        assert due_warning(expiry, local(day + dt.timedelta(days=3), hour), CONFIG, ()) is None
    assert next_warning(expiry, local(day, 7), CONFIG, ()) is None
    assert due_warning(expiry, local(day - dt.timedelta(days=1), 17, 59), CONFIG, ()) == Due(
        1, 1, day, (15, 5)
    )


def test_an_expired_password_gets_no_mail() -> None:
    """SMTP said expired: the state is a metric for an alert, not a mail."""
    day = dt.date(2027, 6, 1)
    expiry = expiring(
        "ec000003@adm.cfwb.be", local(day + dt.timedelta(days=5), 12, 0), expired_now=True
    )
    assert due_warning(expiry, local(day, 10), CONFIG, ()) is None
    assert next_warning(expiry, local(day, 10), CONFIG, ()) is None


def test_a_done_threshold_is_never_sent_again_nor_a_larger_one() -> None:
    """Threshold 5 done with 4 days left: nothing now (15 never goes after it); 1 is next."""
    day = dt.date(2027, 6, 1)
    expiry = expiring("ec000004@adm.cfwb.be", local(day + dt.timedelta(days=4), 12, 0))
    assert due_warning(expiry, local(day, 10), CONFIG, {5}) is None
    assert next_warning(expiry, local(day, 10), CONFIG, {5}) == (1, dt.date(2027, 6, 4))
    assert due_warning(expiry, local(day, 10), CONFIG, {15}) == Due(5, 4, dt.date(2027, 6, 5), ())


def test_next_warning_dates() -> None:
    """The next threshold and the Brussels date it falls on, from the CLI's point of view."""
    day = dt.date(2027, 6, 1)
    expiry = expiring("ec000005@adm.cfwb.be", local(day + dt.timedelta(days=40), 12, 0))
    assert next_warning(expiry, local(day, 10), CONFIG, ()) == (15, dt.date(2027, 6, 26))
    done_all = {15, 5, 1}
    assert next_warning(expiry, local(day, 10), CONFIG, done_all) is None
    soon = replace(expiry, expires_at=local(day + dt.timedelta(days=4), 12, 0))
    assert next_warning(soon, local(day, 10), CONFIG, ()) == (5, day)
    # After today's window, tomorrow: still threshold 5 (3 days left).
    assert next_warning(soon, local(day, 18), CONFIG, ()) == (5, dt.date(2027, 6, 2))
    assert next_warning(soon, local(day, 18), CONFIG, {15, 5}) == (1, dt.date(2027, 6, 4))


@pytest.mark.parametrize(
    ("day", "text"),
    [
        (dt.date(2026, 6, 8), "lundi 8 juin 2026"),
        (dt.date(2026, 6, 9), "mardi 9 juin 2026"),
        (dt.date(2026, 6, 10), "mercredi 10 juin 2026"),
        (dt.date(2026, 6, 11), "jeudi 11 juin 2026"),
        (dt.date(2026, 6, 12), "vendredi 12 juin 2026"),
        (dt.date(2026, 6, 13), "samedi 13 juin 2026"),
        (dt.date(2026, 6, 14), "dimanche 14 juin 2026"),
        (dt.date(2026, 1, 1), "jeudi 1er janvier 2026"),
        (dt.date(2026, 2, 1), "dimanche 1er février 2026"),
        (dt.date(2026, 3, 1), "dimanche 1er mars 2026"),
        (dt.date(2026, 4, 1), "mercredi 1er avril 2026"),
        (dt.date(2026, 5, 1), "vendredi 1er mai 2026"),
        (dt.date(2026, 6, 1), "lundi 1er juin 2026"),
        (dt.date(2026, 7, 1), "mercredi 1er juillet 2026"),
        (dt.date(2026, 8, 1), "samedi 1er août 2026"),
        (dt.date(2026, 9, 1), "mardi 1er septembre 2026"),
        (dt.date(2026, 10, 1), "jeudi 1er octobre 2026"),
        (dt.date(2026, 11, 1), "dimanche 1er novembre 2026"),
        (dt.date(2026, 12, 1), "mardi 1er décembre 2026"),
        (dt.date(2028, 2, 29), "mardi 29 février 2028"),
        (dt.date(2027, 12, 31), "vendredi 31 décembre 2027"),
    ],
)
def test_french_dates(day: dt.date, text: str) -> None:
    """Every weekday and month in French, "1er" for the first of the month."""
    assert french_date(day) == text


def test_french_day_counts() -> None:
    """The count is always written out: singular below two, never "demain"."""
    assert [french_days(n) for n in (1, 2, 5, 15)] == ["1 jour", "2 jours", "5 jours", "15 jours"]
    assert french_days(0) == "0 jour"


def test_expiry_date_of_a_due_mail_is_the_brussels_date() -> None:
    """An expiry at 23:30 UTC on 9 June is 10 June in Brussels: the mail says 10 June."""
    expiry = expiring("ec000006@adm.cfwb.be", dt.datetime(2026, 6, 9, 23, 30, tzinfo=dt.UTC))
    due = due_warning(expiry, local(dt.date(2026, 6, 5), 9), CONFIG, ())
    assert due == Due(5, 5, dt.date(2026, 6, 10), (15,))
    assert local_date(expiry.expires_at, BRUSSELS) == dt.date(2026, 6, 10)
    assert french_date(due.expiry_date) == "mercredi 10 juin 2026"
