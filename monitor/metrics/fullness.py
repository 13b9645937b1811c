"""Mailbox fullness metrics: quota state, forecast, evidence of full, the canary."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from monitor.canary.evidence import CanaryResult, Evidence, Found
from monitor.config.model import Config
from monitor.fullness.states import QuotaLevel


@dataclass(frozen=True, slots=True)
class FullnessView:
    """What is known of each mailbox's fullness, as of a scrape."""

    config: Config
    states: dict[str, tuple[QuotaLevel, float]]  # state, when entered
    forecasts: dict[str, float]  # when full, for the growing mailboxes
    evidence: dict[tuple[str, Evidence], Found]
    canaries: dict[str, CanaryResult]


class FullnessCollector(Collector):
    """Exports the fullness families from one snapshot per scrape."""

    def __init__(
        self, view: Callable[[], FullnessView], clock: Callable[[], float] = time.time
    ) -> None:
        self._view = view
        self._clock = clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Every fullness family."""
        view = self._view()
        labels = ["mailbox", "kind", "server"]
        state = GaugeMetricFamily(
            "bma_mailbox_quota_state",
            "The mailbox's quota state, with hysteresis: 0 ok, 1 warning, 2 critical, 3 full.",
            labels=labels,
        )
        entered = GaugeMetricFamily(
            "bma_mailbox_quota_state_entered_timestamp_seconds",
            "When the mailbox entered its quota state.",
            labels=labels,
        )
        forecast = GaugeMetricFamily(
            "bma_mailbox_quota_full_forecast_timestamp_seconds",
            "When the mailbox will be full at its growth of the last days (absent where it is "
            "not growing).",
            labels=labels,
        )
        full = GaugeMetricFamily(
            "bma_mailbox_full",
            "1 where something says the mailbox is full: quota (its reading), rejection (mail "
            "refused with X.2.2) or bounce (a DSN with X.2.2); absent otherwise.",
            labels=[*labels, "evidence"],
        )
        canary = GaugeMetricFamily(
            "bma_mailbox_canary_outcome",
            "Always 1; how the mailbox's last delivery canary ended.",
            labels=[*labels, "outcome"],
        )
        latency = GaugeMetricFamily(
            "bma_mailbox_canary_delivery_seconds",
            "Time from handing the last canary to the relay to seeing it in the mailbox.",
            labels=labels,
        )
        sent = GaugeMetricFamily(
            "bma_mailbox_canary_last_timestamp_seconds",
            "When the mailbox's last canary was sent.",
            labels=labels,
        )
        found_by = {(a, e) for a, e in view.evidence}
        for mailbox in view.config.mailboxes:
            address = mailbox.address
            values = [mailbox.local_part, str(mailbox.kind), mailbox.server]
            kept = view.states.get(address)
            if kept is not None:
                state.add_metric(values, float(kept[0].rank))
                entered.add_metric(values, kept[1])
                if kept[0] is QuotaLevel.FULL:
                    full.add_metric([*values, str(Evidence.QUOTA)], 1.0)
            if address in view.forecasts:
                forecast.add_metric(values, view.forecasts[address])
            for evidence in (Evidence.REJECTION, Evidence.BOUNCE):
                if (address, evidence) in found_by:
                    full.add_metric([*values, str(evidence)], 1.0)
            result = view.canaries.get(address)
            if result is not None:
                canary.add_metric([*values, str(result.outcome)], 1.0)
                sent.add_metric(values, result.sent_at)
                if result.latency is not None:
                    latency.add_metric(values, result.latency)
        yield from (state, entered, forecast, full, canary, latency, sent)
