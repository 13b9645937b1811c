"""Reading credential files: only small regular files, never blocking, never the secret shown."""

from __future__ import annotations

import os
import queue
import resource
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from monitor.config.model import CredentialsConfig
from monitor.credentials import (
    Credential,
    CredentialMissing,
    CredentialStore,
    SecretKind,
)
from tests import fleet

ADDRESS = fleet.address(fleet.EMPTY)
HANG_AFTER = 10.0  # seconds; only a blocked read takes anywhere near this long


@pytest.fixture
def directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty credentials directory, with no secret in the environment to fall back on."""
    variable = CredentialStore(CredentialsConfig(), b"").variable_name(ADDRESS, SecretKind.IMAP)
    monkeypatch.delenv(variable, raising=False)
    path = tmp_path / "credentials"
    path.mkdir(mode=0o700)
    return path


def store_for(directory: Path) -> CredentialStore:
    """A store reading from `directory`."""
    return CredentialStore(CredentialsConfig(directory=directory), salt=b"")


def lookup_or_fail(store: CredentialStore) -> Credential | CredentialMissing:
    """The lookup, run in a thread so that a read which blocks fails the test instead of hanging."""
    results: queue.Queue[Credential | CredentialMissing] = queue.Queue()
    thread = threading.Thread(
        target=lambda: results.put(store.lookup(ADDRESS, SecretKind.IMAP)), daemon=True
    )
    thread.start()
    try:
        return results.get(timeout=HANG_AFTER)
    except queue.Empty:
        pytest.fail(f"the lookup was still blocked after {HANG_AFTER} s")


@contextmanager
def memory_capped(headroom: int) -> Iterator[None]:
    """Make a runaway read end in MemoryError instead of taking the machine's memory."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    in_use = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (in_use + headroom, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def missing_detail(found: Credential | CredentialMissing) -> str:
    """The reason given for a refused credential."""
    assert isinstance(found, CredentialMissing), f"expected a refusal, got {found!r}"
    return found.detail


def test_fifo_is_refused_without_blocking(directory: Path) -> None:
    """A FIFO in place of a credential file is refused at once, not waited on for a writer."""
    path = directory / f"{ADDRESS}.imap"
    os.mkfifo(path)
    try:
        found = lookup_or_fail(store_for(directory))
    finally:
        # If a regression left the reader blocked in open(), a writer coming and going frees it.
        with suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    assert missing_detail(found) == f"{path} is a FIFO, not a regular file"


def test_link_to_dev_zero_is_refused(directory: Path) -> None:
    """A link to an endless device is refused, not read until memory runs out."""
    path = directory / f"{ADDRESS}.imap"
    path.symlink_to("/dev/zero")
    with memory_capped(512 * 1024 * 1024):
        found = store_for(directory).lookup(ADDRESS, SecretKind.IMAP)
    assert missing_detail(found) == f"{path} is a character device, not a regular file"


def test_directory_is_refused(directory: Path) -> None:
    """A directory where the file should be is named as such."""
    path = directory / f"{ADDRESS}.imap"
    path.mkdir()
    found = store_for(directory).lookup(ADDRESS, SecretKind.IMAP)
    assert missing_detail(found) == f"{path} is a directory, not a regular file"


def test_oversized_file_is_refused(directory: Path) -> None:
    """A file over 4096 bytes is not a password; one of exactly 4096 bytes still is."""
    path = directory / f"{ADDRESS}.imap"
    path.write_bytes(b"x" * 4096)
    found = store_for(directory).lookup(ADDRESS, SecretKind.IMAP)
    assert isinstance(found, Credential) and len(found.secret.reveal()) == 4096
    path.write_bytes(b"x" * 4096 + b"\n")
    found = store_for(directory).lookup(ADDRESS, SecretKind.IMAP)
    assert missing_detail(found) == f"{path} is larger than 4096 bytes"


def test_leading_byte_order_mark_is_dropped(directory: Path) -> None:
    """A file saved by a Windows editor (BOM, CRLF) gives the password alone."""
    (directory / f"{ADDRESS}.imap").write_bytes("\ufeffPässwörd-1\r\n".encode())
    found = store_for(directory).lookup(ADDRESS, SecretKind.IMAP)
    assert isinstance(found, Credential) and found.secret.reveal() == "Pässwörd-1"


def test_linked_file_is_read_and_followed_when_the_link_moves(directory: Path) -> None:
    """Symlinks as Kubernetes lays them out work, and a new target is a new credential."""
    for version, secret in (("v1", "first-secret"), ("v2", "second-secret")):
        (directory / version).mkdir()
        (directory / version / f"{ADDRESS}.imap").write_text(secret + "\n")
    (directory / "..data").symlink_to("v1")
    (directory / f"{ADDRESS}.imap").symlink_to(f"..data/{ADDRESS}.imap")
    store = store_for(directory)
    first = store.lookup(ADDRESS, SecretKind.IMAP)
    assert isinstance(first, Credential) and first.secret.reveal() == "first-secret"
    (directory / "..next").symlink_to("v2")
    (directory / "..next").replace(directory / "..data")  # Kubernetes' atomic swap
    second = store.lookup(ADDRESS, SecretKind.IMAP, first)
    assert isinstance(second, Credential) and second.secret.reveal() == "second-secret"
