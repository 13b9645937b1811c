"""The canary job: on its own cadence, send each canary mailbox a labelled test message,
see it arrive over IMAP, remove that message only, and read the bounces that come back.

It logs in with the mailbox password, so it obeys the lock-out guard: a mailbox whose
password is locked out or held is skipped, and a refused login locks it out as a probe's
would. Only a mailbox whose last IMAP probe logged in gets a canary.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import Callable, Mapping

import structlog

from monitor.canary.bounce_reader import BounceMark, BounceReader
from monitor.canary.bounces import full_bounces
from monitor.canary.evidence import (
    CanaryOutcome,
    CanaryResult,
    Evidence,
    Found,
    clear_evidence,
    load_evidence,
    load_results,
    save_evidence,
    save_result,
)
from monitor.canary.imap_access import MailboxAccessError
from monitor.canary.imap_side import CanaryMailbox, RemoveOutcome
from monitor.canary.message import build_canary, new_canary_id
from monitor.canary.send import SendVerdict, send_canary
from monitor.canary.targets import canary_targets
from monitor.config.model import Config, Mailbox
from monitor.credentials import Credential, CredentialMissing, CredentialStore, SecretKind
from monitor.notify.relay import RelaySender
from monitor.probes.result import Protocol
from monitor.scheduling.runner import ProbeRunner
from monitor.scheduling.view import MailboxStatus
from monitor.state.store import StateError, StateStore

log = structlog.get_logger("bma_monitor.canary")

AT_ONCE = 10  # canaries in flight at once: each may wait up to its deadline
IDLE_CHECK = 60.0  # seconds between looks at a disabled or not yet due canary
RETRY_EMPTY_ROUND = 300.0  # after a round that could send no canary (nothing logged in yet)
MARK_KEY = "canary_bounce_mark"  # the meta row of the bounce mailbox's reading position


class CanaryJob:
    """Runs canary rounds; `results` and `evidence` are read by the metrics and `probe`."""

    def __init__(
        self,
        config: Callable[[], Config],
        store: StateStore,
        credentials: Callable[[], CredentialStore],
        runner: ProbeRunner,
        statuses: Callable[[], Mapping[str, MailboxStatus]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._store = store
        self._credentials = credentials
        self._runner = runner
        self._statuses = statuses
        self._clock = clock
        self.results: dict[str, CanaryResult] = load_results(store)
        self.evidence: dict[tuple[str, Evidence], Found] = load_evidence(store)

    async def run(self) -> None:
        """A round every canary.every, forever (until cancelled); off while disabled.

        The cadence holds across restarts (the last canary's time is in the state file), so
        a daemon restarted often does not send a canary at each start. A round that could
        send none (no mailbox logged in yet, after a first start) is tried again sooner.
        """
        while True:
            config = self._config()
            if not config.canary.enabled:
                await asyncio.sleep(IDLE_CHECK)
                continue
            last = max((r.sent_at for r in self.results.values()), default=None)
            due = last + config.canary.every if last is not None else 0.0
            if self._clock() < due:
                await asyncio.sleep(min(due - self._clock(), IDLE_CHECK))
                continue
            try:
                sent = await self.round()
            except Exception:
                log.exception("canary_round_crashed")
                sent = 0
            if not sent:
                await asyncio.sleep(min(config.canary.every, RETRY_EMPTY_ROUND))

    async def round(self) -> int:
        """One canary to each target mailbox (a few at once), then the bounces; how many
        canaries were sent."""
        limit = asyncio.Semaphore(AT_ONCE)
        sent = 0

        async def one(mailbox: Mailbox) -> None:
            nonlocal sent
            async with limit:
                if await self.run_one(mailbox) is not None:
                    sent += 1

        async with asyncio.TaskGroup() as group:
            for mailbox in canary_targets(self._config()):
                group.create_task(one(mailbox))
        await self.read_bounces()
        return sent

    async def run_one(self, mailbox: Mailbox, *, force: bool = False) -> CanaryResult | None:
        """One canary to one mailbox; None when it was skipped: its password locked out or
        held (always), or no IMAP probe of it logged in yet (unless `force`)."""
        config = self._config()
        address = mailbox.address
        status = self._statuses().get(address)
        imap = status.probe(Protocol.IMAP) if status is not None else None
        logged_in = imap is not None and imap.result is not None and imap.result.login_ok
        key = (address, SecretKind.MAILBOX)
        held = key in self._runner.lockouts or key in self._runner.guard.attempts
        if held or (not force and not logged_in):
            log.info("canary_skipped", mailbox=mailbox.local_part, locked=held)
            return None
        credential = await asyncio.to_thread(
            self._credentials().lookup, address, SecretKind.MAILBOX
        )
        if isinstance(credential, CredentialMissing):
            log.warning("canary_skipped", mailbox=mailbox.local_part, detail=credential.detail)
            return None
        canary_id = new_canary_id()
        sent_at = self._clock()
        zone_now = dt.datetime.fromtimestamp(sent_at, dt.UTC)
        message = build_canary(address, canary_id, config.canary.sender, zone_now)
        relay = RelaySender(config.canary.relay, config.credentials)
        started = time.monotonic()
        sent = await send_canary(relay, message, config.canary.sender, address)
        if sent.verdict is not SendVerdict.ACCEPTED:
            outcome = {
                SendVerdict.REJECTED_FULL: CanaryOutcome.REJECTED_FULL,
                SendVerdict.REJECTED: CanaryOutcome.REJECTED,
            }.get(sent.verdict, CanaryOutcome.RELAY_FAILED)
            result = CanaryResult(address, canary_id, sent_at, outcome, None, sent.detail)
            if sent.full:
                await self._found(Found(address, Evidence.REJECTION, sent_at, sent.detail))
            return await self._done(mailbox, result)
        result = await self._watch(mailbox, credential, canary_id, sent_at, started)
        if result.outcome in (CanaryOutcome.DELIVERED, CanaryOutcome.LEFT):
            # Mail reached the mailbox: what said it was full no longer stands.
            for evidence in (Evidence.REJECTION, Evidence.BOUNCE):
                await self._forget(address, evidence)
        return await self._done(mailbox, result)

    async def _watch(
        self,
        mailbox: Mailbox,
        credential: Credential,
        canary_id: str,
        sent_at: float,
        started: float,
    ) -> CanaryResult:
        """Wait for the canary in the mailbox, then remove it and any left by a crash."""
        config = self._config()
        server = config.servers[mailbox.server]
        endpoint = server.endpoint(Protocol.IMAP)
        address = mailbox.address
        if endpoint is None:
            return CanaryResult(
                address, canary_id, sent_at, CanaryOutcome.LOGIN_FAILED, None, "no IMAP endpoint"
            )
        canary = config.canary
        try:
            async with CanaryMailbox(
                endpoint,
                address,
                credential.secret,
                context=self._runner.context(mailbox.server, Protocol.IMAP),
                deadline=canary.deadline + endpoint.command_timeout * 4,
            ) as box:
                latency = await box.wait_for(canary_id, canary.deadline, canary.poll, since=started)
                # This canary and any a crashed run left behind: found by their header only.
                uids = await box.find(None)
                removed = await box.remove(uids) if uids else None
        except MailboxAccessError as exc:
            if exc.reason.is_definitive_auth_failure:
                log.error("canary_login_refused", mailbox=mailbox.local_part)
            return CanaryResult(
                address, canary_id, sent_at, CanaryOutcome.LOGIN_FAILED, None, exc.detail
            )
        if latency is None:
            outcome = CanaryOutcome.NOT_DELIVERED
        elif removed is not None and removed.outcome is not RemoveOutcome.REMOVED:
            outcome = CanaryOutcome.LEFT
        else:
            outcome = CanaryOutcome.DELIVERED
        detail = removed.detail if removed is not None and outcome is CanaryOutcome.LEFT else ""
        return CanaryResult(address, canary_id, sent_at, outcome, latency, detail)

    async def read_bounces(self) -> None:
        """Read the bounce mailbox's new reports; a full one is evidence for its recipient."""
        config = self._config()
        bounces = config.canary.bounces
        server = config.servers.get(bounces.server) if bounces is not None else None
        endpoint = server.endpoint(Protocol.IMAP) if server is not None else None
        if bounces is None or endpoint is None:
            return
        credential = await asyncio.to_thread(
            self._credentials().lookup, bounces.address, SecretKind.MAILBOX
        )
        if isinstance(credential, CredentialMissing):
            log.warning("canary_bounces_unread", detail=credential.detail)
            return
        fleet = {m.address for m in config.mailboxes}
        mark = self._mark()
        try:
            async with BounceReader(
                endpoint,
                bounces.address,
                credential.secret,
                context=self._runner.context(bounces.server, Protocol.IMAP),
                deadline=config.probing.timeout,
            ) as reader:
                batch = await reader.read_new(mark)
        except MailboxAccessError as exc:
            log.warning("canary_bounces_unread", reason=str(exc.reason), detail=exc.detail)
            return
        for bounce in full_bounces(batch.messages):
            if bounce.recipient in fleet:
                detail = f"bounce {bounce.status}"
                await self._found(Found(bounce.recipient, Evidence.BOUNCE, self._clock(), detail))
        await self._keep_mark(batch.mark)

    async def _done(self, mailbox: Mailbox, result: CanaryResult) -> CanaryResult:
        self.results[mailbox.address] = result
        log.info(
            "canary",
            mailbox=mailbox.local_part,
            outcome=str(result.outcome),
            latency_seconds=round(result.latency, 3) if result.latency is not None else None,
            detail=result.detail or None,
        )
        with contextlib.suppress(StateError):
            await asyncio.to_thread(save_result, self._store, result)
        return result

    async def _found(self, found: Found) -> None:
        self.evidence[(found.address, found.evidence)] = found
        log.warning(
            "mailbox_full_evidence",
            mailbox=found.address.split("@", 1)[0],
            evidence=str(found.evidence),
            detail=found.detail,
        )
        with contextlib.suppress(StateError):
            await asyncio.to_thread(save_evidence, self._store, found)

    async def _forget(self, address: str, evidence: Evidence) -> None:
        if self.evidence.pop((address, evidence), None) is not None:
            with contextlib.suppress(StateError):
                await asyncio.to_thread(clear_evidence, self._store, address, evidence)

    def _mark(self) -> BounceMark | None:
        with self._store.reading() as db:
            row = db.execute("SELECT value FROM meta WHERE key = ?", (MARK_KEY,)).fetchone()
        if row is None:
            return None
        kept = json.loads(bytes(row[0]))
        return BounceMark(int(kept["uidvalidity"]), int(kept["last_uid"]))

    async def _keep_mark(self, mark: BounceMark) -> None:
        value = json.dumps({"uidvalidity": mark.uidvalidity, "last_uid": mark.last_uid}).encode()
        with contextlib.suppress(StateError):
            await asyncio.to_thread(
                self._store.write_many,
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                [(MARK_KEY, value)],
            )
