"""Per-phase stopwatch for probes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from monitor.probes.result import Phase


class PhaseTimer:
    """Adds up the time spent in each phase, failed phases included."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self.durations: dict[Phase, float] = {}
        self.current: Phase | None = None

    @contextmanager
    def phase(self, phase: Phase) -> Iterator[None]:
        """Time the enclosed block as `phase`."""
        self.current = phase
        start = self._clock()
        try:
            yield
        finally:
            self.durations[phase] = self.durations.get(phase, 0.0) + self._clock() - start
