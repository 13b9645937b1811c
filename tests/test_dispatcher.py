"""The dispatcher on a virtual clock: each protocol at its own cadence, no real sleeping."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import random
from collections import Counter
from pathlib import Path

from monitor.config import load_config
from monitor.config.model import Mailbox
from monitor.probes.result import Protocol
from monitor.scheduling.cycle import Cycle
from monitor.scheduling.dispatcher import Dispatcher
from tests import fleet


class VirtualTime:
    """A monotonic clock that jumps to the next sleeper's wake-up once every task waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def monotonic(self) -> float:
        """The current virtual time."""
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Wait until virtual time has moved `seconds` on."""
        woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), woken))
        await woken

    async def advance(self, until: float) -> None:
        """Let every task run until it waits, wake the earliest sleeper; up to `until`."""
        while True:
            for _ in range(20):  # woken tasks run until they sleep again
                await asyncio.sleep(0)
            if not self._sleepers or self._sleepers[0][0] > until:
                self.now = until
                return
            when, _, woken = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            woken.set_result(None)


async def run_until(dispatcher: Dispatcher, time: VirtualTime, until: float) -> None:
    """Run the dispatcher until virtual time `until`, then stop it."""
    task = asyncio.create_task(dispatcher.run())
    await time.advance(until)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_each_protocol_keeps_its_own_interval(tmp_path: Path) -> None:
    """Over two virtual hours: IMAP every 5 min, SMTP every hour, POP3 never (unused),
    each mailbox once per cycle of each of its protocols, without a second of real sleep."""
    path = fleet.write_config(
        tmp_path,
        None,
        "none",
        [fleet.EMPTY, fleet.FULL, fleet.FOLDERS],
        port=1,
        protocols={"imap": {"port": 1}, "smtp": {"port": 2}},
        probing={"interval": "5m", "intervals": {"smtp": "1h"}, "timeout": "30s"},
    )
    config = load_config(path)
    time = VirtualTime()
    due: Counter[tuple[str, Protocol]] = Counter()
    cycles: Counter[Protocol] = Counter()

    def on_due(mailbox: Mailbox, protocol: Protocol, cycle: Cycle, when: float) -> None:
        assert when <= time.now + 1e-9  # never told early
        due[(mailbox.local_part, protocol)] += 1

    def on_cycle(protocol: Protocol, cycle: Cycle) -> None:
        cycles[protocol] += 1

    dispatcher = Dispatcher(
        config,
        on_due,
        on_cycle,
        rng=random.Random(7),
        sleep=time.sleep,
        clock=lambda: time.now,
        monotonic=time.monotonic,
    )
    await run_until(dispatcher, time, 1000.0 + 2 * 3600 - 1)
    for mailbox in config.mailboxes:
        assert due[(mailbox.local_part, Protocol.IMAP)] == 24
        assert due[(mailbox.local_part, Protocol.SMTP)] == 2
        assert due[(mailbox.local_part, Protocol.POP3)] == 0
    assert cycles == {Protocol.IMAP: 24, Protocol.SMTP: 2}


async def test_a_reload_that_adds_a_protocol_starts_its_loop(tmp_path: Path) -> None:
    """A protocol no mailbox used gets its loop going as soon as a reload brings one."""
    first = fleet.config_for(tmp_path / "a", None, "none", [fleet.EMPTY], port=1)
    second = fleet.config_for(
        tmp_path / "b",
        None,
        "none",
        [fleet.EMPTY],
        port=1,
        protocols={"imap": {"port": 1}, "pop3": {"port": 2}},
        probing={"interval": "5m"},
    )
    time = VirtualTime()
    seen: list[Protocol] = []
    dispatcher = Dispatcher(
        first,
        lambda mailbox, protocol, cycle, when: seen.append(protocol),
        lambda protocol, cycle: None,
        rng=random.Random(1),
        sleep=time.sleep,
        clock=lambda: time.now,
        monotonic=time.monotonic,
    )
    task = asyncio.create_task(dispatcher.run())
    await time.advance(1030)
    assert Protocol.POP3 not in seen
    dispatcher.reconfigure(second)
    await time.advance(1030 + 31)  # its first slot: within half a jittered slot of the start
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert Protocol.POP3 in seen
