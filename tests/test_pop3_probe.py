"""The POP3 probe against a real Dovecot: TLS modes, refusals, STAT, the session lock,
the lock-out guard, and read-only sessions."""

from __future__ import annotations

import asyncio
import ssl
import time

import pytest

from monitor.config.model import EndpointConfig, TlsMode
from monitor.credentials import Secret
from monitor.probes.pop3 import PROBER, Phase, check_pop3_server, probe_pop3
from monitor.probes.pop3_session import Pop3Session
from monitor.probes.readonly import ForbiddenCommand
from monitor.probes.registry import prober
from monitor.probes.result import ProbeResult, Protocol, QuotaSource, Reason
from monitor.probes.tls import client_context
from tests import fleet
from tests.servers.dovecot import DovecotServer, free_port

DEADLINE = 10.0
TLS_MODES = [TlsMode.NONE, TlsMode.STARTTLS, TlsMode.IMPLICIT]


def endpoint(server: DovecotServer, tls: TlsMode) -> EndpointConfig:
    """The server's POP3 endpoint in a TLS mode, verified with the server's own CA."""
    port = server.pop3s_port if tls is TlsMode.IMPLICIT else server.pop3_port
    plain = EndpointConfig(
        host="127.0.0.1", port=port, tls=tls, connect_timeout=3, command_timeout=5
    )
    if tls is TlsMode.NONE:
        return plain
    return plain.model_copy(update={"ca_file": server.ca_file, "tls_server_name": "localhost"})


async def probe(
    server: EndpointConfig,
    local: str,
    secret: str | None = None,
    *,
    deadline: float = DEADLINE,
    context: ssl.SSLContext | None = None,
    before_secret: object = None,
) -> ProbeResult:
    """Probe one fleet mailbox over POP3."""
    return await probe_pop3(
        server,
        fleet.address(local),
        Secret(secret if secret is not None else fleet.password(local)),
        context=context or client_context(server),
        deadline=deadline,
        before_secret=before_secret,  # type: ignore[arg-type]
    )


@pytest.mark.parametrize("tls", TLS_MODES)
async def test_login_and_stat_over_each_tls_mode(dovecot: DovecotServer, tls: TlsMode) -> None:
    """A good password logs in over plain, STLS and implicit TLS, and STAT gives the inbox's
    count and size as Dovecot itself reports them."""
    result = await probe(endpoint(dovecot, tls), fleet.NEARLY_FULL)
    assert result.reason is Reason.OK, result.detail
    assert result.protocol is Protocol.POP3
    assert result.quota is not None
    status = dovecot.mailbox_status(fleet.address(fleet.NEARLY_FULL))
    assert (result.quota.messages, result.quota.used_bytes) == (status["messages"], status["vsize"])
    assert result.quota.source is QuotaSource.POP3_STAT
    assert result.quota.limit_bytes is None
    timed = {Phase.CONNECT, Phase.GREETING, Phase.CAPA, Phase.LOGIN, Phase.STAT, Phase.QUIT}
    if tls is not TlsMode.NONE:
        timed.add(Phase.TLS)
    assert set(result.durations) == timed
    if tls is TlsMode.NONE:
        assert result.tls is None
    else:
        assert result.tls is not None and result.tls.version.startswith("TLSv1.")
        assert result.tls.cert_not_after is not None and result.tls.cert_not_after > time.time()


@pytest.mark.parametrize("local", [fleet.EMPTY, fleet.NEARLY_FULL, fleet.FOLDERS])
async def test_stat_is_the_inbox_as_doveadm_counts_it(dovecot: DovecotServer, local: str) -> None:
    """STAT's octets are the inbox's virtual size (messages with CRLF line ends, as stored
    here), doveadm's vsize; other folders are not counted."""
    result = await probe(endpoint(dovecot, TlsMode.NONE), local)
    status = dovecot.mailbox_status(fleet.address(local))
    assert result.quota is not None, result.quota_error
    assert (result.quota.messages, result.quota.used_bytes) == (status["messages"], status["vsize"])
    inbox = sum(
        count * size for folder, count, size in fleet.CONTENT.get(local, []) if folder == "INBOX"
    )
    assert result.quota.used_bytes == inbox
    if local == fleet.FOLDERS:
        assert result.quota.used_bytes < fleet.expected_usage(local)


@pytest.mark.parametrize(
    ("local", "secret", "reason", "detail"),
    [
        (fleet.SPARES[2], "wrong password", Reason.AUTH_FAILED, "[AUTH] Authentication failed."),
        # Dovecot's pop3-login answers an expired password exactly as a wrong one: [AUTH]
        # and its stock text. Only IMAP's [EXPIRED] tells them apart.
        (fleet.EXPIRED, None, Reason.AUTH_FAILED, "[AUTH] Authentication failed."),
        (fleet.DISABLED, None, Reason.ACCOUNT_DISABLED, "[AUTH] Login disabled for this user"),
    ],
)
async def test_login_refusals_are_named(
    dovecot: DovecotServer, local: str, secret: str | None, reason: Reason, detail: str
) -> None:
    """A refusal is named from Dovecot's reply, after one attempt, with no password in it."""
    address = fleet.address(local)
    attempts = dovecot.auth_attempts(address)
    result = await probe(endpoint(dovecot, TlsMode.IMPLICIT), local, secret)
    assert (result.reason, result.detail) == (reason, detail)
    assert result.failed_phase is Phase.LOGIN
    assert result.reason.is_definitive_auth_failure
    assert result.quota is None
    # One attempt; a disabled account's passes the password check, so count attempts.
    assert dovecot.auth_attempts(address) == attempts + 1
    sent = secret if secret is not None else fleet.password(local)
    assert sent not in repr(result)


async def test_locked_mailbox_is_in_use(pop3_locking: DovecotServer) -> None:
    """While the school's client holds the POP3 lock, the probe's login is told [IN-USE]
    (after Dovecot's 10 s lock wait): the server answered, the password is not at fault."""
    local = fleet.NEARLY_FULL
    reader, writer = await asyncio.open_connection(pop3_locking.host, pop3_locking.pop3_port)
    try:
        assert (await reader.readline()).startswith(b"+OK")
        for command in (f"USER {fleet.address(local)}", f"PASS {fleet.password(local)}"):
            writer.write(command.encode() + b"\r\n")
            assert (await reader.readline()).startswith(b"+OK")
        # Dovecot answers only after its lock wait: a shorter command timeout sees a timeout.
        patient = endpoint(pop3_locking, TlsMode.NONE).model_copy(update={"command_timeout": 15})
        started = time.monotonic()
        result = await probe(patient, local, deadline=20)
        assert result.reason is Reason.IN_USE, result.detail
        assert result.failed_phase is Phase.LOGIN
        assert "[IN-USE]" in result.detail
        assert not result.reason.is_definitive_auth_failure
        assert time.monotonic() - started < 15
    finally:
        writer.close()
    # Once the other session is gone the mailbox is free again.
    assert (await probe(endpoint(pop3_locking, TlsMode.NONE), local)).reason is Reason.OK


class GuardRefusal(Exception):
    """What the lock-out guard raises to stop a login."""


async def test_guard_refusal_sends_no_password(dovecot: DovecotServer) -> None:
    """When the guard refuses, its error ends the probe and Dovecot sees no attempt."""
    address = fleet.address(fleet.SPARES[3])
    attempts = dovecot.auth_attempts(address)

    async def refuse() -> None:
        raise GuardRefusal

    with pytest.raises(GuardRefusal):
        await probe(endpoint(dovecot, TlsMode.NONE), fleet.SPARES[3], before_secret=refuse)
    assert dovecot.auth_attempts(address) == attempts


async def test_guard_is_asked_once_per_login(dovecot: DovecotServer) -> None:
    """The guard is awaited once, and the login follows it."""
    address = fleet.address(fleet.EMPTY)
    attempts = dovecot.auth_attempts(address)
    asked: list[int] = []

    async def allow() -> None:
        asked.append(dovecot.auth_attempts(address))

    result = await probe(endpoint(dovecot, TlsMode.NONE), fleet.EMPTY, before_secret=allow)
    assert result.reason is Reason.OK
    assert asked == [attempts]
    assert dovecot.auth_attempts(address) == attempts + 1


@pytest.mark.parametrize("tls", TLS_MODES)
async def test_server_check_needs_no_credential(dovecot: DovecotServer, tls: TlsMode) -> None:
    """The health check connects, secures and reads greeting and CAPA, and logs in as nobody."""
    server = endpoint(dovecot, tls)
    result = await check_pop3_server(server, context=client_context(server), deadline=DEADLINE)
    assert result.reason is Reason.OK, result.detail
    assert set(result.durations) <= PROBER.reach_phases | {Phase.QUIT}
    assert Phase.LOGIN not in result.durations
    assert (result.tls is None) == (tls is TlsMode.NONE)


async def test_connection_refused() -> None:
    """A closed port is connect_refused in the connect phase, for probe and check alike."""
    closed = EndpointConfig(
        host="127.0.0.1", port=free_port(), tls=TlsMode.NONE, connect_timeout=3, command_timeout=5
    )
    for result in (
        await probe(closed, fleet.EMPTY),
        await check_pop3_server(closed, context=None, deadline=DEADLINE),
    ):
        assert (result.reason, result.failed_phase) == (Reason.CONNECT_REFUSED, Phase.CONNECT)


@pytest.mark.parametrize("tls", [TlsMode.STARTTLS, TlsMode.IMPLICIT])
async def test_untrusted_certificate(dovecot: DovecotServer, tls: TlsMode) -> None:
    """A certificate from an unknown CA is a tls_error in the TLS phase; no password is sent."""
    local = fleet.SPARES[4]
    attempts = dovecot.auth_attempts(fleet.address(local))
    result = await probe(endpoint(dovecot, tls), local, context=ssl.create_default_context())
    assert (result.reason, result.failed_phase) == (Reason.TLS_ERROR, Phase.TLS)
    assert "certificate" in result.detail
    assert dovecot.auth_attempts(fleet.address(local)) == attempts


async def test_probes_leave_the_mailbox_untouched(dovecot: DovecotServer) -> None:
    """Probes, QUIT included, change no message, flag or folder."""
    address = fleet.address(fleet.FOLDERS)
    before = dovecot.maildir_snapshot(address)
    for tls in TLS_MODES:
        assert (await probe(endpoint(dovecot, tls), fleet.FOLDERS)).reason is Reason.OK
    assert dovecot.maildir_snapshot(address) == before


async def test_gate_stops_forbidden_commands_before_the_server(dovecot: DovecotServer) -> None:
    """A logged-in session cannot send DELE, RETR or a command smuggled after a line break;
    the session stays in step (nothing was sent) and the maildir is as it was after QUIT."""
    local = fleet.NEARLY_FULL
    address = fleet.address(local)
    before = dovecot.maildir_snapshot(address)
    session = Pop3Session(dovecot.host, dovecot.pop3_port, "localhost")
    try:
        await session.connect()
        await session.read_greeting()
        assert (await session.auth_plain(address, fleet.password(local))).ok
        for name, args in [("DELE", ("1",)), ("RETR", ("1",)), ("NOOP", ("\r\nDELE 1",))]:
            with pytest.raises(ForbiddenCommand):
                await session.command(name, *args)
        stat = await session.stat()
        assert stat.ok and stat.text.startswith(b"9 ")
        await session.quit()
    finally:
        session.close()
    assert dovecot.maildir_snapshot(address) == before


def test_registered_as_the_pop3_prober() -> None:
    """The registry hands out this module's prober for POP3, with LOGIN as the phase that
    sends the mailbox password."""
    found = prober(Protocol.POP3)
    assert found is PROBER
    assert found.phases == tuple(Phase)
    assert found.auth_phase is Phase.LOGIN
