"""SMTP reply reading without sockets: reasons, the one mechanism, scrubbing, the registry."""

from __future__ import annotations

import base64
import socket
import ssl

import pytest
from aiosmtplib.errors import SMTPResponseException, SMTPServerDisconnected

from monitor.credentials import SecretKind
from monitor.probes import registry, smtp
from monitor.probes.readonly import ForbiddenCommand
from monitor.probes.result import Protocol, Reason
from monitor.probes.smtp_replies import (
    MASK,
    auth_secret_forms,
    choose_mechanism,
    classify_auth_reply,
    scrub,
    without_auth,
)
from monitor.probes.smtp_session import ProtocolMismatch, ReplyRefused

SECRET = "Cerbère-2025!Xq7"
USER = "ec000001@adm.cfwb.be"


@pytest.mark.parametrize(
    ("code", "text", "reason"),
    [
        (235, "2.7.0 Authentication successful", Reason.OK),
        (535, "5.7.8 Authentication credentials invalid", Reason.AUTH_FAILED),
        (535, "5.7.3 Authentication unsuccessful", Reason.AUTH_FAILED),
        (535, "5.7.8 Authentication failed: password EXPIRED", Reason.PASSWORD_EXPIRED),
        (432, "4.7.12 A password transition is needed", Reason.PASSWORD_EXPIRED),
        (525, "5.7.13 User account disabled", Reason.ACCOUNT_DISABLED),
        (534, "5.7.9 Authentication mechanism is too weak", Reason.AUTH_MECHANISM_REFUSED),
        (504, "5.5.4 Unrecognized authentication type", Reason.AUTH_MECHANISM_REFUSED),
        (538, "5.7.11 Encryption required", Reason.PROTOCOL_ERROR),
        (501, "5.5.2 Can't decode base64", Reason.PROTOCOL_ERROR),
        (421, "4.7.0 Too many connections", Reason.SERVER_ERROR),
        (421, "4.4.2 Idle timeout expired", Reason.SERVER_ERROR),
        (454, "4.7.0 Temporary authentication failure", Reason.SERVER_ERROR),
        (554, "5.7.8 Error: authentication failed", Reason.AUTH_FAILED),
        (554, "5.7.13 Account locked", Reason.ACCOUNT_DISABLED),
        (550, "5.7.30 Basic authentication is not supported", Reason.SERVER_ERROR),
        (554, "Transaction failed", Reason.SERVER_ERROR),
        (250, "OK", Reason.PROTOCOL_ERROR),
    ],
)
def test_auth_replies_name_their_reason(code: int, text: str, reason: Reason) -> None:
    """The basic code decides, then an expiry in a permanent refusal, then the enhanced code;
    a 4xx is never the password's fault, even when it says "expired"."""
    assert classify_auth_reply(code, text) is reason


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        (["LOGIN", "PLAIN"], "PLAIN"),
        (["CRAM-MD5", "login"], "LOGIN"),
        (["CRAM-MD5", "XOAUTH2"], None),
        ([], None),
    ],
)
def test_one_mechanism_is_chosen(offered: list[str], chosen: str | None) -> None:
    """PLAIN when offered, else LOGIN, else none: never a list to try in turn."""
    assert choose_mechanism(offered) == chosen


def test_without_auth_names_the_keywords() -> None:
    """The detail of a server without AUTH lists what its EHLO offered."""
    text = without_auth({"size": "33554432", "starttls": "", "8bitmime": ""})
    assert "no AUTH before STARTTLS" in text
    assert "SIZE 33554432, STARTTLS, 8BITMIME" in text
    assert "AUTH CRAM-MD5" in without_auth({"auth": "CRAM-MD5"})


def test_secret_forms_cover_every_encoding_sent() -> None:
    """The raw secret, LOGIN's base64 of it and PLAIN's base64 payload are all masked."""
    login = base64.b64encode(SECRET.encode()).decode()
    plain = base64.b64encode(f"\0{USER}\0{SECRET}".encode()).decode()
    forms = auth_secret_forms(USER, SECRET)
    text = scrub(f"no {SECRET} / {login} / AUTH PLAIN {plain} for {USER}", forms)
    assert text == f"no {MASK} / {MASK} / AUTH PLAIN {MASK} for {USER}"
    assert auth_secret_forms(USER, "") == ()


def test_an_echo_cut_short_is_masked_too() -> None:
    """A server that repeats only part of the base64 payload leaves no piece of it."""
    plain = base64.b64encode(f"\0{USER}\0{SECRET}".encode()).decode()
    text = scrub(f"535 5.7.8 bad AUTH PLAIN {plain[:-9]}", auth_secret_forms(USER, SECRET))
    assert text == f"535 5.7.8 bad AUTH PLAIN {MASK}"
    assert "Authentication" in scrub("535 Authentication", auth_secret_forms(USER, SECRET))


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (TimeoutError(), Reason.TIMEOUT),
        (ssl.SSLCertVerificationError(1, "x"), Reason.TLS_ERROR),
        (ssl.SSLError(1, "wrong version number"), Reason.TLS_ERROR),
        (ReplyRefused("EHLO", 421, "4.7.0 later"), Reason.SERVER_ERROR),
        (ProtocolMismatch("server does not offer STARTTLS"), Reason.PROTOCOL_ERROR),
        (SMTPResponseException(-1, "Malformed SMTP response line"), Reason.PROTOCOL_ERROR),
        (ConnectionRefusedError(), Reason.CONNECT_REFUSED),
        (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), Reason.DNS_ERROR),
        (SMTPServerDisconnected("Connection lost"), Reason.CONNECTION_CLOSED),
        (OSError(113, "No route to host"), Reason.CONNECT_REFUSED),
    ],
)
def test_exceptions_become_reasons(error: Exception, reason: Reason) -> None:
    """Every transport and reply failure has a reason and a phase in its detail."""
    found, detail = smtp.classify_exception(error, smtp.Phase.EHLO)
    assert found is reason
    assert detail


@pytest.mark.parametrize("bug", [ValueError("bug"), KeyError("bug"), ForbiddenCommand("MAIL")])
def test_bugs_are_not_reasons(bug: Exception) -> None:
    """An exception no server causes is raised again, for the scheduler to report."""
    with pytest.raises(type(bug)):
        smtp.classify_exception(bug, smtp.Phase.AUTH)


def test_the_registry_knows_smtp() -> None:
    """SMTP is plugged in with the CERBERE password and AUTH as the phase sending it."""
    prober = registry.prober(Protocol.SMTP)
    assert prober is smtp.PROBER
    assert prober.secret is SecretKind.CERBERE
    assert prober.auth_phase == "auth"
    assert prober.phases == ("connect", "tls", "greeting", "ehlo", "auth", "quit")
