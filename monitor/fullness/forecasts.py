"""Each mailbox's forecast of when it is full, recomputed at most hourly per mailbox.

A forecast costs a few milliseconds (a Theil-Sen slope over up to 200 points) and moves
slowly; readings come every few minutes. Recomputing it once an hour keeps 10,000
mailboxes at about 1% of a core.
"""

from __future__ import annotations

from monitor.config.fullness_model import QuotaConfig
from monitor.fullness.tracker import FullnessTracker

RECOMPUTE_EVERY = 3600.0  # seconds a forecast is kept before the next reading redoes it


class Forecasts:
    """The latest forecast per mailbox; absent where the mailbox is not growing."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[float, float | None]] = {}  # computed at, forecast

    def update(
        self,
        tracker: FullnessTracker,
        address: str,
        limit: int,
        now: float,
        config: QuotaConfig,
        *,
        force: bool = False,
    ) -> None:
        """Recompute the mailbox's forecast if it is due (or `force`: its state changed)."""
        kept = self._kept.get(address)
        if kept is not None and not force and now - kept[0] < RECOMPUTE_EVERY:
            return
        self._kept[address] = (now, tracker.forecast(address, limit, now, config))

    def all(self) -> dict[str, float]:
        """Every mailbox forecast to be full, and when (a copy, for a scrape)."""
        return {a: at for a, (_, at) in list(self._kept.items()) if at is not None}
