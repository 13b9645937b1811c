"""Pure pieces of the LDAP source: filters, the matching attribute, LDAP and AD time values."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator, Sequence

# AD's "never expires" (and the largest FILETIME); 0 means no expiry is computed
# (the password must be changed at next logon, or the account has no password).
FILETIME_NEVER = 0x7FFFFFFFFFFFFFFF
_FILETIME_EPOCH = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)

# The first `(attribute={address})` or `(attribute={local})` term of the configured filter.
_MATCHING_TERM = re.compile(
    r"\(\s*([A-Za-z][A-Za-z0-9-]*(?:;[A-Za-z0-9-]+)*)\s*=\s*\{(address|local)\}\s*\)"
)
_GENERALIZED = re.compile(
    r"^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})?(\d{2})?(?:[.,](\d{1,6})\d*)?(Z|[+-]\d{4})$"
)
# RFC 4515: these must be escaped in an assertion value.
_FILTER_SPECIALS = {"\\": r"\5c", "*": r"\2a", "(": r"\28", ")": r"\29", "\x00": r"\00"}


class FilterError(ValueError):
    """The configured filter cannot say which attribute holds the mailbox's address."""


def matching_rule(filter_template: str) -> tuple[str, bool]:
    """The attribute an entry is matched on, and whether it holds the local part only.

    Entries come back from one search for many addresses, so each must be tied to its
    mailbox again: the attribute is the one the filter compares with `{address}` (or
    `{local}`), e.g. `mail` in the default `(mail={address})`, `uid` in `(uid={local})`.
    """
    found = _MATCHING_TERM.search(filter_template)
    if found is None:
        raise FilterError(
            "the LDAP filter must compare one attribute with {address} or {local}, "
            "e.g. (mail={address})"
        )
    return found.group(1), found.group(2) == "local"


def escape_value(value: str) -> str:
    """An assertion value with RFC 4515's special characters escaped."""
    return "".join(_FILTER_SPECIALS.get(char, char) for char in value)


def address_filter(filter_template: str, address: str) -> str:
    """The configured filter for one mailbox, its placeholders filled and escaped."""
    local = address.split("@", 1)[0]
    return filter_template.replace("{address}", escape_value(address)).replace(
        "{local}", escape_value(local)
    )


def chunked_filters(filter_template: str, addresses: Sequence[str], size: int) -> Iterator[str]:
    """OR filters covering `size` addresses each."""
    for start in range(0, len(addresses), size):
        terms = [address_filter(filter_template, a) for a in addresses[start : start + size]]
        yield terms[0] if len(terms) == 1 else f"(|{''.join(terms)})"


def parse_generalized_time(text: str) -> dt.datetime:
    """An LDAP GeneralizedTime (RFC 4517), e.g. 20250101120000Z, as an aware datetime."""
    found = _GENERALIZED.match(text.strip())
    if found is None:
        raise ValueError(f"not a GeneralizedTime: {text!r:.40}")
    year, month, day, hour, minute, second, fraction, zone = found.groups()
    moment = dt.datetime(
        int(year),
        int(month),
        int(day),
        int(hour),
        int(minute or 0),
        int(second or 0),
        int((fraction or "0").ljust(6, "0")),
        tzinfo=dt.UTC,
    )
    if zone != "Z":
        offset = dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[3:5]))
        moment -= offset if zone[0] == "+" else -offset
    return moment


def filetime_expiry(value: int) -> dt.datetime | None:
    """AD's msDS-UserPasswordExpiryTimeComputed (100 ns since 1601, UTC); None: never."""
    if value <= 0 or value >= FILETIME_NEVER:
        return None
    try:
        return _FILETIME_EPOCH + dt.timedelta(microseconds=value // 10)
    except OverflowError:  # past year 9999: as good as never
        return None
