"""The audit as one self-contained HTML page in French, for ops to mail: inline style and
script, no external asset, every value escaped, every table sortable."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from zoneinfo import ZoneInfo

from monitor.audit.actions import reason_fr
from monitor.audit.html_assets import SCRIPT, STYLE
from monitor.audit.rows import AuditRow
from monitor.audit.summary import Flagged, Summary
from monitor.audit.values import percent, size
from monitor.fullness.states import QuotaLevel

STATES = {
    QuotaLevel.OK: "ok",
    QuotaLevel.WARNING: "avertissement",
    QuotaLevel.CRITICAL: "critique",
    QuotaLevel.FULL: "pleine",
}
MAILBOX_HEADERS = ("Boîte", "Établissement", "FASE")


@dataclass(frozen=True, slots=True)
class Cell:
    """One table cell: the text shown, and the key it sorts by where the text is not it."""

    text: str
    sort: str | None = None
    numeric: bool = False
    css: str = ""


def write_html(path: Path, summary: Summary, rows: Sequence[AuditRow], zone: ZoneInfo) -> None:
    """Write the page (UTF-8)."""
    path.write_text(render(summary, rows, zone), encoding="utf-8")


def render(summary: Summary, rows: Sequence[AuditRow], zone: ZoneInfo) -> str:
    """The whole page."""
    made = dt.datetime.fromtimestamp(summary.generated_at, zone)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="fr"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>Audit des boîtes BMA</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>Audit des boîtes BMA</h1>",
        f'<p class="note">Généré le {made:%d/%m/%Y à %H:%M:%S} ({escape(zone.key)}). '
        "Cliquer sur un en-tête de colonne trie le tableau.</p>",
        *_overview(summary),
        *_failures(summary),
        *_fullness(summary, zone),
        *_expiry(summary),
        *_access(summary),
        "<h2>Toutes les boîtes</h2>",
        _all_rows(rows, zone),
        f"<script>{SCRIPT}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _overview(summary: Summary) -> Iterable[str]:
    yield "<h2>Synthèse</h2>"
    yield (
        f"<p>{summary.mailboxes} boîtes, {summary.rows} couples boîte/protocole : "
        f"{summary.probed_rows} avec un résultat, {summary.not_probed_yet} pas encore sondés. "
        f"Mails d'avertissement : {summary.outbox_pending} en attente, "
        f"{summary.outbox_failed} en échec.</p>"
    )
    if not summary.action:
        yield '<p class="ok">Rien à traiter.</p>'
        return
    yield f'<p class="bad">{len(summary.action)} boîte(s) à traiter.</p>'
    yield "<h2>À traiter</h2>"
    yield _table(
        (*MAILBOX_HEADERS, "Motifs"), [[*_who(f), Cell(f.note_fr)] for f in summary.action]
    )


def _failures(summary: Summary) -> Iterable[str]:
    yield "<h2>Échecs de connexion par protocole et motif</h2>"
    if not summary.failures:
        yield "<p>Aucun.</p>"
        return
    yield _table(
        ("Protocole", "Motif", "Nombre"),
        [[Cell(p), Cell(reason_fr(r)), _number(n)] for (p, r), n in summary.failures.items()],
    )
    yield "<h2>Échecs de connexion par serveur</h2>"
    yield _table(
        ("Serveur", "Protocole", "Nombre"),
        [[Cell(s), Cell(p), _number(n)] for (s, p), n in summary.failures_by_server.items()],
    )


def _fullness(summary: Summary, zone: ZoneInfo) -> Iterable[str]:
    yield "<h2>Boîtes les plus pleines</h2>"
    yield _table(
        (*MAILBOX_HEADERS, "Utilisé", "Limite", "Taux", "État"),
        [
            [
                *_who(f),
                _bytes(f.facts.used_bytes),
                _bytes(f.facts.limit_bytes),
                _ratio(f.facts.ratio),
                Cell(STATES.get(f.facts.quota_state, "") if f.facts.quota_state else ""),
            ]
            for f in summary.fullest
        ],
    )
    yield f"<h2>Boîtes prévues pleines d'ici {summary.within_days:g} jours</h2>"
    yield _table(
        (*MAILBOX_HEADERS, "Pleine le", "Taux"),
        [
            [*_who(f), _day(_date_of(f.facts.forecast_full_at, zone)), _ratio(f.facts.ratio)]
            for f in summary.forecast
        ],
    )


def _expiry(summary: Summary) -> Iterable[str]:
    yield "<h2>Mots de passe CERBERE expirés ou expirant bientôt</h2>"
    yield _table(
        (*MAILBOX_HEADERS, "Expiration", "Jours restants", "Source"),
        [
            [
                *_who(f),
                _day(f.facts.expiry_date),
                Cell("expiré", "-1000000", numeric=True, css="bad")
                if f.facts.expired
                else _number(f.facts.expiry_days_left),
                Cell(f.facts.expiry_source or ""),
            ]
            for f in summary.expiring
        ],
    )


def _access(summary: Summary) -> Iterable[str]:
    yield "<h2>Boîtes verrouillées</h2>"
    yield (
        "<p class=\"note\">Un mot de passe refusé n'est plus envoyé tant qu'il ne change pas "
        "(pour ne pas bloquer le compte).</p>"
    )
    yield _table(
        (*MAILBOX_HEADERS, "Détail"), [[*_who(f), Cell(f.note)] for f in summary.locked_out]
    )
    yield "<h2>Boîtes sans identifiant</h2>"
    yield _table(
        (*MAILBOX_HEADERS, "Détail"), [[*_who(f), Cell(f.note)] for f in summary.credential_missing]
    )
    yield (
        f"<p>{summary.no_cerbere} boîte(s) sans mot de passe CERBERE : "
        "pas de sonde SMTP pour elles.</p>"
    )


def _all_rows(rows: Sequence[AuditRow], zone: ZoneInfo) -> str:
    headers = (
        *MAILBOX_HEADERS,
        "Type",
        "Serveur",
        "Protocole",
        "Connexion",
        "Motif",
        "Détail",
        "Vérifié le",
        "Utilisé",
        "Limite",
        "Taux",
        "État",
        "Pleine le",
        "Expiration CERBERE",
        "Jours restants",
        "Verrouillée",
        "Identifiant manquant",
        "À traiter",
    )
    body = []
    for row in rows:
        facts = row.facts
        checked = dt.datetime.fromtimestamp(row.checked_at, zone) if row.checked_at else None
        body.append(
            [
                *_who(Flagged(row.mailbox, facts)),
                Cell(str(row.mailbox.kind)),
                Cell(row.mailbox.server),
                Cell(str(row.protocol)),
                Cell("ok", css="ok") if row.login_ok else Cell("échec" if row.failed else "-"),
                Cell(reason_fr(row.reason)),
                Cell(row.detail),
                Cell(
                    f"{checked:%d/%m/%Y %H:%M}" if checked else "",
                    checked.isoformat() if checked else "",
                ),
                _bytes(facts.used_bytes),
                _bytes(facts.limit_bytes),
                _ratio(facts.ratio),
                Cell(STATES[facts.quota_state] if facts.quota_state else ""),
                _day(_date_of(facts.forecast_full_at, zone)),
                _day(facts.expiry_date),
                _number(facts.expiry_days_left),
                Cell("oui" if row.locked_out else "non", css="bad" if row.locked_out else ""),
                Cell("oui" if row.credential_missing else "non"),
                Cell("; ".join(dict.fromkeys(action.fr for action in row.actions))),
            ]
        )
    marks = ["action" if row.needs_action else "" for row in rows]
    return _table(headers, body, marks)


def _table(
    headers: Sequence[str], rows: Sequence[Sequence[Cell]], marks: Sequence[str] = ()
) -> str:
    if not rows:
        return "<p>Aucune.</p>"
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    lines = [f'<table class="sortable"><thead><tr>{head}</tr></thead><tbody>']
    for index, cells in enumerate(rows):
        mark = marks[index] if index < len(marks) and marks[index] else ""
        opening = f'<tr class="{mark}">' if mark else "<tr>"
        lines.append(opening + "".join(_cell(c) for c in cells) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _cell(cell: Cell) -> str:
    classes = " ".join(c for c in ("num" if cell.numeric else "", cell.css) if c)
    attributes = f' class="{classes}"' if classes else ""
    if cell.sort is not None:
        attributes += f' data-sort="{escape(cell.sort)}"'
    return f"<td{attributes}>{escape(cell.text)}</td>"


def _who(flagged: Flagged) -> list[Cell]:
    mailbox = flagged.mailbox
    return [Cell(mailbox.local_part), Cell(mailbox.name), Cell(mailbox.fase)]


def _number(value: int | None) -> Cell:
    return Cell("" if value is None else str(value), numeric=True)


def _bytes(value: int | None) -> Cell:
    known = value is not None
    return Cell(size(value) if known else "", str(value) if known else "", True)


def _ratio(value: float | None) -> Cell:
    shown = percent(value) if value is not None else ""
    return Cell(shown, f"{value:.6f}" if value is not None else "", True)


def _day(day: dt.date | None) -> Cell:
    return Cell(f"{day:%d/%m/%Y}" if day else "", day.isoformat() if day else "")


def _date_of(timestamp: float | None, zone: ZoneInfo) -> dt.date | None:
    return dt.datetime.fromtimestamp(timestamp, zone).date() if timestamp is not None else None
