"""`check` finds a broken template; `notify preview` renders the mail the job would send."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.cli import main
from monitor.notify.templates import shipped_folder
from tests import fleet

LOCAL = "ec000301"


def write(tmp_path: Path, **sections: Any) -> Path:
    """One mailbox expiring on 9 June 2026, with a contact, and extra sections."""
    path = fleet.write_config(tmp_path, None, "none", [LOCAL], port=1)
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    entry = document["mailboxes"][0]
    entry |= {"password_expires": "2026-06-09", "name": "Athénée <Royal> & Co", "contact": "d@x.be"}
    document |= sections
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    return path


def test_check_names_the_template_line_and_the_unknown_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A template naming a variable the mails do not have fails `check`, not the 08:00 run."""
    templates = tmp_path / "templates"
    shutil.copytree(shipped_folder(), templates)
    text = templates / "expiry-warning.txt"
    text.write_text(text.read_text() + "\nVotre directeur : $directeur\n")
    path = write(tmp_path, notify={"templates": "templates"})
    assert main(["check", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    line = text.read_text().count("\n")
    assert f"notify.templates: {text}:{line}: unknown variable $directeur" in err


def test_preview_renders_both_mails_in_french_with_the_true_days_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The BMA's and the contact's mails, as on 4 June 2026 (5 days left), sending nothing."""
    path = write(tmp_path, notify={"sender": "ETNIC <noreply@etnic.be>"})
    address = fleet.address(LOCAL)
    assert (
        main(["notify", "preview", LOCAL, "--config", str(path), "--at", "2026-06-04", "--json"])
        == 0
    )
    mails = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [m["audience"] for m in mails] == ["bma", "contact"]
    bma, contact = mails
    assert bma["headers"]["To"] == address and contact["headers"]["To"] == "d@x.be"
    assert bma["headers"]["Auto-Submitted"] == "auto-generated"
    assert bma["headers"]["Message-ID"] == f"<expiry.{LOCAL}.20260609.5.bma@etnic.be>"
    assert "expire le mardi 9 juin 2026, dans 5 jours." in bma["text"]
    assert "Athénée &lt;Royal&gt; &amp; Co" in bma["html"]
    assert "02 800 10 10" in bma["text"] and "am.cfwb.be" in bma["text"]
    assert address in contact["text"]
    assert main(["outbox", "--config", str(path), "--json"]) == 0
    assert capsys.readouterr().out == ""  # a preview queues nothing
    assert dt.date(2026, 6, 9).weekday() == 1  # a Tuesday: "mardi" above is right
