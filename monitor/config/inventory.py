"""The mailbox inventory: entries from the config or from YAML/CSV files, checked as BMAs."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from monitor.config.errors import ECHO_LIMIT, Problem, format_path, shown
from monitor.config.model import FrozenModel, Kind, Mailbox
from monitor.config.yamlsource import Location, line_of, load_yaml

_FASE = re.compile(r"^\d{6}$")
_CONTACT = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CSV_COLUMNS = ("fase", "kind", "name", "contact", "server")


class MailboxEntry(FrozenModel):
    """A mailbox as written: either a full `address`, or a `fase` number and a `kind`."""

    # 254: the longest address SMTP carries. The bound also keeps the contact pattern,
    # which backtracks quadratically on a long run of dots, from stalling the load.
    address: str | None = Field(default=None, max_length=254)
    fase: str | None = None
    kind: Kind | None = None
    name: str = Field(default="", max_length=500)
    contact: str = Field(default="", max_length=254)
    server: str | None = None


@dataclass(frozen=True, slots=True)
class SourcedEntry:
    """An entry with the file and place it was read from, for error messages."""

    entry: MailboxEntry
    file: Path
    path: str
    line: int | None


def address_rule(domain: str) -> re.Pattern[str]:
    """The pattern every BMA address of `domain` follows: ec|po, six digits, the domain."""
    return re.compile(rf"^(?P<kind>ec|po)(?P<fase>\d{{6}})@{re.escape(domain)}$")


def resolve(entry: SourcedEntry, domain: str, default_server: str) -> Mailbox | Problem:
    """Turn an entry into a mailbox, or say which rule it breaks."""
    e = entry.entry

    def problem(field: str, rule: str) -> Problem:
        return Problem(entry.file, f"{entry.path}.{field}".lstrip("."), rule, entry.line)

    if e.address is not None:
        address = e.address.strip().lower()
        match = address_rule(domain).match(address)
        if not match:
            return problem(
                "address", f"must be ec or po, six digits, then @{domain} (got {shown(e.address)})"
            )
        kind, fase = Kind(match["kind"]), match["fase"]
        if e.kind is not None and e.kind is not kind:
            return problem("kind", f"{e.kind} contradicts the address {address}")
        if e.fase is not None and e.fase != fase:
            return problem("fase", f"{shown(e.fase)} contradicts the address {address}")
    else:
        if e.fase is None or e.kind is None:
            return problem("", "needs either address, or both fase and kind")
        if not _FASE.match(e.fase):
            return problem(
                "fase", f"must be exactly six digits, e.g. '001234' (got {shown(e.fase)})"
            )
        kind, fase = e.kind, e.fase
        address = f"{kind}{fase}@{domain}"
    if e.contact and not _CONTACT.match(e.contact):
        return problem("contact", f"must be an e-mail address (got {shown(e.contact)})")
    return Mailbox(
        address=address,
        kind=kind,
        fase=fase,
        server=e.server or default_server,
        name=e.name.strip(),
        contact=e.contact.strip(),
    )


def entries_from_data(
    items: Any, file: Path, at: Location, lines: dict[Location, int]
) -> tuple[list[SourcedEntry], list[Problem]]:
    """Validate a YAML list of mailbox entries found at `at` in `file`."""
    entries: list[SourcedEntry] = []
    problems: list[Problem] = []
    if items is None:
        return entries, problems
    if not isinstance(items, list):
        return entries, [
            Problem(file, format_path(at), "must be a list of mailboxes", line_of(lines, at))
        ]
    for i, item in enumerate(items):
        where = (*at, i)
        if isinstance(item, dict) and isinstance(item.get("fase"), int):
            # YAML reads 001234 as an octal or decimal number and loses the leading zeros.
            problems.append(
                Problem(
                    file,
                    format_path((*where, "fase")),
                    "must be a quoted string of six digits, e.g. fase: '001234'",
                    line_of(lines, (*where, "fase")),
                )
            )
            continue
        try:
            entry = MailboxEntry.model_validate(item)
        except ValidationError as exc:
            problems.extend(problems_from_validation(exc, file, where, lines))
            continue
        entries.append(SourcedEntry(entry, file, format_path(where), line_of(lines, where)))
    return entries, problems


def entries_from_file(path: Path) -> tuple[list[SourcedEntry], list[Problem]]:
    """Read an inventory file: a YAML list of entries, or a CSV with a header row."""
    if path.suffix.lower() == ".csv":
        return _entries_from_csv(path)
    data, lines = load_yaml(path)
    if isinstance(data, dict) and set(data) == {"mailboxes"}:
        return entries_from_data(data["mailboxes"], path, ("mailboxes",), lines)
    return entries_from_data(data, path, (), lines)


def _entries_from_csv(path: Path) -> tuple[list[SourcedEntry], list[Problem]]:
    entries: list[SourcedEntry] = []
    problems: list[Problem] = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            header = [h.strip() for h in reader.fieldnames or []]
            unknown = [h for h in header if h not in CSV_COLUMNS]
            missing = [h for h in ("fase", "kind") if h not in header]
            if unknown or missing:
                rule = "header must name the columns fase, kind[, name, contact, server]"
                if unknown:
                    rule += f"; unknown column(s): {', '.join(unknown)}"
                if missing:
                    rule += f"; missing column(s): {', '.join(missing)}"
                return [], [Problem(path, "", rule, 1)]
            reader.fieldnames = header
            for row in reader:
                line = reader.line_num
                values = {k: (v or "").strip() for k, v in row.items() if k is not None}
                if None in row:
                    problems.append(Problem(path, "", "more fields than header columns", line))
                    continue
                raw = {k: v for k, v in values.items() if v != "" or k in ("fase", "kind")}
                try:
                    entry = MailboxEntry.model_validate(raw)
                except ValidationError as exc:
                    for err in exc.errors():
                        problems.append(
                            Problem(path, format_path(tuple(err["loc"])), _rule_text(err), line)
                        )
                    continue
                entries.append(SourcedEntry(entry, path, "", line))
    except OSError as exc:
        return [], [Problem(path, "", f"cannot read file: {exc.strerror}")]
    except (UnicodeDecodeError, csv.Error) as exc:
        return [], [Problem(path, "", f"not a readable CSV file: {exc}")]
    return entries, problems


def problems_from_validation(
    exc: ValidationError, file: Path, at: Location, lines: dict[Location, int]
) -> list[Problem]:
    """Translate pydantic's errors into problems with YAML paths and lines."""
    out = []
    for err in exc.errors():
        where = at + tuple(err["loc"])
        out.append(Problem(file, format_path(where), _rule_text(err), line_of(lines, where)))
    return out


def _rule_text(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    message = str(err["msg"])
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    given = err.get("input")
    if isinstance(given, str) and len(given) > ECHO_LIMIT:
        # Our own rules echo through `shown`; this keeps a library message from printing
        # a huge input whole.
        message = message.replace(repr(given), shown(given)).replace(given, shown(given))
    return message[:1].lower() + message[1:]


def check_no_duplicates(mailboxes: list[tuple[Mailbox, SourcedEntry]]) -> list[Problem]:
    """Each address may appear once across the config and every inventory file."""
    first: dict[str, SourcedEntry] = {}
    problems = []
    for mailbox, source in mailboxes:
        earlier = first.setdefault(mailbox.address, source)
        if earlier is not source:
            where = f"{earlier.file}:{earlier.line}" if earlier.line else str(earlier.file)
            problems.append(
                Problem(
                    source.file,
                    source.path,
                    f"duplicate mailbox {mailbox.address} (first at {where})",
                    source.line,
                )
            )
    return problems
