"""Pure scheduling logic, without sockets: slots, jitter, pacing, outage detection, quota levels."""

from __future__ import annotations

import itertools
import random

import pytest

from monitor.config.model import OutageConfig, QuotaConfig
from monitor.probes.result import Phase, ProbeResult, Protocol, QuotaReading, QuotaSource, Reason
from monitor.quota import QuotaLevel, quota_level
from monitor.scheduling.outage import Admission, OutageDetector, is_server_failure
from monitor.scheduling.plan import jittered, slot_offsets
from monitor.scheduling.ratelimit import RateLimiter


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
    assert is_server_failure(result(Reason.CONNECT_REFUSED, Phase.CONNECT))
    assert is_server_failure(result(Reason.TLS_ERROR, Phase.TLS))
    # Exchange with its directory unreachable: TCP and greeting fine, LOGIN never answered.
    assert is_server_failure(result(Reason.TIMEOUT, Phase.LOGIN))
    assert not is_server_failure(result(Reason.AUTH_FAILED, Phase.LOGIN))
    assert not is_server_failure(result(Reason.TIMEOUT, Phase.QUOTA))
    assert not is_server_failure(result(Reason.OK, None))


def test_login_timeouts_take_a_server_down() -> None:
    """A server that hangs every LOGIN is marked down like one that refuses connections."""
    detector = OutageDetector(OutageConfig(min_probes=5, failure_ratio=0.8))
    tipped = [detector.record(float(t), result(Reason.TIMEOUT, Phase.LOGIN)) for t in range(5)]
    assert tipped == [False] * 4 + [True]


def test_results_that_never_reached_the_server_do_not_dilute_the_window() -> None:
    """Half the fleet without credentials does not hide a refused-connection outage."""
    detector = OutageDetector(OutageConfig(min_probes=5, failure_ratio=0.8))
    for t in range(5):
        detector.record(float(t), result(Reason.CREDENTIAL_MISSING, None))
        detector.record(float(t), result(Reason.CONNECT_REFUSED, Phase.CONNECT))
    assert not detector.up


def test_outage_detection_and_backoff() -> None:
    """Down after enough failures in the window; checks back off; a passed check lets one
    trial probe through, and that probe's success brings the server up."""
    detector = OutageDetector(
        OutageConfig(window=60, min_probes=5, failure_ratio=0.8, backoff_initial=10, backoff_max=35)
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
    detector = OutageDetector(OutageConfig(min_probes=1, backoff_initial=10, backoff_max=100))
    assert detector.record(0.0, result(Reason.TIMEOUT, Phase.LOGIN))
    detector.record_check(10.0, healthy=True)
    assert detector.admit() is Admission.TRIAL
    assert not detector.record_trial(11.0, result(Reason.TIMEOUT, Phase.LOGIN))
    assert not detector.up and detector.next_check_at == 31.0
    assert detector.admit() is Admission.SKIP


def test_an_inconclusive_trial_lets_the_next_probe_try() -> None:
    """A trial that never reached the server (no credential) leaves the trial open."""
    detector = OutageDetector(OutageConfig(min_probes=1))
    detector.record(0.0, result(Reason.CONNECT_REFUSED, Phase.CONNECT))
    detector.record_check(20.0, healthy=True)
    assert detector.admit() is Admission.TRIAL
    assert not detector.record_trial(21.0, result(Reason.CREDENTIAL_MISSING, None))
    assert detector.admit() is Admission.TRIAL


def test_scattered_failures_do_not_take_a_server_down() -> None:
    """A few failing mailboxes among working ones leave the server up."""
    detector = OutageDetector(OutageConfig(min_probes=5, failure_ratio=0.8))
    for t in range(20):
        reason = Reason.CONNECT_REFUSED if t % 3 == 0 else Reason.OK
        detector.record(float(t), result(reason, Phase.CONNECT if t % 3 == 0 else None))
    assert detector.up


def test_old_failures_leave_the_window() -> None:
    """Failures older than the window are forgotten."""
    detector = OutageDetector(OutageConfig(window=10, min_probes=5, failure_ratio=0.8))
    for t in range(4):
        detector.record(float(t), result(Reason.TIMEOUT, Phase.CONNECT))
    assert not detector.record(100.0, result(Reason.TIMEOUT, Phase.CONNECT))
    assert detector.up


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
