"""What is known of a CERBERE password's life: each source's word, and the expiry kept."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum


class ExpirySource(StrEnum):
    """Where an expiry date comes from."""

    INVENTORY = "inventory"  # password_changed or password_expires in the inventory
    OBSERVED = "observed"  # a new .cerbere credential accepted by SMTP AUTH
    LDAP = "ldap"  # the directory's pwdChangedTime, or AD's computed expiry
    SMTP = "smtp"  # SMTP AUTH said the password expired: expired now, whatever the date


@dataclass(frozen=True, slots=True)
class PasswordDate:
    """One source's word on a mailbox's CERBERE password: its last change, or its expiry
    where the source gives that instead. Times are timezone-aware."""

    address: str
    source: ExpirySource
    changed_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Expiry:
    """The expiry kept for a mailbox, and the source it was taken from."""

    address: str
    source: ExpirySource
    expires_at: dt.datetime  # timezone-aware
    changed_at: dt.datetime | None  # the change it follows from, where known
    expired_now: bool = False  # SMTP AUTH said the password expired
