"""A process that queues three warnings and delivers them through the real code, for the
kill -9 tests: with NOTIFY_PAUSE set to a step (enqueued, connected, answered), it says the
step on stdout when it reaches it for row NOTIFY_PAUSE_ROW and waits there to be killed.

Usage: python -m tests.notify_child STATE_FILE RELAY_PORT
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
import time
from collections import Counter
from pathlib import Path

import structlog

from monitor.notify import outbox
from monitor.notify.deliver import BRUSSELS
from tests.notify_support import Clock, deliverer, entry, notify_config

ROWS = 3


async def main(state: Path, port: int) -> None:
    pause = os.environ.get("NOTIFY_PAUSE", "")
    pause_row = int(os.environ.get("NOTIFY_PAUSE_ROW", "1"))
    reached: Counter[str] = Counter()

    async def step(name: str) -> None:
        reached[name] += 1
        if name == pause and reached[name] == pause_row:
            print(name, flush=True)
            await asyncio.sleep(3600)  # killed here

    from monitor.state.store import StateStore

    store = StateStore.open(state)
    today = dt.datetime.now(BRUSSELS).date()
    rows = [entry(n, 5, 5, today=today) for n in range(1, ROWS + 1)]
    outbox.enqueue(store, rows, time.time())  # a restart finds them there: nothing new
    await step("enqueued")
    clock = Clock(time.time())
    work = deliverer(store, notify_config(port, per_minute=100), clock, step=step).work
    report = await work()
    print(f"done sent={report.sent}", flush=True)
    store.close()


if __name__ == "__main__":
    # stdout carries the step names the test reads; logs go to stderr.
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    asyncio.run(main(Path(sys.argv[1]), int(sys.argv[2])))
