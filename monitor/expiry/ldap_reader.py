"""The LDAP source with the rule that a refused service bind is never retried."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import os
from collections.abc import Sequence

from monitor.config.expiry_model import LdapConfig
from monitor.credentials import Secret
from monitor.expiry.ldap_errors import BindRefused
from monitor.expiry.ldap_source import read_directory
from monitor.expiry.model import PasswordDate


class DirectoryReader:
    """Reads the directory, except with a bind password it already saw refused.

    A refused bind is remembered as an HMAC-SHA-256 of (url, bind DN, password) under a
    key drawn at random per reader. The digest lives in this process's memory only and is
    never written out; the random key means even a memory dump gives no offline guess
    check, so a slow hash (scrypt, as the state file's fingerprints use) buys nothing
    here and would cost ~50 ms per read. A new password file, DN or URL binds again.
    """

    def __init__(self) -> None:
        self._key = os.urandom(32)
        self._refused: bytes | None = None

    def read(
        self,
        config: LdapConfig,
        password: Secret,
        addresses: Sequence[str],
        *,
        now: dt.datetime,
    ) -> dict[str, PasswordDate]:
        """read_directory(), or BindRefused(attempted=False) at once for a refused password."""
        digest = self._digest(config, password)
        if self._refused is not None and hmac.compare_digest(digest, self._refused):
            raise BindRefused(attempted=False)
        try:
            dates = read_directory(config, password, addresses, now=now)
        except BindRefused:
            self._refused = digest
            raise
        self._refused = None
        return dates

    @property
    def refused(self) -> bool:
        """Whether the last bind was refused and waits for another password."""
        return self._refused is not None

    def _digest(self, config: LdapConfig, password: Secret) -> bytes:
        message = "\x00".join((config.url, config.bind_dn, password.reveal()))
        return hmac.new(self._key, message.encode("utf-8"), hashlib.sha256).digest()
