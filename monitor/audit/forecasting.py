"""Forecasts of the mailboxes that may be full soon, without forecasting the whole fleet.

A forecast is a Theil-Sen slope over up to 200 points: 20,000 pairwise slopes, sorted,
about 15 ms here. For 10,000 mailboxes that is minutes. Most mailboxes cannot be full
within the horizon, and `may_reach` (monitor/fullness/forecast.py) proves it in O(n log n)
from the same points; only the others get the full forecast.
"""

from __future__ import annotations

from collections.abc import Mapping

from monitor.config.model import Config
from monitor.config.values import DAY
from monitor.fullness.forecast import forecast_full
from monitor.fullness.states import bounds_for
from monitor.fullness.store import each_history
from monitor.scheduling.view import MailboxStatus
from monitor.state.store import StateStore


def near_full_forecasts(
    config: Config,
    store: StateStore,
    statuses: Mapping[str, MailboxStatus],
    now: float,
    within_days: float,
) -> dict[str, float]:
    """When each mailbox forecast full within `within_days` will be (Unix time; a time
    already past means the trend says it is full now)."""
    horizon = within_days * DAY
    forecasts: dict[str, float] = {}
    for address, points in each_history(store):
        status = statuses.get(address)
        if status is None or status.quota is None:
            continue  # no longer configured, or never measured: no limit to reach
        limit = bounds_for(status.quota, status.mailbox.tiers, config.quota).full
        at = forecast_full(points, limit, now, config.quota.forecast_window, within=horizon)
        if at is not None and at - now <= horizon:
            forecasts[address] = at
    return forecasts
