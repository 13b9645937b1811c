"""The canonical probe log event gives the same limit as the metrics and `probe --json`."""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from monitor.config import Config
from monitor.scheduling import events
from tests import fleet
from tests.servers.dovecot import DovecotServer
from tests.test_scheduler import scheduler_for

TWO_GIB = 2 * 1024**3


async def probe_events(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> dict[str, MutableMapping[str, Any]]:
    """The `probe` events of one sweep, by mailbox."""
    # The daemon caches each module's logger on first use (configure_logging), so one
    # configured by an earlier test in this process would bypass the capture: use a new one.
    monkeypatch.setattr(events, "log", structlog.get_logger("bma_monitor.scheduler"))
    scheduler, store = scheduler_for(config)
    try:
        with capture_logs() as captured:
            await scheduler.sweep()
    finally:
        store.close()
    return {e["mailbox"]: e for e in captured if e["event"] == "probe"}


async def test_event_gives_the_default_limit_where_the_server_sets_none(
    exchange_like: DovecotServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without QUOTA the limit is the configured 2 GiB, and the server's own is null."""
    config = fleet.config_for(tmp_path, exchange_like, "none", [fleet.FOLDERS])
    event = (await probe_events(config, monkeypatch))[fleet.FOLDERS]
    assert event["quota_used_bytes"] == fleet.expected_usage(fleet.FOLDERS)
    assert event["quota_limit_bytes"] == TWO_GIB
    assert event["quota_server_limit_bytes"] is None
    assert event["quota_source"] == "message_sizes"


async def test_event_gives_the_server_limit_where_there_is_one(
    dovecot: DovecotServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With QUOTA both fields hold the server's limit; a failed login has no quota fields."""
    refused = fleet.SPARES[27]
    config = fleet.config_for(
        tmp_path, dovecot, "none", [fleet.FULL, refused], passwords={refused: "wrong"}
    )
    events = await probe_events(config, monkeypatch)
    full = events[fleet.FULL]
    assert full["quota_limit_bytes"] == full["quota_server_limit_bytes"] == fleet.TEN_MIB
    assert full["log_level"] == "info" and full["server"] == "dovecot"
    assert events[refused]["log_level"] == "warning"
    assert "quota_limit_bytes" not in events[refused]
