"""The credential-free checks of endpoints marked down, each on its back-off, each with its
protocol's own check from the registry.

A check that crashes (a bug, a reload racing it) is logged and counted as a failed check:
it must never take the daemon down with it, as an exception in a task group would.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import Counter
from collections.abc import Callable

import structlog

from monitor.config.model import Config
from monitor.probes.registry import PROBERS
from monitor.probes.result import Protocol, Reason
from monitor.scheduling.outage import OutageDetector
from monitor.scheduling.view import EndpointKey

log = structlog.get_logger("bma_monitor.servers")

WATCH_EVERY = 1.0  # seconds between looks at which checks are due


class ServerWatch:
    """Runs the due checks; counts them per server, and their failures per reason."""

    def __init__(
        self,
        config: Callable[[], Config],
        detectors: Callable[[], dict[EndpointKey, OutageDetector]],
        context: Callable[[str, Protocol], ssl.SSLContext | None],
        clock: Callable[[], float],
    ) -> None:
        self._config = config
        self._detectors = detectors
        self._context = context
        self._clock = clock
        self._checking: set[EndpointKey] = set()
        self.checks: Counter[EndpointKey] = Counter()
        self.failures: Counter[tuple[EndpointKey, Reason]] = Counter()

    async def run(self, group: asyncio.TaskGroup) -> None:
        """Start each due check in `group`, forever."""
        while True:
            now = self._clock()
            for key, detector in list(self._detectors().items()):
                if key not in self._checking and detector.check_due(now):
                    self._checking.add(key)
                    group.create_task(self._check(key, detector))
            await asyncio.sleep(WATCH_EVERY)

    async def _check(self, key: EndpointKey, detector: OutageDetector) -> None:
        name, protocol = key
        try:
            config = self._config()
            server = config.servers.get(name)
            endpoint = server.endpoint(protocol) if server is not None else None
            if endpoint is None:
                return  # removed by a reload
            try:
                result = await PROBERS[protocol].check(
                    endpoint,
                    context=self._context(name, protocol),
                    deadline=config.probing.timeout,
                    clock=self._clock,
                )
                reason, error = result.reason, f"{result.reason}: {result.detail}"
            except Exception as exc:
                log.exception("server_check_crashed", server=name, protocol=str(protocol))
                reason, error = Reason.INTERNAL_ERROR, f"internal_error: {type(exc).__name__}"
            self.checks[key] += 1
            if reason is not Reason.OK:
                self.failures[(key, reason)] += 1
            if detector.record_check(self._clock(), reason is Reason.OK, error):
                log.warning(
                    "server_answers", server=name, protocol=str(protocol), next_step="trial probe"
                )
            else:
                log.warning(
                    "server_still_down",
                    server=name,
                    protocol=str(protocol),
                    reason=str(reason),
                    detail=error,
                    next_check_at=detector.next_check_at,
                )
        finally:
            self._checking.discard(key)
