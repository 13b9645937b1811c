"""Connection and concurrency caps that survive a reload.

A reload must not hand out fresh slots while probes still hold the old ones: replacing an
`asyncio.Semaphore` did exactly that (four connections open to a server capped at two,
after two reloads). These slots are resized in place instead.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator


class Slots:
    """A counting semaphore, first come first served, whose size can change while held."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._held = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def held(self) -> int:
        """Slots in use now."""
        return self._held

    @property
    def size(self) -> int:
        """How many may be held at once."""
        return self._size

    def resize(self, size: int) -> None:
        """Change the cap; holders above a smaller cap keep their slot until they release."""
        self._size = size
        self._wake()

    async def acquire(self) -> None:
        """Wait for a slot."""
        if self._held < self._size and not self._waiters:
            self._held += 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # granted, then cancelled before it could be used
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def release(self) -> None:
        """Give a slot back."""
        self._held -= 1
        self._wake()

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Hold a slot for the block."""
        await self.acquire()
        try:
            yield
        finally:
            self.release()

    def _wake(self) -> None:
        while self._waiters and self._held < self._size:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self._held += 1
                waiter.set_result(None)
