"""JSON forms of probe results and quota readings for the state file."""

from __future__ import annotations

import json
from typing import Any

from monitor.probes.result import (
    ProbeResult,
    Protocol,
    QuotaReading,
    QuotaSource,
    Reason,
    TlsFacts,
)


def quota_to_dict(reading: QuotaReading) -> dict[str, Any]:
    """A quota reading as plain data."""
    return {
        "used_bytes": reading.used_bytes,
        "limit_bytes": reading.limit_bytes,
        "source": str(reading.source),
        "measured_at": reading.measured_at,
        "messages": reading.messages,
    }


def quota_from_dict(data: dict[str, Any]) -> QuotaReading:
    """The inverse of quota_to_dict."""
    return QuotaReading(
        used_bytes=int(data["used_bytes"]),
        limit_bytes=None if data["limit_bytes"] is None else int(data["limit_bytes"]),
        source=QuotaSource(data["source"]),
        measured_at=float(data["measured_at"]),
        messages=None if data.get("messages") is None else int(data["messages"]),
    )


def result_to_dict(result: ProbeResult) -> dict[str, Any]:
    """A probe result as plain data."""
    return {
        "address": result.address,
        "protocol": str(result.protocol),
        "reason": str(result.reason),
        "started_at": result.started_at,
        "durations": {str(k): v for k, v in result.durations.items()},
        "failed_phase": str(result.failed_phase) if result.failed_phase else None,
        "detail": result.detail,
        "quota": quota_to_dict(result.quota) if result.quota else None,
        "quota_error": result.quota_error,
        "tls": (
            {"version": result.tls.version, "cert_not_after": result.tls.cert_not_after}
            if result.tls
            else None
        ),
    }


def result_from_dict(data: dict[str, Any]) -> ProbeResult:
    """The inverse of result_to_dict."""
    return ProbeResult(
        address=data["address"],
        protocol=Protocol(data["protocol"]),
        reason=Reason(data["reason"]),
        started_at=float(data["started_at"]),
        durations={str(k): float(v) for k, v in data["durations"].items()},
        failed_phase=str(data["failed_phase"]) if data.get("failed_phase") else None,
        detail=data.get("detail", ""),
        quota=quota_from_dict(data["quota"]) if data.get("quota") else None,
        quota_error=data.get("quota_error", ""),
        tls=TlsFacts(str(tls["version"]), tls.get("cert_not_after"))
        if (tls := data.get("tls"))
        else None,
    )


def result_to_json(result: ProbeResult) -> str:
    """Serialise a probe result."""
    return json.dumps(result_to_dict(result), separators=(",", ":"))


def result_from_json(text: str) -> ProbeResult:
    """Deserialise a probe result."""
    return result_from_dict(json.loads(text))


def quota_to_json(reading: QuotaReading) -> str:
    """Serialise a quota reading."""
    return json.dumps(quota_to_dict(reading), separators=(",", ":"))


def quota_from_json(text: str) -> QuotaReading:
    """Deserialise a quota reading."""
    return quota_from_dict(json.loads(text))
