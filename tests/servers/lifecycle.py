"""A test server as a context manager: started on entry, stopped on exit."""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType
from typing import Self


class StartStop:
    """Mixin for harnesses with start() and an idempotent stop()."""

    def start(self) -> None:
        """Start the server."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def poll_until(check: Callable[[], bool], timeout: float) -> bool:
    """Whether `check` held within `timeout` s; refused connections and half answers count as no."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return True
        except (OSError, ValueError):
            pass  # not listening yet, or a half-written answer
        time.sleep(0.1)
    return False
