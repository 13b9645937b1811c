"""Quota states with hysteresis: where each state begins, and the state a reading leaves."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction

from monitor.config.fullness_model import QuotaConfig, QuotaTiers
from monitor.probes.result import QuotaReading


class QuotaLevel(StrEnum):
    """How close a mailbox is to refusing mail, in increasing order."""

    OK = "ok"
    WARNING = "warning"
    CRITICAL = "critical"
    FULL = "full"  # new mail bounces (Exchange: 554 5.2.2 QuotaExceeded)

    @property
    def rank(self) -> int:
        """0 for ok up to 3 for full: a higher rank is closer to refusing mail."""
        return _ORDER.index(self)


_ORDER = (QuotaLevel.OK, QuotaLevel.WARNING, QuotaLevel.CRITICAL, QuotaLevel.FULL)


@dataclass(frozen=True, slots=True)
class Bounds:
    """The sizes, in bytes, at which one mailbox enters warning, critical and full."""

    warning: int
    critical: int
    full: int

    def start(self, level: QuotaLevel) -> int:
        """The size at which `level` begins (0 for ok)."""
        return (0, self.warning, self.critical, self.full)[level.rank]

    def margin(self, hysteresis: float) -> int:
        """The hysteresis margin in bytes: its share of the size at which mail bounces."""
        return int(hysteresis * self.full)


def effective_limit(reading: QuotaReading, config: QuotaConfig) -> int:
    """The server's limit, or the configured one (2 GiB) where the server sets none."""
    return reading.limit_bytes if reading.limit_bytes else int(config.default_limit)


def bounds_for(
    reading: QuotaReading, mailbox_tiers: QuotaTiers | None, config: QuotaConfig
) -> Bounds:
    """The mailbox's own Exchange tiers, else the fleet's, else the ratios of its limit."""
    tiers = mailbox_tiers or config.tiers
    if tiers is not None:
        return Bounds(
            int(tiers.issue_warning), int(tiers.prohibit_send), int(tiers.prohibit_send_receive)
        )
    limit = effective_limit(reading, config)
    # Rounded up, so that 85 % of a 100-byte limit begins at 85 bytes, not 84.
    return Bounds(
        _ceil_share(config.warning_ratio, limit), _ceil_share(config.critical_ratio, limit), limit
    )


def next_state(
    previous: QuotaLevel | None, used: int, bounds: Bounds, margin_bytes: int
) -> QuotaLevel:
    """The state after a reading of `used` bytes: enter at a bound, leave below bound - margin."""
    reached = max((level for level in _ORDER if used >= bounds.start(level)), key=_rank)
    if previous is None or reached.rank >= previous.rank:
        return reached  # may jump several states at once
    # Going down, every state on the way is held until usage is below its bound - margin:
    # a mailbox in critical that falls to 84 % of its limit is still in warning (leaves < 83 %).
    for level in reversed(_ORDER[1 : previous.rank + 1]):
        if used >= bounds.start(level) - margin_bytes:
            return level
    return QuotaLevel.OK


def _rank(level: QuotaLevel) -> int:
    return level.rank


def _ceil_share(ratio: float, limit: int) -> int:
    """`ratio` of `limit` rounded up, exactly: 0.85 * 100 is 85.00000000000001 in floats."""
    return math.ceil(Fraction(repr(ratio)) * limit)
