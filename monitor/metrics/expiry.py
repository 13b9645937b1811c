"""The CERBERE expiry metrics: each mailbox's expiry (as cached text), the warning mails,
the directory."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from monitor.config.model import Config, Mailbox
from monitor.expiry.directory_job import DirectoryHealth
from monitor.expiry.model import Expiry
from monitor.metrics.text_cache import Chunks, Family, TextCache, mailbox_labels, sample
from monitor.notify.outbox import OutboxCounts

ClientFamily = GaugeMetricFamily | CounterMetricFamily


@dataclass(frozen=True, slots=True)
class ExpiryView:
    """What the expiry jobs know, as of the notifier's last tick."""

    config: Config
    expiries: dict[str, Expiry]
    outbox: OutboxCounts | None  # None until the first tick
    warned: dict[str, tuple[int, float]]  # the last warning accepted: threshold, when
    directory: DirectoryHealth


EXPIRY = Family(
    "bma_password_expiry_timestamp_seconds",
    "When the mailbox's CERBERE password expires; source: inventory, observed, ldap or "
    "smtp (SMTP AUTH said it expired).",
)
EXPIRED = Family(
    "bma_password_expired",
    "1 once the CERBERE password has expired (its date passed, or SMTP AUTH said so).",
)
WARNED = Family(
    "bma_password_warning_last_sent_timestamp_seconds",
    "When the relay last accepted a warning mail to the mailbox for its current expiry "
    "date, and its threshold (absent before the first).",
)
# What a mailbox's lines show: the mailbox, its expiry, its last warning, whether expired.
ExpiryKey = tuple[Mailbox, Expiry | None, tuple[int, float] | None, bool]


class ExpiryCollector(Collector):
    """Exports the warning-mail and directory families from one snapshot per scrape."""

    def __init__(self, view: Callable[[], ExpiryView]) -> None:
        self._view = view

    def collect(self) -> Iterator[ClientFamily]:
        """Every expiry family but the per-mailbox ones (see ExpiryText)."""
        view = self._view()
        yield from _outbox_families(view)
        yield from _directory_families(view.directory)


class ExpiryText:
    """The per-mailbox expiry families, as text cached per mailbox (see text_cache)."""

    def __init__(
        self, view: Callable[[], ExpiryView], clock: Callable[[], float] = time.time
    ) -> None:
        self._view = view
        self._clock = clock
        self._text: TextCache[ExpiryKey] = TextCache((EXPIRY, EXPIRED, WARNED))

    def render(self) -> tuple[int, Iterator[bytes]]:
        """The size in bytes of the families, and their text, family by family."""
        view = self._view()
        now = self._clock()
        expiries = view.expiries
        warned = view.warned

        def keyed(mailbox: Mailbox) -> tuple[str, ExpiryKey]:
            found = expiries.get(mailbox.address)
            # Whether it expired is part of the key: the date passing changes the line.
            expired = found is not None and (
                found.expired_now or found.expires_at.timestamp() <= now
            )
            return mailbox.address, (mailbox, found, warned.get(mailbox.address), expired)

        return self._text.render(map(keyed, view.config.mailboxes), _expiry_chunks)


def _expiry_chunks(key: ExpiryKey) -> Chunks:
    mailbox, found, last, expired = key
    labels = mailbox_labels(mailbox)
    expiry = expired_line = warned = ""
    if found is not None:
        source = labels + ',source="' + found.source + '"'
        expiry = sample(EXPIRY, source, found.expires_at.timestamp())
        expired_line = sample(EXPIRED, labels, 1.0 if expired else 0.0)
    if last is not None:
        warned = sample(WARNED, labels + ',threshold="' + str(last[0]) + '"', last[1])
    return expiry.encode(), expired_line.encode(), warned.encode()


def _outbox_families(view: ExpiryView) -> Iterator[ClientFamily]:
    counts = view.outbox
    thresholds = view.config.expiry.thresholds
    sent = CounterMetricFamily(
        "bma_notifications_sent",
        "Warning mails the relay accepted, by threshold (days before expiry).",
        labels=["threshold"],
    )
    failed = CounterMetricFamily(
        "bma_notifications_failed",
        "Warning mails refused for good, by threshold and reason.",
        labels=["threshold", "reason"],
    )
    for threshold in thresholds:
        sent.add_metric([str(threshold)], float(counts.sent.get(threshold, 0) if counts else 0))
    if counts is not None:
        for (threshold, reason), count in sorted(counts.failed.items()):
            failed.add_metric([str(threshold), reason], float(count))
    yield from (sent, failed)
    yield GaugeMetricFamily(
        "bma_outbox_pending",
        "Warning mails queued and not yet accepted by the relay.",
        value=float(counts.pending if counts else 0),
    )
    oldest = counts.oldest_pending_created_at if counts else None
    if oldest is not None:
        yield GaugeMetricFamily(
            "bma_outbox_oldest_pending_timestamp_seconds",
            "When the oldest warning mail still pending was queued (absent when none is).",
            value=oldest,
        )
    if counts is not None and counts.last_sent_at is not None:
        yield GaugeMetricFamily(
            "bma_notifications_last_success_timestamp_seconds",
            "When the relay last accepted a warning mail.",
            value=counts.last_sent_at,
        )


def _directory_families(health: DirectoryHealth) -> Iterator[ClientFamily]:
    if health.last_success_at is not None:
        yield GaugeMetricFamily(
            "bma_directory_last_success_timestamp_seconds",
            "When the directory (LDAP) was last read in full.",
            value=health.last_success_at,
        )
    failures = CounterMetricFamily(
        "bma_directory_read_failures",
        "Directory reads that failed, by reason (bind: the service bind was refused).",
        labels=["reason"],
    )
    for reason, count in sorted(health.failures.items()):
        failures.add_metric([reason], float(count))
    yield failures
    yield GaugeMetricFamily(
        "bma_directory_bind_held",
        "1 while the directory is not read: its bind password was refused, and only a new "
        "credential file lifts that.",
        value=1.0 if health.bind_refused else 0.0,
    )
