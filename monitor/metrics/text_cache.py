"""Per-mailbox families written straight in the Prometheus text format, cached per mailbox.

Thousands of mailboxes give hundreds of thousands of samples. Built as prometheus_client
objects on every scrape they took about a second and some 100 MB; here each mailbox's
lines are rendered once per change of what they show (its key) and reused by later
scrapes until it changes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from prometheus_client import utils

from monitor.config.model import Mailbox

# prometheus_client's own number format (1.7640864e+09 for a timestamp): the values read
# as they did when the client objects wrote them.
_number: Callable[[float], str] = utils.floatToGoString


@dataclass(frozen=True, slots=True)
class Family:
    """One gauge family: its name and help text."""

    name: str
    help: str

    def header(self) -> bytes:
        """Its HELP and TYPE lines."""
        return f"# HELP {self.name} {self.help}\n# TYPE {self.name} gauge\n".encode()


Key = TypeVar("Key")
Chunks = tuple[bytes, ...]  # one piece per family, b"" where the mailbox has no sample

_SLICE = 1000  # mailboxes per piece sent: bounds the memory one scrape takes


class TextCache(Generic[Key]):
    """Some families' text, mailbox by mailbox; safe to call from several scraping threads.

    A mailbox's key holds everything its lines show: equal keys give the same text.
    """

    def __init__(self, families: tuple[Family, ...]) -> None:
        self._families = families
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[Key, Chunks, int]] = {}
        self._context: object = None

    def render(
        self,
        keyed: Iterable[tuple[str, Key]],
        chunks: Callable[[Key], Chunks],
        context: object = None,
    ) -> tuple[int, Iterator[bytes]]:
        """The size in bytes of the families, and their text, family by family.

        `keyed` gives each mailbox's address and key, in the order of the samples;
        `chunks` renders a key; a new `context` (a setting every line depends on)
        renders every mailbox again. The text comes out one family at a time, so a
        scrape of 10,000 mailboxes never holds the whole page in memory twice.
        """
        with self._lock:
            if context != self._context:
                self._cache.clear()
                self._context = context
            old = self._cache
            cache: dict[str, tuple[Key, Chunks, int]] = {}
            for address, key in keyed:
                hit = old.get(address)
                if hit is None or (hit[0] is not key and hit[0] != key):
                    rendered = chunks(key)
                    hit = (key, rendered, sum(map(len, rendered)))
                elif hit[0] is not key:
                    # Equal but rebuilt (after a reload): keep the new one, compared by
                    # identity, cheaply, from the next scrape on.
                    hit = (key, hit[1], hit[2])
                cache[address] = hit
            self._cache = cache  # mailboxes no longer configured fall out here
        rows = [rendered for _, rendered, _ in cache.values()]
        headers = [family.header() for family in self._families]
        size = sum(map(len, headers)) + sum(size for _, _, size in cache.values())
        return size, _families(headers, rows)


def _families(headers: list[bytes], rows: list[Chunks]) -> Iterator[bytes]:
    for i, header in enumerate(headers):
        yield header
        for start in range(0, len(rows), _SLICE):
            yield b"".join([row[i] for row in rows[start : start + _SLICE]])


def mailbox_labels(mailbox: Mailbox) -> str:
    """The labels every per-mailbox series starts with, as text."""
    return (
        'mailbox="'
        + escape(mailbox.local_part)
        + '",kind="'
        + mailbox.kind
        + '",server="'
        + escape(mailbox.server)
        + '"'
    )


def sample(family: Family, labels: str, value: float) -> str:
    """One sample line, its value written as prometheus_client writes it."""
    return family.name + "{" + labels + "} " + _number(value) + "\n"


def escape(value: str) -> str:
    """Label value escaping of the text format: names are free text (quotes, newlines)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
