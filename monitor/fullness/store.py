"""Quota states and usage histories in the state file (calls block: run them in a thread)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence

from monitor.fullness.forecast import Point
from monitor.fullness.states import QuotaLevel
from monitor.state.store import StateStore

StateRow = tuple[QuotaLevel, float]  # the state and the Unix time it was entered


def load_states(store: StateStore) -> dict[str, StateRow]:
    """Every stored quota state and the time it was entered, by address."""
    with store.reading() as db:
        rows = db.execute("SELECT address, state, entered_at FROM quota_state").fetchall()
    known = {str(level) for level in QuotaLevel}
    # A state a newer version wrote is not ours to interpret: the next reading sets one.
    return {
        address: (QuotaLevel(state), float(at)) for address, state, at in rows if state in known
    }


def save_states(store: StateStore, rows: Mapping[str, StateRow]) -> None:
    """Insert or replace these mailboxes' states, in one transaction."""
    if rows:
        store.write_many(
            "INSERT INTO quota_state (address, state, entered_at) VALUES (?, ?, ?) "
            "ON CONFLICT(address) DO UPDATE SET "
            "state = excluded.state, entered_at = excluded.entered_at",
            [(address, str(level), at) for address, (level, at) in rows.items()],
        )


def load_history(store: StateStore) -> dict[str, list[Point]]:
    """Every mailbox's usage history, in time order, by address."""
    return dict(each_history(store))


def each_history(store: StateStore) -> Iterator[tuple[str, list[Point]]]:
    """Each mailbox's usage history in time order, one mailbox at a time: a fleet report
    holds one in memory, not 5.6 million points (1.6 GB) for 10,000 mailboxes."""
    with store.reading() as db:
        address, points = "", list[Point]()
        for row_address, at, used in db.execute(
            "SELECT address, at, used FROM usage_history ORDER BY address, at"
        ):
            if row_address != address:
                if points:
                    yield address, points
                address, points = row_address, []
            points.append((float(at), int(used)))
        if points:
            yield address, points


def save_history(store: StateStore, address: str, points: Sequence[Point]) -> None:
    """Make the stored history of one mailbox exactly `points`."""
    save_histories(store, {address: points})


def save_histories(store: StateStore, histories: Mapping[str, Sequence[Point]]) -> None:
    """Make the stored histories of these mailboxes exactly the given points, in one
    transaction; only the rows that differ are written (a cycle adds a point or two)."""
    if not histories:
        return
    with store.writing() as db:
        for address, points in histories.items():
            stored = dict(
                db.execute("SELECT at, used FROM usage_history WHERE address = ?", (address,))
            )
            wanted = dict(points)
            db.executemany(
                "DELETE FROM usage_history WHERE address = ? AND at = ?",
                _rows(address, (at for at in stored if at not in wanted)),
            )
            db.executemany(
                "INSERT INTO usage_history (address, at, used) VALUES (?, ?, ?) "
                "ON CONFLICT(address, at) DO UPDATE SET used = excluded.used",
                [(address, at, used) for at, used in wanted.items() if stored.get(at) != used],
            )


def _rows(address: str, times: Iterable[float]) -> list[tuple[str, float]]:
    return [(address, at) for at in times]


def save_fullness(
    store: StateStore,
    states: Mapping[str, StateRow],
    histories: Mapping[str, Sequence[Point]],
) -> None:
    """Save changed states and histories (blocking: the scheduler's flush runs it in a thread)."""
    if states:
        save_states(store, states)
    if histories:
        save_histories(store, histories)
