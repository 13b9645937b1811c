"""The configuration of mailbox fullness: quota states, the growth forecast, the canary."""

from __future__ import annotations

from typing import Annotated

from pydantic import ByteSize, Field, model_validator

from monitor.config.expiry_model import RelayConfig
from monitor.config.model import TWO_GIB, FrozenModel
from monitor.config.values import (
    DAY,
    GIB,
    HOUR,
    MIB,
    MINUTE,
    SECOND,
    TIB,
    duration,
    number,
    size,
    whole,
)

Size = Annotated[ByteSize, size(MIB, TIB)]


class QuotaTiers(FrozenModel):
    """Exchange's own quota tiers, as sizes: the states follow them where they are given."""

    issue_warning: Size  # IssueWarningQuota: Exchange warns the user
    prohibit_send: Size  # ProhibitSendQuota: the mailbox can no longer send
    prohibit_send_receive: Size  # ProhibitSendReceiveQuota: mail to it bounces: full

    @model_validator(mode="after")
    def _order(self) -> QuotaTiers:
        if not self.issue_warning <= self.prohibit_send <= self.prohibit_send_receive:
            raise ValueError("must grow: issue_warning <= prohibit_send <= prohibit_send_receive")
        return self


class QuotaConfig(FrozenModel):
    """The limit assumed where the server gives none, the states and the forecast."""

    default_limit: Size = ByteSize(TWO_GIB)
    warning_ratio: Annotated[float, number(0.01, 1)] = 0.85
    critical_ratio: Annotated[float, number(0.01, 1)] = 0.95
    # A mailbox enters a state at its threshold and leaves it only once below the
    # threshold minus this share of the limit: 84.9 / 85.1 % does not flap.
    hysteresis: Annotated[float, number(0, 0.5)] = 0.02
    tiers: QuotaTiers | None = None  # fleet-wide Exchange tiers, in place of the ratios
    forecast_window: Annotated[float, duration(DAY, 90 * DAY)] = 14 * DAY
    history: Annotated[float, duration(DAY, 365 * DAY)] = 90 * DAY

    @model_validator(mode="after")
    def _ratios_order(self) -> QuotaConfig:
        if self.critical_ratio < self.warning_ratio:
            raise ValueError("critical_ratio must not be below warning_ratio")
        if self.forecast_window > self.history:
            raise ValueError("forecast_window must not be longer than history")
        return self


class BounceMailbox(FrozenModel):
    """The mailbox the canary's bounces (DSNs) come back to, read over IMAP, read-only."""

    address: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    server: str = Field(min_length=1, max_length=100)  # a configured server with IMAP
    # Its password: <credentials directory>/<address>.imap, as for any mailbox.


class CanaryConfig(FrozenModel):
    """The delivery canary: opt-in, since a school reading by POP3 may download it."""

    enabled: bool = False
    mailboxes: list[str] = Field(default_factory=list, max_length=100_000)  # address or local part
    sample: Annotated[int, whole(0, 100_000)] = 0  # and/or a stable sample of this many
    every: Annotated[float, duration(MINUTE, 30 * DAY)] = DAY
    deadline: Annotated[float, duration(SECOND, DAY)] = 15 * MINUTE  # to see it arrive
    poll: Annotated[float, duration(SECOND, HOUR)] = 10.0  # between looks while it is due
    sender: str = Field(default="", max_length=254)  # the envelope and From address
    relay: RelayConfig = RelayConfig()
    bounces: BounceMailbox | None = None
    max_size: Annotated[ByteSize, size(1, GIB)] = ByteSize(4096)  # the canary's own size

    @model_validator(mode="after")
    def _sender_when_enabled(self) -> CanaryConfig:
        if self.enabled and not self.sender:
            raise ValueError("sender (the canary's From address) is required once enabled")
        if self.enabled and not self.mailboxes and not self.sample:
            raise ValueError("list mailboxes or set a sample once enabled")
        return self
