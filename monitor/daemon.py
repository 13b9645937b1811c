"""The daemon: wires config, state, scheduler and HTTP endpoint; handles signals and reloads."""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector

from monitor.canary.job import CanaryJob
from monitor.config import Config, ConfigError, load_config
from monitor.config.shards import Shard, sharded
from monitor.credentials import CredentialStore, credential_directory_problems
from monitor.expiry.jobs import ExpiryJobs, checked_templates
from monitor.health import health_report
from monitor.logs import configure_logging
from monitor.memory import return_large_blocks
from monitor.metrics.collector import BmaCollector, ReloadStatus
from monitor.metrics.expiry import ExpiryCollector, ExpiryText, ExpiryView
from monitor.metrics.fullness import FullnessText, FullnessView
from monitor.metrics.http import HttpEndpoint
from monitor.metrics.page import MetricsPage
from monitor.scheduling.runner import ProbeRunner
from monitor.scheduling.scheduler import Scheduler
from monitor.sdnotify import ServiceNotifier
from monitor.state.shard_identity import claim_shard
from monitor.state.store import StateStore

log = structlog.get_logger("bma_monitor.daemon")

IO_THREADS = 2
GC_THRESHOLDS = (50_000, 20, 10)


class Daemon:
    """One running monitor."""

    def __init__(
        self, config: Config, store: StateStore, *, shard_override: Shard | None = None
    ) -> None:
        self.config = config
        self.store = store
        self.reload_status = ReloadStatus(True, time.time())
        # What a reload cannot change: the values in use, whatever the file says later.
        self._fixed = {
            "state.path": str(store.path),
            "http.listen": config.http.listen,
            "shard": str(config.shard),
        }
        self._shard_override = shard_override  # --shard, which a reload must keep too
        # Read once: it never changes, and a reload must not need a writable state file.
        self._salt = store.salt()
        credentials = self._credentials = CredentialStore(config.credentials, self._salt)
        self.runner = ProbeRunner(config, store, credentials)
        self.scheduler = Scheduler(config, self.runner, store)
        self.expiry = ExpiryJobs(
            config, store, credentials, self.runner, lambda: self.scheduler.statuses
        )
        self.canary = CanaryJob(
            lambda: self.config,
            store,
            lambda: self._credentials,
            self.runner,
            lambda: self.scheduler.statuses,
        )
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.registry.register(BmaCollector(self.scheduler.view, lambda: self.reload_status))
        self.registry.register(ExpiryCollector(self.expiry_view))
        sections = (ExpiryText(self.expiry_view).render, FullnessText(self.fullness_view).render)
        self.metrics = MetricsPage(self.registry, self.scheduler.view, sections)
        self.http = HttpEndpoint(config.http.host, config.http.port, self.metrics, self.health)
        self.service = ServiceNotifier()

    def expiry_view(self) -> ExpiryView:
        """What the expiry metrics show, as of the notifier's last tick."""
        jobs = self.expiry
        return ExpiryView(
            self.config,
            dict(jobs.notifier.expiries),
            jobs.notifier.counts,
            dict(jobs.notifier.warned),
            jobs.directory.health(),
        )

    def fullness_view(self) -> FullnessView:
        """What the fullness metrics show: states, forecasts, evidence, canaries."""
        return FullnessView(
            self.config,
            self.scheduler.fullness.states(),
            self.scheduler.forecasts,
            dict(self.canary.evidence),
            dict(self.canary.results),
        )

    def health(self) -> tuple[bool, dict[str, Any]]:
        """The /healthz answer."""
        return health_report(self.scheduler.view(), time.monotonic())

    async def reload(self) -> None:
        """Load the config file again and apply it whole, or keep the old one whole."""
        path = self.config.source
        try:
            config = await asyncio.to_thread(load_config, path, shard=self._shard_override)
            credentials = CredentialStore(config.credentials, self._salt)
            templates = await asyncio.to_thread(checked_templates, config)
        except ConfigError as exc:
            self._reload_failed(path, exc.listed())
            return
        except Exception as exc:
            # Whatever went wrong, the running configuration stays whole and the metric says so.
            log.exception("reload_failed_unexpectedly", config=str(path))
            self._reload_failed(path, [f"{path}: {type(exc).__name__}: {exc}"[:500]])
            return
        if config.shard != self.config.shard:
            log.warning(
                "reload_needs_restart",
                setting="shard",
                running=self._fixed["shard"],
                configured=str(config.shard),
            )
            # The running shard's share: another's would probe mailboxes it owns too.
            config = sharded(config, self.config.shard)
        for setting, configured in (
            ("state.path", str(config.state.path)),
            ("http.listen", config.http.listen),
        ):
            if configured != self._fixed[setting]:
                log.warning(
                    "reload_needs_restart",
                    setting=setting,
                    running=self._fixed[setting],
                    configured=configured,
                )
        configure_logging(config.logging.level, config.logging.format)
        self.runner.reconfigure(config, credentials)
        self.scheduler.reconfigure(config)
        self.expiry.reconfigure(config, credentials, templates)
        self._credentials = credentials
        self.config = config
        self.reload_status = ReloadStatus(True, time.time())
        log.info("reloaded", config=str(path), mailboxes=len(config.mailboxes))
        await self.warm_metrics()

    async def warm_metrics(self) -> None:
        """Render the per-mailbox metrics ahead of the next scrape, off the event loop."""
        try:
            await asyncio.to_thread(self.metrics.warm)
        except Exception:
            # The scrape will render them itself; a bug here must not stop the daemon.
            log.exception("metrics_warm_failed")

    async def reload_announced(self) -> None:
        """reload(), with systemd told it is reloading and then ready again."""
        self.service.reloading()
        try:
            await self.reload()
        finally:
            self.service.ready(self._status())

    def _status(self) -> str:
        """The one line `systemctl status` shows."""
        reload = "" if self.reload_status.successful else "; last reload FAILED, old config kept"
        return f"Monitoring {len(self.config.mailboxes)} mailboxes{reload}"

    def _reload_failed(self, path: Path, problems: list[str]) -> None:
        self.reload_status = ReloadStatus(False, self.reload_status.last_success_at)
        log.error("reload_failed", config=str(path), problems=problems)

    async def serve(self) -> None:
        """Run until SIGTERM or SIGINT; SIGHUP reloads the configuration."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        reloads: set[asyncio.Task[None]] = set()

        def on_hup() -> None:
            task = loop.create_task(self.reload_announced())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        def on_stop() -> None:
            self.service.stopping()
            stop.set()

        loop.add_signal_handler(signal.SIGTERM, on_stop)
        loop.add_signal_handler(signal.SIGINT, on_stop)
        loop.add_signal_handler(signal.SIGHUP, on_hup)
        self.http.start()
        log.info(
            "started",
            config=str(self.config.source),
            mailboxes=len(self.config.mailboxes),
            listen=f"{self.config.http.host}:{self.http.port}",
            state=str(self.store.path),
            shard=str(self.config.shard) if self.config.shard else None,
            fleet=len(self.config.fleet),
        )
        directory = self.config.credentials.directory
        for problem in await asyncio.to_thread(credential_directory_problems, directory):
            log.warning("credentials_directory", problem=problem)
        scheduler = loop.create_task(self.scheduler.run())
        expiry = loop.create_task(self.expiry.run())
        canary = loop.create_task(self.canary.run())
        warming = loop.create_task(self.warm_metrics())
        watchdog = loop.create_task(self.service.keep_watchdog(lambda: self.health()[0]))
        stopping = loop.create_task(stop.wait())
        self.service.ready(self._status())
        try:
            done, _ = await asyncio.wait(
                {scheduler, expiry, canary, stopping}, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done & {scheduler, expiry, canary}:
                task.result()  # a crashed job must end the process, loudly
        finally:
            stopping.cancel()
            warming.cancel()
            watchdog.cancel()
            scheduler.cancel()
            expiry.cancel()
            canary.cancel()
            await asyncio.gather(scheduler, expiry, canary, return_exceptions=True)
            self.http.stop()
            self.store.close()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(sig)
            log.info("stopped")


def tune_runtime() -> None:
    """Process settings for a daemon holding thousands of mailboxes (call from the loop)."""
    # Blocking work (state file, credential files, config reloads) shares two threads:
    # fewer threads mean fewer malloc arenas, and the writes are serialised anyway.
    asyncio.get_running_loop().set_default_executor(
        ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="bma-io")
    )
    # What is built at start-up (config, inventory) lives as long as the process: keep it
    # out of the collector's way, and collect young objects less often. Measured at
    # 10,000 mailboxes, this took garbage collection from about 10% of a cycle to 1%.
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    return_large_blocks()


async def run_daemon(
    config_path: Path, *, reset_state: bool = False, shard: Shard | None = None
) -> None:
    """Load the configuration and serve until stopped (call from a running event loop);
    `shard` (from --shard) overrides $BMA_SHARD and the file's `shard` key."""
    config = load_config(config_path, shard=shard)
    configure_logging(config.logging.level, config.logging.format)
    store = await asyncio.to_thread(StateStore.open, config.state.path, reset=reset_state)
    try:
        claim = await asyncio.to_thread(claim_shard, store, config.shard)
    except BaseException:
        store.close()
        raise
    if claim.count_changed:
        # Rendezvous hashing: the mailboxes that stayed keep their records in this file.
        log.info("shard_count_changed", before=str(claim.before), now=str(claim.now))
    elif claim.before is not None and claim.now is None:
        log.warning("state_file_of_a_shard", shard=str(claim.before), path=str(store.path))
    daemon = Daemon(config, store, shard_override=shard)
    tune_runtime()
    await daemon.serve()
