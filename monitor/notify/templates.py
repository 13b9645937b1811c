"""The warning mail templates: loaded and checked once, rendered per mail.

A template naming an unknown variable is a configuration error reported by `check` with its
file and line, not a KeyError at 08:00 when the first warning is due.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path
from string import Template

STEM = "expiry-warning"
PARTS = ("subject", "txt", "html")


class Audience(StrEnum):
    """Who a warning goes to: the mailbox itself, or its contact."""

    BMA = "bma"
    CONTACT = "contact"

    @property
    def stem(self) -> str:
        """The file name of this audience's templates, without the extension."""
        return STEM if self is Audience.BMA else f"{STEM}-contact"


@dataclass(frozen=True, slots=True)
class MailValues:
    """What a warning says; the only names a template may use.

    The date and days are given as text: the French wording is the caller's (notify.french).
    """

    mailbox: str
    establishment: str
    fase: str
    expiry_date: str  # e.g. "mardi 9 juin 2026"
    days_left: int
    days_text: str  # e.g. "dans 5 jours"
    threshold: int
    contact: str = ""

    def as_text(self) -> dict[str, str]:
        """Every value as a string, by variable name."""
        return {field.name: str(getattr(self, field.name)) for field in fields(self)}


VARIABLES = frozenset(field.name for field in fields(MailValues))


class TemplateError(Exception):
    """A template file that is missing, not UTF-8, or uses an unknown variable."""


@dataclass(frozen=True, slots=True)
class TemplateSet:
    """One audience's subject, plain text and HTML templates."""

    subject: Template
    text: Template
    html: Template


@dataclass(frozen=True, slots=True)
class Rendered:
    """A warning's subject and both bodies."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class Templates:
    """The templates of every audience, checked."""

    folder: Path
    sets: dict[Audience, TemplateSet]

    def render(self, audience: Audience, values: MailValues) -> Rendered:
        """The subject and bodies for this audience; HTML gets every value escaped."""
        chosen = self.sets[audience]
        plain = values.as_text()
        escaped = {name: html.escape(value) for name, value in plain.items()}
        # A header cannot span lines: a value or template with a line break would fold it.
        subject = " ".join(chosen.subject.substitute(plain).split())
        return Rendered(subject, chosen.text.substitute(plain), chosen.html.substitute(escaped))


def shipped_folder() -> Path:
    """The templates shipped in the package (monitor/notify/mails), installed or not."""
    # A plain path, not importlib.resources: pip always unpacks the wheel, and errors and
    # `check` must name a real file an operator can open and copy.
    return Path(__file__).resolve().parent / "mails"


def load_templates(folder: Path | None) -> Templates:
    """Read and check every template file in `folder` (None: the shipped ones)."""
    where = shipped_folder() if folder is None else folder
    sets = {
        audience: TemplateSet(
            *(_load(where / f"{audience.stem}.{part}") for part in PARTS),
        )
        for audience in Audience
    }
    return Templates(where, sets)


def _load(path: Path) -> Template:
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise TemplateError(f"{path}: template file is missing") from None
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise TemplateError(f"{path}:{line}: not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise TemplateError(f"{path}: cannot read: {exc.strerror}") from None
    template = Template(text)
    for match in template.pattern.finditer(text):
        name = match.group("named") or match.group("braced")
        line = text.count("\n", 0, match.start()) + 1
        if match.group("invalid") is not None:
            raise TemplateError(
                f"{path}:{line}: a lone '$' (write $$ for a dollar sign, $name for a variable)"
            )
        if name is not None and name not in VARIABLES:
            known = ", ".join(sorted(VARIABLES))
            raise TemplateError(f"{path}:{line}: unknown variable ${name} (known: {known})")
    return template
