"""The command line: `check` and `probe`, as an operator runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from monitor.cli import EXIT_OK, EXIT_PROBE_FAILED, EXIT_USAGE, main
from tests import fleet
from tests.servers.dovecot import DovecotServer

TWO_GIB = 2 * 1024**3


def json_rows(output: str) -> dict[str, dict[str, object]]:
    """`probe --json` output, by mailbox."""
    rows = [json.loads(line) for line in output.splitlines()]
    return {str(row["mailbox"]): row for row in rows}


def test_probe_json_reports_usage_without_quota(
    exchange_like: DovecotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """On a server without QUOTA, usage is the sum of message sizes against 2 GiB."""
    path = fleet.write_config(
        tmp_path, exchange_like, "starttls", [fleet.FOLDERS, fleet.NEARLY_FULL]
    )
    assert main(["probe", "--config", str(path), "--json"]) == EXIT_OK
    rows = json_rows(capsys.readouterr().out)
    for local in (fleet.FOLDERS, fleet.NEARLY_FULL):
        row = rows[local]
        assert row["address"] == fleet.address(local)
        assert row["login_ok"] is True and row["reason"] == "ok"
        assert row["quota_used_bytes"] == fleet.expected_usage(local)
        assert row["quota_limit_bytes"] == TWO_GIB
        assert row["quota_source"] == "message_sizes"


def test_probe_table(
    dovecot: DovecotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The table shows one line per mailbox with usage against the server's limit."""
    path = fleet.write_config(tmp_path, dovecot, "implicit", [fleet.FULL, fleet.EMPTY])
    assert main(["probe", "--config", str(path), fleet.FULL, fleet.address(fleet.EMPTY)]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split()
    assert header[:5] == ["MAILBOX", "KIND", "SERVER", "PROTOCOL", "RESULT"]
    assert header[5:] == ["USED", "LIMIT", "USE", "LEVEL", "SOURCE", "TIME", "DETAIL"]
    full = lines[1].split()
    assert full[:5] == [fleet.FULL, "ec", "dovecot", "imap", "ok"]
    assert "10.0 MiB" in lines[1] and "105%  full" in lines[1] and "imap_quota" in lines[1]
    assert lines[2].split()[0] == fleet.EMPTY
    assert "0%    ok" in lines[2]


def test_probe_wrong_password_then_locked(
    dovecot: DovecotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused password fails the command; the next run does not try it again."""
    local = fleet.SPARES[30]
    path = fleet.write_config(tmp_path, dovecot, "none", [local], passwords={local: "wrong"})
    assert main(["probe", "--config", str(path), "--json"]) == EXIT_PROBE_FAILED
    assert json_rows(capsys.readouterr().out)[local]["reason"] == "auth_failed"
    assert main(["probe", "--config", str(path), "--json"]) == EXIT_PROBE_FAILED
    row = json_rows(capsys.readouterr().out)[local]
    assert row["locked_out"] is True and row["reason"] == "auth_failed"
    assert dovecot.auth_attempts(fleet.address(local)) == 1


def test_probe_json_rows_share_one_schema(
    dovecot: DovecotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ok, refused, locked-out and credential-less rows carry the same keys, in one order."""
    refused, missing = fleet.SPARES[28], fleet.SPARES[29]
    path = fleet.write_config(tmp_path, dovecot, "none", [fleet.EMPTY, refused, missing])
    (tmp_path / "credentials" / f"{fleet.address(missing)}.imap").unlink()
    assert main(["probe", "--config", str(path), "--json", refused]) == EXIT_OK
    measured = json_rows(capsys.readouterr().out)[refused]

    (tmp_path / "credentials" / f"{fleet.address(refused)}.imap").write_text("wrong\n")
    assert main(["probe", "--config", str(path), "--json", refused]) == EXIT_PROBE_FAILED
    failed = json_rows(capsys.readouterr().out)[refused]
    assert main(["probe", "--config", str(path), "--json"]) == EXIT_PROBE_FAILED
    rows = json_rows(capsys.readouterr().out)

    ok, locked, no_credential = rows[fleet.EMPTY], rows[refused], rows[missing]
    assert failed["reason"] == "auth_failed" and failed["locked_out"] is False
    assert locked["reason"] == "auth_failed" and locked["locked_out"] is True
    assert no_credential["reason"] == "credential_missing"
    for row in (failed, locked, no_credential):
        assert list(row) == list(ok)
    assert locked["duration_seconds"] is None and locked["quota_error"] is None
    # Not probed now, so the row shows the last reading, and when it was taken.
    for key in ("quota_used_bytes", "quota_limit_bytes", "quota_measured_at", "quota_level"):
        assert locked[key] == measured[key] is not None
    assert no_credential["quota_used_bytes"] is None and no_credential["quota_level"] is None


def test_probe_unknown_mailbox(
    dovecot: DovecotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Asking for a mailbox that is not configured is a usage error."""
    path = fleet.write_config(tmp_path, dovecot, "none", [fleet.EMPTY])
    assert main(["probe", "--config", str(path), "ec999999"]) == EXIT_USAGE
    assert "not in the configuration: ec999999" in capsys.readouterr().err


def test_check_valid(
    dovecot: DovecotServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check` accepts a good file and warns about mailboxes without a credential."""
    path = fleet.write_config(tmp_path, dovecot, "none", [fleet.EMPTY, fleet.FULL])
    (tmp_path / "credentials" / f"{fleet.address(fleet.FULL)}.imap").unlink()
    assert main(["check", "--config", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert "valid; 2 mailboxes (2 ec, 0 po) on 1 server(s)" in out
    assert (
        "warning: 1 mailbox(es) have no usable mailbox password (<address>.imap) for imap:" in out
    )
    assert f"  {fleet.address(fleet.FULL)}: no file " in out


def test_check_invalid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`check` exits non-zero and prints every problem with file, line and path."""
    path = tmp_path / "bad.yaml"
    path.write_text("servers:\n  a: {host: x}\nprobing:\n  rate: 5\n")
    assert main(["check", "--config", str(path)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{path}:4: probing.rate: unknown key" in err
