"""A full mailbox found by its quota and by the canary, over a real delivery path into
Dovecot (LMTP with quota enforcement); the canary removes itself and nothing else."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.canary.evidence import CanaryOutcome, Evidence
from monitor.canary.job import CanaryJob
from monitor.canary.message import build_canary, new_canary_id
from monitor.canary.send import SendVerdict, send_canary
from monitor.config import Config, load_config
from monitor.config.expiry_model import RelayConfig
from monitor.config.model import CredentialsConfig, TlsMode
from monitor.credentials import CredentialStore
from monitor.fullness.states import QuotaLevel
from monitor.metrics.fullness import FullnessText, FullnessView
from monitor.notify.relay import RelaySender
from monitor.scheduling.runner import ProbeRunner
from monitor.scheduling.scheduler import Scheduler
from monitor.state.store import StateStore
from tests.exposition import text_families
from tests.servers.delivery import DeliveryFront
from tests.servers.dovecot import DovecotServer, MailUser

DOMAIN = "canary.test"
ROOMY = MailUser(f"ec000401@{DOMAIN}", "roomy-secret-1", quota_rule="10M")
FULL = MailUser(f"ec000402@{DOMAIN}", "full-secret-2", quota_rule="1M")
SENDER = MailUser(f"monitor@{DOMAIN}", "sender-secret-3", quota_rule="10M")
FIELDS = "uid flags guid"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[DovecotServer]:
    """Dovecot with QUOTA over IMAP and LMTP delivery; one mailbox past its quota, one
    with the school's own mail: unseen, seen, flagged, and one it marked \\Deleted."""
    with DovecotServer(tmp_path / "dovecot", (ROOMY, FULL, SENDER), lmtp=True) as dovecot:
        dovecot.add_messages(FULL.address, 2, 600_000)
        dovecot.add_messages(ROOMY.address, 5, 2000)
        dovecot.add_flags(ROOMY.address, "\\Seen", "INBOX", "1:2")
        dovecot.add_flags(ROOMY.address, "\\Flagged", "INBOX", "3")
        dovecot.add_flags(ROOMY.address, "\\Deleted", "INBOX", "4")
        yield dovecot


def write_config(tmp_path: Path, dovecot: DovecotServer, relay_port: int, **canary: Any) -> Config:
    """The two mailboxes, probed over IMAP, each with a daily canary through `relay_port`."""
    credentials = tmp_path / "credentials"
    credentials.mkdir(mode=0o700, exist_ok=True)
    for user in (ROOMY, FULL, SENDER):
        secret = credentials / f"{user.address}.imap"
        secret.write_text(user.password + "\n")
        secret.chmod(0o600)
    document = {
        "domain": DOMAIN,
        "servers": {
            "dovecot": {"imap": {"host": "127.0.0.1", "port": dovecot.imap_port, "tls": "none"}}
        },
        "probing": {"interval": "1m", "timeout": "10s", "rate_limit": 0},
        "credentials": {"directory": "credentials"},
        "state": {"path": "state.db"},
        "mailboxes": [{"address": ROOMY.address}, {"address": FULL.address}],
        "canary": {
            "enabled": True,
            "mailboxes": [ROOMY.address, FULL.address],
            "sender": SENDER.address,
            "relay": {"host": "127.0.0.1", "port": relay_port, "tls": "none"},
            "deadline": "5s",
            "poll": "1s",
            **canary,
        },
    }
    path = tmp_path / "bma.yaml"
    path.write_text(yaml.safe_dump(document))
    return load_config(path)


def wired(config: Config) -> tuple[Scheduler, CanaryJob, StateStore]:
    """The scheduler and the canary job as the daemon wires them."""
    store = StateStore.open(config.state.path)
    credentials = CredentialStore(config.credentials, store.salt())
    runner = ProbeRunner(config, store, credentials)
    scheduler = Scheduler(config, runner, store)
    job = CanaryJob(lambda: config, store, lambda: credentials, runner, lambda: scheduler.statuses)
    return scheduler, job, store


def evidence_metric(config: Config, scheduler: Scheduler, job: CanaryJob) -> set[tuple[str, str]]:
    """(mailbox, evidence) of every bma_mailbox_full series."""
    view = FullnessView(
        config, scheduler.fullness.states(), scheduler.forecasts, job.evidence, job.results
    )
    families = text_families(FullnessText(lambda: view).render)
    return {
        (s.labels["mailbox"], s.labels["evidence"]) for s in families["bma_mailbox_full"].samples
    }


def kept(rows: list[dict[str, str]]) -> list[tuple[str, str, list[str]]]:
    """Each message's UID, GUID and flags, \\Recent aside: the canary's read-write SELECT
    clears it, as any mail client's would."""
    return [(r["uid"], r["guid"], r["flags"].replace("\\Recent", "").split()) for r in rows]


def canaries_in(dovecot: DovecotServer, address: str) -> int:
    """Messages carrying the canary header in the mailbox's INBOX, as Dovecot sees them."""
    rows = dovecot.fetch(address, "hdr.x-bma-monitor-canary")
    return sum(1 for row in rows if row.get("hdr.x-bma-monitor-canary", "").strip())


async def test_a_full_mailbox_is_found_by_quota_and_by_rejection_in_one_cycle(
    tmp_path: Path, server: DovecotServer
) -> None:
    """One sweep and one canary round: the full mailbox is full by its quota state and by
    the server's own 552 5.2.2; the roomy one gets its canary, which then leaves with any
    a crashed run left behind, and every other message keeps its UID and flags."""
    with DeliveryFront("127.0.0.1", server.lmtp_port, mode="pass") as front:
        config = write_config(tmp_path, server, front.port)
        before = server.fetch(ROOMY.address, FIELDS)
        # A canary a crashed run delivered and never removed.
        relay = RelaySender(
            RelayConfig(host="127.0.0.1", port=front.port, tls=TlsMode.NONE), CredentialsConfig()
        )
        stray = build_canary(
            ROOMY.address, new_canary_id(), SENDER.address, dt.datetime.now(dt.UTC)
        )
        assert (
            await send_canary(relay, stray, SENDER.address, ROOMY.address)
        ).verdict is SendVerdict.ACCEPTED
        assert canaries_in(server, ROOMY.address) == 1
        assert len(server.canaries()) == 1  # what the suite's end checks sees it too

        scheduler, job, store = wired(config)
        await scheduler.sweep()
        await job.round()

    full_local = FULL.address.split("@")[0]
    assert scheduler.fullness.state(FULL.address)[0] is QuotaLevel.FULL  # type: ignore[index]
    assert job.results[FULL.address].outcome is CanaryOutcome.REJECTED_FULL
    assert "5.2.2" in job.results[FULL.address].detail
    assert evidence_metric(config, scheduler, job) == {
        (full_local, str(Evidence.QUOTA)),
        (full_local, str(Evidence.REJECTION)),
    }
    roomy = job.results[ROOMY.address]
    assert roomy.outcome is CanaryOutcome.DELIVERED and roomy.latency is not None
    assert canaries_in(server, ROOMY.address) == 0 and server.canaries() == []
    after = server.fetch(ROOMY.address, FIELDS)
    assert kept(after) == kept(before)
    store.close()


async def test_an_exchange_like_relay_that_bounces_later_is_found_by_the_bounce(
    tmp_path: Path, server: DovecotServer
) -> None:
    """Accepted with 250, then a DSN with Status 5.2.2 to the sender: the canary is not
    delivered, and the bounce read from the sender's mailbox is evidence of full."""
    with DeliveryFront("127.0.0.1", server.lmtp_port, mode="bounce") as front:
        config = write_config(
            tmp_path,
            server,
            front.port,
            mailboxes=[FULL.address],
            bounces={"address": SENDER.address, "server": "dovecot"},
            deadline="2s",
        )
        scheduler, job, store = wired(config)
        await scheduler.sweep()
        await job.round()
    assert job.results[FULL.address].outcome is CanaryOutcome.NOT_DELIVERED
    assert (FULL.address, Evidence.BOUNCE) in job.evidence
    found = evidence_metric(config, scheduler, job)
    assert (FULL.address.split("@")[0], str(Evidence.BOUNCE)) in found
    assert canaries_in(server, FULL.address) == 0
    store.close()
