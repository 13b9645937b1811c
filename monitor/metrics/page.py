"""The /metrics body: the registry's families, then the per-mailbox ones (cached text)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

from prometheus_client import CollectorRegistry, generate_latest

from monitor.metrics.mailbox_text import MailboxExposition
from monitor.scheduling.scheduler import SchedulerView

# More per-mailbox families rendered as cached text (expiry, fullness): size and pieces.
Section = Callable[[], tuple[int, Iterator[bytes]]]


class MetricsPage:
    """Renders one scrape in the Prometheus text format (version 0.0.4)."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(
        self,
        registry: CollectorRegistry,
        view: Callable[[], SchedulerView],
        sections: Sequence[Section] = (),
    ) -> None:
        self._registry = registry
        self._view = view
        self._mailboxes = MailboxExposition()
        self._sections = tuple(sections)

    def warm(self) -> None:
        """Render every mailbox's lines now (blocking), so that the next scrape reuses them.

        The daemon calls it off the event loop at start and after a reload: rendering
        10,000 mailboxes x 3 protocols from nothing takes about half a second, which the
        first scrape would otherwise spend while Prometheus waits.
        """
        view = self._view()
        self._mailboxes.render(view.mailboxes, view.config.quota)
        for section in self._sections:
            section()

    def render(self) -> tuple[int, Iterator[bytes]]:
        """The page's size in bytes, and its pieces to send one after the other."""
        view = self._view()
        head = generate_latest(self._registry)
        parts = [self._mailboxes.render(view.mailboxes, view.config.quota)]
        parts += [section() for section in self._sections]
        size = len(head) + sum(size for size, _ in parts)
        return size, itertools.chain([head], *(pieces for _, pieces in parts))
