"""Running `bma-monitor audit` as ops do, and reading what it writes (CSV, HTML)."""

from __future__ import annotations

import csv
import datetime as dt
import subprocess
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import yaml

from tests import fleet
from tests.servers.dovecot import DovecotServer

# A name that must come out escaped in HTML and intact in CSV.
TRICKY_NAME = 'École <Les "Tilleuls"> & Cie'
EXPIRING_IN = 3  # days: within the first warning (15 days), so it needs action
FAR_EXPIRY = 100  # days: nothing to do


@dataclass(frozen=True)
class AuditFleet:
    """A configuration over the test fleet with a refused and a missing mailbox password."""

    config: Path
    refused: str
    missing: str
    expiring: str = fleet.NEARLY_FULL
    healthy: tuple[str, ...] = (fleet.EMPTY, fleet.FOLDERS)

    @property
    def locals(self) -> list[str]:
        """Every mailbox of the configuration, in its order."""
        return [
            fleet.EMPTY,
            fleet.NEARLY_FULL,
            fleet.FULL,
            fleet.FOLDERS,
            self.refused,
            self.missing,
        ]


def write_audit_fleet(
    directory: Path, server: DovecotServer, refused: str, missing: str, **extra: Any
) -> AuditFleet:
    """IMAP and POP3 for six mailboxes; names, and CERBERE expiry dates from the inventory."""
    spec = AuditFleet(directory / "bma.yaml", refused, missing)
    path = fleet.write_config(
        directory,
        server,
        "none",
        spec.locals,
        passwords={refused: "wrong"},
        protocols={"imap": {}, "pop3": {}},
        **extra,
    )
    (directory / "credentials" / f"{fleet.address(missing)}.imap").unlink()
    document = yaml.safe_load(path.read_text())
    today = dt.date.today()
    for entry in document["mailboxes"]:
        local = entry["address"].split("@")[0]
        entry["name"] = TRICKY_NAME if local == fleet.FULL else f"Ecole {local}"
        if local == spec.expiring:
            entry["password_expires"] = (today + dt.timedelta(days=EXPIRING_IN)).isoformat()
        if local == fleet.EMPTY:
            entry["password_expires"] = (today + dt.timedelta(days=FAR_EXPIRY)).isoformat()
    path.write_text(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    return spec


def run_audit(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """`bma-monitor audit --config CONFIG ARGS...`, its output captured (stderr not a TTY)."""
    return subprocess.run(
        [sys.executable, "-m", "monitor", "audit", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def read_csv(path: Path) -> dict[tuple[str, str], dict[str, str]]:
    """The CSV's rows by (local part, protocol); a pair twice is an error."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            key = (row["address"].split("@")[0], row["protocol"])
            assert key not in rows, f"{key} twice in the CSV"
            rows[key] = row
    return rows


class Page(HTMLParser):
    """What a test checks of the HTML page, gathered by the standard library's parser."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.headings: list[str] = []
        self.links: list[tuple[str, str, str]] = []  # (tag, attribute, value)
        self.scripts: list[str] = []
        self.tables: list[list[list[str]]] = []  # each table's rows of cell texts
        self._tag = ""
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("src", "href", "srcset", "action", "data", "poster") and value:
                self.links.append((tag, name, value))
        if tag == "table":
            self.tables.append([])
        elif tag == "tr" and self.tables:
            self.tables[-1].append([])
        if tag in ("h1", "h2", "td", "th", "script", "style", "title"):
            self._tag, self._text = tag, []

    def handle_data(self, data: str) -> None:
        if self._tag:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag != self._tag:
            return
        text = "".join(self._text)
        if tag == "h2":
            self.headings.append(text)
        elif tag == "script":
            self.scripts.append(text)
        elif tag in ("td", "th") and self.tables and self.tables[-1]:
            self.tables[-1][-1].append(text)
        self._tag = ""


def read_page(path: Path) -> Page:
    """The page, parsed."""
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page
