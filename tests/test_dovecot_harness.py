"""The private Dovecot harness behaves as tests/servers/dovecot.py documents."""

from __future__ import annotations

import imaplib
import math
import poplib
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest

from tests.servers.dovecot import (
    DEFAULT_CAPABILITY,
    DovecotError,
    DovecotServer,
    MailUser,
    encode_mailbox_name,
)

DOMAIN = "adm.cfwb.be"
PLAIN = MailUser(f"ec000001@{DOMAIN}", "secret-1")
QUOTA_100M = MailUser(f"ec000002@{DOMAIN}", "secret-2", quota_rule="100M")
UNLIMITED = MailUser(f"ec000003@{DOMAIN}", "secret-3", quota_rule="unlimited")
EXPIRED = MailUser(f"ec000004@{DOMAIN}", "secret-4", expired=True)
DISABLED = MailUser(f"ec000005@{DOMAIN}", "secret-5", disabled=True)
FOLDERS = MailUser(f"ec000006@{DOMAIN}", "secret-6")
COUNTED = MailUser(f"po000007@{DOMAIN}", "pass:with spaces")
SNAPSHOT = MailUser(f"ec000008@{DOMAIN}", "secret-8")
ROTATED = MailUser(f"ec000009@{DOMAIN}", "old-password")
USERS = (PLAIN, QUOTA_100M, UNLIMITED, EXPIRED, DISABLED, FOLDERS, COUNTED, SNAPSHOT, ROTATED)


class _LineChannel(Protocol):
    """Anything that sends bytes and reads reply lines, like imaplib.IMAP4."""

    def send(self, data: bytes) -> None: ...
    def readline(self) -> bytes: ...


class _RawConnection:
    """A bare line channel to an IMAP port, for the one reply imaplib would alter."""

    def __init__(self, host: str, port: int) -> None:
        self._sock = socket.create_connection((host, port), timeout=5)
        self._file = self._sock.makefile("rb")
        self.greeting = self.readline()

    def send(self, data: bytes) -> None:
        """Send raw bytes."""
        self._sock.sendall(data)

    def readline(self) -> bytes:
        """Read one reply line."""
        return self._file.readline()

    def close(self) -> None:
        """Close the connection."""
        self._file.close()
        self._sock.close()


def transcript(channel: _LineChannel, tag: str, command: str) -> list[str]:
    """Send one command and return every reply line up to its tagged one."""
    channel.send(f"{tag} {command}\r\n".encode())
    lines = []
    while True:
        line = channel.readline().decode().rstrip("\r\n")
        lines.append(line)
        if line.startswith(f"{tag} ") or not line:
            return lines


def login(server: DovecotServer, user: MailUser) -> imaplib.IMAP4:
    """A plain IMAP connection logged in as `user`."""
    connection = imaplib.IMAP4(server.host, server.imap_port, timeout=5)
    connection.login(user.address, user.password)
    return connection


def capabilities(connection: imaplib.IMAP4) -> set[str]:
    """The capabilities a logged-in connection reports now (imaplib keeps pre-login ones)."""
    typ, data = connection.capability()
    assert typ == "OK"
    return set(bytes(data[-1]).decode().split())


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """A Dovecot with the quota plugins, shared by the module."""
    with DovecotServer(tmp_path_factory.mktemp("dovecot-quota"), USERS) as running:
        yield running


@pytest.fixture(scope="module")
def exchange_like(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DovecotServer]:
    """A Dovecot without imap_quota and without STATUS=SIZE, like Exchange."""
    with DovecotServer(
        tmp_path_factory.mktemp("dovecot-exchange"),
        [PLAIN],
        quota=False,
        capability_override=DEFAULT_CAPABILITY.replace(" STATUS=SIZE", ""),
    ) as running:
        yield running


def test_plain_login_succeeds(server: DovecotServer) -> None:
    """LOGIN over the plain IMAP port is accepted (disable_plaintext_auth = no)."""
    connection = login(server, PLAIN)
    assert connection.state == "AUTH"
    connection.logout()


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1"])
def test_starttls_verifies_with_ca_file(server: DovecotServer, host: str) -> None:
    """STARTTLS on imap_port presents a certificate valid for both host names under ca_file."""
    connection = imaplib.IMAP4(host, server.imap_port, timeout=5)
    connection.starttls(ssl.create_default_context(cafile=server.ca_file))
    connection.login(PLAIN.address, PLAIN.password)
    connection.logout()


def test_implicit_tls_login_succeeds(server: DovecotServer) -> None:
    """The imaps port speaks TLS from the first byte and accepts LOGIN."""
    connection = imaplib.IMAP4_SSL(
        "localhost", server.imaps_port, ssl_context=server.client_ssl_context(), timeout=5
    )
    connection.login(PLAIN.address, PLAIN.password)
    connection.logout()


def test_pop3_stls_and_pop3s_log_in(server: DovecotServer) -> None:
    """POP3 works with STLS on pop3_port and with implicit TLS on pop3s_port."""
    plain = poplib.POP3(server.host, server.pop3_port, timeout=5)
    plain.stls(server.client_ssl_context())
    plain.user(PLAIN.address)
    assert plain.pass_(PLAIN.password).startswith(b"+OK")
    plain.quit()
    implicit = poplib.POP3_SSL(
        "localhost", server.pop3s_port, context=server.client_ssl_context(), timeout=5
    )
    implicit.user(PLAIN.address)
    assert implicit.pass_(PLAIN.password).startswith(b"+OK")
    implicit.quit()


def test_login_reply_carries_post_login_capabilities(server: DovecotServer) -> None:
    """LOGIN's OK carries the post-login list, or an untagged one after an early CAPABILITY."""
    bare = _RawConnection(server.host, server.imap_port)
    try:
        assert b"STATUS=SIZE" not in bare.greeting
        assert transcript(bare, "a1", f"LOGIN {PLAIN.address} {PLAIN.password}") == [
            f"a1 OK [CAPABILITY {DEFAULT_CAPABILITY} QUOTA] Logged in"
        ]
    finally:
        bare.close()
    # imaplib (like aioimaplib) sends CAPABILITY before LOGIN, which changes the reply.
    asked_early = imaplib.IMAP4(server.host, server.imap_port, timeout=5)
    try:
        assert transcript(asked_early, "a1", f"LOGIN {PLAIN.address} {PLAIN.password}") == [
            f"* CAPABILITY {DEFAULT_CAPABILITY} QUOTA",
            "a1 OK Logged in",
        ]
    finally:
        asked_early.shutdown()


def test_quota_advertised_only_with_quota_plugin(
    server: DovecotServer, exchange_like: DovecotServer
) -> None:
    """QUOTA is a post-login capability with quota=True and absent with quota=False."""
    with_quota = login(server, PLAIN)
    without_quota = login(exchange_like, PLAIN)
    try:
        assert "QUOTA" in capabilities(with_quota)
        assert "QUOTA" not in capabilities(without_quota)
        assert transcript(without_quota, "q1", "GETQUOTAROOT INBOX")[-1].startswith(
            "q1 BAD Error in IMAP command GETQUOTAROOT: Unknown command"
        )
    finally:
        with_quota.logout()
        without_quota.logout()


def test_capability_override_hides_status_size(
    server: DovecotServer, exchange_like: DovecotServer
) -> None:
    """capability_override replaces the post-login list, so STATUS=SIZE disappears."""
    default = login(server, PLAIN)
    overridden = login(exchange_like, PLAIN)
    try:
        assert "STATUS=SIZE" in capabilities(default)
        assert capabilities(overridden) == set(DEFAULT_CAPABILITY.split()) - {"STATUS=SIZE"}
    finally:
        default.logout()
        overridden.logout()


def test_getquotaroot_reports_usage_of_added_messages(server: DovecotServer) -> None:
    """GETQUOTAROOT reports count*size in KiB, rounded up, against a 100M limit."""
    server.add_messages(QUOTA_100M.address, count=4, size=3072)
    server.add_messages(QUOTA_100M.address, count=1, size=1000, folder="Sent Items")
    connection = login(server, QUOTA_100M)
    try:
        lines = transcript(connection, "q1", "GETQUOTAROOT INBOX")
    finally:
        connection.logout()
    used_kib = math.ceil((4 * 3072 + 1000) / 1024)
    assert used_kib == 13
    assert lines[:2] == [
        '* QUOTAROOT INBOX "User quota"',
        f'* QUOTA "User quota" (STORAGE {used_kib} 102400)',
    ]
    assert lines[2].startswith("q1 OK Getquotaroot completed")


def test_getquotaroot_default_and_unlimited(server: DovecotServer) -> None:
    """The server default is 2G; an "unlimited" user gets no QUOTAROOT or QUOTA line."""
    default_user = login(server, PLAIN)
    unlimited_user = login(server, UNLIMITED)
    try:
        default_lines = transcript(default_user, "q1", "GETQUOTAROOT INBOX")
        unlimited_lines = transcript(unlimited_user, "q1", "GETQUOTAROOT INBOX")
    finally:
        default_user.logout()
        unlimited_user.logout()
    assert default_lines[1] == '* QUOTA "User quota" (STORAGE 0 2097152)'
    assert len(unlimited_lines) == 1
    assert unlimited_lines[0].startswith("q1 OK No quota")


@pytest.mark.parametrize("folder", ["INBOX", "Sent Items", "Archives/2024", "Éléments envoyés"])
def test_rfc822_size_equals_requested_size(server: DovecotServer, folder: str) -> None:
    """Every added message reports RFC822.SIZE equal to `size`, in any folder."""
    server.add_messages(FOLDERS.address, count=3, size=4321, folder=folder)
    connection = login(server, FOLDERS)
    try:
        typ, _ = connection.select(f'"{encode_mailbox_name(folder)}"', readonly=True)
        assert typ == "OK"
        typ, data = connection.fetch("1:*", "(RFC822.SIZE)")
    finally:
        connection.logout()
    assert typ == "OK"
    assert [item.split(b"RFC822.SIZE ")[1] for item in data if isinstance(item, bytes)] == [
        b"4321)"
    ] * 3
    assert server.maildir_snapshot(FOLDERS.address)[folder]


def test_add_messages_rejects_too_small_size(server: DovecotServer) -> None:
    """A size below the header length is refused rather than silently exceeded."""
    with pytest.raises(ValueError, match="minimum"):
        server.add_messages(FOLDERS.address, count=1, size=10)


@pytest.mark.parametrize(
    ("user", "password", "reply"),
    [
        (PLAIN, "wrong", "NO [AUTHENTICATIONFAILED] Authentication failed."),
        (EXPIRED, EXPIRED.password, "NO [EXPIRED] Authentication failed."),
        (EXPIRED, "wrong", "NO [AUTHENTICATIONFAILED] Authentication failed."),
        (DISABLED, DISABLED.password, "NO [CONTACTADMIN] Login disabled for this user"),
    ],
)
def test_login_refusals_carry_documented_codes(
    server: DovecotServer, user: MailUser, password: str, reply: str
) -> None:
    """Wrong password, expired and disabled accounts get their RFC 5530 code at once."""
    connection = imaplib.IMAP4(server.host, server.imap_port, timeout=5)
    try:
        lines = transcript(connection, "a1", f'LOGIN {user.address} "{password}"')
    finally:
        connection.shutdown()
    assert lines == [f"a1 {reply}"]


def test_auth_attempts_and_failures_are_counted(server: DovecotServer) -> None:
    """auth_attempts counts every IMAP and POP3 authentication, auth_failures the bad ones."""
    assert server.auth_attempts(COUNTED.address) == 0
    login(server, COUNTED).logout()
    with pytest.raises(imaplib.IMAP4.error):
        login(server, MailUser(COUNTED.address, "wrong"))
    pop = poplib.POP3(server.host, server.pop3_port, timeout=5)
    pop.user(COUNTED.address.upper())
    pop.pass_(COUNTED.password)
    pop.quit()
    assert server.auth_attempts(COUNTED.address) == 3
    assert server.auth_failures(COUNTED.address) == 1


def test_disabled_login_counts_as_attempt_not_failure(server: DovecotServer) -> None:
    """A nologin account with the right password is refused, yet its password check passed."""
    attempts = server.auth_attempts(DISABLED.address)
    failures = server.auth_failures(DISABLED.address)
    with pytest.raises(imaplib.IMAP4.error, match="Login disabled"):
        login(server, DISABLED)
    assert server.auth_attempts(DISABLED.address) == attempts + 1
    assert server.auth_failures(DISABLED.address) == failures


def test_maildir_snapshot_unchanged_by_examine_and_fetch_size(server: DovecotServer) -> None:
    """EXAMINE plus FETCH RFC822.SIZE leaves the Maildir as it was; STORE \\Seen does not."""
    server.add_messages(SNAPSHOT.address, count=2, size=2000)
    server.add_messages(SNAPSHOT.address, count=1, size=2000, folder="Sent Items")
    before = server.maildir_snapshot(SNAPSHOT.address)
    connection = login(server, SNAPSHOT)
    try:
        for folder in ("INBOX", '"Sent Items"'):
            connection.select(folder, readonly=True)
            connection.fetch("1:*", "(RFC822.SIZE)")
            connection.close()
        assert server.maildir_snapshot(SNAPSHOT.address) == before
        connection.select("INBOX")
        connection.store("1", "+FLAGS", "\\Seen")
    finally:
        connection.logout()
    after = server.maildir_snapshot(SNAPSHOT.address)
    assert after["Sent Items"] == before["Sent Items"]
    assert sum(name.endswith(":2,S") for name in after["INBOX"]) == 1


def test_set_password_takes_effect(server: DovecotServer) -> None:
    """After set_password the new password works and the old one fails."""
    login(server, ROTATED).logout()
    server.set_password(ROTATED.address, "new-password")
    with pytest.raises(imaplib.IMAP4.error):
        login(server, ROTATED)
    login(server, MailUser(ROTATED.address, "new-password")).logout()


def test_two_servers_run_at_once(server: DovecotServer, exchange_like: DovecotServer) -> None:
    """Two instances run side by side on distinct ports, names and directories."""
    assert server.running and exchange_like.running
    assert server.instance_name != exchange_like.instance_name
    ports = {server.imap_port, server.imaps_port, server.pop3_port, server.pop3s_port}
    other = {
        exchange_like.imap_port,
        exchange_like.imaps_port,
        exchange_like.pop3_port,
        exchange_like.pop3s_port,
    }
    assert len(ports | other) == 8
    login(server, PLAIN).logout()
    login(exchange_like, PLAIN).logout()


def test_start_failure_reports_log_and_stop_is_idempotent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Dovecot that cannot start raises DovecotError quoting its output; stop() twice is fine."""
    monkeypatch.setattr(DovecotServer, "_config_text", lambda self: "no_such_setting = 1\n")
    broken = DovecotServer(tmp_path, [PLAIN])
    with pytest.raises(DovecotError, match="no_such_setting"):
        broken.start()
    broken.stop()
    broken.stop()
    assert not broken.running
