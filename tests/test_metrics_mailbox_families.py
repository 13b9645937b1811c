"""The expiry and fullness families of each mailbox, rendered as cached text: the same page
prometheus_client would write, and every change to a mailbox in the next scrape."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import replace

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from monitor.canary.evidence import CanaryOutcome, CanaryResult, Evidence, Found
from monitor.config.model import Kind, Mailbox
from monitor.expiry.directory_job import DirectoryHealth
from monitor.expiry.model import Expiry, ExpirySource
from monitor.fullness.states import QuotaLevel
from monitor.metrics import expiry as expiry_metrics
from monitor.metrics import fullness as fullness_metrics
from monitor.metrics.expiry import ExpiryText, ExpiryView
from monitor.metrics.fullness import FullnessText, FullnessView
from monitor.metrics.text_cache import Family
from tests.exposition import text_families
from tests.test_http import fake_view

NOW = 1_800_000_000.0
LABELS = ["mailbox", "kind", "server"]


def mailboxes() -> tuple[Mailbox, ...]:
    """Four mailboxes, one with label values that need escaping."""
    plain = [Mailbox(f"ec{i:06d}@adm.cfwb.be", Kind.EC, f"{i:06d}", "main") for i in range(3)]
    odd = Mailbox('po"1\\2@adm.cfwb.be', Kind.PO, "f", 'serveur "B"\nbis')
    return (*plain, odd)


def at(seconds: float) -> dt.datetime:
    """A timezone-aware date."""
    return dt.datetime.fromtimestamp(seconds, dt.UTC)


def expiry_view() -> ExpiryView:
    """Expired by its date, expired as SMTP said, in the future, and unknown."""
    boxes = mailboxes()
    config = replace(fake_view(0).config, mailboxes=boxes)
    a, b, _, d = (m.address for m in boxes)
    expiries = {
        a: Expiry(a, ExpirySource.INVENTORY, at(NOW - 3600), None),
        b: Expiry(b, ExpirySource.SMTP, at(NOW + 86_400.5), None, expired_now=True),
        d: Expiry(d, ExpirySource.OBSERVED, at(NOW + 15 * 86_400.25), at(NOW - 100)),
    }
    warned = {a: (1, NOW - 90_000.125), d: (15, NOW - 7.5)}
    return ExpiryView(config, expiries, None, warned, DirectoryHealth(None, {}, False))


def fullness_view() -> FullnessView:
    """Full by quota and bounce, warning with a forecast and a rejection, and unknown."""
    boxes = mailboxes()
    config = replace(fake_view(0).config, mailboxes=boxes)
    a, _, _, d = (m.address for m in boxes)
    bounce = Found(a, Evidence.BOUNCE, NOW)
    rejection = Found(d, Evidence.REJECTION, NOW)
    return FullnessView(
        config,
        states={a: (QuotaLevel.FULL, NOW - 60.25), d: (QuotaLevel.WARNING, NOW - 1e6)},
        forecasts={d: NOW + 3.5 * 86_400},
        evidence={(a, Evidence.BOUNCE): bounce, (d, Evidence.REJECTION): rejection},
        canaries={
            a: CanaryResult(a, "id-a", NOW - 30.5, CanaryOutcome.REJECTED_FULL, None),
            d: CanaryResult(d, "id-d", NOW - 10.0, CanaryOutcome.DELIVERED, 0.012345),
        },
    )


def gauge(family: Family, *extra: str) -> GaugeMetricFamily:
    """A client family with the same name and help."""
    return GaugeMetricFamily(family.name, family.help, labels=[*LABELS, *extra])


def client_expiry(view: ExpiryView) -> Iterator[GaugeMetricFamily]:
    """The per-mailbox expiry families as prometheus_client objects (the reference)."""
    expiry = gauge(expiry_metrics.EXPIRY, "source")
    expired = gauge(expiry_metrics.EXPIRED)
    warned = gauge(expiry_metrics.WARNED, "threshold")
    for mailbox in view.config.mailboxes:
        values = [mailbox.local_part, str(mailbox.kind), mailbox.server]
        if mailbox.address in view.warned:
            threshold, when = view.warned[mailbox.address]
            warned.add_metric([*values, str(threshold)], when)
        found = view.expiries.get(mailbox.address)
        if found is not None:
            seconds = found.expires_at.timestamp()
            expiry.add_metric([*values, str(found.source)], seconds)
            expired.add_metric(values, float(found.expired_now or seconds <= NOW))
    yield from (expiry, expired, warned)


def client_fullness(view: FullnessView) -> Iterator[GaugeMetricFamily]:
    """The per-mailbox fullness families as prometheus_client objects (the reference)."""
    m = fullness_metrics
    state, entered, forecast = gauge(m.STATE), gauge(m.ENTERED), gauge(m.FORECAST)
    full, canary = gauge(m.FULL, "evidence"), gauge(m.CANARY, "outcome")
    latency, sent = gauge(m.LATENCY), gauge(m.SENT)
    for mailbox in view.config.mailboxes:
        address = mailbox.address
        values = [mailbox.local_part, str(mailbox.kind), mailbox.server]
        if address in view.states:
            level, since = view.states[address]
            state.add_metric(values, float(level.rank))
            entered.add_metric(values, since)
            if level is QuotaLevel.FULL:
                full.add_metric([*values, "quota"], 1.0)
        if address in view.forecasts:
            forecast.add_metric(values, view.forecasts[address])
        for evidence in (Evidence.REJECTION, Evidence.BOUNCE):
            if (address, evidence) in view.evidence:
                full.add_metric([*values, str(evidence)], 1.0)
        result = view.canaries.get(address)
        if result is not None:
            canary.add_metric([*values, str(result.outcome)], 1.0)
            sent.add_metric(values, result.sent_at)
            if result.latency is not None:
                latency.add_metric(values, result.latency)
    yield from (state, entered, forecast, full, canary, latency, sent)


class Reference(Collector):
    """Yields the reference families."""

    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self._families = families

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The families given."""
        yield from self._families


def client_text(families: Iterator[GaugeMetricFamily]) -> bytes:
    """What prometheus_client writes for these families."""
    registry = CollectorRegistry()
    registry.register(Reference(list(families)))
    return generate_latest(registry)


def test_the_cached_text_is_what_prometheus_client_writes() -> None:
    """Names, help, type, labels (escaped), values and the order of samples, as a scraper
    parses them (the client sorts label names; the cached text keeps mailbox first)."""
    expiries, fullness = expiry_view(), fullness_view()
    cases = [
        (ExpiryText(lambda: expiries, clock=lambda: NOW).render, client_expiry(expiries)),
        (FullnessText(lambda: fullness).render, client_fullness(fullness)),
    ]
    for render, reference in cases:
        expected = client_text(reference)
        size, pieces = render()
        body = b"".join(pieces)
        assert size == len(body)
        parsed = list(text_string_to_metric_families(body.decode()))
        assert parsed == list(text_string_to_metric_families(expected.decode()))
        assert sum(len(f.samples) for f in parsed) >= 8  # a test of something


def samples(families: dict[str, object], name: str) -> dict[tuple[str, ...], float]:
    """One family's samples: label values (mailbox first) to value."""
    family = families[name]
    return {tuple(s.labels.values()): s.value for s in family.samples}  # type: ignore[attr-defined]


def test_a_change_to_one_mailbox_shows_in_the_next_scrape() -> None:
    """A new expiry, the date passing, a new quota state, a forecast and a canary result
    each show in the next scrape; a mailbox removed from the configuration disappears."""
    expiries, fullness = expiry_view(), fullness_view()
    now = [NOW]
    expiry_text = ExpiryText(lambda: expiries, clock=lambda: now[0])
    fullness_text = FullnessText(lambda: fullness)
    first = text_families(expiry_text.render) | text_families(fullness_text.render)
    boxes = expiries.config.mailboxes
    c = boxes[2]
    key = ("ec000002", "ec", "main")
    assert not any(k[:3] == key for k in samples(first, expiry_metrics.EXPIRY.name))

    # Changed in place, as the jobs do: the views hold the same dictionaries.
    expiries.expiries[c.address] = Expiry(c.address, ExpirySource.LDAP, at(NOW + 100.5), None)
    fullness.states[c.address] = (QuotaLevel.CRITICAL, NOW - 5.0)
    fullness.forecasts[c.address] = NOW + 7_200.0
    fullness.canaries[c.address] = CanaryResult(
        c.address, "id-c", NOW - 1.0, CanaryOutcome.DELIVERED, 0.25
    )
    second = text_families(expiry_text.render) | text_families(fullness_text.render)
    assert samples(second, expiry_metrics.EXPIRY.name)[(*key, "ldap")] == NOW + 100.5
    assert samples(second, expiry_metrics.EXPIRED.name)[key] == 0.0
    assert samples(second, fullness_metrics.STATE.name)[key] == 2.0
    assert samples(second, fullness_metrics.ENTERED.name)[key] == NOW - 5.0
    assert samples(second, fullness_metrics.FORECAST.name)[key] == NOW + 7_200.0
    assert samples(second, fullness_metrics.CANARY.name)[(*key, "delivered")] == 1.0
    assert samples(second, fullness_metrics.LATENCY.name)[key] == 0.25
    # The others are as they were.
    assert samples(second, fullness_metrics.STATE.name)[("ec000000", "ec", "main")] == 3.0

    now[0] = NOW + 101.0  # the date passes: nothing else changed
    third = text_families(expiry_text.render)
    assert samples(third, expiry_metrics.EXPIRED.name)[key] == 1.0

    fullness.canaries[c.address] = CanaryResult(
        c.address, "id-c2", NOW + 50.0, CanaryOutcome.NOT_DELIVERED, None
    )
    del fullness.forecasts[c.address]
    fourth = text_families(fullness_text.render)
    assert samples(fourth, fullness_metrics.CANARY.name).get((*key, "canary_not_delivered")) == 1.0
    assert (*key, "delivered") not in samples(fourth, fullness_metrics.CANARY.name)
    assert key not in samples(fourth, fullness_metrics.LATENCY.name)
    assert key not in samples(fourth, fullness_metrics.FORECAST.name)

    fullness = replace(fullness, config=replace(fullness.config, mailboxes=boxes[1:]))
    gone = text_families(fullness_text.render)
    assert ("ec000000", "ec", "main") not in samples(gone, fullness_metrics.STATE.name)
    assert ("ec000000", "ec", "main", "bounce") not in samples(gone, fullness_metrics.FULL.name)
