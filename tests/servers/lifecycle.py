"""A test server as a context manager: started on entry, stopped on exit."""

from __future__ import annotations

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
