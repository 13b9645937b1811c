"""The clock of each job: every mailbox once per interval, spread out, jittered.

One loop per protocol, each with its own interval (SMTP AUTH hourly, IMAP every few
minutes): a mailbox has a fixed slot in each loop's cycle, so thousands of logins never
arrive as a burst. A loop only says which probe is due; the scheduler starts it, and the
probe waits for its limits itself, so a loop never waits for capacity.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

from monitor.config.model import Config, Mailbox
from monitor.probes.result import Protocol
from monitor.scheduling.cycle import Cycle
from monitor.scheduling.plan import jittered, slot_offsets

# Told each due probe: (mailbox, protocol, its cycle, the loop time it was due).
Due = Callable[[Mailbox, Protocol, Cycle, float], None]
CycleDone = Callable[[Protocol, Cycle], None]


class Dispatcher:
    """Runs a cycle loop per protocol and re-plans them on reload."""

    def __init__(
        self,
        config: Config,
        due: Due,
        cycle_done: CycleDone,
        *,
        rng: random.Random,
        sleep: Callable[[float], Awaitable[None]],
        clock: Callable[[], float],
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._due = due
        self._cycle_done = cycle_done
        self._rng = rng
        self._sleep = sleep
        self._clock = clock
        self._monotonic = monotonic  # the event loop's clock, unless a test brings its own
        self._replan = {protocol: asyncio.Event() for protocol in Protocol}
        self._wake_by: dict[Protocol, float] = {}

    def reconfigure(self, config: Config) -> None:
        """Adopt a new configuration; each loop re-plans at its next step."""
        self._config = config
        for event in self._replan.values():
            event.set()

    @property
    def due_by(self) -> float:
        """The loop time by which every active loop will show life again."""
        return min(self._wake_by.values(), default=self._monotonic())

    async def run(self) -> None:
        """Run every protocol's loop until cancelled."""
        async with asyncio.TaskGroup() as group:
            for protocol in Protocol:
                group.create_task(self._loop(protocol))

    def plan(self, protocol: Protocol) -> list[tuple[float, Mailbox]]:
        """This cycle's (offset, mailbox) list for one protocol, in dispatch order."""
        config = self._config
        mailboxes = {m.address: m for m in config.mailboxes if protocol in m.protocols}
        interval = config.probing.interval_for(protocol)
        # Keyed with the protocol, so a mailbox's IMAP and POP3 slots fall apart.
        offsets = slot_offsets([f"{protocol}:{a}" for a in mailboxes], interval)
        step = interval / max(1, len(mailboxes))
        plan = [
            (
                jittered(offset, step, config.probing.jitter, self._rng),
                mailboxes[key[len(protocol) + 1 :]],
            )
            for key, offset in offsets.items()
        ]
        plan.sort(key=lambda entry: entry[0])
        return plan

    async def _loop(self, protocol: Protocol) -> None:
        replan = self._replan[protocol]
        while True:
            replan.clear()
            plan = self.plan(protocol)
            if not plan:  # no mailbox uses this protocol: wait for a reload that adds one
                self._wake_by.pop(protocol, None)
                await replan.wait()
                continue
            cycle_start = self._monotonic()
            cycle = Cycle(self._clock())
            dispatched: set[str] = set()
            i = 0
            while i < len(plan):
                if replan.is_set():
                    replan.clear()
                    # Mid-cycle reload: what was probed this cycle waits for the next one;
                    # the rest (new mailboxes too) keeps its slot, or goes now if it passed.
                    elapsed = self._monotonic() - cycle_start
                    plan = [
                        (max(offset, elapsed), mailbox)
                        for offset, mailbox in self.plan(protocol)
                        if mailbox.address not in dispatched
                    ]
                    plan.sort(key=lambda entry: entry[0])
                    i = 0
                    continue
                offset, mailbox = plan[i]
                await self._sleep_until(protocol, cycle_start + offset)
                if replan.is_set():
                    continue  # a reload came during the sleep: this entry may be stale
                i += 1
                dispatched.add(mailbox.address)
                self._due(mailbox, protocol, cycle, cycle_start + offset)
            cycle.dispatched_all = True
            self._cycle_done(protocol, cycle)
            interval = self._config.probing.interval_for(protocol)
            await self._sleep_until(protocol, cycle_start + interval)

    async def _sleep_until(self, protocol: Protocol, when: float) -> None:
        now = self._monotonic()
        # Health reads this: a loop still not back well after it is a stalled one.
        self._wake_by[protocol] = max(when, now)
        if when > now:
            await self._sleep(when - now)
        self._wake_by[protocol] = self._monotonic()
