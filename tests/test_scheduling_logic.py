"""Pure scheduling logic, without sockets: slots, jitter, pacing, outage detection, quota levels."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace

import pytest

from monitor.config.fullness_model import QuotaConfig
from monitor.config.model import Kind, Mailbox, OutageConfig, ProbingConfig
from monitor.probes import pop3
from monitor.probes.imap import PROBER as IMAP
from monitor.probes.imap import Phase
from monitor.probes.result import ProbeResult, Protocol, QuotaReading, QuotaSource, Reason
from monitor.quota import QuotaLevel, better_reading, quota_level
from monitor.scheduling.cycle import estimate_due
from monitor.scheduling.outage import Admission, OutageDetector, is_server_failure
from monitor.scheduling.plan import jittered, slot_offsets
from monitor.scheduling.ratelimit import RateLimiter
from monitor.scheduling.view import MailboxStatus


def addresses(n: int) -> list[str]:
    """n distinct BMA addresses."""
    return [f"ec{i:06d}@adm.cfwb.be" for i in range(n)]


def test_slots_are_evenly_spaced_and_stable() -> None:
    """Slots cover the interval at equal steps, in the same order on every start."""
    fleet = addresses(1000)
    offsets = slot_offsets(fleet, 300.0)
    ordered = sorted(offsets.values())
    assert ordered[0] == 0.0
    assert all(b - a == pytest.approx(0.3) for a, b in itertools.pairwise(ordered))
    assert slot_offsets(list(reversed(fleet)), 300.0) == offsets


def test_slot_order_is_not_fase_order() -> None:
    """Neighbouring FASE numbers do not log in back to back."""
    offsets = slot_offsets(addresses(100), 100.0)
    by_time = sorted(offsets, key=offsets.__getitem__)
    assert by_time[:5] != sorted(by_time)[:5]


def test_jitter_stays_within_half_a_slot() -> None:
    """Jitter moves a slot by at most ±jitter/2 of a slot, never before zero."""
    rng = random.Random(1)
    moved = [jittered(10.0, 2.0, 0.5, rng) for _ in range(1000)]
    assert min(moved) >= 9.5 and max(moved) <= 10.5
    assert min(jittered(0.0, 2.0, 1.0, rng) for _ in range(100)) >= 0.0


def test_rate_limiter_paces_without_bursts() -> None:
    """At 50/s, the second token is due 20 ms after the first; refills follow the clock."""
    now = [100.0]
    limiter = RateLimiter(50.0, clock=lambda: now[0])
    assert limiter.delay() == 0.0
    assert limiter.delay() == pytest.approx(0.02)
    now[0] += 0.02
    assert limiter.delay() == 0.0
    now[0] += 10.0
    assert limiter.delay() == 0.0
    assert limiter.delay() > 0.0  # idle time does not bank a burst


def result(reason: Reason, phase: Phase | None) -> ProbeResult:
    """A probe result that failed (or not) in a phase."""
    return ProbeResult("ec000001@adm.cfwb.be", Protocol.IMAP, reason, 0.0, {}, phase)


def test_server_side_failures_count_against_the_server() -> None:
    """Unreachable servers and logins that hang count; refused passwords do not."""
    assert is_server_failure(result(Reason.CONNECT_REFUSED, Phase.CONNECT), IMAP)
    assert is_server_failure(result(Reason.TLS_ERROR, Phase.TLS), IMAP)
    # Exchange with its directory unreachable: TCP and greeting fine, LOGIN never answered.
    assert is_server_failure(result(Reason.TIMEOUT, Phase.LOGIN), IMAP)
    assert not is_server_failure(result(Reason.AUTH_FAILED, Phase.LOGIN), IMAP)
    assert not is_server_failure(result(Reason.TIMEOUT, Phase.QUOTA), IMAP)
    assert not is_server_failure(result(Reason.OK, None), IMAP)


def test_login_timeouts_take_a_server_down() -> None:
    """A server that hangs every LOGIN is marked down like one that refuses connections."""
    detector = OutageDetector(IMAP, OutageConfig(min_probes=5, failure_ratio=0.8))
    tipped = [detector.record(float(t), result(Reason.TIMEOUT, Phase.LOGIN)) for t in range(5)]
    assert tipped == [False] * 4 + [True]


def test_results_that_never_reached_the_server_do_not_dilute_the_window() -> None:
    """Half the fleet without credentials does not hide a refused-connection outage."""
    detector = OutageDetector(IMAP, OutageConfig(min_probes=5, failure_ratio=0.8))
    for t in range(5):
        detector.record(float(t), result(Reason.CREDENTIAL_MISSING, None))
        detector.record(float(t), result(Reason.CONNECT_REFUSED, Phase.CONNECT))
    assert not detector.up


def test_outage_detection_and_backoff() -> None:
    """Down after enough failures in the window; checks back off; a passed check lets one
    trial probe through, and that probe's success brings the server up."""
    detector = OutageDetector(
        IMAP,
        OutageConfig(
            window=60, min_probes=5, failure_ratio=0.8, backoff_initial=10, backoff_max=35
        ),
    )
    refused = result(Reason.CONNECT_REFUSED, Phase.CONNECT)
    for t in range(4):
        assert not detector.record(float(t), refused)
    assert detector.up
    assert detector.record(4.0, refused)
    assert not detector.up and detector.down_since == 4.0
    assert not detector.check_due(13.9) and detector.check_due(14.0)
    assert not detector.record_check(14.0, healthy=False)
    assert detector.next_check_at == 34.0
    detector.record_check(34.0, healthy=False)
    assert detector.next_check_at == 69.0  # capped at backoff_max
    assert detector.admit() is Admission.SKIP
    assert detector.record_check(69.0, healthy=True)
    assert not detector.up and not detector.check_due(1000.0)
    assert detector.admit() is Admission.TRIAL
    assert detector.admit() is Admission.SKIP  # one trial at a time
    assert detector.record_trial(70.0, result(Reason.OK, None))
    assert detector.up and detector.admit() is Admission.PROBE


def test_a_failed_trial_backs_off_again() -> None:
    """A trial that hangs at LOGIN again keeps the server down and doubles the wait."""
    detector = OutageDetector(IMAP, OutageConfig(min_probes=1, backoff_initial=10, backoff_max=100))
    assert detector.record(0.0, result(Reason.TIMEOUT, Phase.LOGIN))
    detector.record_check(10.0, healthy=True)
    assert detector.admit() is Admission.TRIAL
    assert not detector.record_trial(11.0, result(Reason.TIMEOUT, Phase.LOGIN))
    assert not detector.up and detector.next_check_at == 31.0
    assert detector.admit() is Admission.SKIP


def test_an_inconclusive_trial_lets_the_next_probe_try() -> None:
    """A trial that never reached the server (no credential) leaves the trial open."""
    detector = OutageDetector(IMAP, OutageConfig(min_probes=1))
    detector.record(0.0, result(Reason.CONNECT_REFUSED, Phase.CONNECT))
    detector.record_check(20.0, healthy=True)
    assert detector.admit() is Admission.TRIAL
    assert not detector.record_trial(21.0, result(Reason.CREDENTIAL_MISSING, None))
    assert detector.admit() is Admission.TRIAL


def test_scattered_failures_do_not_take_a_server_down() -> None:
    """A few failing mailboxes among working ones leave the server up."""
    detector = OutageDetector(IMAP, OutageConfig(min_probes=5, failure_ratio=0.8))
    for t in range(20):
        reason = Reason.CONNECT_REFUSED if t % 3 == 0 else Reason.OK
        detector.record(float(t), result(reason, Phase.CONNECT if t % 3 == 0 else None))
    assert detector.up


def test_old_failures_leave_the_window() -> None:
    """Failures older than the window are forgotten."""
    detector = OutageDetector(IMAP, OutageConfig(window=10, min_probes=5, failure_ratio=0.8))
    for t in range(4):
        detector.record(float(t), result(Reason.TIMEOUT, Phase.CONNECT))
    assert not detector.record(100.0, result(Reason.TIMEOUT, Phase.CONNECT))
    assert detector.up


def pop3_result(reason: Reason, phase: pop3.Phase | None) -> ProbeResult:
    """A POP3 probe result that failed (or not) in a phase."""
    return ProbeResult("ec000001@adm.cfwb.be", Protocol.POP3, reason, 0.0, {}, phase)


def test_in_use_and_login_delay_never_take_a_pop3_server_down() -> None:
    """A hundred `[IN-USE]` and `[LOGIN-DELAY]` answers in a row leave the server up: the
    school's own client is downloading, the server answered."""
    detector = OutageDetector(pop3.PROBER, OutageConfig(min_probes=5, failure_ratio=0.8))
    for t in range(100):
        reason = Reason.IN_USE if t % 2 else Reason.LOGIN_DELAY
        assert not detector.record(float(t), pop3_result(reason, pop3.Phase.LOGIN))
    assert detector.up and detector.last_error == ""


def test_in_use_answers_count_as_reachable_and_dilute_real_failures() -> None:
    """Four refused connections after six `[IN-USE]` answers are not an outage, though the
    same four alone are; and an `[IN-USE]` trial brings a down server back up."""
    config = OutageConfig(min_probes=4, failure_ratio=0.8)
    refused = pop3_result(Reason.CONNECT_REFUSED, pop3.Phase.CONNECT)
    in_use = pop3_result(Reason.IN_USE, pop3.Phase.LOGIN)
    diluted, alone = OutageDetector(pop3.PROBER, config), OutageDetector(pop3.PROBER, config)
    for t in range(6):
        diluted.record(float(t), in_use)
    for t in range(6, 10):
        diluted.record(float(t), refused)
        alone.record(float(t), refused)
    assert diluted.up
    assert not alone.up
    alone.record_check(30.0, healthy=True)
    assert alone.admit() is Admission.TRIAL
    assert alone.record_trial(31.0, in_use)
    assert alone.up


def test_a_pop3_stat_reading_does_not_put_off_the_imap_size_sum() -> None:
    """STAT counts the inbox alone: a fresh STAT reading leaves the whole-mailbox sum due,
    where a fresh sum of the same age would not be."""
    mailbox = Mailbox(
        "ec000001@adm.cfwb.be", Kind.EC, "000001", "main", protocols=(Protocol.IMAP, Protocol.POP3)
    )
    probing = ProbingConfig(quota_estimate_interval=3600)
    now = 1_800_000_000.0  # Unix time, as the scheduler's clock gives it
    stat = QuotaReading(10_000, None, QuotaSource.POP3_STAT, now - 1)
    status = MailboxStatus(mailbox, quota=stat)
    assert estimate_due(status, status.probe(Protocol.IMAP), now, probing)
    summed = replace(status, quota=replace(stat, source=QuotaSource.MESSAGE_SIZES))
    assert not estimate_due(summed, summed.probe(Protocol.IMAP), now, probing)


@pytest.mark.parametrize(
    ("used", "limit", "level"),
    [
        (0, None, QuotaLevel.OK),
        (85, 100, QuotaLevel.WARNING),
        (95, 100, QuotaLevel.CRITICAL),
        (100, 100, QuotaLevel.FULL),
        (2 * 1024**3, None, QuotaLevel.FULL),
    ],
)
def test_quota_levels(used: int, limit: int | None, level: QuotaLevel) -> None:
    """Levels follow the thresholds; with no server limit the 2 GiB default applies."""
    reading = QuotaReading(used, limit, QuotaSource.IMAP_QUOTA, 0.0)
    assert quota_level(reading, QuotaConfig()) is level


def reading(source: QuotaSource, used: int, at: float) -> QuotaReading:
    """A usage reading from `source`."""
    return QuotaReading(used, None, source, at)


def test_the_inbox_alone_never_replaces_a_whole_mailbox_reading() -> None:
    """POP3's STAT (the inbox) stands in only where nothing better measured the mailbox; a
    newer reading of equal or wider reach replaces an older one."""
    stat = reading(QuotaSource.POP3_STAT, 100, 2.0)
    summed = reading(QuotaSource.MESSAGE_SIZES, 500, 1.0)
    quota = reading(QuotaSource.IMAP_QUOTA, 600, 1.0)
    assert better_reading(None, stat) is stat
    assert better_reading(summed, stat) is summed
    assert better_reading(quota, stat) is quota
    assert better_reading(stat, summed) is summed
    assert better_reading(quota, summed) is quota
    newer_stat = reading(QuotaSource.POP3_STAT, 120, 3.0)
    assert better_reading(stat, newer_stat) is newer_stat
    newer_sum = reading(QuotaSource.STATUS_SIZE, 550, 3.0)
    assert better_reading(summed, newer_sum) is newer_sum
    assert better_reading(quota, None) is quota
