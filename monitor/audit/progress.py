"""Progress of a probe sweep on stderr: a bar redrawn in place on a terminal, plain lines
(every tenth of the way, or every few seconds) anywhere else, e.g. a log file or cron."""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Callable
from typing import TextIO

REDRAW_EVERY = 0.1  # seconds between redraws of the bar: smooth, and cheap at 900 probes/s
LINE_EVERY_TENTHS = 10  # a plain line at each tenth of the way...
LINE_EVERY_SECONDS = 5.0  # ...or after this long without one


class Progress:
    """Counts finished probes and failures, and shows how far along the sweep is."""

    def __init__(
        self,
        total: int,
        stream: TextIO,
        *,
        tty: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self._stream = stream
        self._tty = tty
        self._clock = clock
        self._started = clock()
        self._shown_at = self._started
        self._shown_tenth = 0

    def advance(self, failed: bool) -> None:
        """One more probe finished (`failed`: its login did not succeed)."""
        self.done += 1
        self.failed += failed
        now = self._clock()
        if self._tty:
            if now - self._shown_at >= REDRAW_EVERY or self.done == self.total:
                self._draw(now)
            return
        tenth = self.done * LINE_EVERY_TENTHS // self.total if self.total else LINE_EVERY_TENTHS
        if tenth > self._shown_tenth or now - self._shown_at >= LINE_EVERY_SECONDS:
            self._shown_tenth = tenth
            self._line(now)

    def finish(self) -> None:
        """The last state, and the line ended."""
        now = self._clock()
        if self._tty:
            self._draw(now)
            self._stream.write("\n")
        else:
            elapsed = now - self._started
            self._stream.write(
                f"probed {self.done}/{self.total}, {self.failed} failed, "
                f"in {elapsed:.1f} s ({self._rate(now):.1f}/s)\n"
            )
        self._stream.flush()

    def _rate(self, now: float) -> float:
        elapsed = now - self._started
        return self.done / elapsed if elapsed > 0 else 0.0

    def _eta(self, now: float) -> str:
        rate = self._rate(now)
        if rate <= 0 or self.done >= self.total:
            return "0:00" if self.done >= self.total else "?"
        seconds = int((self.total - self.done) / rate)
        return f"{seconds // 60}:{seconds % 60:02d}"

    def _numbers(self, now: float) -> str:
        share = self.done / self.total if self.total else 1.0
        return (
            f"{self.done}/{self.total} {share:4.0%}  {self.failed} failed  "
            f"{self._rate(now):.1f}/s  ETA {self._eta(now)}"
        )

    def _draw(self, now: float) -> None:
        self._shown_at = now
        numbers = self._numbers(now)
        columns = self._columns()
        width = max(10, min(40, columns - len(numbers) - 4))
        share = self.done / self.total if self.total else 1.0
        filled = int(width * share)
        bar = "#" * filled + "-" * (width - filled)
        # \r and erase-to-end: the line is redrawn in place, never scrolls.
        self._stream.write(f"\r[{bar}] {numbers}\x1b[K")
        self._stream.flush()

    def _columns(self) -> int:
        """The width of the terminal the bar goes to (stderr's, whatever stdout is)."""
        try:
            columns = os.get_terminal_size(self._stream.fileno()).columns
        except (OSError, ValueError, io.UnsupportedOperation):
            columns = 0
        # 0: not a terminal after all, or one that never said its size (a bare pty).
        return columns or shutil.get_terminal_size((80, 24)).columns

    def _line(self, now: float) -> None:
        self._shown_at = now
        self._stream.write(f"probed {self._numbers(now)}\n")
        self._stream.flush()
