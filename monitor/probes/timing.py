"""Per-phase stopwatch for probes, and one deadline shared by a probe's phases."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager


class PhaseTimer:
    """Adds up the time spent in each phase, failed phases included."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self.durations: dict[str, float] = {}
        self.current: str | None = None

    @contextmanager
    def phase(self, phase: str) -> Iterator[None]:
        """Time the enclosed block as `phase`."""
        self.current = phase
        start = self._clock()
        try:
            yield
        finally:
            # To the microsecond: finer is noise, and the long repr costs /metrics its time.
            spent = self.durations.get(phase, 0.0) + self._clock() - start
            self.durations[phase] = round(spent, 6)


class PhaseDeadline:
    """Times phases and holds each to its own limit, all within one deadline."""

    def __init__(self, timer: PhaseTimer, timeout: asyncio.Timeout, deadline_at: float) -> None:
        self._timer = timer
        self._timeout = timeout
        self._deadline_at = deadline_at

    @contextmanager
    def phase(self, phase: str, limit: float) -> Iterator[None]:
        """Time the block as `phase`; it ends in TimeoutError after `limit` seconds, or
        at the deadline if that comes first."""
        # One Timeout for the whole run, moved at each phase: cheaper than one per phase.
        now = asyncio.get_running_loop().time()
        self._timeout.reschedule(min(self._deadline_at, now + limit))
        with self._timer.phase(phase):
            yield


@asynccontextmanager
async def phases_until(timer: PhaseTimer, deadline_at: float) -> AsyncIterator[PhaseDeadline]:
    """Run the block until `deadline_at` (event loop time) at the latest, phase by phase."""
    async with asyncio.timeout_at(deadline_at) as timeout:
        yield PhaseDeadline(timer, timeout, deadline_at)
