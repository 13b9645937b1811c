"""What /healthz answers: whether the daemon is alive, and what ops should know."""

from __future__ import annotations

from typing import Any

from monitor.scheduling.view import SchedulerView

DISPATCHER_STALE_AFTER = 15.0  # seconds the dispatcher may be late before /healthz fails


def health_report(
    view: SchedulerView, now: float, stale_after: float = DISPATCHER_STALE_AFTER
) -> tuple[bool, dict[str, Any]]:
    """Healthy while the dispatcher keeps its schedule (`now` is monotonic time).

    Servers being down is not the daemon's ill. Nor is a state file that cannot be
    written: it is reported, but a liveness probe failing on it would restart the daemon,
    which is exactly what would forget the lock-outs held in memory only.
    """
    overdue = max(0.0, now - view.dispatcher_due)
    write = view.state.write
    shard = view.config.shard
    return overdue < stale_after, {
        "mailboxes": len(view.mailboxes),
        "shard": {"index": shard.index, "count": shard.count} if shard else None,
        "servers_down": sorted(
            f"{name}/{protocol}" for (name, protocol), s in view.servers.items() if not s.up
        ),
        "in_flight": view.in_flight,
        "dispatcher_overdue_seconds": round(overdue, 3),
        "state": {
            "writable": write.writable,
            "write_failures": write.failures,
            "unsaved_lockouts": view.state.unsaved_lockouts,
            "last_error": write.last_error,
        },
    }
