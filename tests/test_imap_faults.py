"""Faults a real server will not produce on demand, from a scripted server: each becomes a
named failure, quickly, never a hang or a crash."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from monitor.credentials import Secret
from monitor.probes.imap import UsagePlan, probe_imap, tls_context
from monitor.probes.result import Phase, ProbeResult, Reason
from tests import fleet
from tests.servers import scripted_imap
from tests.servers.scripted_imap import Behaviour, ScriptedImapServer

DEADLINE = 3.0


async def probe_scripted(
    tmp_path: Path, behaviour: Behaviour, secret: str = "pw"
) -> tuple[ProbeResult, float]:
    """Probe a scripted server; return the result and how long it took."""
    async with ScriptedImapServer(behaviour) as server:
        config = fleet.config_for(tmp_path, None, "none", port=server.port)
        endpoint = config.servers["dovecot"]
        started = time.monotonic()
        result = await probe_imap(
            fleet.address(fleet.EMPTY),
            endpoint,
            Secret(secret),
            context=tls_context(endpoint),
            deadline=DEADLINE,
            usage=UsagePlan(estimate=True),
        )
        return result, time.monotonic() - started


@pytest.mark.parametrize(
    ("behaviour", "reason", "phase"),
    [
        (scripted_imap.bye_greeting, Reason.SERVER_ERROR, Phase.GREETING),
        (scripted_imap.garbage_greeting, Reason.PROTOCOL_ERROR, Phase.GREETING),
        (scripted_imap.close_after_greeting, Reason.CONNECTION_CLOSED, Phase.LOGIN),
        (scripted_imap.close_during_login, Reason.CONNECTION_CLOSED, Phase.LOGIN),
    ],
)
async def test_fault_is_reported_at_once(
    tmp_path: Path, behaviour: Behaviour, reason: Reason, phase: Phase
) -> None:
    """A BYE greeting, garbage, or a dropped connection fails the probe without waiting."""
    result, elapsed = await probe_scripted(tmp_path, behaviour)
    assert result.reason is reason, result.detail
    assert result.failed_phase is phase
    assert elapsed < DEADLINE / 2


async def test_silent_server_times_out_at_the_deadline(tmp_path: Path) -> None:
    """A server that accepts and never speaks costs one deadline, then is a timeout."""
    result, elapsed = await probe_scripted(tmp_path, scripted_imap.silent)
    assert result.reason is Reason.TIMEOUT
    assert result.failed_phase is Phase.GREETING
    assert elapsed < DEADLINE + 1


async def test_flood_reply_does_not_break_the_probe(tmp_path: Path) -> None:
    """A 50,000-line reply kills only that connection: login stands, the quota error is named."""
    result, elapsed = await probe_scripted(tmp_path, scripted_imap.flood_after_login)
    assert result.reason is Reason.OK
    assert result.quota is None
    assert "unparseable" in result.quota_error
    assert elapsed < DEADLINE


async def test_exchange_style_refusal_is_a_wrong_password(tmp_path: Path) -> None:
    """Exchange's bare `NO LOGIN failed.` counts as a definitive authentication failure."""
    result, _ = await probe_scripted(tmp_path, scripted_imap.exchange_login_failed)
    assert result.reason is Reason.AUTH_FAILED
    assert result.detail == "LOGIN failed."


async def test_password_never_in_the_result(tmp_path: Path) -> None:
    """Whatever the server echoes, the password does not reach the result's text."""
    secret = "Echo-Me-9x!"

    async def echo_password(reader, writer) -> None:  # type: ignore[no-untyped-def]
        writer.write(b"* OK [CAPABILITY IMAP4rev1] ready\r\n")
        await writer.drain()
        line = await reader.readline()
        tag = line.split(b" ", 1)[0]
        writer.write(tag + b" NO [AUTHENTICATIONFAILED] bad password " + secret.encode() + b"\r\n")
        await writer.drain()
        await reader.read(100)

    result, _ = await probe_scripted(tmp_path, echo_password, secret)
    assert result.reason is Reason.AUTH_FAILED
    assert secret not in repr(result)
