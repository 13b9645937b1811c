"""A mailbox with 5,000 folders, against a real Dovecot: its usage is measured in full."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.credentials import Secret
from monitor.probes.contract import ProbeOptions
from monitor.probes.imap import probe_imap
from monitor.probes.result import QuotaSource, Reason
from monitor.probes.tls import client_context
from tests import fleet
from tests.servers.dovecot import DovecotServer, MailUser

FOLDER_COUNT = 5_000
OWNER = "po005000"
# (folder, messages, size): INBOX and the first and last of the folders LIST names.
CONTENT = [
    ("INBOX", 2, 1500),
    ("Dossier 0000", 1, 2000),
    (f"Dossier {FOLDER_COUNT - 1:04d}", 3, 700),
]


@pytest.fixture(scope="module")
def exchange_like() -> Iterator[DovecotServer]:
    """A Dovecot offering neither QUOTA nor STATUS=SIZE, as Exchange, where one mailbox has
    FOLDER_COUNT folders besides INBOX: its usage is read by LIST, then EXAMINE and FETCH
    per folder (where STATUS=SIZE is offered, the same LIST is followed by STATUS)."""
    # On this machine's disk, creating the folders and Dovecot's first index of each took
    # about 30 s; on tmpfs, 6 s. Outside pytest's temporary root, a pytest run started
    # meanwhile cannot take away the search permission Dovecot's mail processes need.
    scratch = Path("/dev/shm") if Path("/dev/shm").is_dir() else None
    with tempfile.TemporaryDirectory(prefix="many-folders-", dir=scratch) as workdir:
        owner = MailUser(fleet.address(OWNER), fleet.password(OWNER))
        server = DovecotServer(
            Path(workdir), [owner], quota=False, capability_override=fleet.EXCHANGE_CAPABILITY
        )
        # Written before the start: added to a running server, each batch of messages costs
        # a resync and a quota recount over all 5,000 folders.
        server.add_folders(owner.address, (f"Dossier {i:04d}" for i in range(FOLDER_COUNT)))
        for folder, count, size in CONTENT:
            server.add_messages(owner.address, count, size, folder=folder)
        with server:
            yield server


async def test_usage_of_a_mailbox_with_5000_folders(
    exchange_like: DovecotServer, tmp_path: Path
) -> None:
    """A LIST of 5,000 folders, thousands of lines per read, is read whole and every
    folder's messages are counted."""
    # One EXAMINE per folder, each indexing it first: 5,000 took up to 17 s on a busy machine.
    config = fleet.config_for(tmp_path, exchange_like, "none", [OWNER], probing={"timeout": "50s"})
    endpoint = config.servers["dovecot"].imap
    result = await probe_imap(
        endpoint,
        fleet.address(OWNER),
        Secret(fleet.password(OWNER)),
        context=client_context(endpoint),
        deadline=config.probing.timeout,
        options=ProbeOptions(estimate_usage=True, fetch_chunk=config.probing.quota_fetch_chunk),
    )
    assert result.reason is Reason.OK, result.detail
    assert result.quota is not None, result.quota_error
    assert result.quota.source is QuotaSource.MESSAGE_SIZES
    assert result.quota.used_bytes == sum(count * size for _, count, size in CONTENT)
    assert result.quota.messages == sum(count for _, count, _ in CONTENT)
