"""Logs as ops read them: one event per line, every line in the configured format."""

from __future__ import annotations

import asyncio
import gc
import json
import logging

import pytest
import structlog

from monitor.logs import configure_logging


def test_a_reload_changes_the_level_and_format_of_loggers_already_used(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """structlog caches a logger at first use; a new level and format still apply to it."""
    configure_logging("info", "json")
    log = structlog.get_logger("bma_monitor.test")
    log.debug("hidden")
    log.info("first", mailbox="ec000001")
    configure_logging("debug", "console")
    log.debug("second", mailbox="ec000001")
    configure_logging("error", "json")
    log.warning("dropped")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["event"] == "first"
    assert "second" in lines[1] and "mailbox=ec000001" in lines[1]
    assert not lines[1].startswith("{")


def test_asyncio_and_library_reports_are_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    """A future whose exception nobody read, and a library's warning, are JSON events too."""
    configure_logging("info", "json")

    async def lose_a_future() -> None:
        future = asyncio.get_running_loop().create_future()
        future.set_exception(ConnectionError("connection lost"))
        del future
        gc.collect()

    asyncio.run(lose_a_future())
    logging.getLogger("some.library").warning("careful: %s", "disk nearly full")
    lines = capsys.readouterr().err.splitlines()
    events = [json.loads(line) for line in lines]  # every line parses
    lost = [e for e in events if e["event"].startswith("Future exception was never retrieved")]
    assert lost and lost[0]["level"] == "error"
    assert lost[0]["exception"][0]["exc_type"] == "ConnectionError"
    assert {"event": "careful: disk nearly full", "level": "warning"}.items() <= events[-1].items()
