"""The daemon's clock: every mailbox once per interval, spread out, paced and bounded.

Each mailbox has a fixed slot in the cycle (jittered a little each time), so thousands of
logins never arrive as a burst. The dispatcher only starts a task per due mailbox and never
waits for capacity: each probe first waits for its server's connection slot, then for a
global slot and the rate limit, so a slow server holds back its own probes only. A hung
probe holds its slots only until its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace

import structlog

from monitor.config.model import Config, Mailbox
from monitor.probes.result import ProbeResult, Protocol, Reason
from monitor.scheduling.cycle import Cycle, ProbeRequest, estimate_due
from monitor.scheduling.events import log_probe_result
from monitor.scheduling.limits import Slots
from monitor.scheduling.outage import Admission, OutageDetector
from monitor.scheduling.plan import jittered, slot_offsets
from monitor.scheduling.ratelimit import RateLimiter
from monitor.scheduling.runner import Held, LockedOut, Outcomes, ProbeRunner
from monitor.scheduling.server_watch import ServerWatch
from monitor.scheduling.view import MailboxStatus, SchedulerView, SkipCause, StateHealth
from monitor.state.store import MailboxRecord, StateError, StateStore

__all__ = ["MailboxStatus", "Scheduler", "SchedulerView", "SkipCause"]

log = structlog.get_logger("bma_monitor.scheduler")

FLUSH_EVERY = 1.0  # seconds between state-file writes of probe results
CREDENTIALS_EVERY = 60.0  # seconds between re-reads of the credential files


class Scheduler:
    """Runs the probe cycles and keeps the latest status of every mailbox."""

    def __init__(
        self,
        config: Config,
        runner: ProbeRunner,
        store: StateStore,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._runner = runner
        self._sleep = sleep
        self._store = store
        self._clock = clock
        self._rng = rng or random.Random()
        self._config = config
        self._replan = False
        self.statuses: dict[str, MailboxStatus] = {}
        self._servers: dict[str, OutageDetector] = {}
        self._server_slots: dict[str, Slots] = {}
        self._slots = Slots(config.probing.concurrency)
        self._rate = RateLimiter(config.probing.rate_limit)
        self._probes: Counter[Protocol] = Counter()
        self._failures: Counter[tuple[Protocol, Reason]] = Counter()
        self._skipped: Counter[SkipCause] = Counter()
        self._quota_failures = 0
        self._running: set[str] = set()
        self._dirty: set[str] = set()
        self._cycle_seconds: float | None = None
        self._lag = 0.0
        self._dispatcher_due = time.monotonic()
        self._reread_credentials = asyncio.Event()
        self._watch = ServerWatch(
            lambda: self._config, lambda: self._servers, runner.context, clock
        )
        self._apply(config, self._restore())

    def reconfigure(self, config: Config) -> None:
        """Adopt a new configuration now; the dispatcher re-plans at its next step."""
        self._apply(config, None)
        self._replan = True
        self._reread_credentials.set()

    def view(self) -> SchedulerView:
        """A consistent, immutable copy for a scrape (safe to call from another thread)."""
        return SchedulerView(
            config=self._config,
            mailboxes=dict(self.statuses),
            servers={name: d.state() for name, d in list(self._servers.items())},
            probes=dict(self._probes),
            failures=dict(self._failures),
            quota_failures=self._quota_failures,
            skipped=dict(self._skipped),
            server_checks=dict(self._watch.checks),
            server_check_failures=dict(self._watch.failures),
            in_flight=self._slots.held,
            cycle_seconds=self._cycle_seconds,
            lag_seconds=self._lag,
            dispatcher_due=self._dispatcher_due,
            state=StateHealth(self._store.write_health(), self._runner.guard.unsaved_lockouts),
        )

    async def run(self) -> None:
        """Probe forever (until cancelled), then save what is unsaved."""
        try:
            await self._runner.refresh_credentials(self._config.mailboxes)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._flush_forever())
                group.create_task(self._refresh_credentials_forever())
                group.create_task(self._watch.run(group))
                await self._dispatch_forever(group)
        finally:
            await asyncio.shield(self.flush())

    async def sweep(
        self, mailboxes: Sequence[Mailbox] | None = None, *, force: bool = False
    ) -> dict[str, Outcomes]:
        """Probe mailboxes (all by default) once, now, as fast as the limits allow.

        Usage is always measured; `force` also tries locked-out mailboxes. Results are
        recorded as in a cycle and saved before returning.
        """
        outcomes: dict[str, Outcomes] = {}
        targets = self._config.mailboxes if mailboxes is None else mailboxes
        await self._runner.refresh_credentials(targets)
        cycle = Cycle(self._clock())
        request = ProbeRequest(estimate=True, force=force, outcomes=outcomes)
        by_server: dict[str, list[Mailbox]] = {}
        for mailbox in targets:
            by_server.setdefault(mailbox.server, []).append(mailbox)
        # As many workers per server as it takes connections: a task per mailbox would hold
        # 10,000 waiting coroutines (about 20 MB), and a shared queue would let a slow
        # server's backlog hold up the others.
        async with asyncio.TaskGroup() as group:
            for server, queued in by_server.items():
                pending = iter(queued)
                server_config = self._config.servers.get(server)
                workers = min(len(queued), server_config.max_connections if server_config else 1)
                for _ in range(workers):
                    group.create_task(self._sweep_worker(pending, cycle, request))
        cycle.dispatched_all = True  # only now: a worker between two mailboxes has none pending
        self._cycle_progress(cycle)
        await self.flush()
        return outcomes

    async def _sweep_worker(
        self, pending: Iterator[Mailbox], cycle: Cycle, request: ProbeRequest
    ) -> None:
        loop = asyncio.get_running_loop()
        for mailbox in pending:
            self._begin(mailbox, cycle)
            await self._probe(mailbox, cycle, loop.time(), request)

    async def flush(self) -> None:
        """Write changed mailbox records and the guard's pending rows to the state file."""
        await self._runner.guard.flush()
        if not self._dirty:
            return
        addresses, self._dirty = self._dirty, set()
        records = [
            MailboxRecord(a, s.result, s.last_success_at, s.quota)
            for a in addresses
            if (s := self.statuses.get(a)) is not None
        ]
        try:
            await asyncio.to_thread(self._store.save_mailboxes, records)
        except StateError as exc:
            self._dirty |= addresses  # try again at the next flush
            log.error("state_write_failed", error=str(exc))

    # -- dispatch ---------------------------------------------------------------------------

    async def _dispatch_forever(self, group: asyncio.TaskGroup) -> None:
        loop = asyncio.get_running_loop()
        while True:
            self._replan = False
            cycle_start = loop.time()
            cycle = Cycle(self._clock())
            plan = self._plan(self._config)
            dispatched: set[str] = set()
            i = 0
            while i < len(plan):
                if self._replan:
                    self._replan = False
                    # Mid-cycle reload: what was probed this cycle waits for the next one;
                    # the rest (new mailboxes too) keeps its slot, or goes now if it passed.
                    elapsed = loop.time() - cycle_start
                    plan = [
                        (max(offset, elapsed), mailbox)
                        for offset, mailbox in self._plan(self._config)
                        if mailbox.address not in dispatched
                    ]
                    plan.sort(key=lambda entry: entry[0])
                    i = 0
                    continue
                offset, mailbox = plan[i]
                await self._sleep_until(cycle_start + offset)
                if self._replan:
                    continue  # a reload came during the sleep: this entry may be stale
                i += 1
                dispatched.add(mailbox.address)
                self._dispatch(group, mailbox, cycle, due=cycle_start + offset)
            cycle.dispatched_all = True
            self._cycle_progress(cycle)
            await self._sleep_until(cycle_start + self._config.probing.interval)

    def _plan(self, config: Config) -> list[tuple[float, Mailbox]]:
        """This cycle's (offset, mailbox) list, in dispatch order."""
        mailboxes = {m.address: m for m in config.mailboxes}
        offsets = slot_offsets(list(mailboxes), config.probing.interval)
        step = config.probing.interval / max(1, len(mailboxes))
        plan = [
            (jittered(offset, step, config.probing.jitter, self._rng), mailboxes[address])
            for address, offset in offsets.items()
        ]
        plan.sort(key=lambda entry: entry[0])
        return plan

    def _dispatch(
        self, group: asyncio.TaskGroup, mailbox: Mailbox, cycle: Cycle, due: float
    ) -> None:
        if mailbox.address in self._running:
            self._skip(SkipCause.STILL_RUNNING, mailbox)
            return
        admission = self._servers[mailbox.server].admit()
        if admission is Admission.SKIP:
            self._skip(SkipCause.SERVER_DOWN, mailbox)
            return
        self._start(group, mailbox, cycle, due, ProbeRequest(trial=admission is Admission.TRIAL))

    def _start(
        self,
        group: asyncio.TaskGroup,
        mailbox: Mailbox,
        cycle: Cycle,
        due: float,
        request: ProbeRequest,
    ) -> None:
        """Start the probe's task; it waits for its limits itself."""
        self._begin(mailbox, cycle)
        group.create_task(self._probe(mailbox, cycle, due, request))

    def _begin(self, mailbox: Mailbox, cycle: Cycle) -> None:
        """Count a probe as under way until `_probe` ends."""
        self._running.add(mailbox.address)
        cycle.pending += 1

    async def _probe(
        self, mailbox: Mailbox, cycle: Cycle, due: float, request: ProbeRequest
    ) -> None:
        # Taken before any wait. A reload may drop the server before this task starts; the
        # runner then reports it as no longer configured, so any slot will do.
        server_slots = self._server_slots.get(mailbox.server) or Slots(1)
        outcome: Outcomes | None = None
        try:
            # The server's slot first: waiting for it must not hold a global slot, or a slow
            # server capped at one connection would starve every other server.
            async with server_slots.hold(), self._slots.hold():
                await self._rate.acquire()
                self._lag = max(0.0, asyncio.get_running_loop().time() - due)
                status = self.statuses.get(mailbox.address) or MailboxStatus(mailbox)
                estimate = (
                    request.estimate
                    if request.estimate is not None
                    else estimate_due(status, self._clock(), self._config.probing)
                )
                outcome = await self._runner.run_guarded(
                    mailbox, estimate_usage=estimate, force=request.force
                )
            if request.outcomes is not None:
                request.outcomes[mailbox.address] = outcome
            try:
                self._record(mailbox, outcome, estimate)
            except Exception:
                log.exception("record_failed", mailbox=mailbox.local_part)
        finally:
            if request.trial:
                self._trial_done(mailbox, outcome)
            self._running.discard(mailbox.address)
            cycle.pending -= 1
            self._cycle_progress(cycle)

    def _record(self, mailbox: Mailbox, outcome: Outcomes, estimated: bool) -> None:
        address = mailbox.address
        status = self.statuses.get(address)
        if status is None or status.mailbox != mailbox:
            return  # removed or changed by a reload while the probe ran: not its result now
        if isinstance(outcome, LockedOut):
            self._skip(SkipCause.LOCKED_OUT, mailbox)
            self.statuses[address] = replace(status, lockout=outcome.lockout)
            return
        if isinstance(outcome, Held):
            self._skip(SkipCause.OUTCOME_UNKNOWN, mailbox)
            return
        result = outcome
        self._probes[result.protocol] += 1
        if not result.login_ok:
            self._failures[(result.protocol, result.reason)] += 1
        if result.quota_error:
            self._quota_failures += 1
        self.statuses[address] = replace(
            status,
            result=result,
            last_success_at=self._clock() if result.login_ok else status.last_success_at,
            quota=result.quota or status.quota,
            lockout=self._runner.lockouts.get((address, result.protocol)),
            estimated_at=self._clock() if estimated and result.login_ok else status.estimated_at,
        )
        self._dirty.add(address)
        detector = self._servers.get(mailbox.server)
        if detector is not None and detector.record(self._clock(), result):
            log.error("server_down", server=mailbox.server, error=detector.last_error)
        log_probe_result(mailbox, result, self._config.quota)

    def _trial_done(self, mailbox: Mailbox, outcome: Outcomes | None) -> None:
        """Report a down server's trial probe: its outcome decides whether the server is up."""
        detector = self._servers.get(mailbox.server)
        if detector is None:
            return
        result = outcome if isinstance(outcome, ProbeResult) else None
        if detector.record_trial(self._clock(), result):
            log.warning("server_up", server=mailbox.server)

    def _cycle_progress(self, cycle: Cycle) -> None:
        if cycle.complete():
            self._cycle_seconds = self._clock() - cycle.started_at

    def _skip(self, cause: SkipCause, mailbox: Mailbox) -> None:
        self._skipped[cause] += 1
        log.debug("probe_skipped", mailbox=mailbox.local_part, cause=str(cause))

    # -- state ------------------------------------------------------------------------------

    def _restore(self) -> dict[str, MailboxRecord]:
        records = self._store.load_mailboxes()
        log.info("state_loaded", mailboxes=len(records), lockouts=len(self._runner.lockouts))
        return records

    def _apply(self, config: Config, records: dict[str, MailboxRecord] | None) -> None:
        """Adopt a configuration: mailboxes added or removed, servers and limits renewed."""
        self._config = config
        statuses: dict[str, MailboxStatus] = {}
        for mailbox in config.mailboxes:
            previous = self.statuses.get(mailbox.address)
            lockout = self._runner.lockouts.get((mailbox.address, Protocol.IMAP))
            if previous is not None:
                statuses[mailbox.address] = replace(previous, mailbox=mailbox, lockout=lockout)
            elif records is not None and (record := records.get(mailbox.address)) is not None:
                statuses[mailbox.address] = MailboxStatus(
                    mailbox, record.result, record.last_success_at, record.quota, lockout
                )
            else:
                statuses[mailbox.address] = MailboxStatus(mailbox, lockout=lockout)
        self.statuses = statuses
        outage = config.probing.outage
        for detector in self._servers.values():
            detector.reconfigure(outage)
        self._servers = {
            name: self._servers.get(name) or OutageDetector(outage) for name in config.servers
        }
        # Resized in place: probes running now hold slots of these very objects.
        slots: dict[str, Slots] = {}
        for name, server in config.servers.items():
            slots[name] = self._server_slots.get(name) or Slots(server.max_connections)
            slots[name].resize(server.max_connections)
        self._server_slots = slots
        self._slots.resize(config.probing.concurrency)
        self._rate.set_rate(config.probing.rate_limit)

    async def _sleep_until(self, when: float) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        # Health reads this: a dispatcher still not back well after it is a stalled one.
        self._dispatcher_due = max(when, now)
        if when > now:
            await self._sleep(when - now)
        self._dispatcher_due = loop.time()

    async def _refresh_credentials_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CREDENTIALS_EVERY):
                    await self._reread_credentials.wait()
            self._reread_credentials.clear()
            await self._runner.refresh_credentials(self._config.mailboxes)

    async def _flush_forever(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await self.flush()
