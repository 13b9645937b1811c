"""Structured logs: JSON lines in production, readable lines on a terminal."""

from __future__ import annotations

import contextlib
import logging
import sys
from typing import Literal

import structlog


class StderrLogger:
    """Writes each event as a line on the current stderr; a failed write is dropped, because a
    closed or full log pipe must never stop the probing."""

    def msg(self, message: str) -> None:
        """Write one line."""
        with contextlib.suppress(OSError, ValueError):
            print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


def _stderr_logger(*args: object) -> StderrLogger:
    return StderrLogger()


def configure_logging(
    level: str = "info", fmt: Literal["auto", "json", "console"] = "auto"
) -> None:
    """Set up structlog and the standard library's logging to write one event per line."""
    numeric = logging.getLevelName(level.upper())
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    # JSON carries tracebacks as data; the console renderer prints them itself.
    tail: list[structlog.typing.Processor] = (
        [structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer()]
        if as_json
        else [structlog.dev.ConsoleRenderer()]
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *tail,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    # aioimaplib logs raw protocol traffic at debug level; it must never reach our output.
    logging.getLogger("aioimaplib").setLevel(logging.WARNING)
