"""Dates and day counts written in French for the warning mails, from our own tables so
that the host's locale never changes a mail."""

from __future__ import annotations

import datetime as dt

_WEEKDAYS = ("lundi", "mardi", "mercredi", "jeudi", "vendredi", "samedi", "dimanche")
_MONTHS = (
    "janvier",
    "février",
    "mars",
    "avril",
    "mai",
    "juin",
    "juillet",
    "août",
    "septembre",
    "octobre",
    "novembre",
    "décembre",
)


def french_date(day: dt.date) -> str:
    """A date as French prose: "mardi 9 juin 2026", "lundi 1er juin 2026"."""
    number = "1er" if day.day == 1 else str(day.day)
    return f"{_WEEKDAYS[day.weekday()]} {number} {_MONTHS[day.month - 1]} {day.year}"


def french_days(count: int) -> str:
    """A count of days: "1 jour", "5 jours"; always the number, never "demain"."""
    # French keeps the singular below two ("0 jour", "1 jour").
    return f"{count} jour" if abs(count) < 2 else f"{count} jours"


def french_in_days(count: int) -> str:
    """How far off the expiry is, as the mails say it: "dans 5 jours", "dans 1 jour"."""
    return f"dans {french_days(count)}"
