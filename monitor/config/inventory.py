"""The mailbox inventory: entries from the config or from YAML/CSV files, checked as BMAs."""

from __future__ import annotations

import csv
import datetime as dt
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from monitor.config.errors import ECHO_LIMIT, Problem, format_path, shown
from monitor.config.fullness_model import QuotaTiers
from monitor.config.model import (
    FrozenModel,
    Kind,
    Mailbox,
    Protocols,
    ServerConfig,
    protocol_set,
)
from monitor.config.yamlsource import Location, line_of, load_yaml
from monitor.probes.result import Protocol

_FASE = re.compile(r"^\d{6}$")
_CONTACT = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CSV_COLUMNS = (
    "fase",
    "kind",
    "name",
    "contact",
    "server",
    "protocols",
    "password_changed",
    "password_expires",
)
_CSV_REQUIRED = ("fase", "kind")


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
    protocols: Protocols | None = None  # None: the fleet's (probing.protocols) or the server's
    # The CERBERE password's last change, or its expiry: dates, e.g. 2026-06-09.
    password_changed: dt.date | None = None
    password_expires: dt.date | None = None
    quota_tiers: QuotaTiers | None = None  # Exchange's tiers for this mailbox, as sizes


@dataclass(frozen=True, slots=True)
class SourcedEntry:
    """An entry with the file and place it was read from, for error messages."""

    entry: MailboxEntry
    file: Path
    path: str
    line: int | None

    @property
    def where(self) -> str:
        """`file:line`, or the file alone when the line is unknown."""
        return f"{self.file}:{self.line}" if self.line else str(self.file)


@dataclass(frozen=True, slots=True)
class Fleet:
    """What turning an entry into a mailbox needs from the rest of the configuration."""

    domain: str
    default_server: str
    servers: Mapping[str, ServerConfig]
    protocols: tuple[Protocol, ...] | None  # probing.protocols


def address_rule(domain: str) -> re.Pattern[str]:
    """The pattern every BMA address of `domain` follows: ec|po, six digits, the domain."""
    return re.compile(rf"^(?P<kind>ec|po)(?P<fase>\d{{6}})@{re.escape(domain)}$")


def resolve(entry: SourcedEntry, fleet: Fleet) -> Mailbox | Problem:
    """Turn an entry into a mailbox, or say which rule it breaks."""
    e = entry.entry
    domain = fleet.domain

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
    server = e.server or fleet.default_server
    if server not in fleet.servers:
        return problem(
            "server", f"unknown server {shown(server)}; servers: {', '.join(fleet.servers)}"
        )
    offered = fleet.servers[server].endpoints
    if e.protocols is not None:
        missing = [p for p in e.protocols if p not in offered]
        if missing:
            return problem("protocols", _no_endpoint(server, missing))
    # A fleet default the server cannot serve is reported once, by check_default_protocols.
    protocols = e.protocols or fleet.protocols or protocol_set(offered)
    return Mailbox(
        address=address,
        kind=kind,
        fase=fase,
        server=server,
        name=e.name.strip(),
        contact=e.contact.strip(),
        protocols=protocols,
        password_changed=e.password_changed,
        password_expires=e.password_expires,
        tiers=e.quota_tiers,
    )


def _no_endpoint(server: str, missing: list[Protocol]) -> str:
    """The rule a protocol list breaks when `server` lacks the endpoints of `missing`."""
    return f"server {server} has no {' or '.join(missing)} endpoint"


def check_default_protocols(
    mailboxes: list[tuple[Mailbox, SourcedEntry]], fleet: Fleet, file: Path, line: int | None
) -> list[Problem]:
    """Each server whose mailboxes take probing.protocols must offer every one of them."""
    if fleet.protocols is None:
        return []
    takers: dict[str, list[SourcedEntry]] = {}
    for mailbox, source in mailboxes:
        if source.entry.protocols is None:
            takers.setdefault(mailbox.server, []).append(source)
    problems = []
    for server, sources in takers.items():
        offered = fleet.servers[server].endpoints
        missing = [p for p in fleet.protocols if p not in offered]
        if missing:
            rule = (
                f"{_no_endpoint(server, missing)} ({len(sources):,} mailbox(es) on it take "
                f"this default, the first at {sources[0].where})"
            )
            problems.append(Problem(file, "probing.protocols", rule, line))
    return problems


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
            missing = [h for h in _CSV_REQUIRED if h not in header]
            if unknown or missing:
                optional = ", ".join(c for c in CSV_COLUMNS if c not in _CSV_REQUIRED)
                rule = f"header must name the columns {', '.join(_CSV_REQUIRED)}[, {optional}]"
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
                raw = {k: v for k, v in values.items() if v != "" or k in _CSV_REQUIRED}
                try:
                    entry = MailboxEntry.model_validate(raw)
                except ValidationError as exc:
                    for err in exc.errors():
                        at, rule = _placed(err)
                        problems.append(Problem(path, format_path(at), rule, line))
                    continue
                entries.append(SourcedEntry(entry, path, "", line))
    except OSError as exc:
        return [], [Problem(path, "", f"cannot read file: {exc.strerror}")]
    except (UnicodeDecodeError, csv.Error) as exc:
        return [], [Problem(path, "", f"not a readable CSV file: {exc}")]
    return entries, problems


def problems_from_validation(
    exc: ValidationError,
    file: Path,
    at: Location,
    lines: dict[Location, int],
    written: Callable[[Location], Location] | None = None,
) -> list[Problem]:
    """Translate pydantic's errors into problems with YAML paths and lines.

    `written` maps a place of the validated data back to where the file wrote it, when
    the loader reshaped the data first (the flat server form).
    """
    out = []
    for err in exc.errors():
        loc, rule = _placed(err)
        where = at + loc
        if written is not None:
            where = written(where)
        out.append(Problem(file, format_path(where), rule, line_of(lines, where)))
    return out


def _placed(err: Any) -> tuple[Location, str]:
    """The place and rule of one pydantic error."""
    loc = tuple(err["loc"])
    if loc[-1:] == ("[key]",):
        # pydantic names the key itself `[key]`: the place is the key, the rule its own.
        if err["type"] == "enum":  # not one of the allowed names, e.g. in probing.intervals
            return loc[:-1], f"unknown key; keys are {err['ctx']['expected']}"
        return loc[:-1], f"key: {_rule_text(err)}"
    return loc, _rule_text(err)


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
            problems.append(
                Problem(
                    source.file,
                    source.path,
                    f"duplicate mailbox {mailbox.address} (first at {earlier.where})",
                    source.line,
                )
            )
    return problems
