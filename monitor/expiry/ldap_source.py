"""Password dates from a directory over LDAP: OpenLDAP ppolicy or Active Directory.

ldap3 (pure Python, synchronous): read_directory() blocks, so the caller runs it in
`asyncio.to_thread`. One service bind, then for every ADDRESSES_PER_SEARCH mailboxes one
paged subtree search under base_dn with an OR of the configured filter per address.

Why OR filters rather than one search of the whole subtree: the directory behind CERBERE
holds every teacher and staff member, far more entries than the 10,000 monitored mailboxes;
OR filters on an indexed attribute return only ours (10 searches for 10,000 mailboxes),
where a subtree walk would page through the whole directory every interval.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ssl
from collections.abc import Sequence
from typing import Any

import ldap3  # type: ignore[import-untyped]
from ldap3.core import exceptions as ldap_errors  # type: ignore[import-untyped]

from monitor.config.expiry_model import LdapConfig
from monitor.credentials import Secret
from monitor.expiry.ldap_errors import (
    BindRefused,
    DirectoryUnavailable,
    UnavailableReason,
    scrubbed,
)
from monitor.expiry.ldap_values import (
    chunked_filters,
    filetime_expiry,
    matching_rule,
    parse_generalized_time,
)
from monitor.expiry.model import ExpirySource, PasswordDate

# About 40 bytes of filter per address: 1,000 make a 40 KB request, well inside OpenLDAP's
# and AD's request size limits (sockbuf_max_incoming_auth 4 MB, MaxReceiveBuffer 10 MB).
ADDRESSES_PER_SEARCH = 1000
INVALID_CREDENTIALS = 49
_PAGED_RESULTS = "1.2.840.113556.1.4.319"
CHANGED_ATTRIBUTE = "pwdChangedTime"  # operational: returned only when asked by name
MAX_AGE_ATTRIBUTE = "pwdMaxAge"
AD_EXPIRY_ATTRIBUTE = "msDS-UserPasswordExpiryTimeComputed"  # constructed: by name too


def read_directory(
    config: LdapConfig,
    password: Secret,
    addresses: Sequence[str],
    *,
    now: dt.datetime,
    addresses_per_search: int = ADDRESSES_PER_SEARCH,
) -> dict[str, PasswordDate]:
    """Each address's password date as the directory says (blocking; run it in a thread).

    Addresses the directory does not know, or whose password never expires, are absent.
    Raises BindRefused or DirectoryUnavailable; neither carries the password.
    """
    attribute, local_only = matching_rule(config.filter)
    wanted: dict[str, list[str]] = {}
    for address in addresses:
        key = (address.split("@", 1)[0] if local_only else address).lower()
        wanted.setdefault(key, []).append(address)
    connection = _connect(config, password)
    try:
        _bind(connection, password)
        if config.flavour == "openldap":
            max_age = _max_age(connection, config, password)
            asked = [attribute, CHANGED_ATTRIBUTE]
        else:
            max_age = None
            asked = [attribute, AD_EXPIRY_ATTRIBUTE]
        found: dict[str, PasswordDate] = {}
        for search_filter in chunked_filters(config.filter, list(addresses), addresses_per_search):
            for entry in _paged_search(connection, config, password, search_filter, asked):
                for value in _strings(entry, attribute):
                    for address in wanted.get(value.lower(), ()):
                        date = _password_date(address, entry, max_age, now)
                        if date is not None:
                            found[address] = _later(found.get(address), date)
        return found
    finally:
        _close(connection)


def _connect(config: LdapConfig, password: Secret) -> Any:
    """An open connection: TCP (and TLS for ldaps://) done, nothing sent yet."""
    tls = None
    if config.url.lower().startswith("ldaps://"):
        tls = ldap3.Tls(
            validate=ssl.CERT_REQUIRED,
            ca_certs_file=None if config.ca_file is None else str(config.ca_file),
        )
    try:
        server = ldap3.Server(
            config.url, get_info=ldap3.NONE, tls=tls, connect_timeout=config.timeout
        )
        connection = ldap3.Connection(
            server,
            user=config.bind_dn,
            password=password.reveal(),
            authentication=ldap3.SIMPLE,
            client_strategy=ldap3.SYNC,
            read_only=True,
            raise_exceptions=False,
            auto_referrals=False,
        )
        connection.open()
        # ldap3 2.9.1 packs receive_timeout into SO_RCVTIMEO as whole seconds and crashes on
        # a fraction; the socket keeps connect_timeout for every later send and receive
        # (the TLS handshake included), which is the deadline wanted. Set once more so it
        # does not rest on that side effect.
        connection.socket.settimeout(config.timeout)
    except ldap_errors.LDAPException as exc:
        raise _unavailable(exc, password, UnavailableReason.CONNECT) from None
    return connection


def _bind(connection: Any, password: Secret) -> None:
    """The service bind; a refusal (49) is BindRefused, never retried here."""
    try:
        accepted = connection.bind()
    except ldap_errors.LDAPException as exc:
        raise _unavailable(exc, password, UnavailableReason.BIND) from None
    if accepted:
        return
    result = connection.result or {}
    if result.get("result") == INVALID_CREDENTIALS:
        raise BindRefused(scrubbed(str(result.get("message") or ""), password))
    raise DirectoryUnavailable(UnavailableReason.BIND, _result_text(result, password))


def _max_age(connection: Any, config: LdapConfig, password: Secret) -> int | None:
    """The policy's pwdMaxAge in seconds; None when absent or 0 (passwords never expire)."""
    assert config.policy_dn is not None  # LdapConfig requires it for openldap
    try:
        connection.search(
            config.policy_dn,
            "(objectClass=*)",
            search_scope=ldap3.BASE,
            attributes=[MAX_AGE_ATTRIBUTE],
        )
    except ldap_errors.LDAPException as exc:
        raise _unavailable(exc, password, UnavailableReason.SEARCH) from None
    result = connection.result or {}
    if result.get("result") != 0 or not connection.response:
        raise DirectoryUnavailable(
            UnavailableReason.POLICY,
            f"policy entry {config.policy_dn}: {_result_text(result, password)}",
        )
    values = _strings(connection.response[0], MAX_AGE_ATTRIBUTE)
    try:
        seconds = int(values[0]) if values else 0
    except ValueError:
        raise DirectoryUnavailable(
            UnavailableReason.POLICY, f"policy entry {config.policy_dn}: pwdMaxAge is not a number"
        ) from None
    return seconds if seconds > 0 else None


def _paged_search(
    connection: Any, config: LdapConfig, password: Secret, search_filter: str, asked: list[str]
) -> list[dict[str, Any]]:
    """Every entry the filter matches under base_dn, page_size at a time (RFC 2696)."""
    entries: list[dict[str, Any]] = []
    cookie: bytes | None = None
    while True:
        try:
            connection.search(
                config.base_dn,
                search_filter,
                search_scope=ldap3.SUBTREE,
                attributes=asked,
                paged_size=config.page_size,
                paged_cookie=cookie,
            )
        except ldap_errors.LDAPException as exc:
            raise _unavailable(exc, password, UnavailableReason.SEARCH) from None
        result = connection.result or {}
        if result.get("result") != 0:
            raise DirectoryUnavailable(UnavailableReason.SEARCH, _result_text(result, password))
        entries.extend(e for e in connection.response or () if e.get("type") == "searchResEntry")
        control = (result.get("controls") or {}).get(_PAGED_RESULTS) or {}
        cookie = (control.get("value") or {}).get("cookie")
        if not cookie:
            return entries


def _password_date(
    address: str, entry: dict[str, Any], max_age: int | None, now: dt.datetime
) -> PasswordDate | None:
    """The entry's password date; None where the password never expires or has no date."""
    changed = _strings(entry, CHANGED_ATTRIBUTE)
    if changed:
        try:
            changed_at = parse_generalized_time(changed[0])
        except ValueError:
            return None  # not a date slapd writes; better no date than a wrong one
        # A change "in the future" is the directory's clock running ahead: it happened now.
        changed_at = min(changed_at, now)
        expires_at = None if max_age is None else changed_at + dt.timedelta(seconds=max_age)
        return PasswordDate(address, ExpirySource.LDAP, changed_at, expires_at)
    computed = _strings(entry, AD_EXPIRY_ATTRIBUTE)
    if computed:
        try:
            expires = filetime_expiry(int(computed[0]))
        except ValueError:
            return None
        if expires is not None:
            return PasswordDate(address, ExpirySource.LDAP, expires_at=expires)
    return None


def _later(known: PasswordDate | None, new: PasswordDate) -> PasswordDate:
    """Of two entries for one mailbox, the one with the later date: the most recent word."""
    if known is None:
        return new
    return new if _moment(new) > _moment(known) else known


def _moment(date: PasswordDate) -> dt.datetime:
    """The date two entries for one mailbox are compared on."""
    return date.changed_at or date.expires_at or dt.datetime.min.replace(tzinfo=dt.UTC)


def _strings(entry: dict[str, Any], name: str) -> list[str]:
    """An attribute's values as text, its name matched case-insensitively."""
    for key, values in (entry.get("raw_attributes") or {}).items():
        if key.lower() == name.lower():
            return [
                v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v) for v in values
            ]
    return []


def _text(value: object) -> str:
    """A raw attribute value as text."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _result_text(result: dict[str, Any], password: Secret) -> str:
    """An LDAP result as `code description: message`, the password taken out."""
    text = f"{result.get('result')} {result.get('description')}"
    message = result.get("message")
    return scrubbed(f"{text}: {message}" if message else text, password)


def _unavailable(
    exc: ldap_errors.LDAPException, password: Secret, reason: UnavailableReason
) -> DirectoryUnavailable:
    """ldap3's exception translated once, here; timeouts and TLS failures told apart."""
    text = scrubbed(f"{type(exc).__name__}: {exc}", password)
    lowered = text.lower()
    if "timed out" in lowered or "timeout" in lowered:
        return DirectoryUnavailable(UnavailableReason.TIMEOUT, text)
    if "ssl" in lowered or "certificate" in lowered or "tls" in lowered:
        return DirectoryUnavailable(UnavailableReason.TLS, text)
    return DirectoryUnavailable(reason, text)


def _close(connection: Any) -> None:
    """Unbind and close, whatever state the connection is in."""
    # The connection is being dropped anyway; a failed unbind changes nothing.
    with contextlib.suppress(ldap_errors.LDAPException, OSError):
        connection.unbind()
