"""Quota arithmetic: the limit that applies and how full a mailbox is."""

from __future__ import annotations

from monitor.config.fullness_model import QuotaConfig
from monitor.fullness.states import QuotaLevel, bounds_for, effective_limit, next_state
from monitor.probes.result import QuotaReading

__all__ = ["QuotaLevel", "better_reading", "effective_limit", "quota_level", "usage_ratio"]


def usage_ratio(reading: QuotaReading, config: QuotaConfig) -> float:
    """Used bytes over the limit that applies."""
    return reading.used_bytes / effective_limit(reading, config)


def quota_level(reading: QuotaReading, config: QuotaConfig) -> QuotaLevel:
    """Classify one reading on its own (no hysteresis) against the fleet's tiers or ratios."""
    return next_state(None, reading.used_bytes, bounds_for(reading, None, config), 0)


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
