"""Mailbox secrets from a credentials directory or the environment, never from the config."""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from monitor.config.model import CredentialsConfig

# A quoted IMAP string cannot carry these; a password holding one was mis-written.
_UNSENDABLE = re.compile(r"[\r\n\x00]")
# A service credential is a plain file name inside the directory: no path, no dot file.
_SERVICE_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")

# Active Directory passwords (Exchange's) are at most 256 characters, 1 KiB in UTF-8: a
# bigger file is not a password (a key, a log, a device), and a cap keeps one such file
# from filling the daemon's memory.
MAX_SECRET_BYTES = 4096

# systemd's LoadCredential=ID:DIRECTORY passes each file of DIRECTORY as the credential
# `ID_<file name>`: the unit loads the credentials folder under this ID, and lookups try the
# prefixed name after the plain one. Short, since systemd 252 counts each name's length in
# the 1 MiB it allows a service's credentials.
SYSTEMD_CREDENTIAL_ID = "bma"

# Groups of warnings longer than this end in a count, so 10,000 mailboxes give a screenful.
PROBLEMS_SHOWN = 10

_NOT_REGULAR = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class SecretKind(StrEnum):
    """Which of a mailbox's two passwords."""

    # The mailbox password, used by IMAP and POP3; its files keep the `.imap` suffix.
    MAILBOX = "imap"
    CERBERE = "cerbere"  # the CERBERE password, used for SMTP

    @property
    def label(self) -> str:
        """What the secret is, for people."""
        return "mailbox password" if self is SecretKind.MAILBOX else "CERBERE password"


class Secret:
    """A password that will not show itself in logs, reprs or tracebacks."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The password itself, for the one call that sends it."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


@dataclass(frozen=True, slots=True)
class Credential:
    """A secret and where it came from."""

    secret: Secret
    origin: str  # file path or variable name; safe to log
    version: tuple[int, ...] = field(default=())  # file identity; changes when the file does


@dataclass(frozen=True, slots=True)
class CredentialMissing:
    """Why no usable secret was found; safe to log."""

    detail: str


class CredentialStore:
    """Looks secrets up: `<directory>/<address>.<kind>`, else `<PREFIX><LOCALPART>_<KIND>`.

    The daemon reads every secret in one batch per refresh, off the event loop, and probes
    use the cached values: a thread hop per probe would make the event loop wait for the
    GIL after each socket call, halving throughput at thousands of probes a minute.
    """

    def __init__(self, config: CredentialsConfig, salt: bytes) -> None:
        self._directory = config.directory
        self._prefix = config.env_prefix
        self._salt = salt
        self._cache: dict[tuple[str, SecretKind], Credential | CredentialMissing] = {}

    def cached(self, address: str, kind: SecretKind) -> Credential | CredentialMissing | None:
        """The secret as of the last refresh, or None if it was never read."""
        return self._cache.get((address, kind))

    def refresh(self, addresses: Iterable[str], kind: SecretKind) -> None:
        """Re-read these secrets (blocking: call it off the event loop); unchanged files are
        only stat()ed."""
        for address in addresses:
            self._cache[(address, kind)] = self.lookup(
                address, kind, self._cache.get((address, kind))
            )

    def lookup(
        self,
        address: str,
        kind: SecretKind,
        known: Credential | CredentialMissing | None = None,
    ) -> Credential | CredentialMissing:
        """Read the secret now (blocking file I/O); `known` is reused if its file is unchanged."""
        if self._directory is not None:
            from_file = _lookup_in(self._directory, f"{address}.{kind}", known)
            if from_file is not None:
                return from_file
        name = self.variable_name(address, kind)
        value = os.environ.get(name, "")
        if value:
            return _credential(value, f"${name}")
        if self._directory is None:
            return CredentialMissing(f"no credentials directory and ${name} is not set")
        return CredentialMissing(
            f"no file {self._directory / f'{address}.{kind}'} and ${name} is not set"
        )

    def lookup_named(
        self, name: str, known: Credential | CredentialMissing | None = None
    ) -> Credential | CredentialMissing:
        """A service's secret (e.g. the LDAP bind password): `<directory>/<name>`, else
        `$<PREFIX><NAME>`; same file rules as lookup() (blocking file I/O)."""
        if not _SERVICE_NAME.fullmatch(name):
            return CredentialMissing(f"{name!r:.60} is not a credential file name")
        if self._directory is not None:
            from_file = _lookup_in(self._directory, name, known)
            if from_file is not None:
                return from_file
        variable = self.prefix_variable(name)
        value = os.environ.get(variable, "")
        if value:
            return _credential(value, f"${variable}")
        if self._directory is None:
            return CredentialMissing(f"no credentials directory and ${variable} is not set")
        return CredentialMissing(f"no file {self._directory / name} and ${variable} is not set")

    def prefix_variable(self, name: str) -> str:
        """The environment variable that may hold the service secret `name`."""
        return self._prefix + re.sub(r"[^A-Z0-9]", "_", name.upper())

    def variable_name(self, address: str, kind: SecretKind) -> str:
        """The environment variable that may hold this secret."""
        return f"{self._prefix}{address.split('@', 1)[0].upper()}_{kind.upper()}"

    def fingerprint(self, address: str, credential: Credential) -> str:
        """A slow salted hash telling whether a secret changed, useless for recovering it."""
        # scrypt, so that a copy of the state file does not make passwords cheap to guess.
        digest = hashlib.scrypt(
            credential.secret.reveal().encode("utf-8"),
            salt=self._salt + address.encode("ascii"),
            n=2**14,
            r=8,
            p=1,
            dklen=16,
        )
        return digest.hex()


def _lookup_in(
    directory: Path, name: str, known: Credential | CredentialMissing | None
) -> Credential | CredentialMissing | None:
    """The secret of file `name` in `directory`, as written or as systemd's LoadCredential=
    passes a folder; None if neither file exists."""
    found = _lookup_file(directory / name, known)
    if found is None:
        found = _lookup_file(directory / f"{SYSTEMD_CREDENTIAL_ID}_{name}", known)
    return found


def _lookup_file(
    path: Path, known: Credential | CredentialMissing | None
) -> Credential | CredentialMissing | None:
    """The secret in `path`, `known` if the file is unchanged, or None if there is no file."""
    try:
        # stat() follows symlinks (a Kubernetes secret mount is made of them) and never
        # opens the file, so a FIFO or a device can neither block it nor feed it.
        found = path.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return CredentialMissing(f"{path}: {exc.strerror}")
    if isinstance(known, Credential) and known.version == _version(found):
        return known
    return _not_regular(path, found) or _read_file(path)


def _read_file(path: Path) -> Credential | CredentialMissing:
    """A secret from its file, if it is a small regular file holding what IMAP can send."""
    try:
        # Non-blocking, so that a file swapped for a FIFO since stat() cannot hang the open.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        return CredentialMissing(f"{path}: {exc.strerror}")
    try:
        opened = os.fstat(fd)
        refusal = _not_regular(path, opened)
        if refusal is not None:
            return refusal
        data = _read_at_most(fd, MAX_SECRET_BYTES + 1)
    except OSError as exc:
        return CredentialMissing(f"{path}: {exc.strerror}")
    finally:
        os.close(fd)
    if len(data) > MAX_SECRET_BYTES:
        return CredentialMissing(f"{path} is larger than {MAX_SECRET_BYTES} bytes")
    try:
        # utf-8-sig drops one leading byte-order mark, which Windows editors write.
        value = _strip_line_end(data.decode("utf-8-sig"))
    except UnicodeDecodeError:
        return CredentialMissing(f"{path} is not UTF-8 text")
    if not value:
        return CredentialMissing(f"{path} is empty")
    return _credential(value, str(path), _version(opened))


def _read_at_most(fd: int, limit: int) -> bytes:
    """Up to `limit` bytes from the start of an open file."""
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = os.read(fd, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _version(found: os.stat_result) -> tuple[int, ...]:
    """What changes when a credential file is rewritten or replaced."""
    return (found.st_dev, found.st_ino, found.st_mtime_ns, found.st_size)


def _not_regular(path: Path, found: os.stat_result) -> CredentialMissing | None:
    """A refusal for anything but a regular file: reading a FIFO blocks, a device never ends."""
    if stat.S_ISREG(found.st_mode):
        return None
    kind = _NOT_REGULAR.get(stat.S_IFMT(found.st_mode), "not a file")
    return CredentialMissing(f"{path} is {kind}, not a regular file")


def _credential(
    value: str, origin: str, version: tuple[int, ...] = ()
) -> Credential | CredentialMissing:
    """A secret, unless it holds what a quoted IMAP string cannot carry."""
    if _UNSENDABLE.search(value):
        return CredentialMissing(f"{origin} holds a line break or NUL, which IMAP cannot send")
    return Credential(Secret(value), origin, version)


def _strip_line_end(text: str) -> str:
    """Files written by editors and `echo` end with a newline that is not part of the secret."""
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith("\n"):
        return text[:-1]
    return text


def credential_directory_problems(directory: Path | None) -> list[str]:
    """Warnings about a credentials directory, or credential files in it, others could read."""
    if directory is None or not directory.is_dir():
        return [] if directory is None else [f"credentials directory {directory} does not exist"]
    problems = []
    mode = directory.stat().st_mode
    if mode & 0o007:
        problems.append(
            f"credentials directory {directory} is accessible to all users (mode {mode & 0o777:o})"
        )
    return problems + credential_file_problems(directory)


def credential_file_problems(directory: Path | None) -> list[str]:
    """Warnings naming credential files that group or others may read or write."""
    if directory is None:
        return []
    suffixes = tuple(f".{kind}" for kind in SecretKind)
    exposed: list[tuple[str, int]] = []
    try:
        with os.scandir(directory) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
    except OSError:
        return []  # credential_directory_problems says what is wrong with the directory
    for entry in entries:
        if not entry.name.endswith(suffixes):
            continue
        try:
            # The mode that matters is the linked file's: Kubernetes mounts secrets as links.
            mode = entry.stat().st_mode
        except OSError:
            continue  # a dangling link holds no secret; lookups report it
        if stat.S_ISREG(mode) and mode & 0o077:
            exposed.append((entry.path, stat.S_IMODE(mode)))
    problems = [
        f"credential file {path} can be read or written by group or others (mode {mode:o})"
        for path, mode in exposed[:PROBLEMS_SHOWN]
    ]
    if len(exposed) > PROBLEMS_SHOWN:
        problems.append(
            f"... and {len(exposed) - PROBLEMS_SHOWN} more credential files in {directory} "
            "that group or others can read or write"
        )
    return problems
