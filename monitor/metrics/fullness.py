"""Mailbox fullness metrics: quota state, forecast, evidence of full, the canary; as text
cached per mailbox."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from monitor.canary.evidence import CanaryResult, Evidence, Found
from monitor.config.model import Config, Mailbox
from monitor.fullness.states import QuotaLevel
from monitor.metrics.text_cache import Chunks, Family, TextCache, mailbox_labels, sample


@dataclass(frozen=True, slots=True)
class FullnessView:
    """What is known of each mailbox's fullness, as of a scrape."""

    config: Config
    states: dict[str, tuple[QuotaLevel, float]]  # state, when entered
    forecasts: dict[str, float]  # when full, for the growing mailboxes
    evidence: dict[tuple[str, Evidence], Found]
    canaries: dict[str, CanaryResult]


STATE = Family(
    "bma_mailbox_quota_state",
    "The mailbox's quota state, with hysteresis: 0 ok, 1 warning, 2 critical, 3 full.",
)
ENTERED = Family(
    "bma_mailbox_quota_state_entered_timestamp_seconds",
    "When the mailbox entered its quota state.",
)
FORECAST = Family(
    "bma_mailbox_quota_full_forecast_timestamp_seconds",
    "When the mailbox will be full at its growth of the last days (absent where it is "
    "not growing).",
)
FULL = Family(
    "bma_mailbox_full",
    "1 where something says the mailbox is full: quota (its reading), rejection (mail "
    "refused with X.2.2) or bounce (a DSN with X.2.2); absent otherwise.",
)
CANARY = Family(
    "bma_mailbox_canary_outcome",
    "Always 1; how the mailbox's last delivery canary ended.",
)
LATENCY = Family(
    "bma_mailbox_canary_delivery_seconds",
    "Time from handing the last canary to the relay to seeing it in the mailbox.",
)
SENT = Family(
    "bma_mailbox_canary_last_timestamp_seconds",
    "When the mailbox's last canary was sent.",
)
FAMILIES = (STATE, ENTERED, FORECAST, FULL, CANARY, LATENCY, SENT)
# What a mailbox's lines show: the mailbox, its state and when entered, its forecast,
# whether a rejection and a bounce said full, its last canary.
FullnessKey = tuple[
    Mailbox, tuple[QuotaLevel, float] | None, float | None, bool, bool, CanaryResult | None
]


class FullnessText:
    """The fullness families, as text cached per mailbox (see text_cache)."""

    def __init__(self, view: Callable[[], FullnessView]) -> None:
        self._view = view
        self._text: TextCache[FullnessKey] = TextCache(FAMILIES)

    def render(self) -> tuple[int, Iterator[bytes]]:
        """The size in bytes of the families, and their text, family by family."""
        view = self._view()
        states, forecasts, canaries = view.states, view.forecasts, view.canaries
        # Looked up by address alone: hashing (address, Evidence) pairs cost 10,000 calls
        # of the enum's Python-level __hash__ a scrape.
        rejected = {a for a, e in view.evidence if e is Evidence.REJECTION}
        bounced = {a for a, e in view.evidence if e is Evidence.BOUNCE}

        def keyed(mailbox: Mailbox) -> tuple[str, FullnessKey]:
            address = mailbox.address
            return address, (
                mailbox,
                states.get(address),
                forecasts.get(address),
                address in rejected,
                address in bounced,
                canaries.get(address),
            )

        return self._text.render(map(keyed, view.config.mailboxes), _chunks)


def _chunks(key: FullnessKey) -> Chunks:
    mailbox, kept, forecast, rejected, bounced, result = key
    labels = mailbox_labels(mailbox)
    state = entered = when_full = full = canary = latency = sent = ""
    if kept is not None:
        state = sample(STATE, labels, float(kept[0].rank))
        entered = sample(ENTERED, labels, kept[1])
        if kept[0] is QuotaLevel.FULL:
            full += sample(FULL, labels + ',evidence="' + Evidence.QUOTA + '"', 1.0)
    if forecast is not None:
        when_full = sample(FORECAST, labels, forecast)
    for evidence, found in ((Evidence.REJECTION, rejected), (Evidence.BOUNCE, bounced)):
        if found:
            full += sample(FULL, labels + ',evidence="' + evidence + '"', 1.0)
    if result is not None:
        canary = sample(CANARY, labels + ',outcome="' + result.outcome + '"', 1.0)
        sent = sample(SENT, labels, result.sent_at)
        if result.latency is not None:
            latency = sample(LATENCY, labels, result.latency)
    texts = (state, entered, when_full, full, canary, latency, sent)
    return tuple(text.encode() for text in texts)
