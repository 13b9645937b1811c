"""The audit's parts without servers: the forecast shortcut, the read-only state file, and
the progress display, each checked against the real thing it stands in for."""

from __future__ import annotations

import io
import json
import random
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from monitor.audit.actions import NO_CREDENTIAL, NOT_PROBED_YET, reason_fr
from monitor.audit.forecasting import near_full_forecasts
from monitor.audit.html_assets import SCRIPT
from monitor.audit.progress import Progress
from monitor.config.values import DAY, HOUR, MINUTE
from monitor.fullness.forecast import Point, forecast_full, may_reach
from monitor.fullness.store import load_history, save_histories
from monitor.probes.result import QuotaReading, QuotaSource, Reason
from monitor.scheduling.statuses import restored_statuses
from monitor.state.store import MailboxRecord, StateError, StateStore
from tests import fleet

LIMIT = 2 * 1024**3
WINDOW = 14 * DAY


def _history(rng: random.Random, now: float) -> list[Point]:
    """A mailbox's readings: a random start, pace, noise, gaps and maybe a clean-up."""
    used = float(rng.randrange(0, LIMIT))
    per_day = rng.choice(
        [0, 0, rng.randrange(-20, 60) * 1_000_000, rng.randrange(0, 400) * 1_000_000]
    )
    at = now - rng.uniform(1, 30) * DAY
    points: list[Point] = []
    while at <= now:
        points.append((at, max(0, int(used))))
        step = rng.choice([5 * MINUTE, HOUR, 6 * HOUR, DAY])
        used += per_day * step / DAY + rng.gauss(0, 2_000_000)
        if rng.random() < 0.01:
            used *= 0.5  # a clean-up
        at += step
    return points


def test_the_shortcut_never_drops_a_mailbox_the_forecast_calls_full_soon() -> None:
    """Over 2,000 random histories, the forecast asked `within` 7 days gives exactly the
    forecast's own answer wherever that is within 7 days; and the shortcut spares most of
    the others the full computation."""
    rng = random.Random(17)
    now = 1_800_000_000.0
    spared = soon = 0
    for _ in range(2000):
        points = _history(rng, now)
        full = forecast_full(points, LIMIT, now, WINDOW)
        quick = forecast_full(points, LIMIT, now, WINDOW, within=7 * DAY)
        if full is not None and full - now <= 7 * DAY:
            soon += 1
            assert quick == full, points
        else:
            assert quick in (None, full)  # None where the shortcut proved it out of reach
        trend = [p for p in points if now - WINDOW <= p[0]]
        spared += len(trend) >= 3 and not may_reach(trend, LIMIT, now, 7 * DAY)
    assert soon > 20 and spared > 1000


def test_near_full_forecasts_reads_only_the_state_file(tmp_path: Path) -> None:
    """The forecasts from a state file opened read-only match the forecast itself, for
    the growing mailbox only; writing through that store is refused."""
    path = tmp_path / "state.db"
    now = time.time()
    growing = [
        (now - DAY * d, LIMIT - int(d * 100_000_000) - 50_000_000) for d in range(10, -1, -1)
    ]
    flat = [(now - DAY * d, LIMIT // 2) for d in range(10, -1, -1)]
    slow = [(now - DAY * d, 100_000_000 + int((10 - d) * 1_000)) for d in range(10, -1, -1)]
    locals_ = [fleet.EMPTY, fleet.NEARLY_FULL, fleet.FULL]
    config = fleet.config_for(tmp_path, None, port=1, mailboxes=locals_)
    histories = dict(zip(map(fleet.address, locals_), (growing, flat, slow), strict=True))
    with_state = StateStore.open(path)
    save_histories(with_state, histories)
    with_state.save_mailboxes(
        MailboxRecord(a, QuotaReading(p[-1][1], LIMIT, QuotaSource.IMAP_QUOTA, now), {})
        for a, p in histories.items()
    )
    with_state.close()

    store = StateStore.open_readonly(path)
    try:
        statuses = restored_statuses(config.mailboxes, store.load_mailboxes(), {})
        found = near_full_forecasts(config, store, statuses, now, 7)
        with pytest.raises(StateError, match="readonly"):
            save_histories(store, {fleet.address(fleet.EMPTY): growing[:2]})
        assert load_history(store)[fleet.address(fleet.EMPTY)] == growing
    finally:
        store.close()
    expected = forecast_full(growing, LIMIT, now, WINDOW)
    assert expected is not None and expected - now < 2 * DAY
    assert found == {fleet.address(fleet.EMPTY): pytest.approx(expected)}


def test_a_read_only_store_neither_writes_nor_creates(tmp_path: Path) -> None:
    """Opening read-only: a missing file stays missing; an existing one refuses writes."""
    path = tmp_path / "state.db"
    with pytest.raises(StateError, match="does not exist"):
        StateStore.open_readonly(path)
    assert list(tmp_path.iterdir()) == []
    StateStore.open(path).close()
    store = StateStore.open_readonly(path)
    try:
        with pytest.raises(StateError, match="readonly"):
            store.salt()  # the salt is created on first use: not by a reader
    finally:
        store.close()


class Clock:
    """Time that moves only when the test says."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_off_a_terminal_is_plain_lines_each_tenth_or_five_seconds() -> None:
    """Without a TTY: a line at each tenth of the way, one after 5 s without news, and a
    total at the end; no carriage return or escape sequence."""
    clock, out = Clock(), io.StringIO()
    progress = Progress(200, out, tty=False, clock=clock)
    for n in range(1, 51):
        clock.now += 0.01
        progress.advance(failed=n % 10 == 0)
    clock.now += 6  # a slow server: no new tenth, but a line all the same
    progress.advance(failed=False)
    for _ in range(149):
        clock.now += 0.01
        progress.advance(failed=False)
    progress.finish()
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()
    assert [line.split()[1] for line in lines[:-1]] == [
        "20/200", "40/200", "51/200", "60/200", "80/200", "100/200", "120/200",
        "140/200", "160/200", "180/200", "200/200",
    ]  # fmt: skip
    assert lines[2] == "probed 51/200  26%  5 failed  7.8/s  ETA 0:18"
    assert lines[-1] == "probed 200/200, 5 failed, in 8.0 s (25.0/s)"


def test_progress_on_a_terminal_redraws_one_bar_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a TTY: the bar is redrawn in place with done/total, failures, rate and ETA, at
    most every 0.1 s, and the line ends once at the finish."""
    monkeypatch.setenv("COLUMNS", "120")  # room for the widest bar
    clock, out = Clock(), io.StringIO()
    progress = Progress(40, out, tty=True, clock=clock)
    for n in range(40):
        clock.now += 0.0625  # exact in binary: a redraw every other probe
        progress.advance(failed=n < 3)
    progress.finish()
    text = out.getvalue()
    frames = text.split("\r")[1:]
    assert len(frames) == 21  # every other probe, and the finish
    assert text.endswith("\n") and text.count("\n") == 1
    assert re.fullmatch(r"\[#{20}-{20}\] 20/40  50%  3 failed  16\.0/s  ETA 0:01\x1b\[K", frames[9])
    assert frames[-1].startswith("[" + "#" * 40 + "] 40/40 100%  3 failed  16.0/s  ETA 0:00")


def test_the_sort_script_compares_numbers_and_dates_as_such(tmp_path: Path) -> None:
    """The page's comparison, run by node: numbers numerically, ISO dates and times in
    calendar order, text in French order, empty cells last."""
    node = shutil.which("node") or shutil.which("nodejs")
    if node is None:
        pytest.skip("node is not installed")
    compare = SCRIPT[SCRIPT.index("var iso") : SCRIPT.index("document.querySelectorAll")]
    cases = [
        ["10", "9", "", "100", "-3", "2.5"],
        ["2026-11-28", "2026-01-05", "", "2025-12-31"],
        ["2026-11-25T17:33:06+01:00", "2026-11-25T09:00:00+01:00"],
        ["École b", "ecole a", "Zèbre", "abc"],
    ]
    script = tmp_path / "sort.js"
    script.write_text(
        compare + f"var cases = {json.dumps(cases)};\n"
        "cases.forEach(function (c) { c.sort(compare); });\n"
        "console.log(JSON.stringify(cases));\n"
    )
    done = subprocess.run([node, str(script)], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == [
        ["-3", "2.5", "9", "10", "100", ""],
        ["2025-12-31", "2026-01-05", "2026-11-28", ""],
        ["2026-11-25T09:00:00+01:00", "2026-11-25T17:33:06+01:00"],
        ["abc", "ecole a", "École b", "Zèbre"],
    ]


def test_every_reason_has_a_french_label_beside_its_code() -> None:
    """The page mailed to ops words every reason in French, and keeps the code."""
    for code in [*Reason, NOT_PROBED_YET, NO_CREDENTIAL]:
        shown = reason_fr(code)
        assert shown.endswith(f" ({code})") and len(shown) > len(code) + 4, code
    assert reason_fr("something_new") == "something_new"
