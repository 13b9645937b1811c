"""The canonical log event of a probe, and the quota fields it shares with `probe --json`."""

from __future__ import annotations

from typing import Any

import structlog

from monitor.config.fullness_model import QuotaConfig
from monitor.config.model import Mailbox
from monitor.probes.result import ProbeResult, QuotaReading
from monitor.quota import effective_limit

log = structlog.get_logger("bma_monitor.scheduler")


def quota_fields(reading: QuotaReading, config: QuotaConfig) -> dict[str, Any]:
    """Usage, the limit that applies and the server's own, as logs, metrics and JSON give them.

    `quota_limit_bytes` is the limit usage is judged against (the configured default
    where the server sets none), so a log line and the metric never disagree;
    `quota_server_limit_bytes` keeps what the server said, null where it sets none.
    """
    return {
        "quota_used_bytes": reading.used_bytes,
        "quota_limit_bytes": effective_limit(reading, config),
        "quota_server_limit_bytes": reading.limit_bytes,
        "quota_source": str(reading.source),
    }


def log_probe_result(mailbox: Mailbox, result: ProbeResult, quota: QuotaConfig) -> None:
    """The one canonical event per probe."""
    fields: dict[str, Any] = {
        "mailbox": mailbox.local_part,
        "kind": str(mailbox.kind),
        "server": mailbox.server,
        "protocol": str(result.protocol),
        "reason": str(result.reason),
        "duration_seconds": round(result.total_seconds, 4),
        "phases": {str(k): round(v, 4) for k, v in result.durations.items()},
    }
    if result.detail:
        fields["detail"] = result.detail
    if result.failed_phase:
        fields["failed_phase"] = str(result.failed_phase)
    if result.quota is not None:
        fields.update(quota_fields(result.quota, quota))
    if result.quota_error:
        fields["quota_error"] = result.quota_error
    if result.login_ok:
        log.info("probe", **fields)
    else:
        log.warning("probe", **fields)
