"""Why a mailbox needs action, worded in English (summary, CSV, JSON) and in French (the
HTML page ops mail). Reason codes stay as the metrics and logs spell them; the page shows
each with its French label, so a reader can match it to an alert or a log line."""

from __future__ import annotations

from dataclasses import dataclass

from monitor.canary.evidence import Evidence
from monitor.credentials import SecretKind
from monitor.fullness.states import QuotaLevel
from monitor.probes.result import Reason

NOT_PROBED_YET = "not_probed_yet"  # the daemon has not reached this mailbox yet
NO_CREDENTIAL = "no_credential"  # an optional secret (CERBERE) is absent: not probed

_REASON_FR = {
    Reason.OK: "connexion réussie",
    Reason.DNS_ERROR: "nom du serveur introuvable",
    Reason.CONNECT_REFUSED: "connexion refusée par le serveur",
    Reason.CONNECTION_CLOSED: "connexion coupée par le serveur",
    Reason.TIMEOUT: "pas de réponse à temps",
    Reason.TLS_ERROR: "échec du chiffrement (TLS)",
    Reason.AUTH_FAILED: "mot de passe refusé",
    Reason.PASSWORD_EXPIRED: "mot de passe expiré",
    Reason.ACCOUNT_DISABLED: "compte désactivé",
    Reason.SERVER_ERROR: "erreur du serveur",
    Reason.PROTOCOL_ERROR: "réponse du serveur inattendue",
    Reason.IN_USE: "boîte ouverte par un autre logiciel (POP3)",
    Reason.LOGIN_DELAY: "connexions trop rapprochées (POP3)",
    Reason.AUTH_MECHANISM_REFUSED: "méthode d'authentification refusée",
    Reason.CREDENTIAL_MISSING: "mot de passe absent de la configuration",
    Reason.INTERNAL_ERROR: "erreur interne du moniteur",
    NOT_PROBED_YET: "pas encore vérifiée",
    NO_CREDENTIAL: "pas de mot de passe CERBERE : non vérifiée",
}
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


def reason_fr(reason: str) -> str:
    """A reason code in French, the code beside it: "mot de passe refusé (auth_failed)"."""
    label = _REASON_FR.get(reason)
    return f"{label} ({reason})" if label else reason


def login_failed(protocol: str, reason: str) -> Action:
    """A login that failed other than by the school's own client holding the mailbox."""
    return Action(
        f"{protocol} login failed: {reason}", f"échec de connexion {protocol} : {reason_fr(reason)}"
    )


def locked_out(protocol: str, reason: str) -> Action:
    """A credential refused for good: not sent again until it changes."""
    return Action(
        f"locked out ({reason} over {protocol})",
        f"verrouillée en {protocol} : {reason_fr(reason)}",
    )


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
