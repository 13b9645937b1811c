"""`audit --probe`: every mailbox probed once, through the path `bma-monitor probe` takes
(the same runner, lock-out guard, rate limit and per-server caps), with progress shown."""

from __future__ import annotations

import asyncio
import sys

from monitor.audit.progress import Progress
from monitor.audit.rows import NOT_ACTIONABLE
from monitor.config.model import Config, Mailbox
from monitor.probes.result import ProbeResult, Protocol
from monitor.scheduling.runner import LockedOut, Outcomes


def probe_fleet(config: Config) -> Progress:
    """Probe every configured mailbox over each of its protocols; results land in the state
    file as `probe`'s do. Returns the finished progress (counts)."""
    # Imported here: monitor.cli registers this command, and imports its module.
    from monitor.cli import _probe_all

    total = sum(len(m.protocols) for m in config.mailboxes)
    progress = Progress(total, sys.stderr, tty=sys.stderr.isatty())

    def seen(mailbox: Mailbox, protocol: Protocol, outcome: Outcomes) -> None:
        progress.advance(is_failure(outcome))

    asyncio.run(
        _probe_all(
            config, list(config.mailboxes), None, force=False, reset_state=False, on_outcome=seen
        )
    )
    progress.finish()
    return progress


def is_failure(outcome: Outcomes) -> bool:
    """What the progress counts as failed: a refused or broken login, or a lock-out."""
    if isinstance(outcome, LockedOut):
        return True
    if isinstance(outcome, ProbeResult):
        return not outcome.login_ok and outcome.reason not in NOT_ACTIONABLE
    return False  # held back, or no optional CERBERE password: not a failure
