"""Faults a real server will not produce on demand, from a scripted POP3 server: each
becomes a named failure, quickly, never a hang, a crash or a leaked password."""

from __future__ import annotations

import base64
import time
import tracemalloc

import pytest

from monitor.config.model import EndpointConfig, TlsMode
from monitor.credentials import Secret
from monitor.probes.pop3 import Phase, probe_pop3
from monitor.probes.pop3_session import MAX_CAPA_LINES, MAX_LINE_BYTES
from monitor.probes.result import ProbeResult, Reason
from monitor.probes.tls import client_context
from tests import fleet
from tests.servers import scripted_pop3
from tests.servers.scripted import Behaviour, ScriptedServer
from tests.servers.scripted_pop3 import CAPA_USER, script

DEADLINE = 3.0
ADDRESS = fleet.address(fleet.EMPTY)
PASSWORD = 'Pa55 w\tord"x'  # a space, a tab and a quote: forms a server may echo


async def probe_scripted(
    behaviour: Behaviour,
    *,
    tls: TlsMode = TlsMode.NONE,
    command_timeout: float = 5,
    before_secret: object = None,
) -> tuple[ProbeResult, float]:
    """Probe a scripted server; return the result and how long it took."""
    async with ScriptedServer(behaviour) as server:
        endpoint = EndpointConfig(
            host="127.0.0.1",
            port=server.port,
            tls=tls,
            connect_timeout=3,
            command_timeout=command_timeout,
        )
        started = time.monotonic()
        result = await probe_pop3(
            endpoint,
            ADDRESS,
            Secret(PASSWORD),
            context=client_context(endpoint),
            deadline=DEADLINE,
            before_secret=before_secret,  # type: ignore[arg-type]
        )
        return result, time.monotonic() - started


@pytest.mark.parametrize(
    ("behaviour", "reason", "phase", "detail"),
    [
        pytest.param(
            scripted_pop3.endless_greeting,
            Reason.PROTOCOL_ERROR,
            Phase.GREETING,
            f"server line longer than {MAX_LINE_BYTES} bytes",
            id="endless-line",
        ),
        pytest.param(
            script(greeting=b"\x16\x03\x01\x02\x00garbage\xff\r\n"),
            Reason.PROTOCOL_ERROR,
            Phase.GREETING,
            "unexpected greeting",
            id="garbage-greeting",
        ),
        pytest.param(
            script(greeting=b"-ERR [SYS/TEMP] Too many connections\r\n"),
            Reason.SERVER_ERROR,
            Phase.GREETING,
            "server refused the connection: [SYS/TEMP] Too many connections",
            id="err-greeting",
        ),
        pytest.param(
            script({"CAPA": b"+OK\r\n" + b"X-FILLER\r\n" * (MAX_CAPA_LINES + 1) + b".\r\n"}),
            Reason.PROTOCOL_ERROR,
            Phase.CAPA,
            f"CAPA reply longer than {MAX_CAPA_LINES} lines",
            id="capa-flood",
        ),
        pytest.param(
            script({"CAPA": CAPA_USER, "PASS": None}),
            Reason.CONNECTION_CLOSED,
            Phase.LOGIN,
            "connection closed during login",
            id="drop-after-pass",
        ),
        pytest.param(
            script({"AUTH": None}),
            Reason.CONNECTION_CLOSED,
            Phase.LOGIN,
            "connection closed during login",
            id="drop-after-auth",
        ),
        pytest.param(
            script({"AUTH": b"+ \r\n"}),
            Reason.PROTOCOL_ERROR,
            Phase.LOGIN,
            "server asked for more after AUTH PLAIN",
            id="auth-challenge",
        ),
        pytest.param(
            script({"STLS": b"+OK Begin TLS\r\n+OK injected before the handshake\r\n"}),
            Reason.PROTOCOL_ERROR,
            Phase.TLS,
            "server sent data before the TLS handshake",
            id="stls-injection",
        ),
        pytest.param(
            script({"CAPA": CAPA_USER}),
            Reason.PROTOCOL_ERROR,
            Phase.TLS,
            "server does not offer STLS",
            id="stls-not-offered",
        ),
        pytest.param(
            script({"CAPA": b"-ERR\r\n", "STLS": b"-ERR not here\r\n"}),
            Reason.PROTOCOL_ERROR,
            Phase.TLS,
            "STLS refused: not here",
            id="stls-refused",
        ),
    ],
)
async def test_fault_is_reported_at_once(
    behaviour: Behaviour, reason: Reason, phase: Phase, detail: str
) -> None:
    """Garbage, an endless line or reply, a dropped connection or a refused STLS fails the
    probe without waiting for the deadline."""
    tls = TlsMode.STARTTLS if "STLS" in detail or "TLS handshake" in detail else TlsMode.NONE
    result, elapsed = await probe_scripted(behaviour, tls=tls)
    assert (result.reason, result.failed_phase) == (reason, phase), result.detail
    assert result.detail.startswith(detail)
    assert elapsed < DEADLINE / 2


@pytest.mark.parametrize(
    ("refusal", "reason"),
    [
        (b"-ERR [SYS/TEMP] Authentication backend down\r\n", Reason.SERVER_ERROR),
        (b"-ERR [SYS/PERM] Mailbox store unusable\r\n", Reason.SERVER_ERROR),
        (b"-ERR [LOGIN-DELAY] Wait 15 minutes between logins\r\n", Reason.LOGIN_DELAY),
        (b"-ERR [IN-USE] Mailbox locked\r\n", Reason.IN_USE),
        (b"-ERR [AUTH] Password expired\r\n", Reason.PASSWORD_EXPIRED),
        (b"-ERR [AUTH] Account is disabled.\r\n", Reason.ACCOUNT_DISABLED),
        (b"-ERR [AUTH] Authentication failed.\r\n", Reason.AUTH_FAILED),
        (b"-ERR\r\n", Reason.AUTH_FAILED),
    ],
)
@pytest.mark.parametrize("command", ["PASS", "AUTH"])
async def test_login_refusal_codes(command: str, refusal: bytes, reason: Reason) -> None:
    """RFC 2449 and 3206 codes after PASS or AUTH name the reason; a bare -ERR is taken as
    a wrong password."""
    answers = {command: refusal} | ({"CAPA": CAPA_USER} if command == "PASS" else {})
    result, _ = await probe_scripted(script(answers))
    assert (result.reason, result.failed_phase) == (reason, Phase.LOGIN)
    assert result.detail == refusal[len(b"-ERR ") : -2].decode()


async def test_refusal_of_the_user_name() -> None:
    """A server that refuses USER (unknown mailbox) is a failed login; PASS is not sent."""
    heard: list[bytes] = []
    behaviour = script({"CAPA": CAPA_USER, "USER": b"-ERR no such mailbox\r\n"}, heard=heard)
    result, _ = await probe_scripted(behaviour)
    assert (result.reason, result.failed_phase) == (Reason.AUTH_FAILED, Phase.LOGIN)
    assert not [line for line in heard if line.startswith(b"PASS")]


async def test_silent_server_times_out_at_the_deadline() -> None:
    """A server that accepts and never speaks costs one deadline, then is a timeout."""
    result, elapsed = await probe_scripted(script(greeting=None))
    assert (result.reason, result.failed_phase) == (Reason.TIMEOUT, Phase.GREETING)
    assert elapsed < DEADLINE + 1


async def test_sasl_plain_is_used_where_offered() -> None:
    """With SASL PLAIN in CAPA the password goes once, as AUTH PLAIN's initial response."""
    heard: list[bytes] = []
    result, _ = await probe_scripted(script(heard=heard))
    assert result.reason is Reason.OK
    commands = [line.split(b" ")[0] for line in heard]
    assert commands == [b"CAPA", b"AUTH", b"STAT", b"QUIT"]
    response = base64.b64decode(heard[1].split(b" ")[2])
    assert response == b"\0" + ADDRESS.encode() + b"\0" + PASSWORD.encode()


@pytest.mark.parametrize(
    "capa",
    [pytest.param(b"-ERR\r\n", id="no-capa"), pytest.param(CAPA_USER, id="no-sasl-plain")],
)
async def test_user_and_pass_where_sasl_plain_is_not_offered(capa: bytes) -> None:
    """An old server without CAPA, or one without SASL PLAIN, gets USER and PASS, and STAT
    is read as from any other."""
    heard: list[bytes] = []
    result, _ = await probe_scripted(script({"CAPA": capa}, heard=heard))
    assert result.reason is Reason.OK, result.detail
    assert heard[1:3] == [b"USER " + ADDRESS.encode(), b"PASS " + PASSWORD.encode()]
    assert result.quota is not None
    assert (result.quota.messages, result.quota.used_bytes) == (2, 3000)


async def test_no_usable_login_sends_nothing() -> None:
    """A server offering neither USER nor SASL PLAIN fails in CAPA, naming what it offers;
    the guard is not asked and no credential leaves."""
    heard: list[bytes] = []
    asked: list[bool] = []

    async def guard() -> None:
        asked.append(True)

    behaviour = script({"CAPA": b"+OK\r\nTOP\r\nSASL CRAM-MD5\r\n.\r\n"}, heard=heard)
    result, _ = await probe_scripted(behaviour, before_secret=guard)
    assert (result.reason, result.failed_phase) == (Reason.PROTOCOL_ERROR, Phase.CAPA)
    assert result.detail == "server offers neither USER nor SASL PLAIN: SASL TOP"
    assert heard == [b"CAPA"]
    assert asked == []


@pytest.mark.parametrize(
    ("stat", "quota_error"),
    [
        (b"+OK lots\r\n", "STAT reply is not 'count size': lots"),
        (b"-ERR [SYS/TEMP] Couldn't sync mailbox.\r\n", "STAT refused: [SYS/TEMP] Couldn't"),
        (None, "connection closed by server"),
    ],
)
async def test_stat_failure_after_login_is_a_quota_error(
    stat: bytes | None, quota_error: str
) -> None:
    """Once logged in the mailbox works: a STAT that fails leaves the login ok and says why
    the size is missing."""
    result, _ = await probe_scripted(script({"STAT": stat}))
    assert result.reason is Reason.OK
    assert result.quota is None
    assert result.quota_error.startswith(quota_error)


async def test_unanswered_quit_does_not_change_the_result() -> None:
    """A server that never answers QUIT costs the short QUIT timeout, not the deadline, and
    what was measured stands."""
    result, elapsed = await probe_scripted(script({"QUIT": b""}), command_timeout=0.5)
    assert result.reason is Reason.OK
    assert result.quota is not None
    assert elapsed < 1.5


def _echo(prefix: bytes) -> scripted_pop3.Answer:
    """An answer that repeats the password, or AUTH PLAIN's base64, after `prefix`."""
    return lambda arguments: prefix + arguments.removeprefix(b"PLAIN ") + b" for you\r\n"


@pytest.mark.parametrize(
    ("prefix", "reason"),
    [
        (b"-ERR [AUTH] rejected ", Reason.AUTH_FAILED),
        # The echo starts at character 196 of the detail, which is cut at 200: the cut
        # must come after the scrub, or "Pa55" would be left.
        (b"-ERR [AUTH] " + b"y" * 188 + b" ", Reason.AUTH_FAILED),
        (b"?? " + b"y" * 174 + b" ", Reason.PROTOCOL_ERROR),
    ],
)
@pytest.mark.parametrize("command", ["PASS", "AUTH"])
async def test_password_echoed_back_is_scrubbed(
    command: str, prefix: bytes, reason: Reason
) -> None:
    """A server that repeats what it was sent, the password or AUTH's base64, in a refusal
    or in garbage, leaves no form or part of the password in the result."""
    answers = {
        command: _echo(prefix),
        "CAPA": CAPA_USER if command == "PASS" else scripted_pop3.CAPA_PLAIN,
    }
    result, _ = await probe_scripted(script(answers))
    assert (result.reason, result.failed_phase) == (reason, Phase.LOGIN)
    assert "****" in result.detail
    shown = repr(result)
    encoded = base64.b64encode(b"\0" + ADDRESS.encode() + b"\0" + PASSWORD.encode()).decode()
    for form in (PASSWORD, PASSWORD.replace("\t", " "), encoded, encoded[:8], "Pa55", "ord"):
        assert form not in shown


async def test_password_echoed_in_stat_error_is_scrubbed() -> None:
    """Text after login is scrubbed too: a STAT refusal that repeats the password."""
    answers = {
        "CAPA": CAPA_USER,
        "STAT": b"-ERR [SYS/TEMP] no STAT for " + PASSWORD.encode() + b"\r\n",
    }
    result, _ = await probe_scripted(script(answers))
    assert result.reason is Reason.OK
    assert result.quota_error == "STAT refused: [SYS/TEMP] no STAT for ********"


async def test_endless_line_is_cut_at_the_line_cap() -> None:
    """A line without end is refused once it passes the cap: the probe holds a few hundred
    KiB at most, not the 32 MiB the server would send."""
    tracemalloc.start()
    try:
        result, _ = await probe_scripted(scripted_pop3.endless_greeting)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.detail == f"server line longer than {MAX_LINE_BYTES} bytes"
    # Client and scripted server alike; a reader that kept everything would pass 32 MiB.
    assert peak < 2 * 1024 * 1024
