"""The /metrics body: the registry's families, then the per-mailbox ones."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, generate_latest

from monitor.metrics.mailbox_text import MailboxExposition
from monitor.scheduling.scheduler import SchedulerView


class MetricsPage:
    """Renders one scrape in the Prometheus text format (version 0.0.4)."""

    content_type = "text/plain; version=0.0.4; charset=utf-8"

    def __init__(self, registry: CollectorRegistry, view: Callable[[], SchedulerView]) -> None:
        self._registry = registry
        self._view = view
        self._mailboxes = MailboxExposition()

    def warm(self) -> None:
        """Render every mailbox's lines now (blocking), so that the next scrape reuses them.

        The daemon calls it off the event loop at start and after a reload: rendering
        10,000 mailboxes x 3 protocols from nothing takes about half a second, which the
        first scrape would otherwise spend while Prometheus waits.
        """
        view = self._view()
        self._mailboxes.render(view.mailboxes, view.config.quota)

    def render(self) -> tuple[int, Iterator[bytes]]:
        """The page's size in bytes, and its pieces to send one after the other."""
        view = self._view()
        head = generate_latest(self._registry)
        size, mailboxes = self._mailboxes.render(view.mailboxes, view.config.quota)
        return len(head) + size, itertools.chain([head], mailboxes)
