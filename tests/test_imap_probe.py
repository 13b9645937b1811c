"""The IMAP probe against a real Dovecot: TLS modes, refusals, quota sources, read-only."""

from __future__ import annotations

import asyncio
import gc
import ssl
from pathlib import Path
from typing import Any

import pytest

from monitor.config import Config
from monitor.credentials import Secret
from monitor.probes.contract import ProbeOptions
from monitor.probes.imap import Phase, check_imap_server, probe_imap
from monitor.probes.result import ProbeResult, QuotaSource, Reason
from monitor.probes.tls import client_context
from monitor.quota import QuotaLevel, effective_limit, quota_level
from tests import fleet
from tests.servers.dovecot import DovecotServer, free_port

TLS_MODES = ["none", "starttls", "implicit"]


async def probe(
    config: Config, local: str, secret: str | None = None, *, estimate: bool = True
) -> ProbeResult:
    """Probe one fleet mailbox with the config's only server."""
    server = config.servers["dovecot"].imap
    return await probe_imap(
        server,
        fleet.address(local),
        Secret(secret if secret is not None else fleet.password(local)),
        context=client_context(server),
        deadline=config.probing.timeout,
        options=ProbeOptions(estimate_usage=estimate, fetch_chunk=config.probing.quota_fetch_chunk),
    )


@pytest.mark.parametrize("tls", TLS_MODES)
async def test_login_and_quota_over_each_tls_mode(
    dovecot: DovecotServer, tmp_path: Path, tls: str
) -> None:
    """A good password logs in over plain, STARTTLS and implicit TLS, and QUOTA is read."""
    config = fleet.config_for(tmp_path, dovecot, tls)
    result = await probe(config, fleet.NEARLY_FULL)
    assert result.reason is Reason.OK, result.detail
    assert result.quota is not None
    assert result.quota.source is QuotaSource.IMAP_QUOTA
    assert result.quota.limit_bytes == fleet.TEN_MIB
    # QUOTA counts in KiB; Dovecot rounds up.
    assert result.quota.used_bytes == -(-fleet.expected_usage(fleet.NEARLY_FULL) // 1024) * 1024
    timed = {Phase.CONNECT, Phase.GREETING, Phase.LOGIN, Phase.QUOTA, Phase.LOGOUT}
    if tls != "none":
        timed.add(Phase.TLS)
    assert set(result.durations) == timed


@pytest.mark.parametrize(
    ("local", "secret", "reason"),
    [
        (fleet.SPARES[0], "wrong password", Reason.AUTH_FAILED),
        (fleet.EXPIRED, None, Reason.PASSWORD_EXPIRED),
        (fleet.DISABLED, None, Reason.ACCOUNT_DISABLED),
    ],
)
async def test_login_refusals_are_named(
    dovecot: DovecotServer, tmp_path: Path, local: str, secret: str | None, reason: Reason
) -> None:
    """RFC 5530 codes tell a wrong password, an expired one and a disabled account apart."""
    config = fleet.config_for(tmp_path, dovecot, "implicit", [local])
    result = await probe(config, local, secret)
    assert result.reason is reason
    assert result.failed_phase is Phase.LOGIN
    assert result.reason.is_definitive_auth_failure
    assert result.quota is None


@pytest.mark.parametrize(
    ("local", "level"),
    [
        (fleet.EMPTY, QuotaLevel.OK),
        (fleet.NEARLY_FULL, QuotaLevel.WARNING),
        (fleet.FULL, QuotaLevel.FULL),
    ],
)
async def test_quota_levels(
    dovecot: DovecotServer, tmp_path: Path, local: str, level: QuotaLevel
) -> None:
    """Empty, nearly full and full mailboxes are classified against the server's limit."""
    config = fleet.config_for(tmp_path, dovecot, "none", [local])
    result = await probe(config, local)
    assert result.quota is not None
    assert quota_level(result.quota, config.quota) is level


async def test_unlimited_mailbox_is_estimated_against_the_configured_limit(
    dovecot: DovecotServer, tmp_path: Path
) -> None:
    """With QUOTA but no storage limit, usage is summed and measured against 2 GiB."""
    config = fleet.config_for(tmp_path, dovecot, "none", [fleet.UNLIMITED])
    result = await probe(config, fleet.UNLIMITED)
    assert result.reason is Reason.OK
    assert result.quota is not None
    assert result.quota.limit_bytes is None
    assert result.quota.used_bytes == fleet.expected_usage(fleet.UNLIMITED)
    assert effective_limit(result.quota, config.quota) == 2 * 1024**3


@pytest.mark.parametrize("local", [fleet.EMPTY, fleet.NEARLY_FULL, fleet.FOLDERS])
async def test_usage_without_quota_is_the_sum_of_message_sizes(
    exchange_like: DovecotServer, tmp_path: Path, local: str
) -> None:
    """Without QUOTA or STATUS=SIZE (Exchange), every folder's message sizes are summed."""
    config = fleet.config_for(
        tmp_path, exchange_like, "implicit", [local], probing={"quota_fetch_chunk": 3}
    )
    result = await probe(config, local)
    assert result.reason is Reason.OK
    assert result.quota is not None
    assert result.quota.source is QuotaSource.MESSAGE_SIZES
    assert result.quota.used_bytes == fleet.expected_usage(local)
    assert result.quota.limit_bytes is None


async def test_usage_from_status_size(status_size: DovecotServer, tmp_path: Path) -> None:
    """Where STATUS=SIZE is offered, folder sizes come from STATUS instead of FETCH."""
    config = fleet.config_for(tmp_path, status_size, "none", [fleet.FOLDERS])
    result = await probe(config, fleet.FOLDERS)
    assert result.quota is not None
    assert result.quota.source is QuotaSource.STATUS_SIZE
    assert result.quota.used_bytes == fleet.expected_usage(fleet.FOLDERS)
    assert result.quota.messages == 11


async def test_no_estimate_when_not_due(exchange_like: DovecotServer, tmp_path: Path) -> None:
    """Between estimates, a probe without QUOTA logs in and reads nothing more."""
    config = fleet.config_for(tmp_path, exchange_like, "none", [fleet.FOLDERS])
    result = await probe(config, fleet.FOLDERS, estimate=False)
    assert result.reason is Reason.OK
    assert result.quota is None


async def test_probes_leave_the_mailbox_untouched(
    exchange_like: DovecotServer, tmp_path: Path
) -> None:
    """A full probe with a size estimate changes no message, flag or folder."""
    before = exchange_like.maildir_snapshot(fleet.address(fleet.FOLDERS))
    config = fleet.config_for(tmp_path, exchange_like, "none", [fleet.FOLDERS])
    for _ in range(2):
        assert (await probe(config, fleet.FOLDERS)).reason is Reason.OK
    assert exchange_like.maildir_snapshot(fleet.address(fleet.FOLDERS)) == before


async def test_connection_refused(tmp_path: Path) -> None:
    """A closed port is reported as connect_refused, in the connect phase."""
    config = fleet.config_for(tmp_path, None, "none", port=free_port())
    result = await probe(config, fleet.EMPTY)
    assert result.reason is Reason.CONNECT_REFUSED
    assert result.failed_phase is Phase.CONNECT


async def test_untrusted_certificate(dovecot: DovecotServer, tmp_path: Path) -> None:
    """A certificate from an unknown CA is a tls_error, and no password is sent."""
    config = fleet.config_for(tmp_path, dovecot, "implicit", [fleet.SPARES[1]])
    server = config.servers["dovecot"].imap
    attempts = dovecot.auth_attempts(fleet.address(fleet.SPARES[1]))
    result = await probe_imap(
        server,
        fleet.address(fleet.SPARES[1]),
        Secret(fleet.password(fleet.SPARES[1])),
        context=ssl.create_default_context(),
        deadline=5,
        options=ProbeOptions(estimate_usage=False),
    )
    assert result.reason is Reason.TLS_ERROR
    assert "certificate" in result.detail
    assert dovecot.auth_attempts(fleet.address(fleet.SPARES[1])) == attempts


@pytest.mark.parametrize("failure", ["untrusted certificate", "TLS to the plain port"])
async def test_tls_failure_leaves_no_unretrieved_error(
    dovecot: DovecotServer, tmp_path: Path, failure: str
) -> None:
    """A failed handshake leaves no error behind for asyncio to report as never retrieved."""
    config = fleet.config_for(tmp_path, dovecot, "implicit")
    server = config.servers["dovecot"].imap
    context = client_context(server)
    if failure == "untrusted certificate":
        context = ssl.create_default_context()
    else:
        server = server.model_copy(update={"port": dovecot.imap_port})
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, report: reports.append(report))
    try:
        result = await probe_imap(
            server,
            fleet.address(fleet.EMPTY),
            Secret(fleet.password(fleet.EMPTY)),
            context=context,
            deadline=5,
            options=ProbeOptions(estimate_usage=False),
        )
        # Let the aborted transport report its loss, then collect what the probe left.
        await asyncio.sleep(0.1)
        gc.collect()
    finally:
        loop.set_exception_handler(previous)
    assert result.reason is Reason.TLS_ERROR, result.detail
    assert [report["message"] for report in reports] == []


async def test_wrong_certificate_name(dovecot: DovecotServer, tmp_path: Path) -> None:
    """A certificate for another name is a tls_error."""
    config = fleet.config_for(tmp_path, dovecot, "starttls")
    server = config.servers["dovecot"].imap.model_copy(
        update={"tls_server_name": "imap.example.org"}
    )
    result = await probe_imap(
        server,
        fleet.address(fleet.EMPTY),
        Secret("x"),
        context=client_context(server),
        deadline=5,
        options=ProbeOptions(estimate_usage=False),
    )
    assert result.reason is Reason.TLS_ERROR


async def test_server_check_needs_no_credential(dovecot: DovecotServer, tmp_path: Path) -> None:
    """The outage health check connects, negotiates TLS and reads the greeting only."""
    config = fleet.config_for(tmp_path, dovecot, "starttls")
    server = config.servers["dovecot"].imap
    result = await check_imap_server(server, context=client_context(server), deadline=5)
    assert result.reason is Reason.OK
    assert Phase.LOGIN not in result.durations
