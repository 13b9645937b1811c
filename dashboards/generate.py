"""Writes the Grafana dashboards (fleet, mailbox, daemon) as JSON beside this file.

The JSON files are what ops load; this script keeps their panels uniform (datasource
variable, a unit on every panel, ids and grid positions). Run it after a change:
`python dashboards/generate.py`; tests/test_dashboards.py fails when the files lag behind.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

Json = dict[str, Any]

DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
SCHEMA_VERSION = 39  # Grafana 10.4 / 11.x
DAY = "86400"
# Mailboxes of the selected servers; "$server" is a regex (All is ".*").
S = 'server=~"$server"'
M = 'mailbox="$mailbox"'

UP_MAPPING = [
    {
        "type": "value",
        "options": {
            "0": {"text": "down", "color": "red", "index": 0},
            "1": {"text": "up", "color": "green", "index": 1},
        },
    }
]
QUOTA_STATE_MAPPING = [
    {
        "type": "value",
        "options": {
            "0": {"text": "ok", "color": "green", "index": 0},
            "1": {"text": "warning", "color": "yellow", "index": 1},
            "2": {"text": "critical", "color": "orange", "index": 2},
            "3": {"text": "full", "color": "red", "index": 3},
        },
    }
]
YES_NO_MAPPING = [
    {
        "type": "value",
        "options": {
            "0": {"text": "no", "color": "green", "index": 0},
            "1": {"text": "yes", "color": "red", "index": 1},
        },
    }
]


def target(expr: str, legend: str = "", *, instant: bool = False, table: bool = False) -> Json:
    """One Prometheus query of a panel."""
    out: Json = {"datasource": DATASOURCE, "expr": expr, "legendFormat": legend or "__auto"}
    if instant or table:
        out |= {"instant": True, "range": False}
    if table:
        out["format"] = "table"
    return out


def panel(
    kind: str,
    title: str,
    unit: str,
    targets: list[Json],
    *,
    width: int = 12,
    height: int = 8,
    description: str = "",
    mappings: list[Json] | None = None,
    options: Json | None = None,
    custom: Json | None = None,
) -> Json:
    """A panel on the dashboard's datasource variable, with its unit set."""
    defaults: Json = {"unit": unit, "mappings": mappings or []}
    if custom:
        defaults["custom"] = custom
    out: Json = {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "gridPos": {"w": width, "h": height},
        "targets": targets,
    }
    if options:
        out["options"] = options
    return out


def datasource_variable() -> Json:
    """The Prometheus to read from, chosen on the dashboard: no datasource uid is baked in."""
    return {
        "name": "datasource",
        "label": "Prometheus",
        "type": "datasource",
        "query": "prometheus",
        "current": {},
        "hide": 0,
        "refresh": 1,
        "regex": "",
        "includeAll": False,
        "multi": False,
        "options": [],
    }


def query_variable(name: str, label: str, query: str, *, include_all: bool) -> Json:
    """A variable filled from label values of a daemon series."""
    variable: Json = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-values"},
        "current": {},
        "hide": 0,
        "refresh": 2,  # on time range change: a new mailbox appears without a reload
        "sort": 1,
        "regex": "",
        "includeAll": include_all,
        "multi": include_all,
        "options": [],
    }
    if include_all:
        variable["allValue"] = ".*"
    return variable


def dashboard(uid: str, title: str, panels: list[Json], variables: list[Json]) -> Json:
    """A dashboard with ids, refIds and grid positions filled in, panels flowing left to right."""
    x = y = row_height = 0
    for number, item in enumerate(panels, start=1):
        item["id"] = number
        for index, query in enumerate(item["targets"]):
            query["refId"] = chr(ord("A") + index)
        grid = item["gridPos"]
        if x + grid["w"] > 24:
            x, y, row_height = 0, y + row_height, 0
        grid |= {"x": x, "y": y}
        x += grid["w"]
        row_height = max(row_height, grid["h"])
    return {
        "uid": uid,
        "title": title,
        "tags": ["bma-monitor"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "1m",
        "time": {"from": "now-6h", "to": "now"},
        "annotations": {"list": []},
        "links": [
            {
                "type": "dashboards",
                "tags": ["bma-monitor"],
                "asDropdown": True,
                "title": "BMA monitor",
            }
        ],
        "templating": {"list": [datasource_variable(), *variables]},
        "panels": panels,
    }


def fleet() -> Json:
    """The fleet at a glance: servers, probes, quotas, expiring passwords, warning mails."""
    ratio = f"bma_mailbox_quota_used_bytes{{{S}}} / bma_mailbox_quota_limit_bytes{{{S}}}"
    expires_in = f"(bma_password_expiry_timestamp_seconds{{{S}}} - time())"

    def week_bucket(low: int, high: int) -> str:
        return (
            f"sum(({expires_in} >= bool {low} * 7 * {DAY})"
            f" * ({expires_in} < bool {high} * 7 * {DAY}))"
        )

    states = [("ok", 0), ("warning", 1), ("critical", 2), ("full", 3)]
    panels = [
        panel(
            "stat",
            "Servers up",
            "none",
            [target(f"bma_server_up{{{S}}}", "{{server}} {{protocol}}", instant=True)],
            width=24,
            height=4,
            mappings=UP_MAPPING,
            description="Each endpoint (server and protocol) as the last probes found it.",
            options={"colorMode": "background", "graphMode": "none", "textMode": "value_and_name"},
        ),
        panel(
            "timeseries",
            "Probe success by protocol and server",
            "percentunit",
            [
                target(
                    f"sum by (server, protocol) (bma_mailbox_login_success{{{S}}})"
                    f" / count by (server, protocol) (bma_mailbox_login_success{{{S}}})",
                    "{{server}} {{protocol}}",
                )
            ],
            description="Share of mailboxes whose last probe logged in.",
            custom={"min": 0, "max": 1},
        ),
        panel(
            "timeseries",
            "Probe failures by protocol and reason",
            "ops",
            [
                target(
                    "sum by (protocol, reason) (rate(bma_probe_failures_total[$__rate_interval]))",
                    "{{protocol}} {{reason}}",
                )
            ],
            description="Failed probes per second, across the fleet.",
        ),
        panel(
            "bargauge",
            "Mailboxes by quota state",
            "none",
            [
                target(f"sum(bma_mailbox_quota_state{{{S}}} == bool {rank})", name, instant=True)
                for name, rank in states
            ],
            width=8,
            description="Quota states with hysteresis (warning, critical and full thresholds).",
        ),
        panel(
            "histogram",
            "Usage ratio distribution",
            "percentunit",
            [target(ratio, "{{mailbox}}", instant=True)],
            width=8,
            description="How full the mailboxes are: usage over limit, one count per mailbox.",
            options={"bucketSize": 0.05, "bucketOffset": 0},
        ),
        panel(
            "bargauge",
            "Passwords expiring, by week",
            "none",
            [
                target(f"sum(bma_password_expired{{{S}}})", "expired", instant=True),
                *(
                    target(week_bucket(week, week + 1), f"week {week + 1}", instant=True)
                    for week in range(4)
                ),
                target(f"sum({expires_in} >= bool 4 * 7 * {DAY})", "later", instant=True),
            ],
            width=8,
            description="CERBERE passwords by the week they expire in, counted from now.",
        ),
        panel(
            "table",
            "Fullest mailboxes",
            "percentunit",
            [target(f"topk(20, {ratio})", table=True)],
            description="The 20 mailboxes closest to their quota.",
        ),
        panel(
            "table",
            "Forecast full",
            "s",
            [
                target(
                    f"sort(bma_mailbox_quota_full_forecast_timestamp_seconds{{{S}}} - time())",
                    table=True,
                )
            ],
            description="Growing mailboxes and the time left before their trend reaches the limit.",
        ),
        panel(
            "table",
            "Mailboxes found full",
            "none",
            [target(f"bma_mailbox_full{{{S}}}", table=True)],
            description="Evidence that mail is being lost: quota reading, rejection or bounce.",
        ),
        panel(
            "table",
            "Passwords expiring within 30 days",
            "s",
            [target(f"sort({expires_in} < 30 * {DAY})", table=True)],
            description="Time left before each CERBERE password expires (negative: expired).",
        ),
        panel(
            "timeseries",
            "Warning mails",
            "none",
            [
                target(
                    "sum by (threshold) (increase(bma_notifications_sent_total[$__rate_interval]))",
                    "sent, {{threshold}} days",
                ),
                target("sum(bma_outbox_pending)", "pending"),
            ],
            width=8,
            description="Expiry warning mails the relay accepted, and those still queued.",
        ),
        panel(
            "timeseries",
            "Canary delivery time",
            "s",
            [target(f"bma_mailbox_canary_delivery_seconds{{{S}}}", "{{mailbox}}")],
            width=8,
            description="From handing the canary to the relay to seeing it in the mailbox.",
        ),
        panel(
            "bargauge",
            "Canary outcomes",
            "none",
            [target(f"count by (outcome) (bma_mailbox_canary_outcome{{{S}}})", "{{outcome}}")],
            width=8,
            description="How each mailbox's last canary ended.",
        ),
        panel(
            "table",
            "TLS certificates expire in",
            "s",
            [
                target(
                    f"sort(bma_server_tls_cert_expiry_timestamp_seconds{{{S}}} - time())",
                    table=True,
                )
            ],
            width=24,
            height=5,
            description="The earliest expiry in each endpoint's verified chain.",
        ),
    ]
    server = query_variable(
        "server", "Server", "label_values(bma_mailboxes, server)", include_all=True
    )
    return dashboard("bma-fleet", "BMA monitor / Fleet", panels, [server])


def mailbox() -> Json:
    """One mailbox: every protocol's result and phases, usage and forecast, expiry, lock-out."""
    panels = [
        panel(
            "table",
            "Mailbox",
            "none",
            [target(f"bma_mailbox_info{{{M}}}", table=True)],
            width=24,
            height=4,
            description="The establishment this mailbox belongs to.",
        ),
        panel(
            "stat",
            "Login, by protocol",
            "none",
            [target(f"bma_mailbox_login_success{{{M}}}", "{{protocol}}", instant=True)],
            width=8,
            mappings=UP_MAPPING,
            options={"colorMode": "background", "graphMode": "none", "textMode": "value_and_name"},
        ),
        panel(
            "table",
            "Last probe result",
            "none",
            [target(f"bma_mailbox_probe_reason{{{M}}}", table=True)],
            width=8,
            description="How the last probe of each protocol ended.",
        ),
        panel(
            "stat",
            "Locked out",
            "none",
            [target(f"bma_mailbox_auth_locked{{{M}}}", "{{protocol}}", instant=True)],
            width=8,
            mappings=YES_NO_MAPPING,
            description="Held back after a refused password: no login is tried until it changes.",
        ),
        panel(
            "timeseries",
            "Probe phases",
            "s",
            [target(f"bma_mailbox_probe_phase_duration_seconds{{{M}}}", "{{protocol}} {{phase}}")],
            description="Time per phase of the last probe of each protocol.",
            custom={"stacking": {"mode": "normal", "group": "A"}, "fillOpacity": 30},
        ),
        panel(
            "timeseries",
            "Since last probe and last login",
            "s",
            [
                target(
                    f"time() - bma_mailbox_last_probe_timestamp_seconds{{{M}}}",
                    "probe {{protocol}}",
                ),
                target(
                    f"time() - bma_mailbox_last_success_timestamp_seconds{{{M}}}",
                    "login {{protocol}}",
                ),
            ],
        ),
        panel(
            "timeseries",
            "Usage and limit",
            "bytes",
            [
                target(f"bma_mailbox_quota_used_bytes{{{M}}}", "used"),
                target(f"bma_mailbox_quota_limit_bytes{{{M}}}", "limit"),
            ],
        ),
        panel(
            "gauge",
            "Usage ratio",
            "percentunit",
            [
                target(
                    f"bma_mailbox_quota_used_bytes{{{M}}} / bma_mailbox_quota_limit_bytes{{{M}}}",
                    instant=True,
                )
            ],
            width=6,
            custom={"min": 0, "max": 1},
        ),
        panel(
            "stat",
            "Quota state",
            "none",
            [target(f"bma_mailbox_quota_state{{{M}}}", instant=True)],
            width=6,
            mappings=QUOTA_STATE_MAPPING,
        ),
        panel(
            "stat",
            "Full in (forecast)",
            "s",
            [
                target(
                    f"bma_mailbox_quota_full_forecast_timestamp_seconds{{{M}}} - time()",
                    instant=True,
                )
            ],
            width=6,
            description="Time before the usage trend reaches the limit; no data: not growing.",
        ),
        panel(
            "stat",
            "Usage read",
            "s",
            [
                target(
                    f"time() - bma_mailbox_quota_measured_timestamp_seconds{{{M}}}",
                    "{{source}}",
                    instant=True,
                )
            ],
            width=6,
            description="How long ago the usage was read, and how (the source).",
        ),
        panel(
            "stat",
            "Password expires in",
            "s",
            [
                target(
                    f"bma_password_expiry_timestamp_seconds{{{M}}} - time()",
                    "{{source}}",
                    instant=True,
                )
            ],
            width=8,
            description="The CERBERE password's expiry, and where the date came from.",
        ),
        panel(
            "stat",
            "Password expired",
            "none",
            [target(f"bma_password_expired{{{M}}}", instant=True)],
            width=8,
            mappings=YES_NO_MAPPING,
        ),
        panel(
            "stat",
            "Canary delivery time",
            "s",
            [
                target(f"bma_mailbox_canary_delivery_seconds{{{M}}}", instant=True),
                target(f"bma_mailbox_canary_outcome{{{M}}}", "{{outcome}}", instant=True),
            ],
            width=8,
            options={"textMode": "value_and_name", "graphMode": "none"},
        ),
    ]
    choice = query_variable(
        "mailbox", "Mailbox", "label_values(bma_mailbox_info, mailbox)", include_all=False
    )
    return dashboard("bma-mailbox", "BMA monitor / Mailbox", panels, [choice])


def daemon() -> Json:
    """The daemon itself: cycle time, lag, in-flight, skips, reloads, state file, process."""
    panels = [
        panel(
            "table",
            "Build",
            "none",
            [target("bma_build_info", table=True)],
            width=24,
            height=4,
        ),
        panel(
            "timeseries",
            "Cycle time per protocol",
            "s",
            [target("bma_cycle_duration_seconds", "{{protocol}}")],
            description="How long the last sweep of every mailbox took.",
        ),
        panel(
            "timeseries",
            "Scheduler lag",
            "s",
            [target("bma_scheduler_lag_seconds", "lag")],
            description="How late probes start behind their schedule.",
        ),
        panel(
            "timeseries",
            "Probes in flight",
            "none",
            [target("bma_probes_in_flight", "in flight")],
            width=8,
        ),
        panel(
            "timeseries",
            "Probes",
            "ops",
            [
                target(
                    "sum by (protocol) (rate(bma_probes_total[$__rate_interval]))", "{{protocol}}"
                ),
                target(
                    "sum by (protocol) (rate(bma_quota_read_failures_total[$__rate_interval]))",
                    "quota unread {{protocol}}",
                ),
            ],
            width=8,
            description="Probes completed per second, and logins whose usage could not be read.",
        ),
        panel(
            "timeseries",
            "Skipped probes",
            "ops",
            [
                target(
                    "sum by (protocol, cause) (rate(bma_probes_skipped_total[$__rate_interval]))",
                    "{{protocol}} {{cause}}",
                )
            ],
            width=8,
            description="Due probes not sent, by cause (lock-out, server down, still running...).",
        ),
        panel(
            "stat",
            "Last configuration reload",
            "none",
            [target("bma_config_last_reload_successful", "successful", instant=True)],
            width=6,
            mappings=UP_MAPPING,
        ),
        panel(
            "stat",
            "Configuration loaded",
            "s",
            [
                target(
                    "time() - bma_config_last_reload_success_timestamp_seconds", "ago", instant=True
                )
            ],
            width=6,
        ),
        panel(
            "timeseries",
            "State file",
            "none",
            [
                target(
                    "increase(bma_state_write_failures_total[$__rate_interval])", "write failures"
                ),
                target("bma_state_unsaved_lockouts", "lock-outs held in memory only"),
            ],
            width=12,
            description="Lock-outs not yet on disk would be tried again after a restart.",
        ),
        panel(
            "timeseries",
            "Mailboxes configured",
            "none",
            [target("bma_mailboxes", "{{server}} {{kind}}")],
            width=8,
        ),
        panel(
            "timeseries",
            "Process CPU",
            "percentunit",
            [target("rate(process_cpu_seconds_total[$__rate_interval])", "{{instance}}")],
            width=8,
        ),
        panel(
            "timeseries",
            "Process memory",
            "bytes",
            [target("process_resident_memory_bytes", "{{instance}}")],
            width=8,
        ),
    ]
    return dashboard("bma-daemon", "BMA monitor / Daemon", panels, [])


DASHBOARDS = {"fleet.json": fleet, "mailbox.json": mailbox, "daemon.json": daemon}


def rendered() -> dict[str, str]:
    """Every dashboard's file name and JSON text."""
    return {name: json.dumps(build(), indent=2) + "\n" for name, build in DASHBOARDS.items()}


def main() -> None:
    """Write the dashboards next to this script."""
    here = Path(__file__).parent
    for name, text in rendered().items():
        (here / name).write_text(text)


if __name__ == "__main__":
    main()
