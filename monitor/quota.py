"""Quota arithmetic: the limit that applies and how full a mailbox is."""

from __future__ import annotations

from enum import StrEnum

from monitor.config.model import QuotaConfig
from monitor.probes.result import QuotaReading


class QuotaLevel(StrEnum):
    """How close a mailbox is to refusing mail."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    FULL = "full"  # new mail bounces (Exchange: 554 5.2.2 QuotaExceeded)


def effective_limit(reading: QuotaReading, config: QuotaConfig) -> int:
    """The server's limit, or the configured one (2 GiB) where the server sets none."""
    return reading.limit_bytes if reading.limit_bytes else int(config.default_limit)


def usage_ratio(reading: QuotaReading, config: QuotaConfig) -> float:
    """Used bytes over the limit that applies."""
    return reading.used_bytes / effective_limit(reading, config)


def quota_level(reading: QuotaReading, config: QuotaConfig) -> QuotaLevel:
    """Classify a reading against the configured thresholds."""
    ratio = usage_ratio(reading, config)
    if ratio >= 1.0:
        return QuotaLevel.FULL
    if ratio >= config.critical_ratio:
        return QuotaLevel.CRITICAL
    if ratio >= config.warning_ratio:
        return QuotaLevel.WARNING
    return QuotaLevel.OK


def better_reading(current: QuotaReading | None, new: QuotaReading | None) -> QuotaReading | None:
    """The reading to keep: the newer one, unless it covers less of the mailbox.

    POP3's STAT counts the inbox only: it stands in where nothing else measured the mailbox,
    and never replaces a QUOTA figure or a whole-mailbox IMAP sum.
    """
    if new is None:
        return current
    if current is None or new.source.rank >= current.source.rank:
        return new
    return current
