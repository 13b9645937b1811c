"""kill -9 at each step of a send, then a restart: nothing lost, and the only duplicate
possible (a 250 that arrived just before the kill) carries the same Message-ID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.notify import outbox
from monitor.notify.outbox import OutboxState
from monitor.state.store import StateStore
from tests.servers.relay import RecordingRelay

ROOT = Path(__file__).resolve().parents[1]
WAIT_SECONDS = 30.0


@pytest.fixture
def relay() -> Iterator[RecordingRelay]:
    with RecordingRelay() as server:
        yield server


def child(state: Path, port: int, pause: str = "", row: int = 1) -> subprocess.Popen[str]:
    env = {**os.environ, "NOTIFY_PAUSE": pause, "NOTIFY_PAUSE_ROW": str(row)}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [sys.executable, "-m", "tests.notify_child", str(state), str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )


@pytest.mark.parametrize(
    ("pause", "row", "resent"),
    [
        ("enqueued", 1, 0),  # rows committed, no connection yet
        ("connected", 1, 0),  # session open, before MAIL FROM
        ("connected", 2, 0),  # the first row sent and marked, the second in flight
        ("answered", 2, 1),  # 250 received for the second row, not yet marked
    ],
)
def test_kill_at_each_step_loses_nothing(
    tmp_path: Path, relay: RecordingRelay, pause: str, row: int, resent: int
) -> None:
    """After SIGKILL at the step and a restart, every row is sent; at most the mail whose
    250 came before the kill arrives twice, with the same Message-ID."""
    state = tmp_path / "state.db"
    first = child(state, relay.port, pause, row)
    assert first.stdout is not None
    assert first.stdout.readline().strip() == pause  # the child waits there
    os.kill(first.pid, signal.SIGKILL)
    assert first.wait(WAIT_SECONDS) == -signal.SIGKILL
    before_restart = len(relay.messages())
    second = child(state, relay.port)
    out, _ = second.communicate(timeout=WAIT_SECONDS)
    assert second.returncode == 0, out
    ids = Counter(m.message["Message-ID"] for m in relay.messages())
    store = StateStore.open(state)
    try:
        rows = outbox.rows(store)
    finally:
        store.close()
    assert {r.state for r in rows} == {OutboxState.SENT}
    assert set(ids) == {r.entry.message_id for r in rows} and len(rows) == 3
    duplicates = {mid: n for mid, n in ids.items() if n > 1}
    assert len(duplicates) == resent
    assert all(n == 2 for n in duplicates.values())
    if resent:
        # The re-sent one is the mail whose 250 arrived before the kill, copy for copy.
        copies = [m for m in relay.messages() if m.message["Message-ID"] in duplicates]
        assert copies[0].message.get_body(("plain",)).get_content() == (  # type: ignore[union-attr]
            copies[1].message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        )
    assert before_restart == row - 1 + resent
