"""The daemon's side of the benchmark, run in its own process so its CPU and memory are its own.

`sweep` mode probes every mailbox once through the daemon's own engine (Daemon, Scheduler,
ProbeRunner, state file, JSON logs, HTTP endpoint) with no rate limit, scraping /metrics
while it runs. `pace` mode runs the normal cycle once, for the caller to read its pacing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from monitor.config import load_config
from monitor.daemon import Daemon, tune_runtime
from monitor.logs import configure_logging
from monitor.probes.result import ProbeResult, Protocol
from monitor.state.store import StateStore

TICK = 0.005  # event-loop lag probe period


class LoopLag:
    """Measures how late the event loop wakes up: a stalled loop stalls every probe."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []  # (monotonic time, lag)

    async def run(self) -> None:
        """Tick until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            expected = loop.time() + TICK
            await asyncio.sleep(TICK)
            now = loop.time()
            self.samples.append((now, now - expected))

    def worst(self, start: float = 0.0, end: float = float("inf")) -> float:
        """The largest lag seen between two monotonic times."""
        return max((lag for t, lag in self.samples if start <= t <= end), default=0.0)


class Scraper(threading.Thread):
    """Scrapes /metrics once a second, as Prometheus would, and times each scrape."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.scrapes: list[tuple[float, float, int]] = []  # (start, seconds, bytes)
        self.stop = threading.Event()

    def run(self) -> None:
        """Scrape until stopped."""
        while not self.stop.wait(1.0):
            self.scrape()

    def scrape(self) -> tuple[float, float, int]:
        """One timed scrape."""
        start = time.monotonic()
        size = 0
        with urllib.request.urlopen(self.url, timeout=30) as response:
            # In pieces: a copy of the whole page here would count in the daemon's own peak
            # memory, where Prometheus, in a process of its own, would not.
            while piece := response.read(65536):
                size += len(piece)
        entry = (start, time.monotonic() - start, size)
        self.scrapes.append(entry)
        return entry


async def sweep(config_path: Path, protocol: Protocol) -> dict[str, Any]:
    """Probe every mailbox once over one protocol through the daemon's engine; return the
    figures."""
    config = load_config(config_path)
    configure_logging(config.logging.level, "json")
    store = StateStore.open(config.state.path)
    daemon = Daemon(config, store)
    tune_runtime()
    daemon.http.start()
    lag = LoopLag()
    ticker = asyncio.create_task(lag.run())
    scraper = Scraper(daemon.http.port)
    scraper.start()
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    outcomes = await daemon.scheduler.sweep(protocols=[protocol])
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF)
    # SMTP: first acceptances whose fingerprint waits in the background (never the probe).
    fingerprints_pending = daemon.expiry.observed.pending
    scraper.stop.set()
    scraper.join()
    during = [(s, d) for s, d, _ in scraper.scrapes]
    stall_during_scrapes = max((lag.worst(s, s + d) for s, d in during), default=0.0)
    scrape_start, scrape_seconds, scrape_bytes = scraper.scrape()  # every mailbox now has a result
    stall_final_scrape = lag.worst(scrape_start, scrape_start + scrape_seconds)
    render_start = time.perf_counter()
    b"".join(daemon.metrics.render()[1])
    render_seconds = time.perf_counter() - render_start
    ticker.cancel()
    daemon.http.stop()
    await daemon.expiry.observed.stop()  # as at SIGTERM: first passwords seen are dropped
    store.close()
    results = [o for o in outcomes.values() if isinstance(o, ProbeResult)]
    latencies = sorted(r.total_seconds for r in results)
    return {
        "probes": len(outcomes),
        "failed": sum(1 for r in results if not r.login_ok) + (len(outcomes) - len(results)),
        "seconds": seconds,
        "cpu_seconds": (after.ru_utime - cpu.ru_utime) + (after.ru_stime - cpu.ru_stime),
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[int(len(latencies) * 0.99)],
        "max_rss_mb": after.ru_maxrss / 1024,
        "scrapes_during_sweep": [round(d, 3) for _, d in during],
        "loop_stall_during_scrapes": stall_during_scrapes,
        "loop_stall_outside_scrapes_p_max": lag.worst(),
        "metrics_http_seconds": scrape_seconds,
        "metrics_bytes": scrape_bytes,
        "metrics_render_seconds": render_seconds,
        "loop_stall_final_scrape": stall_final_scrape,
        "fingerprints_pending": fingerprints_pending,
    }


async def pace(config_path: Path) -> dict[str, Any]:
    """Run the daemon's normal cycle until every mailbox was probed once.

    The pacing itself is read by the caller from the daemon's own probe events on stderr.
    """
    config = load_config(config_path)
    configure_logging("info", "json")
    store = StateStore.open(config.state.path)
    daemon = Daemon(config, store)
    tune_runtime()
    task = asyncio.create_task(daemon.scheduler.run())
    start = time.perf_counter()
    while sum(daemon.scheduler.view().counters.probes.values()) < len(config.mailboxes):  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    store.close()
    return {"probes": len(config.mailboxes), "seconds": time.perf_counter() - start}


def main() -> None:
    """Command line: `python -m bench.engine sweep|pace CONFIG [--protocol P]`; prints one
    JSON object."""
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["sweep", "pace"])
    parser.add_argument("config", type=Path)
    parser.add_argument("--protocol", type=Protocol, choices=list(Protocol), default=Protocol.IMAP)
    args = parser.parse_args()
    if args.mode == "sweep":
        figures = asyncio.run(sweep(args.config, args.protocol))
    else:
        figures = asyncio.run(pace(args.config))
    print(json.dumps(figures), flush=True)


if __name__ == "__main__":
    main()
