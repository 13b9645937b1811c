"""A token bucket holding one token: probes are paced evenly, never sent in bursts."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable


class RateLimiter:
    """Paces callers to a steady rate; a rate of 0 means no limit."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._rate = rate
        self._capacity = 1.0
        self._tokens = self._capacity
        self._updated = clock()
        self._lock = asyncio.Lock()

    def set_rate(self, rate: float) -> None:
        """Change the rate (a reload) without handing out a fresh burst."""
        self._refill()  # the time passed so far counts at the old rate
        self._rate = rate

    def delay(self) -> float:
        """Take a token now if one is free; otherwise the seconds until one will be."""
        if self._rate <= 0:
            return 0.0
        self._refill()
        if self._tokens >= 1.0 - 1e-9:  # float sums of refills fall a hair short of 1.0
            self._tokens = max(0.0, self._tokens - 1.0)
            return 0.0
        return (1.0 - self._tokens) / self._rate

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
        self._updated = now

    async def acquire(self) -> None:
        """Wait for a token."""
        if self._rate <= 0:
            return
        async with self._lock:  # first come, first served
            while (wait := self.delay()) > 0:  # noqa: ASYNC110 - pacing, not waiting for an event
                await asyncio.sleep(wait)
