"""Each mailbox's quota state and usage history in memory; the caller loads and saves them."""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from monitor.config.fullness_model import QuotaConfig
from monitor.config.model import Mailbox
from monitor.fullness.forecast import Point, forecast_full
from monitor.fullness.history import compact
from monitor.fullness.states import QuotaLevel, bounds_for, next_state
from monitor.fullness.store import StateRow
from monitor.probes.result import QuotaReading, QuotaSource


@dataclass(frozen=True, slots=True)
class Transition:
    """A mailbox's quota state changed; `previous` is None the first time it is known."""

    address: str
    previous: QuotaLevel | None
    current: QuotaLevel
    at: float  # Unix time of the reading that caused it


class FullnessTracker:
    """Quota states with hysteresis and usage histories of the fleet; no I/O of its own."""

    def __init__(self) -> None:
        self._states: dict[str, StateRow] = {}
        # Packed as (time, used, time, used...) doubles: 16 bytes a point where a list of
        # tuples costs about 110, i.e. 9 KB instead of 60 KB for a full 559-point history.
        self._histories: dict[str, array[float]] = {}
        self._dirty: set[str] = set()

    def restore(
        self, states: Mapping[str, StateRow], histories: Mapping[str, Sequence[Point]]
    ) -> None:
        """Take up what the state file kept, so that a restart announces nothing again."""
        self._states.update(states)
        self._histories.update((a, _packed(sorted(points))) for a, points in histories.items())

    def observe(
        self, mailbox: Mailbox, reading: QuotaReading, config: QuotaConfig
    ) -> Transition | None:
        """Record a reading; the Transition if the mailbox's state changed (log it, save it)."""
        # POP3's STAT counts the inbox alone: as history it would read as a clean-up whenever
        # an IMAP sum is missing, and as a state it would say ok of a mailbox whose other
        # folders fill it. Such a mailbox keeps the state its whole-mailbox readings gave.
        if reading.source is QuotaSource.POP3_STAT:
            return None
        address, at, used = mailbox.address, reading.measured_at, reading.used_bytes
        history = self._histories.get(address)
        last = history[-2] if history else None
        if last is not None and at < last:
            return None  # an older reading arriving late: the newer one already counted
        if last is None or at > last:
            points = [*_unpacked(history), (at, used)] if history else [(at, used)]
            self._histories[address] = _packed(compact(points, at, config.history))
            self._dirty.add(address)
        bounds = bounds_for(reading, mailbox.tiers, config)
        known = self._states.get(address)
        previous = known[0] if known else None
        current = next_state(previous, used, bounds, bounds.margin(config.hysteresis))
        if current is previous:
            return None
        self._states[address] = (current, at)
        self._dirty.add(address)
        return Transition(address, previous, current, at)

    def state(self, address: str) -> StateRow | None:
        """The mailbox's quota state and the Unix time it was entered, if known."""
        return self._states.get(address)

    def history(self, address: str) -> list[Point]:
        """The mailbox's compacted usage history, oldest first."""
        history = self._histories.get(address)
        return _unpacked(history) if history else []

    def forecast(self, address: str, limit: int, now: float, config: QuotaConfig) -> float | None:
        """When the mailbox reaches `limit` (its Bounds.full) on its trend; None if not growing."""
        points = self.history(address)
        return forecast_full(points, limit, now, config.forecast_window) if points else None

    def dirty(self) -> set[str]:
        """Addresses whose state or history changed since the last `take_dirty`."""
        return set(self._dirty)

    def take_dirty(self) -> set[str]:
        """The changed addresses, forgetting them: the caller saves these now."""
        dirty, self._dirty = self._dirty, set()
        return dirty

    def states(self) -> dict[str, StateRow]:
        """Every mailbox's state and when it was entered (a copy, for a scrape)."""
        return dict(self._states)

    def mark_dirty(self, addresses: Iterable[str]) -> None:
        """Addresses to save again: the last save of them failed."""
        self._dirty |= {a for a in addresses if a in self._states or a in self._histories}

    def states_of(self, addresses: Iterable[str]) -> dict[str, StateRow]:
        """The known states of these addresses, as `save_states` takes them."""
        return {a: self._states[a] for a in addresses if a in self._states}

    def histories_of(self, addresses: Iterable[str]) -> dict[str, list[Point]]:
        """The histories of these addresses, as `save_histories` takes them."""
        return {a: _unpacked(self._histories[a]) for a in addresses if a in self._histories}

    def forget(self, keep: Iterable[str]) -> None:
        """Drop mailboxes no longer configured (after a reload), keeping those in `keep`."""
        wanted = set(keep)
        for table in (self._states, self._histories):
            for address in [a for a in table if a not in wanted]:
                del table[address]
        self._dirty &= wanted


def _packed(points: Iterable[Point]) -> array[float]:
    return array("d", (value for point in points for value in point))


def _unpacked(packed: array[float]) -> list[Point]:
    return [(packed[i], int(packed[i + 1])) for i in range(0, len(packed), 2)]
