"""The warning mail templates: what they say, how values are escaped, how bad ones fail."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest

from monitor.notify.templates import (
    Audience,
    MailValues,
    TemplateError,
    load_templates,
    shipped_folder,
)


def values(threshold: int, establishment: str = "Athénée royal de Namur") -> MailValues:
    return MailValues(
        mailbox="ec001234@adm.cfwb.be",
        establishment=establishment,
        fase="001234",
        expiry_date="mardi 9 juin 2026",
        days_left=threshold,
        days_text=f"dans {threshold} jours",
        threshold=threshold,
        contact="direction@ecole.test",
    )


@pytest.mark.parametrize("threshold", [15, 5, 1])
@pytest.mark.parametrize("audience", list(Audience))
def test_every_threshold_and_audience_carries_the_facts(audience: Audience, threshold: int) -> None:
    """Each mail names the mailbox, school, date, days left, how to check and whom to call."""
    rendered = load_templates(None).render(audience, values(threshold))
    assert "mardi 9 juin 2026" in rendered.subject
    assert f"dans {threshold} jours" in rendered.subject
    for body in (rendered.text, rendered.html):
        for fact in (
            "ec001234@adm.cfwb.be",
            "Athénée royal de Namur",
            "001234",
            "mardi 9 juin 2026",
            f"dans {threshold} jours",
            "am.cfwb.be",
            "Intervenant dans les établissements d'enseignement et PO",
            "02 800 10 10",
            "support@etnic.be",
            "lundi au vendredi, de 8h à 17h",
            "CERBERE",
        ):
            assert fact in body, (audience, fact)
        assert "$" not in body


def test_contact_mail_says_the_mailbox_gets_it_and_why_the_contact_does() -> None:
    """A full BMA bounces its own warning: the contact's mail says so; the BMA's does not."""
    templates = load_templates(None)
    contact = templates.render(Audience.CONTACT, values(5))
    own = templates.render(Audience.BMA, values(5))
    for body in (contact.text, contact.html):
        assert "envoyé à la boîte mail administrative elle-même" in body
        assert "Une boîte pleine refuse" in body
    assert "comme contact" not in own.text


def test_html_escapes_every_value_and_text_keeps_it_as_is() -> None:
    """An establishment name with markup is shown, never interpreted."""
    name = 'École <script>alert("x")</script> & Cie'
    rendered = load_templates(None).render(Audience.BMA, values(1, establishment=name))
    assert "<script>" not in rendered.html
    assert "École &lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Cie" in rendered.html
    assert name in rendered.text


def test_subject_stays_one_line() -> None:
    """A line break in a value cannot fold the Subject header into another header."""
    broken = dataclasses.replace(values(5), days_text="dans 5 jours\nBcc: x@y.test")
    rendered = load_templates(None).render(Audience.BMA, broken)
    assert "\n" not in rendered.subject
    assert "dans 5 jours Bcc: x@y.test" in rendered.subject


def copy_templates(tmp_path: Path) -> Path:
    folder = tmp_path / "templates"
    shutil.copytree(shipped_folder(), folder)
    return folder


def test_unknown_variable_names_file_line_and_name(tmp_path: Path) -> None:
    """A misspelt variable is a configuration error naming where it is, found at load."""
    folder = copy_templates(tmp_path)
    path = folder / "expiry-warning-contact.txt"
    lines = path.read_text("utf-8").splitlines()
    lines[3] = lines[3] + " ${etablissement}"
    path.write_text("\n".join(lines), "utf-8")
    with pytest.raises(TemplateError) as caught:
        load_templates(folder)
    assert f"{path}:4:" in str(caught.value)
    assert "$etablissement" in str(caught.value)


def test_lone_dollar_is_reported_with_its_line(tmp_path: Path) -> None:
    """A '$' that is no variable is reported, not left to fail at render time."""
    folder = copy_templates(tmp_path)
    path = folder / "expiry-warning.subject"
    path.write_text("Coût : 5 $ pour $mailbox\n", "utf-8")
    with pytest.raises(TemplateError, match=r"expiry-warning\.subject:1: a lone '\$'"):
        load_templates(folder)


def test_missing_and_non_utf8_files_are_reported(tmp_path: Path) -> None:
    """Each of the six files must exist and be UTF-8."""
    folder = copy_templates(tmp_path)
    (folder / "expiry-warning.html").unlink()
    with pytest.raises(TemplateError, match=r"expiry-warning\.html: template file is missing"):
        load_templates(folder)
    shutil.copy(shipped_folder() / "expiry-warning.html", folder / "expiry-warning.html")
    (folder / "expiry-warning.txt").write_bytes("ligne\nAthénée".encode("latin-1"))
    with pytest.raises(TemplateError, match=r"expiry-warning\.txt:2: not UTF-8"):
        load_templates(folder)
