"""Structured logs: JSON lines in production, readable lines on a terminal.

Every line goes through one renderer, ours and the standard library's alike (asyncio's
"exception was never retrieved", a library's warning), so a JSON log stays JSON.

Level and format can change on a reload. structlog caches each logger at first use, which
makes an event about a quarter cheaper (23 µs instead of 32 µs, measured); cached loggers keep this
module's processors, so those processors read the current settings instead of being
replaced.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

Format = Literal["auto", "json", "console"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "exception": logging.ERROR,
    "critical": logging.CRITICAL,
    "fatal": logging.CRITICAL,
}


class StderrLogger:
    """Writes each event as a line on the current stderr; a failed write is dropped, because a
    closed or full log pipe must never stop the probing."""

    def msg(self, message: str) -> None:
        """Write one line."""
        with contextlib.suppress(OSError, ValueError):
            print(message, file=sys.stderr, flush=True)

    log = debug = info = warn = warning = error = critical = exception = fatal = msg


@dataclass(slots=True)
class _Settings:
    """What a reload may change; read by the processors on every event."""

    level: int = logging.INFO
    renderers: tuple[Processor, ...] = ()


_settings = _Settings()


def _below_level(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    if _LEVELS.get(method, logging.INFO) < _settings.level:
        raise structlog.DropEvent
    return event


def _render(logger: WrappedLogger, method: str, event: EventDict) -> Any:
    out: Any = event
    for renderer in _settings.renderers:
        out = renderer(logger, method, out)
    return out


_SHARED: list[Processor] = [
    structlog.contextvars.merge_contextvars,
    structlog.processors.add_log_level,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


class _StdlibHandler(logging.Handler):
    """Hands the standard library's records to the same renderer as our own events."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.setFormatter(
            structlog.stdlib.ProcessorFormatter(
                foreign_pre_chain=_SHARED,
                processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _render],
            )
        )

    def emit(self, record: logging.LogRecord) -> None:
        """Write the record as one line, never raising."""
        try:
            line = self.format(record)
        except Exception:  # a record that cannot be rendered must not take a thread down
            line = f"log record from {record.name} could not be rendered"
        StderrLogger().msg(line)


def configure_logging(level: str = "info", fmt: Format = "auto") -> None:
    """Set up structlog and the standard library's logging to write one event per line."""
    as_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    _settings.level = _LEVELS[level.lower()]
    # JSON carries tracebacks as data; the console renderer prints them itself.
    _settings.renderers = (
        (structlog.processors.dict_tracebacks, structlog.processors.JSONRenderer())
        if as_json
        # Colours only for a terminal: escape codes in a file or journal are noise.
        else (structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty()),)
    )
    structlog.configure(
        processors=[_below_level, *_SHARED, _render],
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG),
        logger_factory=_stderr_logger,
        cache_logger_on_first_use=True,
    )
    root = logging.getLogger()
    root.handlers = [_StdlibHandler()]
    root.setLevel(logging.WARNING)
    # aioimaplib logs raw protocol traffic at debug level; it must never reach our output.
    logging.getLogger("aioimaplib").setLevel(logging.WARNING)


def _stderr_logger(*args: object) -> StderrLogger:
    return StderrLogger()
