"""Prints the benchmark's figures and holds them against the targets."""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path
from typing import Any

TARGET_RATIO = 0.85
TARGET_TLS_CPU_MS = 2.0
TARGET_RSS_MB = 150.0
TARGET_RENDER_S = 0.3

Pacing = tuple[list[int], list[int], float]  # per-second counts: limited, spread; cycle s


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def rate(f: dict[str, Any]) -> float:
    """Probes per second of one run."""
    return float(f["probes"] / f["seconds"])


def cpu_ms(f: dict[str, Any], key: str = "cpu_seconds") -> float:
    """CPU milliseconds per probe of one run (`key`: whose CPU)."""
    return float(1000 * f[key] / f["probes"])


def _table(figures: dict[str, dict[str, Any]]) -> None:
    print(
        f"{'run':<20}{'probes/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/probe':>14}"
        f"{'peak RSS MB':>13}{'server CPU ms':>15}{'failed':>8}"
    )
    for name, f in figures.items():
        # The harness's CPU is the aiosmtpd server's (it runs in a thread there); Dovecot's
        # own processes are not counted.
        server = f"{cpu_ms(f, 'harness_cpu_seconds'):.2f}" if name.startswith("smtp") else "-"
        print(
            f"{name:<20}{rate(f):>10.0f}{1000 * f['p50']:>9.1f}{1000 * f['p99']:>9.1f}"
            f"{cpu_ms(f):>14.2f}{f['max_rss_mb']:>13.0f}{server:>15}{f['failed']:>8}"
        )


def _throughput_checks(figures: dict[str, dict[str, Any]]) -> list[tuple[str, bool]]:
    checks = []
    for name in figures:
        if not name.endswith(" daemon"):
            continue
        run = name.removesuffix(" daemon")
        base, daemon = figures[f"{run} baseline"], figures[name]
        ratio = rate(daemon) / rate(base)
        checks.append(
            (
                f"{run}: daemon/baseline throughput {ratio:.2f} (target >= {TARGET_RATIO}); "
                f"CPU per probe {cpu_ms(daemon):.2f} ms (baseline {cpu_ms(base):.2f})",
                ratio >= TARGET_RATIO,
            )
        )
    if "imap tls daemon" in figures:
        tls_cpu = cpu_ms(figures["imap tls daemon"])
        checks.append(
            (
                f"imap tls: daemon CPU {tls_cpu:.2f} ms per probe (target <= {TARGET_TLS_CPU_MS})",
                tls_cpu <= TARGET_TLS_CPU_MS,
            )
        )
    daemons = {n: f["max_rss_mb"] for n, f in figures.items() if n.endswith(" daemon")}
    rss = max(daemons.values())
    worst = max(daemons, key=lambda n: daemons[n])
    checks.append(
        (
            f"daemon peak RSS {rss:.0f} MB, {worst} (target <= {TARGET_RSS_MB:.0f})",
            rss <= TARGET_RSS_MB,
        )
    )
    return checks


def _scrape_checks(
    args: argparse.Namespace, figures: dict[str, dict[str, Any]], page: dict[str, Any]
) -> list[tuple[str, bool]]:
    checks = []
    first = next(name for name in figures if name.endswith(" daemon"))
    swept = figures[first]
    render = max(swept["metrics_render_seconds"], swept["metrics_http_seconds"])
    checks.append(
        (
            f"/metrics with {args.mailboxes} mailboxes after the {first} sweep (one protocol): "
            f"{swept['metrics_render_seconds']:.3f} s rendered, "
            f"{swept['metrics_http_seconds']:.3f} s over HTTP, "
            f"{swept['metrics_bytes'] / 1e6:.1f} MB (target <= {TARGET_RENDER_S})",
            render <= TARGET_RENDER_S,
        )
    )
    checks.append(
        (
            f"/metrics with {page['mailboxes']} mailboxes x {page['protocols']} protocols: "
            f"first scrape {page['first_scrape_seconds']:.3f} s after the start-up warm-up "
            f"({page['warm_up_seconds']:.3f} s, off the event loop), "
            f"{page['steady_render_seconds']:.3f} s a scrape later "
            f"({page['changed_mailboxes']} changed), {page['cached_render_seconds']:.3f} s "
            f"all cached, {page['render_seconds']:.3f} s with no warm-up; "
            f"{page['bytes'] / 1e6:.1f} MB, peak RSS {page['max_rss_mb']:.0f} MB "
            f"(target <= {TARGET_RENDER_S})",
            max(page["first_scrape_seconds"], page["steady_render_seconds"]) <= TARGET_RENDER_S,
        )
    )
    stall = 1000 * max(swept["loop_stall_during_scrapes"], swept["loop_stall_final_scrape"])
    print(
        f"event-loop stall while /metrics is scraped ({first}): worst {stall:.0f} ms "
        f"(worst over the whole sweep {1000 * swept['loop_stall_outside_scrapes_p_max']:.0f} ms);"
        f" scrapes during the sweep took {swept['scrapes_during_sweep']} s"
    )
    return checks


def _pacing_checks(args: argparse.Namespace, pacing: Pacing) -> list[tuple[str, bool]]:
    rate_counts, spread_counts, spread_seconds = pacing
    target = args.pace_mailboxes / (args.pace_mailboxes / args.pace_rate)
    return [
        (
            f"rate_limit {args.pace_rate:.0f}/s over {args.pace_mailboxes} mailboxes: max "
            f"{max(rate_counts)} probes in any second, min {min(rate_counts)}",
            max(rate_counts) <= args.pace_rate * 1.05,
        ),
        (
            f"interval spread over {args.pace_mailboxes} mailboxes (target {target:.0f}/s): max "
            f"{max(spread_counts)} in any second, min {min(spread_counts)}, "
            f"cycle {spread_seconds:.1f} s",
            max(spread_counts) <= target * 1.3,
        ),
    ]


def report(
    args: argparse.Namespace,
    figures: dict[str, dict[str, Any]],
    page: dict[str, Any],
    pacing: Pacing | None,
) -> None:
    """Print every figure, then each target as ok or MISS."""
    print(
        f"bma-monitor benchmark: {args.mailboxes} mailboxes, concurrency {args.concurrency}, "
        f"protocols {','.join(args.protocols)}"
    )
    print(
        f"machine: {_cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
        "Dovecot and aiosmtpd on the same machine"
    )
    print()
    _table(figures)
    print()
    smtp = figures.get("smtp tls daemon")
    if smtp is not None and "fingerprints_pending" in smtp:
        pending = smtp["fingerprints_pending"]
        print(
            "smtp tls daemon: first acceptances still waiting for their fingerprint (computed "
            f"in the background, after the probe) at the sweep's end: {pending}"
        )
    # Other work on the machine shows in every figure: the load says how much there was.
    print(f"load average at the end (1, 5, 15 min): {os.getloadavg()}")
    checks = _throughput_checks(figures) + _scrape_checks(args, figures, page)
    failed = sum(f["failed"] for f in figures.values())
    checks.append((f"failed probes: {failed}", failed == 0))
    if pacing is not None:
        checks += _pacing_checks(args, pacing)
    for text, ok in checks:
        print(f"[{'ok' if ok else 'MISS'}] {text}")
