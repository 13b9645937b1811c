"""Why a mailbox needs action, worded in English (summary, CSV, JSON) and in French (the
HTML page ops mail). Reason codes stay as the metrics and logs spell them."""

from __future__ import annotations

from dataclasses import dataclass

from monitor.canary.evidence import Evidence
from monitor.credentials import SecretKind
from monitor.fullness.states import QuotaLevel

_STATE_FR = {
    QuotaLevel.CRITICAL: "boîte presque pleine (critique)",
    QuotaLevel.FULL: "boîte pleine",
}
_EVIDENCE_FR = {
    Evidence.QUOTA: "quota",
    Evidence.REJECTION: "courrier refusé",
    Evidence.BOUNCE: "avis de non-remise",
}
_SECRET_FR = {
    SecretKind.MAILBOX: "mot de passe de la boîte",
    SecretKind.CERBERE: "mot de passe CERBERE",
}


@dataclass(frozen=True, slots=True)
class Action:
    """One reason to act, in both languages."""

    en: str
    fr: str


def login_failed(protocol: str, reason: str) -> Action:
    """A login that failed other than by the school's own client holding the mailbox."""
    return Action(f"{protocol} login failed: {reason}", f"échec de connexion {protocol} : {reason}")


def locked_out(protocol: str, reason: str) -> Action:
    """A credential refused for good: not sent again until it changes."""
    return Action(f"locked out ({reason} over {protocol})", f"verrouillée ({reason} en {protocol})")


def credential_missing(secret: SecretKind) -> Action:
    """A required secret that cannot be read."""
    return Action(f"{secret.label} missing", f"{_SECRET_FR[secret]} manquant")


def quota(level: QuotaLevel) -> Action:
    """A quota state close to refusing mail, or refusing it."""
    return Action(f"quota {level}", _STATE_FR.get(level, str(level)))


def full_evidence(found: tuple[Evidence, ...]) -> Action:
    """Mail to the mailbox was refused as full, or bounced so."""
    return Action(
        "full: " + ", ".join(str(e) for e in found),
        "pleine : " + ", ".join(_EVIDENCE_FR[e] for e in found),
    )


def forecast_full(days: float) -> Action:
    """The usage trend reaches the limit within the horizon asked."""
    shown = f"{days:.1f}"
    return Action(f"forecast full in {shown} days", f"pleine d'ici {shown.replace('.', ',')} jours")


def cerbere_expired() -> Action:
    """The CERBERE password expired: SMTP no longer works."""
    return Action("CERBERE password expired", "mot de passe CERBERE expiré")


def cerbere_expiring(days: int) -> Action:
    """The CERBERE password expires within the first warning's number of days."""
    return Action(
        f"CERBERE password expires in {days} days", f"mot de passe CERBERE expire dans {days} jours"
    )
