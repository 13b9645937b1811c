"""Works the outbox: due rows rendered, handed to the relay at a bounded pace, and marked.

Each row is marked in its own transaction right after the relay's answer; a crash before
that mark re-sends the mail later under the same Message-ID (see notify.outbox).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from zoneinfo import ZoneInfo

import structlog

from monitor.config.expiry_model import NotifyConfig
from monitor.notify import outbox
from monitor.notify.message import build_message
from monitor.notify.outbox import OutboxRow
from monitor.notify.relay import RelaySender, SendOutcome, Step
from monitor.notify.templates import MailValues, Templates
from monitor.state.store import StateStore

log = structlog.get_logger("bma_monitor.notify")

BRUSSELS = ZoneInfo("Europe/Brussels")
_FASE = re.compile(r"^(?:ec|po)(\d+)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Wording:
    """How dates and days are written in the mails (notify.french in production)."""

    date: Callable[[dt.date], str]  # e.g. "mardi 9 juin 2026"
    days: Callable[[int], str]  # e.g. "dans 5 jours"


@dataclass
class RoundReport:
    """What one pass over the outbox did."""

    sent: int = 0
    failed: int = 0
    deferred: int = 0
    dry_run: int = 0
    cancelled: int = 0
    capped: bool = False  # the daily cap stopped the round


class TokenBucket:
    """At most `per_minute` takes a minute, in bursts of at most `per_minute`."""

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self._rate = per_minute / 60.0
        self._capacity = float(per_minute)
        self._tokens = float(per_minute)
        self._clock = clock
        self._at = clock()

    def available(self) -> int:
        """Whole tokens there now."""
        self._refill()
        return int(self._tokens)

    def take(self) -> bool:
        """Take one token if there is one."""
        self._refill()
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    def _refill(self) -> None:
        now = self._clock()
        # max(): a clock stepped backwards must not drain the bucket.
        self._tokens = min(self._capacity, self._tokens + max(0.0, now - self._at) * self._rate)
        self._at = now


class Deliverer:
    """Sends (or, with notify.enabled false, logs) the outbox's due rows."""

    def __init__(
        self,
        store: StateStore,
        config: NotifyConfig,
        templates: Templates,
        relay: RelaySender,
        wording: Wording,
        *,
        clock: Callable[[], float],
        zone: ZoneInfo = BRUSSELS,
        step: Step | None = None,
    ) -> None:
        self._store = store
        self._config = config
        self._templates = templates
        self._relay = relay
        self._wording = wording
        self._clock = clock
        self._zone = zone
        self._step = step  # awaited with "answered" before a row is marked: for kill tests
        self._bucket = TokenBucket(config.per_minute, clock)

    async def work(self) -> RoundReport:
        """One pass: the due rows the rate limit and the daily cap allow, one by one."""
        report = RoundReport()
        now = self._clock()
        midnight = dt.datetime.combine(self._local_today(now), dt.time(), self._zone)
        used = await asyncio.to_thread(outbox.attempted_since, self._store, midnight.timestamp())
        room = self._config.daily_cap - used
        if room <= 0:
            report.capped = True
            log.warning("notify_daily_cap_reached", daily_cap=self._config.daily_cap)
            return report
        limit = min(room, self._bucket.available())
        if limit == 0:
            return report
        due = await asyncio.to_thread(outbox.pending, self._store, now, limit)
        for row in due:
            if not await self._deliver(row, report):
                break
        return report

    async def _deliver(self, row: OutboxRow, report: RoundReport) -> bool:
        """Send one row and mark it; False when the relay is unusable for now."""
        now = self._clock()
        entry = row.entry
        days_left = (entry.expiry_date - self._local_today(now)).days
        bound = structlog.contextvars.bound_contextvars
        with bound(mailbox=entry.address, threshold=entry.threshold, audience=str(entry.audience)):
            if days_left <= 0:
                # Warnings are for a password still valid; an expired one is a metric.
                await asyncio.to_thread(outbox.cancel, self._store, row.key, now, "expired")
                log.info("notify_cancelled", reason="expired", expiry_date=str(entry.expiry_date))
                report.cancelled += 1
                return True
            if not self._bucket.take():
                return False
            message = build_message(
                self._templates.render(entry.audience, self._values(row, days_left)),
                sender=self._config.sender,
                recipient=entry.recipient,
                reply_to=self._config.reply_to,
                message_id=entry.message_id,
                date=dt.datetime.fromtimestamp(now, self._zone),
            )
            facts = {
                "recipient": entry.recipient,
                "subject": str(message["Subject"]),
                "message_id": entry.message_id,
                "days_left": days_left,
            }
            if not self._config.enabled:
                await asyncio.to_thread(outbox.mark_dry_run, self._store, row.key, now)
                log.info("notify_dry_run", **facts)
                report.dry_run += 1
                return True
            outcome = await self._relay.send(message, self._config.sender, entry.recipient)
            if self._step is not None:
                await self._step("answered")
            return await self._record(row, outcome, facts, report)

    async def _record(
        self, row: OutboxRow, outcome: SendOutcome, facts: dict[str, object], report: RoundReport
    ) -> bool:
        now = self._clock()
        if outcome.sent:
            await asyncio.to_thread(outbox.mark_sent, self._store, row.key, now)
            log.info("notify_sent", **facts)
            report.sent += 1
            return True
        if outcome.reason.is_final:
            await asyncio.to_thread(
                outbox.mark_failed, self._store, row.key, now, outcome.reason, outcome.detail
            )
            log.warning("notify_failed", reason=str(outcome.reason), detail=outcome.detail, **facts)
            report.failed += 1
            return True
        retry_at = await asyncio.to_thread(
            outbox.retry_later,
            self._store,
            row.key,
            now,
            outcome.reason,
            outcome.detail,
            initial=self._config.retry_initial,
            maximum=self._config.retry_max,
        )
        log.warning(
            "notify_deferred",
            reason=str(outcome.reason),
            detail=outcome.detail,
            retry_in_seconds=round(retry_at - now, 3),
            **facts,
        )
        report.deferred += 1
        return not outcome.reason.relay_unusable

    def _values(self, row: OutboxRow, days_left: int) -> MailValues:
        entry = row.entry
        local = entry.address.split("@", 1)[0]
        fase = _FASE.match(local)
        return MailValues(
            mailbox=entry.address,
            establishment=entry.establishment,
            fase=fase.group(1) if fase else "",
            expiry_date=self._wording.date(entry.expiry_date),
            days_left=days_left,
            days_text=self._wording.days(days_left),
            threshold=entry.threshold,
            contact=entry.contact,
        )

    def _local_today(self, now: float) -> dt.date:
        return dt.datetime.fromtimestamp(now, self._zone).date()
