"""Quota states and usage histories survive a restart, and a restart announces nothing."""

from __future__ import annotations

from pathlib import Path

from monitor.config.fullness_model import QuotaConfig
from monitor.config.model import Kind, Mailbox
from monitor.config.values import DAY, HOUR
from monitor.fullness.states import QuotaLevel
from monitor.fullness.store import (
    load_history,
    load_states,
    save_histories,
    save_history,
    save_states,
)
from monitor.fullness.tracker import FullnessTracker, Transition
from monitor.probes.result import QuotaReading, QuotaSource
from monitor.state.store import StateStore

START = 1_800_000_000.0
LIMIT = 1_000_000
FIRST = Mailbox("ec000001@adm.cfwb.be", Kind.EC, "000001", "main")
SECOND = Mailbox("ec000002@adm.cfwb.be", Kind.EC, "000002", "main")


def feed(
    tracker: FullnessTracker, mailbox: Mailbox, usage: list[int], start: float = START
) -> list[Transition]:
    """Readings six hours apart; the transitions they caused."""
    found = []
    for i, used in enumerate(usage):
        reading = QuotaReading(used, LIMIT, QuotaSource.IMAP_QUOTA, start + i * 6 * HOUR)
        transition = tracker.observe(mailbox, reading, QuotaConfig())
        if transition is not None:
            found.append(transition)
    return found


def save(tracker: FullnessTracker, store: StateStore) -> None:
    """What the daemon does after a cycle: save what changed, in two transactions."""
    dirty = tracker.take_dirty()
    save_states(store, tracker.states_of(dirty))
    save_histories(store, tracker.histories_of(dirty))


def test_a_restart_keeps_states_histories_and_announces_nothing(tmp_path: Path) -> None:
    """After a restart, the same state with the same entry time; hovering announces nothing."""
    store = StateStore.open(tmp_path / "state.db")
    tracker = FullnessTracker()
    growing = [500_000 + 10_000 * i for i in range(36)]  # reaches 85 % on its 36th reading
    feed(tracker, FIRST, growing)
    feed(tracker, SECOND, [200_000] * 8)
    save(tracker, store)
    store.close()

    store = StateStore.open(tmp_path / "state.db")
    restored = FullnessTracker()
    restored.restore(load_states(store), load_history(store))
    for mailbox in (FIRST, SECOND):
        assert restored.state(mailbox.address) == tracker.state(mailbox.address)
        assert restored.history(mailbox.address) == tracker.history(mailbox.address)
    assert restored.state(FIRST.address) == (QuotaLevel.WARNING, START + 35 * 6 * HOUR)
    later = START + 36 * 6 * HOUR
    assert feed(restored, FIRST, [849_000, 851_000, 840_000], later) == []
    assert restored.state(FIRST.address) == (QuotaLevel.WARNING, START + 35 * 6 * HOUR)
    now = START + 38 * 6 * HOUR
    assert restored.forecast(FIRST.address, LIMIT, now, QuotaConfig()) == tracker.forecast(
        FIRST.address, LIMIT, now, QuotaConfig()
    )
    store.close()


def test_saving_a_history_replaces_the_stored_one(tmp_path: Path) -> None:
    """The stored history is exactly the compacted list: dropped points go, changed ones change."""
    store = StateStore.open(tmp_path / "state.db")
    save_history(store, FIRST.address, [(START, 1), (START + DAY, 2), (START + 2 * DAY, 3)])
    save_history(store, SECOND.address, [(START, 9)])
    save_histories(store, {FIRST.address: [(START + DAY, 5), (START + 3 * DAY, 4)]})
    assert load_history(store) == {
        FIRST.address: [(START + DAY, 5), (START + 3 * DAY, 4)],
        SECOND.address: [(START, 9)],
    }
    store.close()


def test_a_state_written_by_a_newer_version_is_ignored(tmp_path: Path) -> None:
    """An unknown state name is left for the next reading to set, not misread."""
    store = StateStore.open(tmp_path / "state.db")
    save_states(store, {FIRST.address: (QuotaLevel.CRITICAL, START)})
    store.write_many(
        "INSERT INTO quota_state (address, state, entered_at) VALUES (?, ?, ?)",
        [(SECOND.address, "overflowing", START)],
    )
    assert load_states(store) == {FIRST.address: (QuotaLevel.CRITICAL, START)}
    store.close()
