"""The daemon's scheduler: wires the dispatcher, the limits, the runner and the receivers.

The dispatcher says which probe is due; this module starts it as a task that waits for
its endpoint's connection slot, then a global slot, then the rate limit, so a slow server
holds back its own probes only, and a hung probe holds its slots only until its deadline.
Outcomes go to the recorder; the state file is written in batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence

import structlog

from monitor.config.model import Config, EndpointConfig, Mailbox
from monitor.fullness.store import load_history, load_states, save_fullness
from monitor.fullness.tracker import FullnessTracker
from monitor.probes.contract import ProbeOptions
from monitor.probes.result import Protocol
from monitor.scheduling.cycle import Cycle, ProbeRequest, estimate_due
from monitor.scheduling.dispatcher import Dispatcher
from monitor.scheduling.endpoints import Endpoints
from monitor.scheduling.limits import Slots
from monitor.scheduling.outage import Admission
from monitor.scheduling.ratelimit import RateLimiter
from monitor.scheduling.recorder import Recorder
from monitor.scheduling.runner import Outcomes, ProbeRunner
from monitor.scheduling.server_watch import ServerWatch
from monitor.scheduling.statuses import StatusBook
from monitor.scheduling.view import (
    Counters,
    MailboxStatus,
    SchedulerView,
    SkipCause,
    StateHealth,
)
from monitor.state.store import StateError, StateStore

__all__ = ["MailboxStatus", "Scheduler", "SchedulerView", "SkipCause"]

log = structlog.get_logger("bma_monitor.scheduler")

FLUSH_EVERY = 1.0  # seconds between state-file writes of probe results
CREDENTIALS_EVERY = 60.0  # seconds between re-reads of the credential files

ProbeKey = tuple[str, Protocol]  # (address, protocol)


class Scheduler:
    """Runs the probe cycles and keeps the latest status of every mailbox and protocol."""

    def __init__(
        self,
        config: Config,
        runner: ProbeRunner,
        store: StateStore,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._runner = runner
        self._monotonic = monotonic
        self._store = store
        self._clock = clock
        self._config = config
        self._slots = Slots(config.probing.concurrency)
        self._rate = RateLimiter(config.probing.rate_limit)
        self._endpoints = Endpoints()
        self._book = StatusBook(store)
        self.fullness = FullnessTracker()
        self.fullness.restore(load_states(store), load_history(store))
        self._recorder = Recorder(
            self._book,
            self._endpoints,
            lambda: runner.lockouts,
            lambda: self._config,
            clock,
            self.fullness,
        )
        self._dispatcher = Dispatcher(
            config,
            self._dispatch,
            self._cycle_progress,
            rng=rng or random.Random(),
            sleep=sleep,
            clock=clock,
            monotonic=monotonic,
        )
        self._watch = ServerWatch(
            lambda: self._config, lambda: self._endpoints.detectors, runner.context, clock
        )
        self._group: asyncio.TaskGroup | None = None
        self._running: set[ProbeKey] = set()
        self._cycle_seconds: dict[Protocol, float] = {}
        self._lag = 0.0
        self._reread_credentials = asyncio.Event()
        self._apply(config)
        self._book.restore(config, runner.lockouts)

    @property
    def forecasts(self) -> dict[str, float]:
        """When each growing mailbox will be full (Unix time), where a forecast exists."""
        return self._recorder.forecasts.all()

    @property
    def runner(self) -> ProbeRunner:
        """The runner every probe goes through."""
        return self._runner

    @property
    def statuses(self) -> dict[str, MailboxStatus]:
        """The latest status of every configured mailbox."""
        return self._book.statuses

    def reconfigure(self, config: Config) -> None:
        """Adopt a new configuration now; the dispatcher re-plans at its next step."""
        self._apply(config)
        self._book.apply(config, self._runner.lockouts)
        self._dispatcher.reconfigure(config)
        self._reread_credentials.set()

    def view(self) -> SchedulerView:
        """A consistent, immutable copy for a scrape (safe to call from another thread)."""
        recorder, watch = self._recorder, self._watch
        return SchedulerView(
            config=self._config,
            mailboxes=dict(self._book.statuses),
            servers=self._endpoints.states(),
            tls=dict(recorder.tls),
            counters=Counters(
                probes=dict(recorder.probes),
                failures=dict(recorder.failures),
                quota_failures=dict(recorder.quota_failures),
                skipped=dict(recorder.skipped),
                server_checks=dict(watch.checks),
                server_check_failures=dict(watch.failures),
            ),
            in_flight=self._slots.held,
            cycle_seconds=dict(self._cycle_seconds),
            lag_seconds=self._lag,
            dispatcher_due=self._dispatcher.due_by,
            state=StateHealth(self._store.write_health(), self._runner.guard.unsaved_lockouts),
        )

    async def run(self) -> None:
        """Probe forever (until cancelled), then save what is unsaved."""
        try:
            await self._runner.refresh_credentials(self._config.mailboxes)
            async with asyncio.TaskGroup() as group:
                self._group = group
                group.create_task(self._flush_forever())
                group.create_task(self._refresh_credentials_forever())
                group.create_task(self._watch.run(group))
                await self._dispatcher.run()
        finally:
            self._group = None
            await asyncio.shield(self.flush())

    async def sweep(
        self,
        mailboxes: Sequence[Mailbox] | None = None,
        protocols: Sequence[Protocol] | None = None,
        *,
        force: bool = False,
        on_outcome: Callable[[Mailbox, Protocol, Outcomes], None] | None = None,
    ) -> dict[ProbeKey, Outcomes]:
        """Probe mailboxes (all by default) once, now, over each of their protocols (or
        those of `protocols` they have), as fast as the limits allow.

        Usage is always measured; `force` also tries locked-out credentials. Results are
        recorded as in a cycle and saved before returning; `on_outcome` hears of each as
        it comes.
        """
        outcomes: dict[ProbeKey, Outcomes] = {}
        targets = self._config.mailboxes if mailboxes is None else mailboxes
        await self._runner.refresh_credentials(targets)
        request = ProbeRequest(estimate=True, force=force, outcomes=outcomes, on_outcome=on_outcome)
        queues: dict[tuple[str, Protocol], list[Mailbox]] = {}
        for mailbox in targets:
            for protocol in mailbox.protocols:
                if protocols is None or protocol in protocols:
                    queues.setdefault((mailbox.server, protocol), []).append(mailbox)
        # As many workers per endpoint as it takes connections: a task per probe would hold
        # 10,000 waiting coroutines (about 20 MB), and a shared queue would let a slow
        # endpoint's backlog hold up the others.
        cycles = {protocol: Cycle(self._clock()) for _, protocol in queues}
        async with asyncio.TaskGroup() as group:
            for (server, protocol), queued in queues.items():
                pending = iter(queued)
                endpoint = self._endpoint(server, protocol)
                workers = min(len(queued), endpoint.max_connections if endpoint else 1)
                for _ in range(workers):
                    group.create_task(
                        self._sweep_worker(pending, protocol, cycles[protocol], request)
                    )
        for protocol, cycle in cycles.items():
            cycle.dispatched_all = True  # only now: a worker between two has none pending
            self._cycle_progress(protocol, cycle)
        await self.flush()
        return outcomes

    async def flush(self) -> None:
        """Write changed mailbox records, quota states and histories, and the guard's
        pending rows to the state file."""
        await self._runner.guard.flush()
        await self._book.flush()
        changed = self.fullness.take_dirty()
        if changed:
            states, histories = (
                self.fullness.states_of(changed),
                self.fullness.histories_of(changed),
            )
            try:
                await asyncio.to_thread(save_fullness, self._store, states, histories)
            except StateError as exc:
                self.fullness.mark_dirty(changed)  # try again at the next flush
                log.error("state_write_failed", error=str(exc))

    # -- starting probes --------------------------------------------------------------------

    def _dispatch(self, mailbox: Mailbox, protocol: Protocol, cycle: Cycle, due: float) -> None:
        """The dispatcher's due probe: start it, unless it is still running or its server down."""
        if (mailbox.address, protocol) in self._running:
            self._recorder.skip(SkipCause.STILL_RUNNING, mailbox, protocol)
            return
        detector = self._endpoints.detectors.get((mailbox.server, protocol))
        admission = detector.admit() if detector is not None else Admission.PROBE
        if admission is Admission.SKIP:
            self._recorder.skip(SkipCause.SERVER_DOWN, mailbox, protocol)
            return
        assert self._group is not None, "probes are dispatched only while run() runs"
        self._begin(mailbox, protocol, cycle)
        request = ProbeRequest(trial=admission is Admission.TRIAL)
        self._group.create_task(self._probe(mailbox, protocol, cycle, due, request))

    async def _sweep_worker(
        self, pending: Iterator[Mailbox], protocol: Protocol, cycle: Cycle, request: ProbeRequest
    ) -> None:
        for mailbox in pending:
            self._begin(mailbox, protocol, cycle)
            await self._probe(mailbox, protocol, cycle, self._monotonic(), request)

    def _begin(self, mailbox: Mailbox, protocol: Protocol, cycle: Cycle) -> None:
        """Count a probe as under way until `_probe` ends."""
        self._running.add((mailbox.address, protocol))
        cycle.pending += 1

    async def _probe(
        self,
        mailbox: Mailbox,
        protocol: Protocol,
        cycle: Cycle,
        due: float,
        request: ProbeRequest,
    ) -> None:
        # Taken before any wait. A reload may drop the endpoint before this task starts; the
        # runner then reports it as no longer configured, so any slot will do.
        endpoint_slots = self._endpoints.slots((mailbox.server, protocol))
        outcome: Outcomes | None = None
        try:
            # The endpoint's slot first: waiting for it must not hold a global slot, or a slow
            # server capped at one connection would starve every other server.
            async with endpoint_slots.hold(), self._slots.hold():
                await self._rate.acquire()
                self._lag = max(0.0, self._monotonic() - due)
                status = self._book.statuses.get(mailbox.address) or MailboxStatus(mailbox)
                estimate = (
                    request.estimate
                    if request.estimate is not None
                    else estimate_due(
                        status, status.probe(protocol), self._clock(), self._config.probing
                    )
                )
                options = ProbeOptions(
                    estimate_usage=estimate, fetch_chunk=self._config.probing.quota_fetch_chunk
                )
                outcome = await self._runner.run_guarded(
                    mailbox, protocol, options=options, force=request.force
                )
            if request.outcomes is not None:
                request.outcomes[(mailbox.address, protocol)] = outcome
            if request.on_outcome is not None:
                request.on_outcome(mailbox, protocol, outcome)
            try:
                self._recorder.record(mailbox, protocol, outcome, estimate)
            except Exception:
                log.exception("record_failed", mailbox=mailbox.local_part, protocol=str(protocol))
        finally:
            if request.trial:
                self._recorder.trial_done(mailbox, protocol, outcome)
            self._running.discard((mailbox.address, protocol))
            cycle.pending -= 1
            self._cycle_progress(protocol, cycle)

    def _cycle_progress(self, protocol: Protocol, cycle: Cycle) -> None:
        if cycle.complete():
            self._cycle_seconds[protocol] = self._clock() - cycle.started_at

    # -- configuration and background jobs --------------------------------------------------

    def _endpoint(self, server: str, protocol: Protocol) -> EndpointConfig | None:
        found = self._config.servers.get(server)
        return found.endpoint(protocol) if found is not None else None

    def _apply(self, config: Config) -> None:
        """Adopt a configuration's limits and endpoints."""
        self._config = config
        self._endpoints.apply(config)
        self._slots.resize(config.probing.concurrency)
        self._rate.set_rate(config.probing.rate_limit)

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
