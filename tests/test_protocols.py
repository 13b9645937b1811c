"""IMAP, POP3 and SMTP AUTH together: one lock-out per credential, rows per protocol."""

from __future__ import annotations

import json
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.cli import main
from monitor.config import load_config
from monitor.probes.result import Protocol, QuotaSource, Reason
from monitor.state import logins
from monitor.state.store import StateStore
from tests import fleet
from tests.servers.dovecot import DovecotServer, write_certificate
from tests.servers.smtp import SmtpServer, SmtpUser
from tests.test_scheduler import FAST, metrics, run_for, scheduler_for

CERBERE_REFUSED = fleet.SPARES[32]
MAILBOX_REFUSED = fleet.SPARES[33]
ALL_GOOD = fleet.SPARES[34]
SMTP_USERS = (CERBERE_REFUSED, MAILBOX_REFUSED, ALL_GOOD, fleet.EMPTY)


@pytest.fixture(scope="module")
def submission(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SmtpServer]:
    """An SMTP submission server (implicit TLS) knowing the fleet's CERBERE passwords."""
    certs = tmp_path_factory.mktemp("submission-certs")
    write_certificate(certs)
    users = [SmtpUser(fleet.address(local), fleet.cerbere_password(local)) for local in SMTP_USERS]
    with SmtpServer(certs, users, tls="implicit") as server:
        yield server


def three_protocols(dovecot: DovecotServer, submission: SmtpServer) -> dict[str, Any]:
    """IMAP and POP3 on Dovecot, SMTP AUTH on the submission server."""
    return {
        "imap": {},
        "pop3": {"port": dovecot.pop3_port},
        "smtp": {
            "port": submission.port,
            "tls": "implicit",
            "ca_file": str(submission.ca_file),
            "tls_server_name": "localhost",
        },
    }


async def test_a_refused_cerbere_password_locks_smtp_only_and_is_tried_once(
    dovecot: DovecotServer, submission: SmtpServer, tmp_path: Path
) -> None:
    """Over cycles and a restart the wrong CERBERE password is sent once; the mailbox's own
    password keeps working over IMAP; a new `.cerbere` file is tried at the next cycle."""
    local = CERBERE_REFUSED
    path = fleet.write_config(
        tmp_path,
        dovecot,
        "none",
        [local],
        protocols={"imap": {}, "smtp": three_protocols(dovecot, submission)["smtp"]},
        cerbere={local: "not-the-cerbere-password"},
        probing={**FAST, "intervals": {"smtp": "1s"}},
    )
    imap_before = dovecot.auth_attempts(fleet.address(local))
    scheduler, _ = scheduler_for(load_config(path))
    await run_for(scheduler, 3.5)
    assert submission.attempts(fleet.address(local)) == 1
    status = scheduler.view().mailboxes[fleet.address(local)]
    smtp, imap = status.probe(Protocol.SMTP), status.probe(Protocol.IMAP)
    assert smtp.result is not None and smtp.result.reason is Reason.AUTH_FAILED
    assert smtp.lockout is not None and smtp.lockout.protocol is Protocol.SMTP
    assert imap.lockout is None and imap.result is not None and imap.result.login_ok
    assert dovecot.auth_attempts(fleet.address(local)) - imap_before >= 3

    restarted, store = scheduler_for(load_config(path))
    await run_for(restarted, 2.5)
    assert submission.attempts(fleet.address(local)) == 1
    assert set(logins.load_lockouts(store)) == {(fleet.address(local), "cerbere")}
    samples = metrics(restarted)
    locked = {lb["protocol"]: v for lb, v in samples["bma_mailbox_auth_locked"]}
    assert locked == {"imap": 0.0, "smtp": 1.0}

    secret = tmp_path / "credentials" / f"{fleet.address(local)}.cerbere"
    secret.write_text(fleet.cerbere_password(local) + "\n")
    again, store = scheduler_for(load_config(path))
    await again.sweep()  # one probe per protocol, as at the next cycle
    assert submission.attempts(fleet.address(local)) == 2
    smtp = again.view().mailboxes[fleet.address(local)].probe(Protocol.SMTP)
    assert smtp.result is not None and smtp.result.login_ok and smtp.lockout is None
    assert logins.load_lockouts(store) == {}


async def test_a_mailbox_password_refused_over_one_protocol_is_not_tried_over_the_other(
    dovecot: DovecotServer, submission: SmtpServer, tmp_path: Path
) -> None:
    """IMAP and POP3 send the same password: refused by either, it is sent once in all,
    over cycles and a restart; SMTP, with its own password, goes on."""
    local = MAILBOX_REFUSED
    path = fleet.write_config(
        tmp_path,
        dovecot,
        "none",
        [local],
        passwords={local: "not-the-mailbox-password"},
        protocols=three_protocols(dovecot, submission),
        cerbere={local: fleet.cerbere_password(local)},
        probing={**FAST, "intervals": {"smtp": "1s"}},
    )
    before = dovecot.auth_attempts(fleet.address(local))
    scheduler, _ = scheduler_for(load_config(path))
    await run_for(scheduler, 3.5)
    restarted, store = scheduler_for(load_config(path))
    await run_for(restarted, 2.5)
    # Dovecot counts IMAP and POP3 logins alike: one attempt, whichever protocol made it.
    assert dovecot.auth_attempts(fleet.address(local)) - before == 1
    assert submission.attempts(fleet.address(local)) >= 4
    (lockout,) = logins.load_lockouts(store).values()
    assert lockout.secret == "imap" and lockout.protocol in (Protocol.IMAP, Protocol.POP3)
    status = restarted.view().mailboxes[fleet.address(local)]
    assert status.probe(Protocol.IMAP).lockout == status.probe(Protocol.POP3).lockout == lockout
    assert status.probe(Protocol.SMTP).lockout is None
    samples = metrics(restarted)
    locked = {lb["protocol"]: v for lb, v in samples["bma_mailbox_auth_locked"]}
    assert locked == {"imap": 1.0, "pop3": 1.0, "smtp": 0.0}


def test_probe_json_has_a_row_per_protocol_and_metrics_a_series_per_protocol(
    dovecot: DovecotServer,
    submission: SmtpServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`probe --json` gives IMAP, POP3 and SMTP rows, each with its protocol and reason; a
    mailbox without a CERBERE password is not SMTP-probed and says so."""
    with_cerbere, without = ALL_GOOD, fleet.NEARLY_FULL
    path = fleet.write_config(
        tmp_path,
        dovecot,
        "none",
        [with_cerbere, without],
        protocols=three_protocols(dovecot, submission),
        cerbere={with_cerbere: fleet.cerbere_password(with_cerbere)},
    )
    assert main(["probe", "--config", str(path), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    found = {(row["mailbox"], row["protocol"]): row for row in rows}
    assert list(found) == [
        (with_cerbere, "imap"),
        (with_cerbere, "pop3"),
        (with_cerbere, "smtp"),
        (without, "imap"),
        (without, "pop3"),
        (without, "smtp"),
    ]
    for protocol in ("imap", "pop3", "smtp"):
        assert found[(with_cerbere, protocol)]["reason"] == "ok"
        assert found[(with_cerbere, protocol)]["login_ok"] is True
    assert found[(without, "smtp")]["reason"] == "no_credential"
    assert ".cerbere" in found[(without, "smtp")]["detail"]
    # Every row gives the mailbox's best reading: IMAP's QUOTA covers the whole mailbox,
    # where POP3's STAT counts the inbox alone against no limit of the server's.
    for protocol in ("imap", "pop3", "smtp"):
        row = found[(without, protocol)]
        assert row["quota_source"] == "imap_quota"
        assert row["quota_level"] == "warning" and row["quota_limit_bytes"] == fleet.TEN_MIB
    # What the daemon will restore and export is the whole mailbox's reading too.
    store = StateStore.open(load_config(path).state.path)
    kept = store.load_mailboxes()[fleet.address(without)].quota
    store.close()
    assert kept is not None and kept.source is QuotaSource.IMAP_QUOTA

    assert main(["probe", "--config", str(path), "--json", "--protocol", "smtp"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(row["mailbox"], row["protocol"]) for row in rows] == [
        (with_cerbere, "smtp"),
        (without, "smtp"),
    ]


def test_probe_of_a_protocol_no_mailbox_uses_is_a_usage_error(
    dovecot: DovecotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Asking for SMTP where no mailbox is SMTP-probed says so instead of printing nothing."""
    path = fleet.write_config(tmp_path, dovecot, "none", [fleet.EMPTY])
    assert main(["probe", "--config", str(path), "--protocol", "smtp"]) == 2
    assert "no selected mailbox is probed over smtp" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["probe", "--config", str(path), "--protocol", "ftp"])
    assert exited.value.code == 2
    assert "expected some of imap, pop3, smtp (got 'ftp')" in capsys.readouterr().err


async def test_tls_certificate_expiry_and_version_come_from_the_probes_handshakes(
    dovecot: DovecotServer, submission: SmtpServer, tmp_path: Path
) -> None:
    """Each endpoint's certificate expiry (the earliest of its verified chain) and TLS
    version are exported from what the probes saw, per server and protocol."""
    local = ALL_GOOD
    protocols = three_protocols(dovecot, submission)
    protocols["imap"] = {"tls": "implicit"}
    path = fleet.write_config(
        tmp_path,
        dovecot,
        "none",
        [local],
        protocols=protocols,
        cerbere={local: fleet.cerbere_password(local)},
    )
    scheduler, _ = scheduler_for(load_config(path))
    await scheduler.sweep()
    samples = metrics(scheduler)
    expiry = {
        lb["protocol"]: value
        for lb, value in samples["bma_server_tls_cert_expiry_timestamp_seconds"]
    }
    # POP3 runs in plain text here: no handshake, no figure.
    assert set(expiry) == {"imap", "smtp"}
    assert expiry["imap"] == earliest_expiry(dovecot.ca_file.parent)
    assert expiry["smtp"] == earliest_expiry(submission.ca_file.parent)
    versions = {lb["protocol"]: lb["version"] for lb, _ in samples["bma_server_tls_version_info"]}
    assert versions == {"imap": "TLSv1.3", "smtp": "TLSv1.3"}


def earliest_expiry(certs: Path) -> float:
    """The soonest notAfter among a test CA and the server certificate it signed."""
    found = []
    for name in ("ca.pem", "cert.pem"):
        decoded = ssl._ssl._test_decode_cert(str(certs / name))  # type: ignore[attr-defined]
        found.append(ssl.cert_time_to_seconds(decoded["notAfter"]))
    return float(min(found))
