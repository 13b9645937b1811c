"""The /metrics body: the registry's families, then the per-mailbox ones."""

from __future__ import annotations

from collections.abc import Callable

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

    def render(self) -> bytes:
        """Every metric, as bytes ready to send."""
        view = self._view()
        mailboxes = self._mailboxes.render(view.mailboxes, view.config.quota)
        return generate_latest(self._registry) + mailboxes.encode("utf-8")
