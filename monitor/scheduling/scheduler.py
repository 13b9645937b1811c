"""The daemon's clock: every mailbox once per interval, spread out, paced and bounded.

Each mailbox has a fixed slot in the cycle (jittered a little each time), so thousands of
logins never arrive as a burst. A global token bucket caps probes per second, a global
semaphore caps probes in flight and a per-server one respects the server's connection
limit. A hung probe holds only its own slot, and only until its deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum

import structlog

from monitor.config.model import Config, Mailbox
from monitor.probes.imap import check_imap_server
from monitor.probes.result import ProbeResult, Protocol, QuotaReading, QuotaSource, Reason
from monitor.scheduling.events import log_probe_result
from monitor.scheduling.outage import OutageDetector, ServerState
from monitor.scheduling.plan import jittered, slot_offsets
from monitor.scheduling.ratelimit import RateLimiter
from monitor.scheduling.runner import LockedOut, ProbeRunner
from monitor.state.store import Lockout, MailboxRecord, StateError, StateStore

log = structlog.get_logger("bma_monitor.scheduler")

FLUSH_EVERY = 1.0  # seconds between state-file writes of probe results
CREDENTIALS_EVERY = 60.0  # seconds between re-reads of the credential files
SERVER_WATCH_EVERY = 1.0


class SkipCause(StrEnum):
    """Why a due probe was not sent."""

    LOCKED_OUT = "locked_out"
    SERVER_DOWN = "server_down"
    STILL_RUNNING = "still_running"


@dataclass(frozen=True, slots=True)
class MailboxStatus:
    """Everything known about one mailbox, replaced whole on each change."""

    mailbox: Mailbox
    result: ProbeResult | None = None
    last_success_at: float | None = None
    quota: QuotaReading | None = None
    lockout: Lockout | None = None
    estimated_at: float | None = None  # last size estimate attempted, even if it failed


@dataclass(frozen=True, slots=True)
class SchedulerView:
    """An immutable copy of the scheduler's state, for metrics and health."""

    config: Config
    mailboxes: dict[str, MailboxStatus]
    servers: dict[str, ServerState]
    probes: dict[Protocol, int]
    failures: dict[tuple[Protocol, Reason], int]
    quota_failures: int  # logins that worked, then the usage could not be read
    skipped: dict[SkipCause, int]
    in_flight: int
    cycle_seconds: float | None
    lag_seconds: float
    heartbeat: float  # monotonic time of the scheduler's last sign of life


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
    ) -> None:
        self._runner = runner
        self._store = store
        self._clock = clock
        self._rng = rng or random.Random()
        self._config = config
        self._replan = False
        self.statuses: dict[str, MailboxStatus] = {}
        self._servers: dict[str, OutageDetector] = {}
        self._probes: Counter[Protocol] = Counter()
        self._failures: Counter[tuple[Protocol, Reason]] = Counter()
        self._skipped: Counter[SkipCause] = Counter()
        self._quota_failures = 0
        self._running: set[str] = set()
        self._dirty: set[str] = set()
        self._cycle_seconds: float | None = None
        self._lag = 0.0
        self._heartbeat = time.monotonic()
        self._reread_credentials = asyncio.Event()
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
            in_flight=len(self._running),
            cycle_seconds=self._cycle_seconds,
            lag_seconds=self._lag,
            heartbeat=self._heartbeat,
        )

    async def run(self) -> None:
        """Probe forever (until cancelled), then save what is unsaved."""
        try:
            await self._runner.refresh_credentials(self._config.mailboxes)
            async with asyncio.TaskGroup() as group:
                group.create_task(self._flush_forever())
                group.create_task(self._refresh_credentials_forever())
                group.create_task(self._watch_servers(group))
                await self._dispatch_forever(group)
        finally:
            await asyncio.shield(self.flush())

    async def sweep(
        self, mailboxes: Sequence[Mailbox] | None = None, *, force: bool = False
    ) -> dict[str, ProbeResult | LockedOut]:
        """Probe mailboxes (all by default) once, now, as fast as the limits allow.

        Usage is always measured; `force` also tries locked-out mailboxes. Results are
        recorded as in a cycle and saved before returning.
        """
        outcomes: dict[str, ProbeResult | LockedOut] = {}
        targets = self._config.mailboxes if mailboxes is None else mailboxes
        await self._runner.refresh_credentials(targets)
        cycle = _Cycle(self._clock())
        loop = asyncio.get_running_loop()
        async with asyncio.TaskGroup() as group:
            for mailbox in targets:
                await self._start(
                    group, mailbox, cycle, loop.time(), _Request(True, force, outcomes)
                )
            cycle.dispatched_all = True
        self._cycle_progress(cycle)
        await self.flush()
        return outcomes

    async def flush(self) -> None:
        """Write changed mailbox records to the state file."""
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
            cycle = _Cycle(self._clock())
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
                await self._dispatch(group, mailbox, cycle, due=cycle_start + offset)
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

    async def _dispatch(
        self, group: asyncio.TaskGroup, mailbox: Mailbox, cycle: _Cycle, due: float
    ) -> None:
        detector = self._servers[mailbox.server]
        if mailbox.address in self._running:
            self._skip(SkipCause.STILL_RUNNING, mailbox)
            return
        if not detector.up:
            self._skip(SkipCause.SERVER_DOWN, mailbox)
            return
        await self._start(group, mailbox, cycle, due, _Request())

    async def _start(
        self,
        group: asyncio.TaskGroup,
        mailbox: Mailbox,
        cycle: _Cycle,
        due: float,
        request: _Request,
    ) -> None:
        """Wait for the rate limit and a free slot, then start the probe."""
        # Taken before any wait: a reload during one may replace the semaphores or drop
        # the server; the probe keeps the ones it was dispatched with.
        slots, server_slots = self._slots, self._server_slots[mailbox.server]
        await self._rate.acquire()
        await slots.acquire()
        self._lag = max(0.0, asyncio.get_running_loop().time() - due)
        self._running.add(mailbox.address)
        cycle.pending += 1
        group.create_task(self._probe(mailbox, cycle, (slots, server_slots), request))

    async def _probe(
        self,
        mailbox: Mailbox,
        cycle: _Cycle,
        slots: tuple[asyncio.Semaphore, asyncio.Semaphore],
        request: _Request,
    ) -> None:
        # Both semaphores were picked at dispatch: a reload may replace them meanwhile.
        global_slots, server_slots = slots
        try:
            async with server_slots:
                status = self.statuses.get(mailbox.address) or MailboxStatus(mailbox)
                estimate = (
                    request.estimate if request.estimate is not None else self._estimate_due(status)
                )
                outcome = await self._run_guarded(mailbox, estimate, request.force)
            if request.outcomes is not None:
                request.outcomes[mailbox.address] = outcome
            try:
                self._record(mailbox, outcome, estimate)
            except Exception:
                log.exception("record_failed", mailbox=mailbox.local_part)
        finally:
            self._running.discard(mailbox.address)
            global_slots.release()
            cycle.pending -= 1
            self._cycle_progress(cycle)

    async def _run_guarded(
        self, mailbox: Mailbox, estimate: bool, force: bool
    ) -> ProbeResult | LockedOut:
        """Run a probe; a bug or a runaway probe becomes a result, never a dead daemon."""
        started = self._clock()
        # The probe keeps its own deadlines; this outer one only catches a bug that ignores them.
        server = self._config.servers.get(mailbox.server)
        limit = self._config.probing.timeout + (server.command_timeout if server else 0) + 5
        try:
            async with asyncio.timeout(limit):
                return await self._runner.run(mailbox, estimate_usage=estimate, force=force)
        except TimeoutError:
            log.error("probe_overran", mailbox=mailbox.local_part, limit=limit)
            return ProbeResult(
                mailbox.address,
                Protocol.IMAP,
                Reason.TIMEOUT,
                started,
                detail="probe overran its deadline",
            )
        except Exception as exc:
            log.exception("probe_crashed", mailbox=mailbox.local_part)
            return ProbeResult(
                mailbox.address,
                Protocol.IMAP,
                Reason.INTERNAL_ERROR,
                started,
                detail=type(exc).__name__,
            )

    def _estimate_due(self, status: MailboxStatus) -> bool:
        """Whether this probe should also sum folder sizes (where the server has no QUOTA)."""
        quota = status.quota
        if quota is not None and quota.source is QuotaSource.IMAP_QUOTA:
            return True  # GETQUOTAROOT answers first; the flag only matters if QUOTA goes away
        # A failed estimate (too slow for the deadline, say) waits its turn like a good one,
        # so a huge mailbox does not cost a full-deadline probe at every interval.
        last = max(
            quota.measured_at if quota is not None else 0.0,
            status.estimated_at or 0.0,
        )
        return self._clock() - last >= self._config.probing.quota_estimate_interval

    def _record(self, mailbox: Mailbox, outcome: ProbeResult | LockedOut, estimated: bool) -> None:
        address = mailbox.address
        status = self.statuses.get(address)
        if status is None or status.mailbox != mailbox:
            return  # removed or changed by a reload while the probe ran: not its result now
        if isinstance(outcome, LockedOut):
            self._skip(SkipCause.LOCKED_OUT, mailbox)
            self.statuses[address] = replace(status, lockout=outcome.lockout)
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

    def _cycle_progress(self, cycle: _Cycle) -> None:
        if cycle.complete():
            self._cycle_seconds = self._clock() - cycle.started_at

    def _skip(self, cause: SkipCause, mailbox: Mailbox) -> None:
        self._skipped[cause] += 1
        log.debug("probe_skipped", mailbox=mailbox.local_part, cause=str(cause))

    # -- servers ----------------------------------------------------------------------------

    async def _watch_servers(self, group: asyncio.TaskGroup) -> None:
        checking: set[str] = set()
        while True:
            self._heartbeat = time.monotonic()
            now = self._clock()
            for name, detector in list(self._servers.items()):
                if name not in checking and detector.check_due(now):
                    checking.add(name)
                    group.create_task(self._check_server(name, detector, checking))
            await asyncio.sleep(SERVER_WATCH_EVERY)

    async def _check_server(self, name: str, detector: OutageDetector, checking: set[str]) -> None:
        try:
            config = self._config
            server = config.servers.get(name)
            if server is None:
                return
            result = await check_imap_server(
                server,
                context=self._runner.context(name),
                deadline=config.probing.timeout,
                clock=self._clock,
            )
            if detector.record_check(
                self._clock(), result.login_ok, f"{result.reason}: {result.detail}"
            ):
                log.warning("server_up", server=name)
            else:
                log.warning(
                    "server_still_down",
                    server=name,
                    reason=str(result.reason),
                    detail=result.detail,
                    next_check_at=detector.next_check_at,
                )
        finally:
            checking.discard(name)

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
        self._servers = {
            name: self._servers.get(name) or OutageDetector(config.probing.outage)
            for name in config.servers
        }
        self._server_slots = {
            name: asyncio.Semaphore(server.max_connections)
            for name, server in config.servers.items()
        }
        self._slots = asyncio.Semaphore(config.probing.concurrency)
        self._rate = RateLimiter(config.probing.rate_limit)

    async def _sleep_until(self, when: float) -> None:
        loop = asyncio.get_running_loop()
        self._heartbeat = time.monotonic()
        delay = when - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

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


@dataclass(frozen=True, slots=True)
class _Request:
    """How one probe was asked for: by the cycle (defaults), or by a sweep."""

    estimate: bool | None = None  # None: when the estimate cadence says so
    force: bool = False  # try even a locked-out mailbox
    outcomes: dict[str, ProbeResult | LockedOut] | None = None  # where a sweep collects


class _Cycle:
    """Book-keeping to time one pass over every mailbox."""

    def __init__(self, started_at: float) -> None:
        self.started_at = started_at
        self.pending = 0
        self.dispatched_all = False
        self._reported = False

    def complete(self) -> bool:
        """True once, when every probe of the cycle was sent and has finished."""
        if self.dispatched_all and self.pending == 0 and not self._reported:
            self._reported = True
            return True
        return False
