"""The jobs beside the probes, wired: observed changes, the directory, the expiry book and
the warning mails. Each has its own cadence and its own state tables."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from zoneinfo import ZoneInfo

from monitor.config.errors import ConfigError, Problem
from monitor.config.model import Config
from monitor.credentials import CredentialStore
from monitor.expiry.book import ExpiryBook
from monitor.expiry.directory_job import DirectoryJob
from monitor.expiry.observed import ObservedChanges, cerbere_listener
from monitor.notify.deliver import Deliverer, Wording
from monitor.notify.french import french_date, french_in_days
from monitor.notify.job import NotifierJob
from monitor.notify.relay import RelaySender
from monitor.notify.templates import TemplateError, Templates, load_templates
from monitor.scheduling.runner import ProbeRunner
from monitor.scheduling.view import MailboxStatus
from monitor.state.store import StateStore

WORDING = Wording(french_date, french_in_days)


def checked_templates(config: Config) -> Templates:
    """The warning templates, or a ConfigError naming the file, the line and the rule: found
    by `check` and at start, not when the first mail is due at 08:00."""
    try:
        return load_templates(config.notify.templates)
    except TemplateError as exc:
        raise ConfigError([Problem(config.source, "notify.templates", str(exc))]) from None


class ExpiryJobs:
    """Everything about CERBERE expiry in a running daemon."""

    def __init__(
        self,
        config: Config,
        store: StateStore,
        credentials: CredentialStore,
        runner: ProbeRunner,
        statuses: Callable[[], Mapping[str, MailboxStatus]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._credentials = credentials
        self._store = store
        self._clock = clock
        self._templates = checked_templates(config)
        self.observed = ObservedChanges(store)
        runner.on_accepted = cerbere_listener(self.observed, clock)
        self.directory = DirectoryJob(lambda: self._config, store, lambda: self._credentials, clock)
        self.book = ExpiryBook(
            lambda: self._config.expiry, self.observed, lambda: self.directory.dates, statuses
        )
        self._deliverer = self._new_deliverer()
        self.notifier = NotifierJob(
            lambda: self._config, store, self.book, lambda: self._deliverer, clock
        )

    def reconfigure(
        self, config: Config, credentials: CredentialStore, templates: Templates
    ) -> None:
        """Adopt a new configuration, with its templates already checked."""
        self._config = config
        self._credentials = credentials
        self._templates = templates
        self._deliverer = self._new_deliverer()
        self.directory.reconfigure()

    async def run(self) -> None:
        """Run the directory and warning-mail jobs until cancelled."""
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self.directory.run())
                group.create_task(self.notifier.run())
        finally:
            # The daemon waits for this task at a stop: queued acceptances get their say.
            await self.observed.stop()

    def _new_deliverer(self) -> Deliverer:
        config = self._config
        return Deliverer(
            self._store,
            config.notify,
            self._templates,
            RelaySender(config.notify.relay, config.credentials),
            WORDING,
            clock=self._clock,
            zone=ZoneInfo(config.expiry.timezone),
        )
