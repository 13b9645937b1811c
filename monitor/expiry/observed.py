"""The observation source: a new CERBERE password accepted by SMTP AUTH dates its change.

When a mailbox's `.cerbere` file holds a password SMTP AUTH has not accepted before, and
the server accepts it, the password was changed: the time of that first acceptance is
kept as its change date. The first password ever seen dates nothing (it may be months
old). A file rewritten with the same password is no change: its scrypt fingerprint is
compared, and computed only when the file itself changed.

The fingerprint costs about 50 ms of CPU, and a first start meets it once per mailbox:
it is queued and computed after the probe, in a thread of its own, never on the probe's
path. The time of the acceptance is taken when it is queued.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import threading
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog

from monitor.credentials import SecretKind
from monitor.expiry.model import ExpirySource, PasswordDate
from monitor.state.store import StateError, StateStore

log = structlog.get_logger("bma_monitor.expiry")


@dataclass(frozen=True, slots=True)
class Accepted:
    """The CERBERE password a mailbox last had accepted."""

    address: str
    credential: str  # the file's identity (see runner.identity), never the secret
    fingerprint: str
    first_accepted_at: float
    changed_at: float | None  # None: the first password seen, whose change date is unknown

    def password_date(self) -> PasswordDate | None:
        """This observation as a source's word, where it dates a change."""
        if self.changed_at is None:
            return None
        changed = dt.datetime.fromtimestamp(self.changed_at, dt.UTC)
        return PasswordDate(self.address, ExpirySource.OBSERVED, changed_at=changed)


def load_accepted(store: StateStore) -> dict[str, Accepted]:
    """Every mailbox's last accepted CERBERE password, by address."""
    with store.reading() as db:
        rows = db.execute(
            "SELECT address, credential, fingerprint, first_accepted_at, changed_at "
            "FROM cerbere_accepted"
        ).fetchall()
    return {row[0]: Accepted(*row) for row in rows}


def save_accepted(store: StateStore, accepted: Accepted) -> None:
    """Keep a mailbox's last accepted CERBERE password."""
    store.write_many(
        "INSERT OR REPLACE INTO cerbere_accepted "
        "(address, credential, fingerprint, first_accepted_at, changed_at) VALUES (?, ?, ?, ?, ?)",
        [
            (
                accepted.address,
                accepted.credential,
                accepted.fingerprint,
                accepted.first_accepted_at,
                accepted.changed_at,
            )
        ],
    )


# Acceptances waiting for their fingerprint. One per mailbox of a 10,000 fleet: a longer
# backlog is more than 8 minutes of CPU, and one dropped is recorded at its next acceptance.
MAX_PENDING = 10_000
STOP_DEADLINE = 5.0  # seconds a clean stop gives the acceptances that may date a change


@dataclass(frozen=True, slots=True)
class _Pending:
    """An acceptance whose fingerprint is not computed yet."""

    address: str
    credential: str
    fingerprint: Callable[[], str]  # blocking: scrypt
    accepted_at: float


class ObservedChanges:
    """Dates CERBERE password changes from what SMTP AUTH accepts."""

    def __init__(self, store: StateStore, limit: int = MAX_PENDING) -> None:
        self._store = store
        self._limit = limit
        self.accepted = load_accepted(store)
        self._pending: deque[_Pending] = deque()
        self._queued: set[tuple[str, str]] = set()  # (address, credential) in _pending
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None
        self.dropped = 0  # acceptances not recorded: the queue was full, or the daemon stopped
        self._stopped = False

    @property
    def pending(self) -> int:
        """Acceptances waiting for their fingerprint."""
        return len(self._pending)

    def password_accepted(
        self, address: str, credential: str, fingerprint: Callable[[], str], now: float
    ) -> None:
        """SMTP AUTH accepted this mailbox's CERBERE password (its file identity given;
        `fingerprint` computes the slow fingerprint, called later, only when the file
        changed). Returns at once: the probe never waits for the fingerprint."""
        known = self.accepted.get(address)
        if known is not None and known.credential == credential:
            return  # the very file accepted before
        if (address, credential) in self._queued:
            return  # queued already: its first acceptance's time is the one kept
        if self._stopped:  # a probe that ended as the daemon stopped: as if not accepted yet
            self.dropped += 1
            return
        if len(self._pending) >= self._limit:
            # Nothing of it is recorded, so its next acceptance queues it again (a change is
            # then dated by that acceptance, later than it happened).
            if self.dropped == 0:
                log.warning("observed_queue_full", limit=self._limit)
            self.dropped += 1
            return
        self._pending.append(_Pending(address, credential, fingerprint, now))
        self._queued.add((address, credential))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work())

    async def drain(self) -> None:
        """Wait until every acceptance queued is recorded."""
        while self._worker is not None and not self._worker.done():
            await asyncio.shield(self._worker)

    async def stop(self, deadline: float = STOP_DEADLINE) -> None:
        """On a clean stop: record what may date a change, for up to `deadline` seconds,
        and drop what is safe to drop: a first password, recorded at its next acceptance."""
        self._stopped = True
        if self._pending:
            self._keep_what_may_date_a_change()
        worker = self._worker
        if worker is not None and not worker.done():
            try:
                async with asyncio.timeout(deadline):
                    await asyncio.shield(worker)
            except TimeoutError:
                self._forget(len(self._pending))
                worker.cancel()
                await asyncio.gather(worker, return_exceptions=True)
                self._pending.clear()
                self._queued.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _keep_what_may_date_a_change(self) -> None:
        # The first password seen of a mailbox dates nothing; dropped, it is recorded at
        # its next acceptance, as it would have been. Anything after a recorded password
        # (or after another pending one) may be a change, dated by when it was accepted.
        head = [self._pending.popleft()] if self._worker and not self._worker.done() else []
        queued = Counter(item.address for item in [*head, *self._pending])
        kept = [
            item
            for item in self._pending
            if item.address in self.accepted or queued[item.address] > 1
        ]
        if len(kept) < len(self._pending):
            self._forget(len(self._pending) - len(kept), first_seen=True)
        self._pending = deque(head + kept)
        self._queued = {(item.address, item.credential) for item in self._pending}

    def _forget(self, count: int, first_seen: bool = False) -> None:
        self.dropped += count
        log.warning("observed_acceptances_dropped", count=count, first_seen_only=first_seen)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            item = self._pending[0]
            try:
                print_ = await loop.run_in_executor(self._fingerprinter(), item.fingerprint)
                await self._record(item, print_)
            except Exception:
                # A bug must not stop the queue: this one is tried again at its next acceptance.
                log.exception("observed_fingerprint_failed", mailbox=item.address.split("@")[0])
            finally:
                if self._pending and self._pending[0] is item:
                    self._pending.popleft()
                self._queued.discard((item.address, item.credential))

    def _fingerprinter(self) -> ThreadPoolExecutor:
        if self._executor is None:
            # Its own thread, so that the lock-out guard's I/O never waits behind scrypt.
            self._executor = ThreadPoolExecutor(
                max_workers=1, thread_name_prefix="bma-fingerprint", initializer=_lowest_priority
            )
        return self._executor

    async def _record(self, item: _Pending, print_: str) -> None:
        address, credential, now = item.address, item.credential, item.accepted_at
        known = self.accepted.get(address)
        if known is not None and known.credential == credential:
            return
        if known is None:
            updated = Accepted(address, credential, print_, now, None)
        elif known.fingerprint == print_:
            updated = Accepted(
                address, credential, print_, known.first_accepted_at, known.changed_at
            )
        else:
            updated = Accepted(address, credential, print_, now, now)
            log.info(
                "password_change_observed",
                mailbox=address.split("@", 1)[0],
                changed_at=dt.datetime.fromtimestamp(now, dt.UTC).isoformat(),
            )
        self.accepted[address] = updated
        try:
            await asyncio.to_thread(save_accepted, self._store, updated)
        except StateError as exc:
            log.error("state_write_failed", error=str(exc))

    def password_dates(self) -> dict[str, PasswordDate]:
        """Every dated change observed, by address."""
        found = {a: accepted.password_date() for a, accepted in self.accepted.items()}
        return {address: date for address, date in found.items() if date is not None}


def _lowest_priority() -> None:
    """Run the calling thread at the lowest CPU priority (Linux: nice is per thread)."""
    # Probes are the product; the fingerprint is bookkeeping that may wait for idle CPU.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


def cerbere_listener(
    observed: ObservedChanges, clock: Callable[[], float]
) -> Callable[[tuple[str, SecretKind], str, Callable[[], str]], None]:
    """The runner's `on_accepted` hook: tells `observed` of each CERBERE password accepted."""

    def accepted(
        key: tuple[str, SecretKind], credential: str, fingerprint: Callable[[], str]
    ) -> None:
        if key[1] is SecretKind.CERBERE:
            observed.password_accepted(key[0], credential, fingerprint, clock())

    return accepted
