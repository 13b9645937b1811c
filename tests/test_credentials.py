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

from monitor.cli import EXIT_OK, main
from monitor.config.model import CredentialsConfig
from monitor.credentials import (
    SYSTEMD_CREDENTIAL_ID,
    Credential,
    CredentialMissing,
    CredentialStore,
    SecretKind,
    credential_directory_problems,
)
from tests import fleet

ADDRESS = fleet.address(fleet.EMPTY)
HANG_AFTER = 10.0  # seconds; only a blocked read takes anywhere near this long


@pytest.fixture
def directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty credentials directory, with no secret in the environment to fall back on."""
    variable = CredentialStore(CredentialsConfig(), b"").variable_name(ADDRESS, SecretKind.MAILBOX)
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
        target=lambda: results.put(store.lookup(ADDRESS, SecretKind.MAILBOX)), daemon=True
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
        found = store_for(directory).lookup(ADDRESS, SecretKind.MAILBOX)
    assert missing_detail(found) == f"{path} is a character device, not a regular file"


def test_directory_is_refused(directory: Path) -> None:
    """A directory where the file should be is named as such."""
    path = directory / f"{ADDRESS}.imap"
    path.mkdir()
    found = store_for(directory).lookup(ADDRESS, SecretKind.MAILBOX)
    assert missing_detail(found) == f"{path} is a directory, not a regular file"


def test_oversized_file_is_refused(directory: Path) -> None:
    """A file over 4096 bytes is not a password; one of exactly 4096 bytes still is."""
    path = directory / f"{ADDRESS}.imap"
    path.write_bytes(b"x" * 4096)
    found = store_for(directory).lookup(ADDRESS, SecretKind.MAILBOX)
    assert isinstance(found, Credential) and len(found.secret.reveal()) == 4096
    path.write_bytes(b"x" * 4096 + b"\n")
    found = store_for(directory).lookup(ADDRESS, SecretKind.MAILBOX)
    assert missing_detail(found) == f"{path} is larger than 4096 bytes"


def test_leading_byte_order_mark_is_dropped(directory: Path) -> None:
    """A file saved by a Windows editor (BOM, CRLF) gives the password alone."""
    (directory / f"{ADDRESS}.imap").write_bytes("\ufeffPässwörd-1\r\n".encode())
    found = store_for(directory).lookup(ADDRESS, SecretKind.MAILBOX)
    assert isinstance(found, Credential) and found.secret.reveal() == "Pässwörd-1"


def test_linked_file_is_read_and_followed_when_the_link_moves(directory: Path) -> None:
    """Symlinks as Kubernetes lays them out work, and a new target is a new credential."""
    for version, secret in (("v1", "first-secret"), ("v2", "second-secret")):
        (directory / version).mkdir()
        (directory / version / f"{ADDRESS}.imap").write_text(secret + "\n")
    (directory / "..data").symlink_to("v1")
    (directory / f"{ADDRESS}.imap").symlink_to(f"..data/{ADDRESS}.imap")
    store = store_for(directory)
    first = store.lookup(ADDRESS, SecretKind.MAILBOX)
    assert isinstance(first, Credential) and first.secret.reveal() == "first-secret"
    (directory / "..next").symlink_to("v2")
    (directory / "..next").replace(directory / "..data")  # Kubernetes' atomic swap
    second = store.lookup(ADDRESS, SecretKind.MAILBOX, first)
    assert isinstance(second, Credential) and second.secret.reveal() == "second-secret"


def test_check_says_why_each_credential_is_unusable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`check` gives each unusable credential's reason, and never the secret itself."""
    locals_ = [fleet.EMPTY, fleet.FULL, fleet.NEARLY_FULL, fleet.FOLDERS, fleet.UNLIMITED]
    path = fleet.write_config(tmp_path, None, "none", locals_, port=143)
    credentials = tmp_path / "credentials"
    file = {local: credentials / f"{fleet.address(local)}.imap" for local in locals_}
    file[fleet.EMPTY].write_text("\n")
    file[fleet.FULL].write_text(f"{fleet.password(fleet.FULL)}\nsecond line\n")
    file[fleet.NEARLY_FULL].unlink()
    monkeypatch.delenv("BMA_SECRET_EC000002_IMAP", raising=False)
    file[fleet.FOLDERS].unlink()
    file[fleet.FOLDERS].mkdir()
    assert main(["check", "--config", str(path)]) == EXIT_OK
    out = capsys.readouterr().out
    assert (
        "warning: 4 mailbox(es) have no usable mailbox password (<address>.imap) for imap:" in out
    )
    lines = out.splitlines()
    for local, reason in (
        (fleet.EMPTY, f"{file[fleet.EMPTY]} is empty"),
        (fleet.FULL, f"{file[fleet.FULL]} holds a line break or NUL, which IMAP cannot send"),
        (
            fleet.NEARLY_FULL,
            f"no file {file[fleet.NEARLY_FULL]} and $BMA_SECRET_EC000002_IMAP is not set",
        ),
        (fleet.FOLDERS, f"{file[fleet.FOLDERS]} is a directory, not a regular file"),
    ):
        assert f"  {fleet.address(local)}: {reason}" in lines
    assert not [line for line in lines if line.startswith(f"  {fleet.address(fleet.UNLIMITED)}")]
    assert fleet.password(fleet.FULL) not in out and "Sekret" not in out


def test_check_lists_ten_unusable_credentials_then_counts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Thousands of missing credentials give a screenful, not thousands of lines."""
    locals_ = list(fleet.SPARES[:13])
    path = fleet.write_config(tmp_path, None, "none", locals_, port=143)
    for local in locals_:
        (tmp_path / "credentials" / f"{fleet.address(local)}.imap").write_text("")
    assert main(["check", "--config", str(path)]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    start = lines.index(
        "warning: 13 mailbox(es) have no usable mailbox password (<address>.imap) for imap:"
    )
    shown = lines[start + 1 : start + 11]
    assert [line.split(":")[0].strip() for line in shown] == [
        fleet.address(local) for local in locals_[:10]
    ]
    assert lines[start + 11] == "  ... and 3 more"


def test_check_warns_about_credential_files_others_can_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A credential file with group or other permission bits is named with its mode."""
    locals_ = [fleet.EMPTY, fleet.FULL, fleet.FOLDERS]
    path = fleet.write_config(tmp_path, None, "none", locals_, port=143)
    credentials = tmp_path / "credentials"
    for local in locals_:
        (credentials / f"{fleet.address(local)}.imap").chmod(0o600)
    (credentials / f"{fleet.address(fleet.FULL)}.imap").chmod(0o640)
    (credentials / f"{fleet.address(fleet.FOLDERS)}.imap").chmod(0o602)
    assert main(["check", "--config", str(path)]) == EXIT_OK
    warnings = [line for line in capsys.readouterr().out.splitlines() if "credential file" in line]
    assert warnings == [
        f"warning: credential file {credentials / fleet.address(fleet.FULL)}.imap "
        "can be read or written by group or others (mode 640)",
        f"warning: credential file {credentials / fleet.address(fleet.FOLDERS)}.imap "
        "can be read or written by group or others (mode 602)",
    ]


def test_daemon_start_warnings_name_exposed_files_through_links(directory: Path) -> None:
    """The warnings the daemon logs at start follow links to the file's own mode, and stay short."""
    target = directory / "..data"
    target.mkdir(mode=0o700)
    for n in range(12):
        name = f"{fleet.address(fleet.SPARES[n])}.imap"
        (target / name).write_text("secret\n")
        (target / name).chmod(0o644)
        (directory / name).symlink_to(f"..data/{name}")
    (target / "unrelated.txt").write_text("not a credential\n")
    problems = credential_directory_problems(directory)
    assert problems[0] == (
        f"credential file {directory / fleet.address(fleet.SPARES[0])}.imap "
        "can be read or written by group or others (mode 644)"
    )
    assert len(problems) == 11
    assert problems[-1] == (
        f"... and 2 more credential files in {directory} that group or others can read or write"
    )


def test_named_service_secret_is_read_from_its_file(directory: Path) -> None:
    """`lookup_named("ldap-bind")` reads `<directory>/ldap-bind`, its newline dropped."""
    (directory / "ldap-bind").write_text("Bind-pw-7e2a\n", encoding="utf-8")
    found = store_for(directory).lookup_named("ldap-bind")
    assert isinstance(found, Credential)
    assert found.secret.reveal() == "Bind-pw-7e2a"


def test_named_service_secret_falls_back_on_the_environment(
    directory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no file, `$BMA_SECRET_LDAP_BIND` holds the `ldap-bind` secret."""
    monkeypatch.setenv("BMA_SECRET_LDAP_BIND", "Env-bind-pw")
    found = store_for(directory).lookup_named("ldap-bind")
    assert isinstance(found, Credential)
    assert (found.secret.reveal(), found.origin) == ("Env-bind-pw", "$BMA_SECRET_LDAP_BIND")


@pytest.mark.parametrize("name", ["..", ".hidden", "sub/ldap-bind", "ldap-bind\n"])
def test_named_service_secret_stays_inside_the_directory(directory: Path, name: str) -> None:
    """A name that is a path, a dot file or a parent reference reads nothing."""
    (directory / "ldap-bind").write_text("Bind-pw-7e2a\n", encoding="utf-8")
    found = store_for(directory).lookup_named(name)
    assert isinstance(found, CredentialMissing)
    assert "Bind-pw-7e2a" not in found.detail


def test_named_service_secret_that_is_a_fifo_is_refused(directory: Path) -> None:
    """The same file rules as mailbox secrets: a FIFO is refused without blocking."""
    os.mkfifo(directory / "ldap-bind")
    found = store_for(directory).lookup_named("ldap-bind")
    assert isinstance(found, CredentialMissing)
    assert "FIFO" in found.detail


def test_credentials_as_systemd_passes_a_folder(directory: Path) -> None:
    """LoadCredential=bma:FOLDER names each file bma_<file>: found under that name too, for
    mailboxes and named service secrets alike; a plain file of the same name comes first."""
    prefixed = directory / f"{SYSTEMD_CREDENTIAL_ID}_{ADDRESS}.imap"
    prefixed.write_text("from-systemd\n")
    (directory / f"{SYSTEMD_CREDENTIAL_ID}_relay-password").write_text("relay-secret\n")
    store = store_for(directory)
    found = store.lookup(ADDRESS, SecretKind.MAILBOX)
    assert isinstance(found, Credential) and found.secret.reveal() == "from-systemd"
    assert found.origin == str(prefixed)
    relay = store.lookup_named("relay-password")
    assert isinstance(relay, Credential) and relay.secret.reveal() == "relay-secret"
    (directory / f"{ADDRESS}.imap").write_text("plain\n")
    plain = store.lookup(ADDRESS, SecretKind.MAILBOX)
    assert isinstance(plain, Credential) and plain.secret.reveal() == "plain"
