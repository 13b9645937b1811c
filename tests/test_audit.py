"""`bma-monitor audit` over the real test fleet: from a running daemon's state file with no
login and no write, and with --probe through the same lock-out rules as the daemon."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import fleet
from tests.audit_support import (
    EXPIRING_IN,
    FAR_EXPIRY,
    TRICKY_NAME,
    AuditFleet,
    read_csv,
    read_page,
    run_audit,
    write_audit_fleet,
)
from tests.daemon_process import DaemonProcess, eventually
from tests.servers.dovecot import DovecotServer, free_port

FRENCH_HEADINGS = {
    "Synthèse",
    "À traiter",
    "Échecs de connexion par protocole et motif",
    "Boîtes les plus pleines",
    "Mots de passe CERBERE expirés ou expirant bientôt",
    "Boîtes verrouillées",
    "Boîtes sans identifiant",
    "Toutes les boîtes",
}
PROGRESS_LINE = re.compile(r"^probed \d+/12 +\d+%  \d+ failed  [\d.]+/s  ETA (\d+:\d\d|\?)$")


def _files(state: Path) -> dict[str, tuple[bytes, int] | None]:
    """Bytes and mtime of the state file and its journals, None where absent."""
    found: dict[str, tuple[bytes, int] | None] = {}
    for suffix in ("", "-wal", "-journal"):
        path = Path(f"{state}{suffix}")
        found[suffix] = (path.read_bytes(), path.stat().st_mtime_ns) if path.exists() else None
    return found


def _rows_settled(spec: AuditFleet) -> bool:
    """Every pair has a result, and the full mailbox's quota state is saved."""
    result = run_audit(spec.config, "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    full = [r for r in rows if r["address"] == fleet.address(fleet.FULL)]
    return (
        len(rows) == 12
        and all(r["reason"] != "not_probed_yet" for r in rows)
        and full[0]["quota_state"] == "full"
    )


def _check_report(spec: AuditFleet, tmp: Path, stdout: str) -> None:
    """The summary, CSV and HTML say what the fleet is, and no password is in them."""
    refused, missing = spec.refused, spec.missing
    assert "Needs action: 4 mailbox(es)\n" in stdout
    assert re.search(rf"^  {fleet.FULL} .*: 10\d% \(10\.\d MiB of 10\.0 MiB\) full$", stdout, re.M)
    assert re.search(rf"^  {refused} .*: quota|locked out", stdout, re.M)
    assert re.search(
        rf"^  {spec.expiring} .*: \S+ \({EXPIRING_IN} days left, from inventory\)$", stdout, re.M
    )
    assert re.search(r"^Locked out .*: 1$", stdout, re.M)
    assert re.search(rf"^  {missing} .*: no file .*{missing}@adm.cfwb.be.imap", stdout, re.M)

    rows = read_csv(tmp / "audit.csv")
    assert set(rows) == {(local, p) for local in spec.locals for p in ("imap", "pop3")}
    full = rows[(fleet.FULL, "imap")]
    assert full["establishment"] == TRICKY_NAME and full["fase"] == fleet.FULL[2:]
    assert full["login_ok"] == "true" and full["reason"] == "ok"
    # QUOTA counts in KiB: the reading is the usage rounded up to the next KiB.
    used = int(full["quota_used_bytes"])
    assert 0 <= used - fleet.expected_usage(fleet.FULL) < 1024
    assert int(full["quota_limit_bytes"]) == fleet.TEN_MIB
    assert float(full["quota_ratio"]) == pytest.approx(used / fleet.TEN_MIB, abs=1e-4)
    assert full["quota_state"] == "full" and full["needs_action"] == "true"
    assert "quota full" in full["actions"]
    assert rows[(fleet.NEARLY_FULL, "imap")]["quota_state"] == "warning"
    refused_rows = [rows[(refused, p)] for p in ("imap", "pop3")]
    assert all(r["locked_out"] == "true" and r["login_ok"] == "false" for r in refused_rows)
    assert {r["reason"] for r in refused_rows} == {"auth_failed"}
    absent = rows[(missing, "imap")]
    assert absent["credential_missing"] == "true" and absent["reason"] == "credential_missing"
    assert absent["needs_action"] == "true" and absent["locked_out"] == "false"
    expiring = rows[(spec.expiring, "imap")]
    assert expiring["password_days_left"] == str(EXPIRING_IN)
    assert expiring["password_expiry_source"] == "inventory"
    assert "CERBERE password expires in 3 days" in expiring["actions"]
    for local in spec.healthy:
        for protocol in ("imap", "pop3"):
            row = rows[(local, protocol)]
            assert row["login_ok"] == "true" and row["needs_action"] == "false", row
            assert row["checked_at"] and row["quota_state"] == "ok"
    assert rows[(fleet.EMPTY, "imap")]["password_days_left"] == str(FAR_EXPIRY)

    page = read_page(tmp / "audit.html")
    assert set(page.headings) >= FRENCH_HEADINGS
    assert page.links == []  # nothing fetched from anywhere: the page stands alone
    assert any("addEventListener" in s and "data-sort" in s for s in page.scripts)
    to_do = {row[0]: row[3] for row in page.tables[0][1:]}  # the "À traiter" table
    assert set(to_do) == {fleet.FULL, refused, missing, spec.expiring}
    assert to_do[fleet.FULL] == "boîte pleine"
    assert to_do[missing] == "mot de passe de la boîte manquant"
    assert to_do[spec.expiring] == f"mot de passe CERBERE expire dans {EXPIRING_IN} jours"
    everything = page.tables[-1]
    assert everything[0][:3] == ["Boîte", "Établissement", "FASE"]
    assert sorted((r[0], r[5]) for r in everything[1:]) == sorted(
        (local, p) for local in spec.locals for p in ("imap", "pop3")
    )
    assert [r[1] for r in everything[1:] if r[0] == fleet.FULL] == [TRICKY_NAME] * 2
    # Reasons in French, each with its code as the metrics and alerts spell it.
    refused_reasons = {r[7] for r in everything[1:] if r[0] == refused}
    assert refused_reasons == {"mot de passe refusé (auth_failed)"}
    assert {r[7] for r in everything[1:] if r[0] in spec.healthy} == {"connexion réussie (ok)"}
    html = (tmp / "audit.html").read_text()
    assert TRICKY_NAME not in html and "&lt;Les &quot;Tilleuls&quot;&gt; &amp; Cie" in html

    for text in (stdout, (tmp / "audit.csv").read_text(), html):
        for local in spec.locals:
            assert fleet.password(local) not in text


def _audit_and_check(spec: AuditFleet, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run audit with both reports, expect exit status 1, and check what it wrote."""
    result = run_audit(
        spec.config, *extra, "--csv", str(tmp / "audit.csv"), "--html", str(tmp / "audit.html")
    )
    assert result.returncode == 1, result.stderr
    _check_report(spec, tmp, result.stdout)
    return result


def test_audit_reads_a_running_daemons_state_and_never_writes_it(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    """Audit reads the state file while the daemon runs and after it stops; its report is
    right, and the file's bytes, mtime and WAL are the same before and after an audit."""
    refused, missing = fleet.SPARES[52], fleet.SPARES[53]
    port = free_port()
    spec = write_audit_fleet(
        tmp_path,
        dovecot,
        refused,
        missing,
        probing={"interval": "1s", "timeout": "900ms"},
        extra={"http": {"listen": f"127.0.0.1:{port}"}, "logging": {"format": "json"}},
    )
    state = tmp_path / "state.db"
    daemon = DaemonProcess(spec.config, port, bad=refused)
    try:
        eventually(lambda: _rows_settled(spec), timeout=30)
        _audit_and_check(spec, tmp_path)
        assert daemon.process.poll() is None  # still running, still fine
    finally:
        assert daemon.stop() == 0

    before = _files(state)
    _audit_and_check(spec, tmp_path)
    after = _files(state)
    assert after[""] == before[""]  # the database: same bytes, same mtime
    assert after["-journal"] is None
    wal_before = len(before["-wal"][0]) if before["-wal"] else 0
    assert (len(after["-wal"][0]) if after["-wal"] else 0) == wal_before  # no WAL growth
    assert dovecot.auth_attempts(fleet.address(refused)) == 1


def test_audit_probe_probes_every_mailbox_with_plain_progress_lines(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    """--probe probes the whole fleet (stderr not a TTY: plain progress lines), reports it,
    and a second --probe keeps the lock-out: the refused password went out once."""
    refused, missing = fleet.SPARES[54], fleet.SPARES[55]
    spec = write_audit_fleet(tmp_path, dovecot, refused, missing)
    first = _audit_and_check(spec, tmp_path, "--probe")
    lines = first.stderr.splitlines()
    assert "\r" not in first.stderr and "\x1b" not in first.stderr
    assert lines[-1].startswith("probed 12/12, 4 failed, in ")
    steps = [line for line in lines[:-1] if PROGRESS_LINE.match(line)]
    assert steps == lines[:-1] and 1 <= len(steps) <= 11
    assert steps[-1].startswith("probed 12/12 100%")

    second = _run_in_pty(spec.config)
    assert second[0] == 1
    bar = second[1]
    assert "\r[" in bar and "12/12 100%" in bar and "ETA" in bar and "/s" in bar
    assert re.search(r"\[#{10,}\] 12/12 100%  4 failed", bar)
    assert dovecot.auth_attempts(fleet.address(refused)) == 1


def _run_in_pty(config: Path) -> tuple[int, str]:
    """`audit --probe` with stderr on a pseudo-terminal: its exit status and what it drew."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "monitor", "audit", "--probe", "--config", str(config)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=slave,
    )
    os.close(slave)
    drawn = bytearray()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            drawn += chunk
        elif process.poll() is not None:
            break
    os.close(master)
    return process.wait(timeout=10), drawn.decode(errors="replace")


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (None, "does not exist"),
        (b"", "the file is empty"),
        (b"not a database at all, just text\n" * 10, "not an SQLite database"),
        ("old", "schema version 1, older than this bma-monitor's"),
    ],
)
def test_audit_refuses_a_state_file_it_cannot_read(
    tmp_path: Path, content: bytes | str | None, said: str
) -> None:
    """A missing, empty, foreign or old-schema state file is exit status 2 and a clear
    message; audit creates nothing and changes nothing."""
    config = fleet.write_config(tmp_path, None, port=1, mailboxes=[fleet.EMPTY])
    state = tmp_path / "state.db"
    if content == "old":
        import sqlite3

        db = sqlite3.connect(state)
        db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB)")
        db.execute("PRAGMA user_version = 1")
        db.commit()
        db.close()
    elif isinstance(content, bytes):
        state.write_bytes(content)
    before = sorted(p.name for p in tmp_path.iterdir())
    snapshot = _files(state)
    result = run_audit(config)
    assert result.returncode == 2
    assert said in result.stderr and result.stderr.startswith("state error: ")
    assert result.stdout == ""
    assert _files(state) == snapshot
    if content is None:
        assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_audit_usage_errors_exit_2(tmp_path: Path) -> None:
    """A bad --within or an unreadable configuration is exit status 2."""
    config = fleet.write_config(tmp_path, None, port=1, mailboxes=[fleet.EMPTY])
    assert run_audit(config, "--within", "-3").returncode == 2
    broken = tmp_path / "broken.yaml"
    broken.write_text("servers: [\n")
    result = run_audit(broken)
    assert result.returncode == 2 and "configuration error" in result.stderr


def test_audit_all_shards_reports_the_whole_fleet_from_each_shards_state_file(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    """Each shard probes its own share into its own state file; `--all-shards` reads them
    all and reports the whole fleet once, as an unsharded audit would."""
    refused, missing = fleet.SPARES[60], fleet.SPARES[61]
    spec = write_audit_fleet(tmp_path, dovecot, refused, missing)
    shares = []
    for index in (0, 1):
        result = run_audit(spec.config, "--probe", "--shard", f"{index}/2", "--json")
        assert result.returncode in (0, 1), result.stderr
        shares.append({json.loads(line)["address"] for line in result.stdout.splitlines()})
        assert (tmp_path / f"state.shard-{index}.db").exists()
    assert not shares[0] & shares[1]
    assert shares[0] | shares[1] == {fleet.address(local) for local in spec.locals}

    _audit_and_check(spec, tmp_path, "--all-shards", "--shard", "0/2")
    assert not (tmp_path / "state.db").exists()  # no state file of the whole fleet appeared
    assert dovecot.auth_attempts(fleet.address(refused)) == 1

    # --all-shards needs a count, and probing stays each shard's own.
    unsharded = run_audit(spec.config, "--all-shards")
    assert unsharded.returncode == 2 and "needs the shard count" in unsharded.stderr
    probing = run_audit(spec.config, "--all-shards", "--shard", "1/2", "--probe")
    assert probing.returncode == 2 and "leave out --all-shards" in probing.stderr
