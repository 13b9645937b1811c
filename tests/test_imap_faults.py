"""Faults a real server will not produce on demand, from a scripted server: each becomes a
named failure, quickly, never a hang or a crash."""

from __future__ import annotations

import logging
import time
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from monitor.credentials import Secret
from monitor.probes.contract import ProbeOptions
from monitor.probes.imap import Phase, probe_imap
from monitor.probes.imap_session import MAX_LINE_BYTES, MAX_REPLY_LINES
from monitor.probes.result import ProbeResult, Reason
from monitor.probes.tls import client_context
from tests import fleet
from tests.servers import scripted_imap
from tests.servers.scripted_imap import Behaviour, ScriptedImapServer

DEADLINE = 3.0
# For floods that end on a cap: reading 100,000 lines takes seconds while memory is traced.
FLOOD_DEADLINE = 30.0
MIB = 1024 * 1024


@dataclass
class TracedMemory:
    """Bytes Python allocated in a block (client and scripted server alike): the peak, and
    what was still held at its end, with no garbage collection forced."""

    peak: int = 0
    after: int = 0


@contextmanager
def traced_memory() -> Iterator[TracedMemory]:
    """Trace Python's allocations over the block."""
    memory = TracedMemory()
    tracemalloc.start()
    try:
        yield memory
        memory.after, memory.peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()


async def probe_scripted(
    tmp_path: Path, behaviour: Behaviour, secret: str = "pw", deadline: float = DEADLINE
) -> tuple[ProbeResult, float]:
    """Probe a scripted server; return the result and how long it took."""
    async with ScriptedImapServer(behaviour) as server:
        config = fleet.config_for(tmp_path, None, "none", port=server.port)
        endpoint = config.servers["dovecot"].imap
        started = time.monotonic()
        result = await probe_imap(
            endpoint,
            fleet.address(fleet.EMPTY),
            Secret(secret),
            context=client_context(endpoint),
            deadline=deadline,
            options=ProbeOptions(estimate_usage=True),
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


async def test_reply_of_50000_lines_is_read(tmp_path: Path) -> None:
    """A 50,000-line reply, thousands of lines per read, is parsed in full."""
    result, _ = await probe_scripted(tmp_path, scripted_imap.flood_after_login(50_000))
    assert result.reason is Reason.OK, result.quota_error
    assert result.quota is not None
    assert (result.quota.used_bytes, result.quota.limit_bytes) == (1024, 2048)


@pytest.mark.parametrize(("count", "piece"), [(20, 3), (3000, 1 << 20)])
async def test_folder_names_sent_as_literals(tmp_path: Path, count: int, piece: int) -> None:
    """Folder names sent as literals are read whole, whether cut across reads or thousands
    in one read."""
    behaviour = scripted_imap.literal_folder_names(count, piece)
    result, _ = await probe_scripted(tmp_path, behaviour, deadline=FLOOD_DEADLINE)
    assert result.reason is Reason.OK, result.detail
    assert result.quota is not None, result.quota_error
    assert result.quota.messages == count
    assert result.quota.used_bytes == sum(len(f"Dossier {i}") for i in range(count))


async def test_long_fetch_reply_is_read_in_linear_time(tmp_path: Path) -> None:
    """A FETCH answered with 20,000 lines is read at once: aioimaplib rescanned the whole
    reply at each line, which took 78 s with the event loop blocked."""
    result, _ = await probe_scripted(
        tmp_path, scripted_imap.fetch_flood(20_000), deadline=FLOOD_DEADLINE
    )
    assert result.reason is Reason.OK, result.detail
    assert result.quota is not None, result.quota_error
    assert result.quota.used_bytes == len("INBOX") * 20_000


async def test_endless_reply_is_cut_at_the_reply_cap(tmp_path: Path) -> None:
    """A reply that does not end costs bounded memory and that connection only: the login
    stands and the quota error names the cap."""
    flood = scripted_imap.flood_after_login(10 * MAX_REPLY_LINES)  # 25 MB streamed
    with traced_memory() as memory:
        result, _ = await probe_scripted(tmp_path, flood, deadline=FLOOD_DEADLINE)
    assert result.reason is Reason.OK
    assert result.quota is None
    assert result.quota_error == f"server reply longer than {MAX_REPLY_LINES} lines"
    # Kept up to the cap, a hundred thousand short lines take about 7 MB; a million, 60.
    assert memory.peak < 20 * MIB


@pytest.mark.parametrize(
    ("behaviour", "detail"),
    [
        (scripted_imap.huge_literal, "server announced a 4294967296-byte literal"),
        (scripted_imap.endless_line, f"server line longer than {MAX_LINE_BYTES} bytes"),
    ],
)
async def test_oversized_server_data_is_refused_as_it_arrives(
    tmp_path: Path, behaviour: Behaviour, detail: str
) -> None:
    """A 4 GiB literal or a line without end is a protocol error once past the cap, and
    what was read of it is not kept, neither while the probe runs nor after it."""
    with traced_memory() as memory:
        result, _ = await probe_scripted(tmp_path, behaviour, deadline=FLOOD_DEADLINE)
    assert result.reason is Reason.PROTOCOL_ERROR, result.detail
    assert result.failed_phase is Phase.GREETING
    assert result.detail == detail
    # The server streams up to 32 MiB; what the client holds stays near its 64 KiB caps.
    assert memory.peak < 4 * MIB
    assert memory.after < MIB


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


# Each password with the escaped form quote() sends it in: what a server echoes back.
ECHOED_PASSWORDS = [
    ('Pass"word-9x', 'Pass\\"word-9x'),
    ("Pass\\word-9x", "Pass\\\\word-9x"),
    ('P\\a"ss\\"-9x', 'P\\\\a\\"ss\\\\\\"-9x'),
    ('Tab\tPass"9x', 'Tab\tPass\\"9x'),  # printable() shows the tab as a space
]


@pytest.mark.parametrize("accept", [False, True], ids=["echoed-by-login", "echoed-after-login"])
@pytest.mark.parametrize(("secret", "sent"), ECHOED_PASSWORDS)
async def test_password_echoed_as_sent_is_scrubbed(
    tmp_path: Path, secret: str, sent: str, accept: bool
) -> None:
    """A password with a quote, backslash or tab, echoed back the way LOGIN sent it (escaped),
    reaches neither the detail nor the quota error, in that form or raw."""
    result, _ = await probe_scripted(tmp_path, scripted_imap.echo_login(accept), secret)
    assert result.reason is (Reason.OK if accept else Reason.AUTH_FAILED), result.detail
    echoed = result.quota_error if accept else result.detail
    assert "LOGIN " + fleet.address(fleet.EMPTY) + ' "********"' in echoed
    for text in (result.detail, result.quota_error, repr(result)):
        for form in (secret, sent):
            assert form not in text
            assert form.replace("\t", " ") not in text


async def test_password_not_in_aioimaplib_debug_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """aioimaplib's own debug log of what it sends hides the password as sent, escaped."""
    secret, sent = ECHOED_PASSWORDS[2]
    caplog.set_level(logging.DEBUG, logger="aioimaplib")
    await probe_scripted(tmp_path, scripted_imap.exchange_login_failed, secret)
    logins = [r.getMessage() for r in caplog.records if " LOGIN " in r.getMessage()]
    assert logins
    # aioimaplib logs the bytes it sends as their repr, which doubles each backslash.
    assert not any(repr(sent.encode())[2:-1] in message for message in logins)
