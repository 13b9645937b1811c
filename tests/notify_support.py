"""Shared pieces of the warning mail tests: a settable clock, a store, rows, a deliverer."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from monitor.config.expiry_model import NotifyConfig, RelayConfig
from monitor.config.model import CredentialsConfig
from monitor.notify.deliver import BRUSSELS, Deliverer, Wording
from monitor.notify.message import message_id
from monitor.notify.outbox import OutboxEntry
from monitor.notify.relay import RelaySender, Step
from monitor.notify.templates import Audience, load_templates
from monitor.state.store import StateStore

SENDER = "BMA Monitor <noreply@monitor.test>"
REPLY_TO = "support@etnic.be"
# Tuesday 9 June 2026, 08:00 in Brussels (06:00 UTC, summer time).
MORNING = dt.datetime(2026, 6, 9, 8, 0, tzinfo=BRUSSELS).timestamp()

# The French wording is notify.french's; these stand-ins keep the tests apart from it.
WORDING = Wording(
    date=lambda day: f"{day.day}/{day.month}/{day.year}",
    days=lambda n: f"dans {n} jour{'s' if n > 1 else ''}",
)


class Clock:
    """A clock the test sets."""

    def __init__(self, now: float = MORNING) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        """Move time forward."""
        self.now += seconds


def entry(
    number: int,
    threshold: int,
    days_ahead: int,
    *,
    audience: Audience = Audience.BMA,
    recipient: str | None = None,
    establishment: str = "Athénée royal",
    today: dt.date = dt.date(2026, 6, 9),
) -> OutboxEntry:
    """An outbox entry for mailbox ec<number>, expiring `days_ahead` days after `today`."""
    address = f"ec{number:06d}@adm.cfwb.be"
    expiry = today + dt.timedelta(days=days_ahead)
    return OutboxEntry(
        address=address,
        expiry_date=expiry,
        threshold=threshold,
        audience=audience,
        recipient=recipient or address,
        message_id=message_id(address, expiry, threshold, audience, SENDER),
        establishment=establishment,
        contact="direction@ecole.test" if audience is Audience.CONTACT else "",
    )


def notify_config(port: int, **changes: Any) -> NotifyConfig:
    """Sending enabled, to the recording relay on `port`, with quick retries."""
    relay = {"host": "127.0.0.1", "port": port, "tls": "none", "connect_timeout": 5.0}
    relay.update(changes.pop("relay", {}))
    values: dict[str, Any] = {
        "enabled": True,
        "relay": RelayConfig(**relay),
        "sender": SENDER,
        "reply_to": REPLY_TO,
        "retry_initial": 60.0,
        "retry_max": 3600.0,
    }
    values.update(changes)
    return NotifyConfig(**values)


def deliverer(
    store: StateStore,
    config: NotifyConfig,
    clock: Clock,
    *,
    credentials: Path | None = None,
    step: Step | None = None,
) -> Deliverer:
    """A deliverer on the shipped templates and the test wording."""
    relay = RelaySender(config.relay, CredentialsConfig(directory=credentials), step=step)
    return Deliverer(store, config, load_templates(None), relay, WORDING, clock=clock, step=step)
