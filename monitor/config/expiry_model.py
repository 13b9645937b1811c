"""The configuration of CERBERE password expiry and of the warning mails; defaults here."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from monitor.config.model import ConfigPath, FrozenModel, TlsMode
from monitor.config.values import DAY, HOUR, MINUTE, MS, SECOND, duration, whole

_SEND_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_ADDRESS = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
_DN_LIKE = re.compile(r"^[^\r\n\x00]+=[^\r\n\x00]+$")


class LdapConfig(FrozenModel):
    """A directory giving each account's last password change (or its expiry)."""

    url: str = Field(pattern=r"^ldaps?://[^/\s]+$")  # e.g. ldaps://ldap.example.org:636
    flavour: Literal["openldap", "active_directory"] = "openldap"
    bind_dn: str = Field(min_length=3, max_length=1000)
    # Name of the file in the credentials folder holding the bind password (or
    # $<env_prefix><NAME> upper-cased): never the password itself.
    bind_credential: str = Field(default="ldap-bind", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    base_dn: str = Field(min_length=3, max_length=1000)
    # `{address}` and `{local}` are replaced by the mailbox's address and local part.
    filter: str = Field(default="(mail={address})", min_length=3, max_length=1000)
    # OpenLDAP ppolicy: the policy entry whose pwdMaxAge applies (the default policy is
    # not visible on entries, so the reader must be told).
    policy_dn: str | None = Field(default=None, min_length=3, max_length=1000)
    ca_file: ConfigPath | None = None
    page_size: Annotated[int, whole(1, 10_000)] = 500
    timeout: Annotated[float, duration(100 * MS, 10 * MINUTE)] = 30.0
    interval: Annotated[float, duration(MINUTE, 7 * DAY)] = 6 * HOUR

    @model_validator(mode="after")
    def _policy_for_openldap(self) -> LdapConfig:
        if self.flavour == "openldap" and self.policy_dn is None:
            raise ValueError("policy_dn is required with flavour openldap (its pwdMaxAge)")
        for name, value in (("bind_dn", self.bind_dn), ("base_dn", self.base_dn)):
            if not _DN_LIKE.match(value):
                raise ValueError(f"{name} must be a distinguished name, e.g. dc=example,dc=org")
        return self


class ExpirySources(FrozenModel):
    """Where expiry dates come from; where they disagree, the most recent change wins."""

    inventory: bool = True  # password_changed / password_expires in the inventory
    observed: bool = True  # a new .cerbere accepted by SMTP AUTH: the change date recorded
    ldap: LdapConfig | None = None


class ExpiryConfig(FrozenModel):
    """The CERBERE password's life and when establishments are warned."""

    # Calendar months from a change to the expiry; a change on the 31st (or 29th, 30th)
    # expires on the last day of a shorter month: 31 August + 6 months = 28 February.
    policy_months: Annotated[int, whole(1, 60)] = 6
    thresholds: tuple[int, ...] = (15, 5, 1)  # days before the expiry date, in Brussels
    send_from: str = "08:00"  # local time (Europe/Brussels) from which mails may go out
    send_until: str = "18:00"  # and until which: never at night
    timezone: str = "Europe/Brussels"
    sources: ExpirySources = ExpirySources()

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(not 1 <= days <= 365 for days in value):
            raise ValueError("must list days between 1 and 365, e.g. [15, 5, 1]")
        if len(set(value)) != len(value):
            raise ValueError("lists a threshold twice")
        return tuple(sorted(value, reverse=True))

    @field_validator("send_from", "send_until")
    @classmethod
    def _clock_time(cls, value: str) -> str:
        if not _SEND_TIME.match(value):
            raise ValueError(f"must be a time of day as HH:MM, e.g. 08:00 (got {value!r:.40})")
        return value

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r:.60}") from None
        return value

    @model_validator(mode="after")
    def _window(self) -> ExpiryConfig:
        if self.send_until <= self.send_from:
            raise ValueError("send_until must be later in the day than send_from")
        return self

    def local_time(self, text: str) -> dt.time:
        """An HH:MM setting as a time of day."""
        hours, minutes = text.split(":")
        return dt.time(int(hours), int(minutes))


class RelayConfig(FrozenModel):
    """The SMTP relay that carries warning mails."""

    host: str = Field(default="127.0.0.1", min_length=1, max_length=253)
    port: Annotated[int, whole(1, 65535)] = 25
    tls: TlsMode = TlsMode.STARTTLS
    ca_file: ConfigPath | None = None
    tls_server_name: str | None = Field(default=None, min_length=1, max_length=253)
    # AUTH on the relay: user name, and the name of the credentials-folder file holding
    # its password. Both or neither.
    username: str | None = Field(default=None, min_length=1, max_length=254)
    credential: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,100}$")
    connect_timeout: Annotated[float, duration(100 * MS, 10 * MINUTE)] = 10.0
    command_timeout: Annotated[float, duration(100 * MS, HOUR)] = 60.0

    @model_validator(mode="after")
    def _auth_pair(self) -> RelayConfig:
        if (self.username is None) != (self.credential is None):
            raise ValueError("username and credential go together (relay AUTH), or neither")
        return self


class NotifyConfig(FrozenModel):
    """The warning mails: off (dry run: rendered and logged) until enabled."""

    enabled: bool = False
    relay: RelayConfig = RelayConfig()
    sender: str = Field(default="", max_length=254)  # From: REQUIRED once enabled
    reply_to: str | None = Field(default=None, max_length=254)
    templates: ConfigPath | None = None  # folder of the templates; None: the shipped ones
    per_minute: Annotated[int, whole(1, 10_000)] = 30  # mails handed to the relay
    daily_cap: Annotated[int, whole(1, 1_000_000)] = 2000
    every: Annotated[float, duration(SECOND, HOUR)] = 60.0  # how often the outbox is worked
    retry_initial: Annotated[float, duration(SECOND, DAY)] = 60.0
    retry_max: Annotated[float, duration(SECOND, DAY)] = 3600.0

    @field_validator("sender", "reply_to")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        if value and not _ADDRESS.match(_bare(value)):
            raise ValueError(
                f"must be an e-mail address, optionally 'Name <address>' ({value!r:.60})"
            )
        return value

    @model_validator(mode="after")
    def _sender_when_enabled(self) -> NotifyConfig:
        if self.enabled and not self.sender:
            raise ValueError("sender (the From address) is required once enabled")
        if self.retry_max < self.retry_initial:
            raise ValueError("retry_max must not be shorter than retry_initial")
        return self


def _bare(value: str) -> str:
    """The address of 'Name <address>', or the value itself."""
    if value.endswith(">") and "<" in value:
        return value[value.rindex("<") + 1 : -1]
    return value
