"""The fleet audit's cost on a large fleet: writes a state file as a daemon would leave it
for N mailboxes (IMAP and SMTP results, usage readings, 90-day compacted histories), then
times `bma-monitor audit` over it.

    python -m bench.audit_state [--mailboxes 10000] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from monitor.config.values import DAY, HOUR, MINUTE
from monitor.probes.result import ProbeResult, Protocol, QuotaReading, QuotaSource, Reason
from monitor.state.store import MailboxRecord, ProbeRecord, StateStore

LIMIT = 2 * 1024**3


def history(rng: random.Random, now: float) -> list[tuple[float, int]]:
    """A compacted 90-day history (daily, hourly for 14 days, every 15 min for 2 days): a
    start between 1 % and 80 % of 2 GiB, a daily pace (slow for 70 % of mailboxes, up to
    100 MB a day for 5 %), mail arriving in lumps, clean-ups."""
    times = [now - d * DAY for d in range(90, 14, -1)]
    times += [now - h * HOUR for h in range(14 * 24, 48, -1)]
    times += [now - q * 15 * MINUTE for q in range(192, -1, -1)]
    used = rng.uniform(0.01, 0.8) * LIMIT
    pace = rng.random()  # most mailboxes grow slowly, a few fast (bytes a day)
    per_day = (
        rng.gauss(2e6, 3e6)
        if pace < 0.7
        else rng.gauss(10e6, 10e6)
        if pace < 0.95
        else rng.uniform(20e6, 100e6)
    )
    per_second = per_day / DAY
    points, last = [], times[0]
    for at in times:
        used += per_second * (at - last) + (rng.expovariate(1 / 2e6) if rng.random() < 0.3 else 0)
        if rng.random() < 0.002 or used > 0.97 * LIMIT:
            used *= 0.6  # a clean-up, by habit or because the mailbox filled up
        used = max(0.0, used)
        points.append((at, int(used)))
        last = at
    return points


def write_fleet(workdir: Path, count: int, seed: int = 17) -> Path:
    """The config and state file of `count` mailboxes; returns the config's path."""
    rng = random.Random(seed)
    now = time.time()
    state = workdir / "state.db"
    store = StateStore.open(state)
    records, rows = [], []
    for n in range(1, count + 1):
        address = f"ec{n:06d}@adm.cfwb.be"
        points = history(rng, now)
        rows += [(address, at, used) for at, used in points]
        reading = QuotaReading(points[-1][1], LIMIT, QuotaSource.IMAP_QUOTA, now)
        imap = ProbeResult(address, Protocol.IMAP, Reason.OK, now, {"login": 0.01}, quota=reading)
        smtp_reason = Reason.OK if rng.random() > 0.01 else Reason.AUTH_FAILED
        smtp = ProbeResult(address, Protocol.SMTP, smtp_reason, now, {"auth": 0.01})
        records.append(
            MailboxRecord(
                address,
                reading,
                {
                    Protocol.IMAP: ProbeRecord(address, Protocol.IMAP, imap, now),
                    Protocol.SMTP: ProbeRecord(address, Protocol.SMTP, smtp, now),
                },
            )
        )
    store.save_mailboxes(records)
    store.write_many("INSERT INTO usage_history (address, at, used) VALUES (?, ?, ?)", rows)
    store.close()
    inventory = workdir / "fleet.csv"
    lines = ["fase,kind,name,protocols"]
    lines += [f"{n:06d},ec,École {n},imap smtp" for n in range(1, count + 1)]
    inventory.write_text("\n".join(lines) + "\n")
    config = workdir / "bma.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "servers": {
                    "exchange": {
                        "imap": {"host": "127.0.0.1", "port": 1},
                        "smtp": {"host": "127.0.0.1", "port": 2},
                    }
                },
                "credentials": {"directory": "credentials"},
                "state": {"path": "state.db"},
                "inventory": ["fleet.csv"],
            }
        )
    )
    (workdir / "credentials").mkdir(mode=0o700, exist_ok=True)
    return config


def main() -> None:
    """Write the fleet, time the audit, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mailboxes", type=int, default=10_000)
    parser.add_argument("--workdir", type=Path)
    args = parser.parse_args()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bma-audit-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    config = write_fleet(workdir, args.mailboxes)
    print(f"state for {args.mailboxes} mailboxes written in {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    command = [sys.executable, "-m", "monitor", "audit", "--config", str(config)]
    command += ["--csv", str(workdir / "audit.csv"), "--html", str(workdir / "audit.html")]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    print(f"audit: exit {done.returncode} in {time.perf_counter() - started:.1f} s")
    print("\n".join(done.stdout.splitlines()[:3]))
    print(done.stderr[-2000:], end="")


if __name__ == "__main__":
    main()
