"""The probe families of each mailbox (login, reason, phases, quota reading, lock-out),
written as text and cached per mailbox status (an immutable object, replaced on every probe).

At 10,000 mailboxes x 3 protocols these families hold about 400,000 samples.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from monitor.config.fullness_model import QuotaConfig
from monitor.metrics.text_cache import Chunks, Family, TextCache, escape, mailbox_labels
from monitor.quota import effective_limit
from monitor.scheduling.scheduler import MailboxStatus

INFO = Family(
    "bma_mailbox_info",
    "Always 1; names the establishment (fase, name) and the server of each mailbox.",
)
LOGIN = Family(
    "bma_mailbox_login_success", "1 if the last probe of the protocol logged in, 0 if not."
)
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
    "When the quota was last read; source: imap_quota, status_size, message_sizes, or "
    "pop3_stat (the inbox only: other folders are not counted).",
)
LOCKED = Family(
    "bma_mailbox_auth_locked",
    "1 while the protocol's probes are held back: the password it sends was refused for "
    "good, over this protocol or another sharing it (IMAP and POP3).",
)
FAMILIES = (INFO, LOGIN, REASON, PHASES, LAST_PROBE, LAST_SUCCESS, USED, LIMIT, MEASURED, LOCKED)


class MailboxExposition:
    """Renders the per-mailbox probe families; safe to call from several scraping threads."""

    def __init__(self) -> None:
        self._text: TextCache[MailboxStatus] = TextCache(FAMILIES)

    def render(
        self, statuses: Mapping[str, MailboxStatus], quota: QuotaConfig
    ) -> tuple[int, Iterator[bytes]]:
        """The size in bytes of every per-mailbox probe family, and their text, family by
        family (the default limit shows in the samples: a new one renders all again)."""
        return self._text.render(statuses.items(), lambda status: _chunks(status, quota), quota)


def _chunks(status: MailboxStatus, quota: QuotaConfig) -> Chunks:
    """One mailbox's samples, family by family; probe families hold a sample per protocol."""
    # Built by concatenation: a 10,000 x 3 page is some 400,000 lines, and formatting the
    # enum values (kind, protocol, phase, reason) through f-strings took a third of it.
    mailbox = status.mailbox
    labels = mailbox_labels(mailbox)
    info = (
        INFO.name
        + "{"
        + labels
        + ',fase="'
        + escape(mailbox.fase)
        + '",name="'
        + escape(mailbox.name)
        + '"} 1.0\n'
    )
    login = reason = phases = last_probe = last_success = locked = ""
    for protocol, state in status.probes.items():
        probe = "{" + labels + ',protocol="' + protocol + '"'
        result = state.result
        if result is not None:
            login += LOGIN.name + probe + ("} 1.0\n" if result.login_ok else "} 0.0\n")
            reason += REASON.name + probe + ',reason="' + result.reason + '"} 1.0\n'
            # A phase the probe never reached has no duration: a 0 would read as a fresh,
            # very fast measurement.
            head = PHASES.name + probe + ',phase="'
            phases += "".join(
                head + phase + '"} ' + repr(seconds) + "\n"
                for phase, seconds in result.durations.items()
            )
            last_probe += LAST_PROBE.name + probe + "} " + repr(result.started_at) + "\n"
        if state.last_success_at is not None:
            last_success += LAST_SUCCESS.name + probe + "} " + repr(state.last_success_at) + "\n"
        locked += LOCKED.name + probe + ("} 1.0\n" if state.lockout is not None else "} 0.0\n")
    reading = status.quota
    used = limit = measured = ""
    if reading is not None:
        used = f"{USED.name}{{{labels}}} {float(reading.used_bytes)!r}\n"
        limit = f"{LIMIT.name}{{{labels}}} {float(effective_limit(reading, quota))!r}\n"
        measured = (
            MEASURED.name
            + "{"
            + labels
            + ',source="'
            + reading.source
            + '"} '
            + repr(reading.measured_at)
            + "\n"
        )
    texts = (info, login, reason, phases, last_probe, last_success, used, limit, measured, locked)
    return tuple(text.encode() for text in texts)
