"""The SMTP AUTH probe against a real aiosmtpd: TLS modes, refusals, one AUTH, read-only."""

from __future__ import annotations

import asyncio
import base64
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiosmtplib
import pytest

from monitor.config.model import EndpointConfig, TlsMode
from monitor.credentials import Secret
from monitor.probes.readonly import ForbiddenCommand
from monitor.probes.result import ProbeResult, Reason
from monitor.probes.smtp import Phase, check_smtp_server, probe_smtp
from monitor.probes.smtp_session import SmtpSession
from monitor.probes.tls import client_context
from tests.servers import smtp as scripts
from tests.servers.dovecot import free_port, write_certificate
from tests.servers.scripted_imap import ScriptedImapServer, silent
from tests.servers.smtp import SmtpServer, SmtpUser

DEADLINE = 5.0
PASSWORD = "Cerbère-2025!Xq7"  # non-ASCII: its UTF-8 base64 must be scrubbed too
GOOD = "ec000001@adm.cfwb.be"
SCRIPTED = {
    "ec000002@adm.cfwb.be": (scripts.INVALID, Reason.AUTH_FAILED),
    "ec000003@adm.cfwb.be": (scripts.EXCHANGE_REFUSED, Reason.AUTH_FAILED),
    "ec000004@adm.cfwb.be": (scripts.EXPIRED, Reason.PASSWORD_EXPIRED),
    "ec000005@adm.cfwb.be": (scripts.DISABLED, Reason.ACCOUNT_DISABLED),
    "ec000006@adm.cfwb.be": (scripts.TOO_WEAK, Reason.AUTH_MECHANISM_REFUSED),
    "ec000007@adm.cfwb.be": (scripts.TRANSITION, Reason.PASSWORD_EXPIRED),
    "ec000008@adm.cfwb.be": (scripts.BUSY, Reason.SERVER_ERROR),
}
ECHO = "po000001@adm.cfwb.be"
DROP = "po000002@adm.cfwb.be"
USERS = [
    SmtpUser(GOOD, PASSWORD),
    SmtpUser(ECHO, reply=scripts.ECHO),
    SmtpUser(DROP, reply=scripts.DROP),
    *(SmtpUser(login, reply=reply) for login, (reply, _) in SCRIPTED.items()),
]
# What the server receives from one probe, by TLS mode: no MAIL, RCPT or DATA, ever.
SEQUENCES = {
    "implicit": ["EHLO", "AUTH", "QUIT"],
    "starttls": ["EHLO", "STARTTLS", "EHLO", "AUTH", "QUIT"],
    "none": ["EHLO", "AUTH", "QUIT"],
}


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The test CA and a server certificate for localhost, shared by the module's servers."""
    directory = tmp_path_factory.mktemp("smtp-certs")
    write_certificate(directory)
    return directory


@pytest.fixture(scope="module")
def stranger_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that signed nothing the servers present."""
    directory = tmp_path_factory.mktemp("other-ca")
    write_certificate(directory)
    return directory / "ca.pem"


@pytest.fixture
def serve(certs: Path) -> Iterator[Any]:
    """Start SMTP servers for one test; all are stopped at its end."""
    started: list[SmtpServer] = []

    def start(tls: str, mechanisms: tuple[str, ...] = ("PLAIN", "LOGIN")) -> SmtpServer:
        server = SmtpServer(certs, USERS, tls=tls, mechanisms=mechanisms)
        server.start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def endpoint_of(server: SmtpServer, **overrides: Any) -> EndpointConfig:
    """The endpoint of a test server, trusting its CA."""
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "tls": server.tls,
        "ca_file": server.ca_file,
        "tls_server_name": "localhost",
        "connect_timeout": 3,
        "command_timeout": 5,
    }
    settings.update(overrides)
    return EndpointConfig(**settings)


async def probe(
    endpoint: EndpointConfig, login: str, password: str = PASSWORD, **kwargs: Any
) -> ProbeResult:
    """Probe one account with the endpoint's own TLS context."""
    kwargs.setdefault("deadline", DEADLINE)
    context = client_context(endpoint)
    return await probe_smtp(endpoint, login, Secret(password), context=context, **kwargs)


def not_after(cert: Path) -> float:
    """The certificate's expiry as Unix time, read by openssl rather than by the probe."""
    out = subprocess.run(
        ["openssl", "x509", "-enddate", "-noout", "-in", str(cert)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(ssl.cert_time_to_seconds(out.strip().removeprefix("notAfter=")))


@pytest.mark.parametrize("tls", ["implicit", "starttls", "none"])
async def test_good_password_over_each_tls_mode(serve: Any, certs: Path, tls: str) -> None:
    """The CERBERE password is accepted over 465-style, 587-style and plain submission,
    with every phase timed and the certificate's version and expiry kept."""
    server = serve(tls)
    result = await probe(endpoint_of(server), GOOD)
    assert result.reason is Reason.OK, result.detail
    assert result.failed_phase is None
    assert server.commands == SEQUENCES[tls]
    assert server.attempts(GOOD) == 1
    timed = {Phase.CONNECT, Phase.GREETING, Phase.EHLO, Phase.AUTH, Phase.QUIT}
    if tls == "none":
        assert result.tls is None
    else:
        timed.add(Phase.TLS)
        assert result.tls is not None
        assert result.tls.version in {"TLSv1.2", "TLSv1.3"}
        assert result.tls.cert_not_after == not_after(certs / "cert.pem")
    assert set(result.durations) == timed
    assert all(seconds >= 0 for seconds in result.durations.values())


async def test_tls_is_timed_apart_from_connect_on_implicit_tls(serve: Any) -> None:
    """On 465, TCP connect, the TLS handshake and the greeting are three phases, in order."""
    result = await probe(endpoint_of(serve("implicit")), GOOD)
    assert list(result.durations)[:3] == [Phase.CONNECT, Phase.TLS, Phase.GREETING]


@pytest.mark.parametrize(("login", "script"), list(SCRIPTED.items()))
async def test_each_refusal_has_its_reason(
    serve: Any, login: str, script: tuple[str, Reason]
) -> None:
    """Each reply a server gives to AUTH names its own reason, with the reply as detail."""
    reply, reason = script
    server = serve("implicit")
    result = await probe(endpoint_of(server), login)
    assert result.reason is reason
    assert result.failed_phase is Phase.AUTH
    assert result.detail == reply
    assert server.attempts(login) == 1


async def test_wrong_password_is_auth_failed(serve: Any) -> None:
    """A wrong password gets aiosmtpd's own 535 5.7.8, a definitive failure."""
    server = serve("starttls")
    result = await probe(endpoint_of(server), GOOD, "not the password")
    assert result.reason is Reason.AUTH_FAILED
    assert result.reason.is_definitive_auth_failure
    assert result.detail == scripts.INVALID


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
async def test_one_auth_after_a_refusal_though_two_mechanisms_are_offered(
    serve: Any, tls: str
) -> None:
    """With PLAIN and LOGIN offered and PLAIN refused, LOGIN is not tried: one attempt."""
    server = serve(tls)
    result = await probe(endpoint_of(server), GOOD, "not the password")
    assert result.reason is Reason.AUTH_FAILED
    assert server.commands.count("AUTH") == 1
    assert [line.split()[0] for line in server.auth_lines] == ["PLAIN"]
    assert server.attempts(GOOD) == 1


@pytest.mark.parametrize(("password", "reason"), [(PASSWORD, Reason.OK), ("x", Reason.AUTH_FAILED)])
async def test_login_is_used_when_plain_is_not_offered(
    serve: Any, password: str, reason: Reason
) -> None:
    """A server offering only LOGIN gets one AUTH LOGIN exchange."""
    server = serve("implicit", mechanisms=("LOGIN",))
    result = await probe(endpoint_of(server), GOOD, password)
    assert result.reason is reason
    assert server.auth_lines == ["LOGIN"]
    assert server.attempts(GOOD) == 1


async def test_no_usable_mechanism_is_a_protocol_error(serve: Any) -> None:
    """AUTH with neither PLAIN nor LOGIN: nothing is sent, and the detail says what is offered."""
    server = serve("implicit", mechanisms=())
    result = await probe(endpoint_of(server), GOOD)
    assert result.reason is Reason.PROTOCOL_ERROR
    assert result.failed_phase is Phase.EHLO
    assert "PLAIN or LOGIN" in result.detail
    assert server.commands == ["EHLO", "QUIT"]


async def test_auth_not_offered_before_starttls_is_a_protocol_error(serve: Any) -> None:
    """A 587 server probed without TLS offers no AUTH: protocol_error naming its keywords."""
    server = serve("starttls")
    result = await probe(endpoint_of(server, tls=TlsMode.NONE), GOOD)
    assert result.reason is Reason.PROTOCOL_ERROR
    assert result.failed_phase is Phase.EHLO
    assert "no AUTH" in result.detail
    assert "STARTTLS" in result.detail
    assert server.commands == ["EHLO", "QUIT"]
    assert server.attempts(GOOD) == 0


@pytest.mark.parametrize("mechanisms", [("PLAIN",), ("LOGIN",)])
async def test_the_secret_never_shows_in_the_result(serve: Any, mechanisms: tuple[str]) -> None:
    """A server that echoes the AUTH line and the password, raw and in base64: the result's
    detail and repr hold none of it."""
    server = serve("implicit", mechanisms=mechanisms)
    result = await probe(endpoint_of(server), ECHO)
    assert result.reason is Reason.AUTH_FAILED
    assert "refused AUTH" in result.detail  # the server's text is kept, the secret masked
    assert "********" in result.detail
    plain = base64.b64encode(b"\0" + ECHO.encode() + b"\0" + PASSWORD.encode()).decode()
    forms = [PASSWORD, base64.b64encode(PASSWORD.encode()).decode(), plain]
    for text in (result.detail, repr(result)):
        for form in forms:
            assert form not in text
            assert form[:12] not in text


@pytest.mark.parametrize("refusal", [RuntimeError("guard says no"), ConnectionRefusedError()])
async def test_lockout_guard_refusal_propagates_and_no_auth_is_sent(
    serve: Any, refusal: Exception
) -> None:
    """What before_secret raises leaves the probe as it is, even an error the probe knows,
    and the server sees no AUTH."""
    server = serve("starttls")

    async def refuse() -> None:
        raise refusal

    with pytest.raises(type(refusal)) as raised:
        await probe(endpoint_of(server), GOOD, before_secret=refuse)
    assert raised.value is refusal
    assert "AUTH" not in server.commands
    assert server.attempts(GOOD) == 0


async def test_lockout_guard_is_awaited_once_just_before_auth(serve: Any) -> None:
    """before_secret runs once, after STARTTLS and EHLO, before AUTH reaches the server."""
    server = serve("starttls")
    seen: list[list[str]] = []

    async def note() -> None:
        seen.append(server.commands)

    result = await probe(endpoint_of(server), GOOD, before_secret=note)
    assert result.reason is Reason.OK
    assert seen == [["EHLO", "STARTTLS", "EHLO"]]


async def test_a_server_that_never_greets_times_out_within_the_deadline() -> None:
    """No greeting: timeout in the greeting phase, at the probe's deadline, not later."""
    async with ScriptedImapServer(silent) as server:  # a silent listener speaks no protocol
        endpoint = EndpointConfig(host="127.0.0.1", port=server.port, tls=TlsMode.NONE)
        started = time.monotonic()
        result = await probe(endpoint, GOOD, deadline=0.5)
        elapsed = time.monotonic() - started
    assert result.reason is Reason.TIMEOUT
    assert result.failed_phase is Phase.GREETING
    assert 0.5 <= elapsed < 1.0


async def test_a_phase_is_held_to_its_own_timeout() -> None:
    """The greeting waits command_timeout, not the whole deadline."""
    async with ScriptedImapServer(silent) as server:
        endpoint = EndpointConfig(
            host="127.0.0.1", port=server.port, tls=TlsMode.NONE, command_timeout=0.3
        )
        started = time.monotonic()
        result = await probe(endpoint, GOOD, deadline=DEADLINE)
        elapsed = time.monotonic() - started
    assert result.reason is Reason.TIMEOUT
    assert 0.3 <= elapsed < 1.0


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
async def test_an_untrusted_certificate_is_a_tls_error(
    serve: Any, stranger_ca: Path, tls: str
) -> None:
    """A certificate from another CA fails the TLS phase, before any AUTH."""
    server = serve(tls)
    result = await probe(endpoint_of(server, ca_file=stranger_ca), GOOD)
    assert result.reason is Reason.TLS_ERROR
    assert result.failed_phase is Phase.TLS
    assert "certificate not trusted" in result.detail
    assert result.tls is None
    assert "AUTH" not in server.commands


async def test_nothing_listening_is_connect_refused() -> None:
    """A closed port is connect_refused in the connect phase."""
    endpoint = EndpointConfig(host="127.0.0.1", port=free_port(), tls=TlsMode.NONE)
    result = await probe(endpoint, GOOD)
    assert result.reason is Reason.CONNECT_REFUSED
    assert result.failed_phase is Phase.CONNECT


async def test_a_server_hanging_up_during_auth_is_connection_closed(serve: Any) -> None:
    """The server drops the connection instead of answering AUTH."""
    server = serve("implicit")
    result = await probe(endpoint_of(server), DROP)
    assert result.reason is Reason.CONNECTION_CLOSED
    assert result.failed_phase is Phase.AUTH


@pytest.mark.parametrize("tls", ["implicit", "starttls"])
async def test_check_greets_without_any_credential(serve: Any, tls: str) -> None:
    """The server check goes as far as EHLO and QUIT: no AUTH, no attempt counted."""
    server = serve(tls)
    endpoint = endpoint_of(server)
    result = await check_smtp_server(endpoint, context=client_context(endpoint), deadline=DEADLINE)
    assert result.reason is Reason.OK, result.detail
    assert result.address == f"127.0.0.1:{server.port}"
    assert server.commands == [c for c in SEQUENCES[tls] if c != "AUTH"]
    assert Phase.AUTH not in result.durations
    assert result.tls is not None


async def test_check_of_a_server_that_is_down() -> None:
    """The check names the failure like a probe does."""
    endpoint = EndpointConfig(host="127.0.0.1", port=free_port(), tls=TlsMode.NONE)
    result = await check_smtp_server(endpoint, context=None, deadline=DEADLINE)
    assert result.reason is Reason.CONNECT_REFUSED


async def test_aiosmtplib_cannot_send_mail_over_a_probe_connection(serve: Any) -> None:
    """aiosmtplib's own API, driven over the probe's connection, is stopped at MAIL, VRFY
    and DATA before they reach the server, while EHLO and QUIT pass the gate."""
    server = serve("none")
    session = SmtpSession("127.0.0.1", server.port, "localhost")
    await session.connect()
    await session.read_greeting()
    client = aiosmtplib.SMTP(local_hostname="probe.test")
    client.protocol = session.protocol
    client.transport = session.protocol.transport
    try:
        await client.ehlo()
        with pytest.raises(ForbiddenCommand):
            await client.sendmail("a@adm.cfwb.be", ["b@adm.cfwb.be"], "Subject: x\r\n\r\nx")
        with pytest.raises(ForbiddenCommand):
            await client.vrfy("b@adm.cfwb.be")
        with pytest.raises(ForbiddenCommand):
            await client.data("Subject: x\r\n\r\nx")
        with pytest.raises(ForbiddenCommand):
            session.protocol.write(b"RSET\r\n")  # even an allowed line must pass the gate
        await client.quit()
    finally:
        session.close()
    assert server.commands == ["EHLO", "QUIT"]


async def test_a_server_asking_again_after_the_secret_gets_nothing_more() -> None:
    """A 334 after the whole AUTH PLAIN is a protocol error; nothing else is sent, not even
    QUIT, which the server would take for another answer."""
    received: list[bytes] = []
    done = asyncio.Event()

    async def asks_again(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 scripted ESMTP\r\n")
        while line := await reader.readline():
            received.append(line.split(b" ")[0].strip().upper())
            if line.upper().startswith(b"EHLO"):
                writer.write(b"250-scripted\r\n250 AUTH PLAIN LOGIN\r\n")
            else:
                writer.write(b"334 \r\n")
        done.set()

    async with ScriptedImapServer(asks_again) as server:
        endpoint = EndpointConfig(host="127.0.0.1", port=server.port, tls=TlsMode.NONE)
        result = await probe(endpoint, GOOD)
        await asyncio.wait_for(done.wait(), DEADLINE)
    assert result.reason is Reason.PROTOCOL_ERROR
    assert result.failed_phase is Phase.AUTH
    assert received == [b"EHLO", b"AUTH"]


@pytest.mark.parametrize(
    ("greeting", "reason"),
    [
        (b"554 5.3.2 No SMTP service here\r\n", Reason.SERVER_ERROR),
        (b"\x16\x03\x01garbage\r\n", Reason.PROTOCOL_ERROR),
    ],
)
async def test_a_bad_greeting_is_named(greeting: bytes, reason: Reason) -> None:
    """A refusing greeting is the server's error; bytes that are not SMTP, a protocol error."""

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(greeting)
        await reader.read()

    async with ScriptedImapServer(greet) as server:
        endpoint = EndpointConfig(host="127.0.0.1", port=server.port, tls=TlsMode.NONE)
        result = await probe(endpoint, GOOD)
    assert result.reason is reason
    assert result.failed_phase is Phase.GREETING
