"""Server and daemon metrics, built fresh on each scrape from an immutable scheduler view.

The per-mailbox families are rendered by mailbox_text (they are too many for client
objects); the instance label is the scrape configuration's job.
"""

from __future__ import annotations

import platform
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.registry import Collector

from monitor import __version__
from monitor.config.model import Kind
from monitor.probes.result import Protocol, Reason
from monitor.scheduling.scheduler import SchedulerView, SkipCause


@dataclass(frozen=True, slots=True)
class ReloadStatus:
    """Outcome of the last configuration (re)load."""

    successful: bool
    last_success_at: float


class BmaCollector(Collector):
    """Exports the `bma_` metrics."""

    def __init__(
        self, view: Callable[[], SchedulerView], reload: Callable[[], ReloadStatus]
    ) -> None:
        self._view = view
        self._reload = reload

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily | InfoMetricFamily]:
        """Build every metric family from one snapshot."""
        view = self._view()
        yield from self._server_families(view)
        yield from self._daemon_families(view)

    def _server_families(
        self, view: SchedulerView
    ) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        labels = ["server", "protocol"]
        up = GaugeMetricFamily(
            "bma_server_up",
            "0 while most probes to the endpoint fail on its side (no connection, TLS or "
            "greeting, or a login that hangs); mailbox probes to it then pause.",
            labels=labels,
        )
        down_since = GaugeMetricFamily(
            "bma_server_down_since_timestamp_seconds",
            "When the endpoint was last marked down (absent while it is up).",
            labels=labels,
        )
        for (name, protocol), state in view.servers.items():
            up.add_metric([name, str(protocol)], 1.0 if state.up else 0.0)
            if state.down_since is not None:
                down_since.add_metric([name, str(protocol)], state.down_since)
        checks = CounterMetricFamily(
            "bma_server_checks",
            "Credential-free checks of an endpoint marked down.",
            labels=labels,
        )
        check_failures = CounterMetricFamily(
            "bma_server_check_failures",
            "Checks of a down endpoint that failed, by reason (internal_error: the check crashed).",
            labels=[*labels, "reason"],
        )
        counters = view.counters
        for key in view.servers:
            endpoint = [key[0], str(key[1])]
            checks.add_metric(endpoint, float(counters.server_checks.get(key, 0)))
            for reason in Reason:
                if reason is not Reason.OK:
                    count = counters.server_check_failures.get((key, reason), 0)
                    check_failures.add_metric([*endpoint, str(reason)], float(count))
        expiry = GaugeMetricFamily(
            "bma_server_tls_cert_expiry_timestamp_seconds",
            "When the first certificate of the endpoint's chain expires, as the last probe's "
            "handshake showed it.",
            labels=labels,
        )
        version = GaugeMetricFamily(
            "bma_server_tls_version_info",
            "Always 1; the TLS version the last probe's handshake with the endpoint agreed.",
            labels=[*labels, "version"],
        )
        for (name, protocol), facts in view.tls.items():
            if facts.cert_not_after is not None:
                expiry.add_metric([name, str(protocol)], facts.cert_not_after)
            version.add_metric([name, str(protocol), facts.version], 1.0)
        yield from (up, down_since, checks, check_failures, expiry, version)

    def _daemon_families(
        self, view: SchedulerView
    ) -> Iterator[GaugeMetricFamily | CounterMetricFamily | InfoMetricFamily]:
        yield from _probe_counters(view)
        yield from _state_families(view)
        yield GaugeMetricFamily("bma_probes_in_flight", "Probes running now.", value=view.in_flight)
        cycle = GaugeMetricFamily(
            "bma_cycle_duration_seconds",
            "Time the last complete cycle of a protocol took to probe every mailbox once.",
            labels=["protocol"],
        )
        for protocol, seconds in view.cycle_seconds.items():
            cycle.add_metric([str(protocol)], seconds)
        yield cycle
        yield GaugeMetricFamily(
            "bma_scheduler_lag_seconds",
            "How late the last probe was sent after its slot (rate or concurrency limits).",
            value=view.lag_seconds,
        )
        mailboxes = GaugeMetricFamily(
            "bma_mailboxes", "Mailboxes configured.", labels=["kind", "server"]
        )
        counts = Counter((m.kind, m.server) for m in view.config.mailboxes)
        for server in view.config.servers:
            for kind in Kind:
                mailboxes.add_metric([str(kind), server], float(counts[(kind, server)]))
        yield mailboxes
        yield GaugeMetricFamily(
            "bma_quota_warning_ratio",
            "Configured usage ratio for a warning.",
            value=view.config.quota.warning_ratio,
        )
        yield GaugeMetricFamily(
            "bma_quota_critical_ratio",
            "Configured usage ratio for a critical alert.",
            value=view.config.quota.critical_ratio,
        )
        reload = self._reload()
        yield GaugeMetricFamily(
            "bma_config_last_reload_successful",
            "1 if the last configuration load succeeded.",
            value=1.0 if reload.successful else 0.0,
        )
        yield GaugeMetricFamily(
            "bma_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully.",
            value=reload.last_success_at,
        )
        yield InfoMetricFamily(
            "bma_build",
            "Version of the running bma-monitor.",
            value={"version": __version__, "python": platform.python_version()},
        )
        yield from _shard_families(view)


def _shard_families(view: SchedulerView) -> Iterator[GaugeMetricFamily]:
    """Which part of the fleet this instance watches; a whole fleet is shard 0 of 1."""
    shard = view.config.shard
    index, count = (shard.index, shard.count) if shard else (0, 1)
    info = GaugeMetricFamily(
        "bma_shard_info",
        "Always 1; this instance's shard (index from 0, like StatefulSet pod ordinals) and "
        "the number of shards the fleet is split into.",
        labels=["shard", "shards"],
    )
    info.add_metric([str(index), str(count)], 1.0)
    yield info
    # A number, so that an alert can compare count(bma_shard_info) with it.
    yield GaugeMetricFamily(
        "bma_shards", "Shards the fleet is split into (1 when not sharded).", value=float(count)
    )


def _probe_counters(view: SchedulerView) -> Iterator[CounterMetricFamily]:
    """The fleet counters, by protocol."""
    counters = view.counters
    probes = CounterMetricFamily("bma_probes", "Probes completed.", labels=["protocol"])
    failures = CounterMetricFamily(
        "bma_probe_failures",
        "Probes that did not log in, by reason.",
        labels=["protocol", "reason"],
    )
    quota_failures = CounterMetricFamily(
        "bma_quota_read_failures",
        "Probes that logged in but could not read the usage (see the probe's log event).",
        labels=["protocol"],
    )
    skipped = CounterMetricFamily(
        "bma_probes_skipped", "Due probes not sent, by cause.", labels=["protocol", "cause"]
    )
    for protocol in Protocol:
        label = str(protocol)
        probes.add_metric([label], float(counters.probes.get(protocol, 0)))
        for reason in Reason:
            if reason is not Reason.OK:
                count = counters.failures.get((protocol, reason), 0)
                failures.add_metric([label, str(reason)], float(count))
        quota_failures.add_metric([label], float(counters.quota_failures.get(protocol, 0)))
        for cause in SkipCause:
            skipped.add_metric(
                [label, str(cause)], float(counters.skipped.get((protocol, cause), 0))
            )
    yield from (probes, failures, quota_failures, skipped)


def _state_families(view: SchedulerView) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
    """Whether what must survive a restart (lock-outs above all) reaches the state file."""
    yield CounterMetricFamily(
        "bma_state_write_failures",
        "Writes to the state file that failed (disk full, read-only, damaged).",
        value=float(view.state.write.failures),
    )
    yield GaugeMetricFamily(
        "bma_state_unsaved_lockouts",
        "Lock-outs held in memory only: a restart now would try those refused passwords again.",
        value=float(view.state.unsaved_lockouts),
    )
