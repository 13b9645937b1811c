"""Times /metrics for a fleet probed over every protocol, in a process of its own.

    python -m bench.metrics_page --mailboxes 10000

Builds the scheduler view of N mailboxes, each with an IMAP, a POP3 and an SMTP result
(every phase timed, TLS facts, the quota reading), an expiry date and a quota state (some
with a warning sent, a forecast, a canary), and renders the page with the same registry as
the daemon's endpoint (process, platform and GC collectors, BmaCollector, ExpiryCollector)
and MetricsPage with the expiry and fullness sections. Three renders are timed: the first,
with every status new (after a restart, no mailbox's cached lines can be reused: the
figure held against the target); the same again (all cached); and one scrape interval
later, with the mailboxes probed meanwhile at the default intervals changed (what a
running daemon serves). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import gc
import json
import math
import resource
import time
from pathlib import Path

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from monitor.canary.evidence import CanaryOutcome, CanaryResult
from monitor.config.fullness_model import QuotaConfig
from monitor.config.model import (
    Config,
    CredentialsConfig,
    EndpointConfig,
    HttpConfig,
    Kind,
    LoggingConfig,
    Mailbox,
    ProbingConfig,
    ServerConfig,
    StateConfig,
    protocol_set,
)
from monitor.daemon import GC_THRESHOLDS
from monitor.expiry.directory_job import DirectoryHealth
from monitor.expiry.model import Expiry, ExpirySource
from monitor.fullness.states import QuotaLevel
from monitor.metrics.collector import BmaCollector, ReloadStatus
from monitor.metrics.expiry import ExpiryCollector, ExpiryText, ExpiryView
from monitor.metrics.fullness import FullnessText, FullnessView
from monitor.metrics.page import MetricsPage
from monitor.probes import imap, pop3, smtp
from monitor.probes.result import (
    ProbeResult,
    Protocol,
    QuotaReading,
    QuotaSource,
    Reason,
    TlsFacts,
)
from monitor.scheduling.view import Counters, MailboxStatus, ProbeStatus, SchedulerView, StateHealth
from monitor.state.store import WriteHealth

PHASES: dict[Protocol, tuple[str, ...]] = {
    Protocol.IMAP: tuple(imap.Phase),
    Protocol.POP3: tuple(pop3.Phase),
    Protocol.SMTP: tuple(smtp.Phase),
}
SCRAPE_EVERY = 15.0  # seconds, Prometheus's usual scrape interval
SOURCES = {Protocol.IMAP: QuotaSource.IMAP_QUOTA, Protocol.POP3: QuotaSource.POP3_STAT}


def _status(mailbox: Mailbox, i: int, now: float) -> MailboxStatus:
    tls = TlsFacts("TLSv1.3", now + 86_400 * 90)
    probes = {}
    quota = None
    for protocol in Protocol:
        source = SOURCES.get(protocol)
        reading = QuotaReading(1_000_000 + i, 2**31, source, now) if source else None
        quota = quota or reading
        # Microseconds, as the probes time them.
        durations = {
            str(phase): round(0.000123 * ((i + 7 * n) % 997), 6)
            for n, phase in enumerate(PHASES[protocol])
        }
        result = ProbeResult(
            mailbox.address, protocol, Reason.OK, now - i % 300, durations, quota=reading, tls=tls
        )
        probes[protocol] = ProbeStatus(protocol, result, now - i % 300)
    return MailboxStatus(mailbox, probes, quota)


def fleet_view(count: int) -> SchedulerView:
    """A scheduler's view of `count` mailboxes that each logged in over IMAP, POP3 and SMTP."""
    now = time.time()
    protocols = protocol_set(Protocol)
    mailboxes = tuple(
        Mailbox(
            f"ec{i:06d}@adm.cfwb.be",
            Kind.EC,
            f"{i:06d}",
            "main",
            name=f"Établissement scolaire n° {i}",
            protocols=protocols,
        )
        for i in range(1, count + 1)
    )
    endpoint = EndpointConfig(host="127.0.0.1")
    server = ServerConfig(imap=endpoint, pop3=endpoint, smtp=endpoint)
    sections = (ProbingConfig(), QuotaConfig(), CredentialsConfig(), StateConfig(), HttpConfig())
    config = Config(
        Path("bma.yaml"), "adm.cfwb.be", {"main": server}, "main", *sections, LoggingConfig(),
        mailboxes,
    )  # fmt: skip
    statuses = {m.address: _status(m, i, now) for i, m in enumerate(mailboxes)}
    return SchedulerView(
        config=config,
        mailboxes=statuses,
        servers={},
        tls={},
        counters=Counters(dict.fromkeys(Protocol, count), {}, {}, {}, {}, {}),
        in_flight=0,
        cycle_seconds={},
        lag_seconds=0.0,
        dispatcher_due=time.monotonic(),
        state=StateHealth(WriteHealth(True, 0, ""), 0),
    )


def expiry_and_fullness(config: Config, now: float) -> tuple[ExpiryView, FullnessView]:
    """Every mailbox with an expiry and a quota state; one in ten warned and growing, one
    in twenty with a canary."""
    expiries, warned, states, forecasts, canaries = {}, {}, {}, {}, {}
    for i, mailbox in enumerate(config.mailboxes):
        address = mailbox.address
        expires = dt.datetime.fromtimestamp(now + 86_400 * (i % 200), dt.UTC)
        expiries[address] = Expiry(address, ExpirySource.INVENTORY, expires, None)
        states[address] = (QuotaLevel.WARNING if i % 20 == 0 else QuotaLevel.OK, now - i)
        if i % 10 == 0:
            warned[address] = (15, now - 3600 - i)
            forecasts[address] = now + 86_400 * 30 + i
        if i % 20 == 0:
            canaries[address] = CanaryResult(
                address, f"c{i}", now - i, CanaryOutcome.DELIVERED, 0.01 + i / 1e6
            )
    health = DirectoryHealth(None, {}, False)
    return (
        ExpiryView(config, expiries, None, warned, health),
        FullnessView(config, states, forecasts, {}, canaries),
    )


def changed_between_scrapes(view: SchedulerView) -> SchedulerView:
    """The view one scrape later at the default intervals: the mailboxes probed meanwhile
    (IMAP and POP3 every 5 minutes, SMTP every hour) have new statuses."""
    probing = view.config.probing
    per_second = sum(1 / probing.intervals.get(p, probing.interval) for p in Protocol)
    count = math.ceil(len(view.mailboxes) * SCRAPE_EVERY * per_second)
    now = time.time() + SCRAPE_EVERY
    mailboxes = dict(view.mailboxes)
    for i, address in enumerate(list(mailboxes)[:count]):
        mailboxes[address] = _status(mailboxes[address].mailbox, i, now)
    return dataclasses.replace(view, mailboxes=mailboxes)


def grown_between_scrapes(fullness: FullnessView, changed: int) -> FullnessView:
    """The forecasts of the mailboxes probed meanwhile, moved by their new readings."""
    forecasts = dict(fullness.forecasts)
    for address in list(forecasts)[:changed]:
        forecasts[address] += 60.0
    return dataclasses.replace(fullness, forecasts=forecasts)


def _timed_render(page: MetricsPage) -> tuple[float, int]:
    start = time.perf_counter()
    size, pieces = page.render()
    # Consumed piece by piece, as the endpoint sends them; the size is counted, not trusted.
    sent = sum(len(piece) for piece in pieces)
    seconds = time.perf_counter() - start
    assert sent == size, (sent, size)
    return seconds, sent


def main() -> None:
    """Command line; prints one JSON object."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--mailboxes", type=int, default=10_000)
    args = parser.parse_args()
    # The daemon's collector thresholds (tune_runtime): the default ones would run a full
    # collection over the whole fleet's objects in the middle of most timed scrapes.
    gc.set_threshold(*GC_THRESHOLDS)
    view = fleet_view(args.mailboxes)
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    registry.register(BmaCollector(lambda: view, lambda: ReloadStatus(True, time.time())))
    expiry, fullness = expiry_and_fullness(view.config, time.time())
    registry.register(ExpiryCollector(lambda: expiry))

    def new_page() -> MetricsPage:
        sections = (
            ExpiryText(lambda: expiry).render,
            FullnessText(lambda: fullness).render,
        )
        return MetricsPage(registry, lambda: view, sections)

    page = new_page()
    cold, size = _timed_render(page)
    warm, _ = _timed_render(page)
    # What the daemon does: every mailbox rendered at start, off the event loop, then the
    # first scrape. The first page's cache is dropped first, so peak RSS holds one.
    del page
    gc.collect()
    page = new_page()
    warm_up_start = time.perf_counter()
    page.warm()
    warm_up = time.perf_counter() - warm_up_start
    first_scrape, _ = _timed_render(page)
    before = view.mailboxes
    view = changed_between_scrapes(view)
    changed = sum(1 for a, s in view.mailboxes.items() if s is not before[a])
    fullness = grown_between_scrapes(fullness, changed // len(Protocol))
    steady, _ = _timed_render(page)
    figures = {
        "mailboxes": args.mailboxes,
        "protocols": len(Protocol),
        "bytes": size,
        "render_seconds": cold,
        "warm_up_seconds": warm_up,
        "first_scrape_seconds": first_scrape,
        "cached_render_seconds": warm,
        "changed_mailboxes": changed,
        "steady_render_seconds": steady,
        "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
