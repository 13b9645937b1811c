"""Per-mailbox metrics, written straight in the Prometheus text format, cached per mailbox.

At 10,000 mailboxes these families hold about 150,000 samples. Built as prometheus_client
objects on every scrape they took about a second and some 100 MB; here each mailbox's
lines are rendered once per change of its status (an immutable object, replaced on every
probe) and reused by later scrapes until it changes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from monitor.config.model import QuotaConfig
from monitor.probes.result import Protocol
from monitor.quota import effective_limit
from monitor.scheduling.scheduler import MailboxStatus


@dataclass(frozen=True, slots=True)
class Family:
    """One gauge family: its name and help text."""

    name: str
    help: str


INFO = Family(
    "bma_mailbox_info",
    "Always 1; names the establishment (fase, name) and the server of each mailbox.",
)
LOGIN = Family("bma_mailbox_login_success", "1 if the last probe logged in, 0 if it failed.")
REASON = Family(
    "bma_mailbox_probe_reason",
    "Always 1; the reason label says how the last probe ended (ok or the failure).",
)
PHASES = Family(
    "bma_mailbox_probe_phase_duration_seconds",
    "Time the last probe spent in each phase it reached (absent for the others).",
)
LAST_PROBE = Family("bma_mailbox_last_probe_timestamp_seconds", "When the last probe started.")
LAST_SUCCESS = Family("bma_mailbox_last_success_timestamp_seconds", "When a probe last logged in.")
USED = Family("bma_mailbox_quota_used_bytes", "Mailbox usage at the last reading.")
LIMIT = Family(
    "bma_mailbox_quota_limit_bytes",
    "Storage limit: the server's, or the configured default where the server sets none.",
)
MEASURED = Family(
    "bma_mailbox_quota_measured_timestamp_seconds",
    "When the quota was last read; source: imap_quota, status_size or message_sizes.",
)
LOCKED = Family(
    "bma_mailbox_auth_locked",
    "1 while probes are held back after a definitive authentication failure.",
)
FAMILIES = (INFO, LOGIN, REASON, PHASES, LAST_PROBE, LAST_SUCCESS, USED, LIMIT, MEASURED, LOCKED)

# The status tracks the IMAP probe only (the scheduler keys lock-outs by Protocol.IMAP).
_PROTOCOL = Protocol.IMAP
_SLICE = 1000  # mailboxes per piece sent: bounds the memory one scrape takes
Chunks = tuple[bytes, ...]  # one piece per family, b"" where the mailbox has no sample


class MailboxExposition:
    """Renders the per-mailbox families; safe to call from several scraping threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[MailboxStatus, Chunks]] = {}
        self._quota: QuotaConfig | None = None

    def render(
        self, statuses: Mapping[str, MailboxStatus], quota: QuotaConfig
    ) -> tuple[int, Iterator[bytes]]:
        """The size in bytes of every per-mailbox family, and their text, family by family.

        The text comes out one family at a time, so a scrape of 10,000 mailboxes never
        holds the whole page in memory twice.
        """
        with self._lock:
            if quota != self._quota:  # the default limit shows in the samples
                self._cache.clear()
                self._quota = quota
            cache: dict[str, tuple[MailboxStatus, Chunks]] = {}
            for address, status in statuses.items():
                hit = self._cache.get(address)
                chunks = hit[1] if hit is not None and hit[0] is status else _chunks(status, quota)
                cache[address] = (status, chunks)
            self._cache = cache  # mailboxes no longer configured fall out here
        rows = [chunks for _, chunks in cache.values()]
        headers = [f"# HELP {f.name} {f.help}\n# TYPE {f.name} gauge\n".encode() for f in FAMILIES]
        size = sum(map(len, headers)) + sum(len(chunk) for row in rows for chunk in row)
        return size, _families(headers, rows)


def _families(headers: list[bytes], rows: list[Chunks]) -> Iterator[bytes]:
    for i, header in enumerate(headers):
        yield header
        for start in range(0, len(rows), _SLICE):
            yield b"".join([row[i] for row in rows[start : start + _SLICE]])


def _chunks(status: MailboxStatus, quota: QuotaConfig) -> Chunks:
    """One mailbox's samples, family by family."""
    mailbox = status.mailbox
    labels = (
        f'mailbox="{_escape(mailbox.local_part)}",kind="{mailbox.kind}",'
        f'server="{_escape(mailbox.server)}"'
    )
    info = (
        f'{INFO.name}{{{labels},fase="{_escape(mailbox.fase)}",name="{_escape(mailbox.name)}"}}'
        " 1.0\n"
    )
    probe = f'{labels},protocol="{_PROTOCOL}"'
    result, reading = status.result, status.quota
    login = reason = phases = last_probe = used = limit = measured = ""
    if result is not None:
        login = f"{LOGIN.name}{{{probe}}} {1.0 if result.login_ok else 0.0}\n"
        reason = f'{REASON.name}{{{probe},reason="{result.reason}"}} 1.0\n'
        # A phase the probe never reached has no duration: a 0 would read as a fresh,
        # very fast measurement.
        phases = "".join(
            f'{PHASES.name}{{{probe},phase="{phase}"}} {seconds!r}\n'
            for phase, seconds in result.durations.items()
        )
        last_probe = f"{LAST_PROBE.name}{{{probe}}} {result.started_at!r}\n"
    last_success = (
        f"{LAST_SUCCESS.name}{{{probe}}} {status.last_success_at!r}\n"
        if status.last_success_at is not None
        else ""
    )
    if reading is not None:
        used = f"{USED.name}{{{labels}}} {float(reading.used_bytes)!r}\n"
        limit = f"{LIMIT.name}{{{labels}}} {float(effective_limit(reading, quota))!r}\n"
        measured = (
            f'{MEASURED.name}{{{labels},source="{reading.source}"}} {reading.measured_at!r}\n'
        )
    locked = f"{LOCKED.name}{{{probe}}} {1.0 if status.lockout is not None else 0.0}\n"
    texts = (info, login, reason, phases, last_probe, last_success, used, limit, measured, locked)
    return tuple(text.encode() for text in texts)


def _escape(value: str) -> str:
    """Label value escaping of the text format: names are free text (quotes, newlines)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
