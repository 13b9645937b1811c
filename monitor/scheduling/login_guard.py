"""The lock-out guard: an in-memory mirror of the login tables and their durable record.

Every attempt is written to the state file before its secret is sent (`reserve`), inside
the transaction that reads the lock-outs, so a crash or a timeout after the secret cannot
lead to a second try, and `bma-monitor probe` and the daemon obey each other's lock-outs.
Reservations of concurrent probes share one transaction and one thread hop: a thread hop
per probe costs about a quarter of the probe rate (measured on the credential reads).

When the file cannot be written (disk full), the guard keeps deciding from memory, so this
process still never retries a refused credential; the lock-outs not saved are counted and
shown in /healthz, since a restart would forget them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import structlog

from monitor.scheduling.login_policy import Request, Rules, Verdict, decide
from monitor.state import logins
from monitor.state.logins import Attempt, Key, Lockout
from monitor.state.store import StateError, StateStore

log = structlog.get_logger("bma_monitor.guard")


class LoginGuard:
    """Decides whether a credential may be sent, and records what became of it."""

    def __init__(self, store: StateStore, rules: Rules) -> None:
        self._store = store
        self.rules = rules
        self.lockouts: dict[Key, Lockout] = logins.load_lockouts(store)
        self.attempts: dict[Key, Attempt] = logins.load_attempts(store)
        store.changed_elsewhere()  # from here on, notice other processes' writes
        self._queue: list[tuple[Request, asyncio.Future[Verdict]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._resolved: set[Key] = set()
        self._unsaved: dict[Key, Lockout] = {}
        self._failing = False  # logged once when writes start failing, once when they work

    def precheck(self, request: Request) -> Verdict:
        """The verdict from memory alone: lets a held or locked mailbox skip connecting."""
        key = request.attempt.key
        return decide(request, self.lockouts.get(key), self.attempts.get(key), self.rules)

    async def reserve(self, request: Request) -> Verdict:
        """Record the attempt durably if the rules allow it; the verdict either way."""
        loop = asyncio.get_running_loop()
        verdict: asyncio.Future[Verdict] = loop.create_future()
        self._queue.append((request, verdict))
        if self._writer is None or self._writer.done():
            self._writer = loop.create_task(self._write_batches())
        return await verdict

    async def refused(self, lockout: Lockout) -> None:
        """Lock a credential out, in memory at once and in the file as soon as it can be."""
        self.lockouts[lockout.key] = lockout
        self.attempts.pop(lockout.key, None)
        self._unsaved[lockout.key] = lockout
        await self.flush()

    def resolved(self, key: Key) -> None:
        """The attempt's outcome is known (accepted, or answered): forget it."""
        self.attempts.pop(key, None)
        self._resolved.add(key)

    async def clear_lockout(self, key: Key) -> None:
        """The credential changed or was accepted: lift its lock-out."""
        self.lockouts.pop(key, None)
        self._unsaved.pop(key, None)
        try:
            await asyncio.to_thread(logins.clear_lockout, self._store, key)
        except StateError as exc:
            # Harmless if it stays: the new credential's fingerprint does not match it.
            self._write_failed(exc)

    async def flush(self) -> None:
        """Write what waits (resolutions, unsaved lock-outs) and adopt other processes' rows."""
        resolved, unsaved = set(self._resolved), dict(self._unsaved)
        try:
            loaded = await asyncio.to_thread(self._flush, resolved, unsaved)
        except StateError as exc:
            self._write_failed(exc)
            return
        if resolved or unsaved:
            self._saved(resolved, unsaved)
        if loaded is not None:
            lockouts, attempts = loaded
            self.lockouts = lockouts | self._unsaved
            self.attempts = {k: a for k, a in attempts.items() if k not in self._resolved}

    @property
    def unsaved_lockouts(self) -> int:
        """Lock-outs held in memory only: a restart now would forget them."""
        return len(self._unsaved)

    def _flush(
        self, resolved: set[Key], unsaved: dict[Key, Lockout]
    ) -> tuple[dict[Key, Lockout], dict[Key, Attempt]] | None:
        if resolved or unsaved:
            logins.reserve(self._store, [], resolved, unsaved.values())
        if not self._store.changed_elsewhere():
            return None
        return logins.load_lockouts(self._store), logins.load_attempts(self._store)

    async def _write_batches(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            resolved, unsaved = set(self._resolved), dict(self._unsaved)
            requests = [(request.attempt, self._decider(request)) for request, _ in batch]
            try:
                rows = await asyncio.to_thread(
                    logins.reserve, self._store, requests, resolved, unsaved.values()
                )
            except StateError as exc:
                self._write_failed(exc)
                for request, verdict in batch:
                    self._settle(request, verdict, self.precheck(request))
                continue
            except asyncio.CancelledError:
                for _, verdict in batch:
                    verdict.cancel()
                raise
            except Exception as exc:
                # A bug must fail these probes now, not leave them waiting for their deadline.
                log.exception("guard_write_crashed")
                for _, verdict in batch:
                    if not verdict.done():
                        verdict.set_exception(exc)
                continue
            self._saved(resolved, unsaved)
            for (request, verdict), (_, lockout, pending) in zip(batch, rows, strict=True):
                self._mirror(request.attempt.key, lockout, pending)
                self._settle(request, verdict, decide(request, lockout, pending, self.rules))

    def _decider(self, request: Request) -> Callable[[Lockout | None, Attempt | None], bool]:
        def go(lockout: Lockout | None, pending: Attempt | None) -> bool:
            return decide(request, lockout, pending, self.rules) is Verdict.GO

        return go

    def _settle(self, request: Request, future: asyncio.Future[Verdict], verdict: Verdict) -> None:
        key = request.attempt.key
        if verdict is Verdict.GO:
            self.attempts[key] = request.attempt
            if future.cancelled():
                self.resolved(key)  # the prober gave up before it could send the secret
                return
        if not future.done():
            future.set_result(verdict)

    def _mirror(self, key: Key, lockout: Lockout | None, pending: Attempt | None) -> None:
        """Adopt the file's rows for `key` (another process may have written them), except
        a lock-out of this process's that is not saved yet."""
        if pending is not None:
            self.attempts[key] = pending
        if key in self._unsaved:
            return
        if lockout is None:
            self.lockouts.pop(key, None)
        else:
            self.lockouts[key] = lockout

    def _saved(self, resolved: set[Key], unsaved: dict[Key, Lockout]) -> None:
        self._resolved -= resolved
        for key, lockout in unsaved.items():
            if self._unsaved.get(key) is lockout:
                del self._unsaved[key]
        if self._failing:
            self._failing = False
            log.warning("lockouts_saved_again", unsaved_lockouts=len(self._unsaved))

    def _write_failed(self, exc: StateError) -> None:
        # Once per outage, not once per probe: bma_state_write_failures_total counts them.
        if not self._failing:
            self._failing = True
            log.error("lockouts_not_saved", error=str(exc), unsaved_lockouts=len(self._unsaved))
