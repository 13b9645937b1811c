"""The Grafana dashboards: well formed, on the datasource variable, a unit on every panel,
and every panel query answering with data from a real Prometheus scraping a live daemon."""

from __future__ import annotations

import datetime as dt
import json
import re
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.fullness.store import save_history
from monitor.state.store import StateStore
from tests import fleet
from tests.daemon_process import DaemonProcess, eventually
from tests.servers.delivery import DeliveryFront
from tests.servers.dovecot import DovecotServer, free_port
from tests.servers.prometheus import PrometheusServer

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "dashboards"
FILES = ("fleet.json", "mailbox.json", "daemon.json")
PROMETHEUS = "/usr/bin/prometheus"

# The mailbox every per-mailbox panel is evaluated for: quota near full and growing (a
# forecast), a CERBERE expiry date, a canary, IMAP and POP3.
CHOSEN = fleet.NEARLY_FULL
EXPIRED = fleet.FULL  # its inventory date has passed
REFUSED = fleet.SPARES[47]  # a wrong password: a lock-out
MAILBOXES = [fleet.EMPTY, CHOSEN, fleet.FULL, fleet.FOLDERS, REFUSED]
# What Grafana puts in place of its own variables, and of ours, for the live check.
SUBSTITUTIONS = {
    "$__rate_interval": "1m",
    "$__interval": "15s",
    "$__range": "1h",
    "$server": "dovecot",
    "$mailbox": CHOSEN,
}
PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "inf",
    "nan",
}


def dashboards() -> dict[str, dict[str, Any]]:
    """Every shipped dashboard, by file name."""
    return {name: json.loads((FOLDER / name).read_text()) for name in FILES}


def panels() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every panel of every dashboard, with its dashboard's file name."""
    for name, board in dashboards().items():
        for panel in board["panels"]:
            yield name, panel


def queries() -> list[tuple[str, str, str]]:
    """Every panel query: dashboard file, panel title, expression."""
    return [
        (name, panel["title"], query["expr"])
        for name, panel in panels()
        for query in panel["targets"]
    ]


def metric_names(expr: str) -> set[str]:
    """The series names an expression reads (functions, keywords and labels left out)."""
    bare = re.sub(r'"[^"]*"', "", expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", "", bare)
    bare = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", bare)
    found = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", bare):
        following = bare[match.end() :].lstrip()
        if following.startswith("(") or match.group() in PROMQL_WORDS:
            continue
        found.add(match.group())
    return found


def exported_names() -> set[str]:
    """Series names the daemon's collectors define: counters also with `_total`, plus the
    process collector's."""
    source = "".join(p.read_text() for p in (ROOT / "monitor" / "metrics").glob("*.py"))
    names = set(re.findall(r'"(bma_[a-z0-9_]+)"', source))
    counters = set(re.findall(r'CounterMetricFamily\(\s*"(bma_[a-z0-9_]+)"', source))
    return (
        names
        | {f"{name}_total" for name in counters}
        | {f"{name}_info" for name in names if name == "bma_build"}
        | {"process_cpu_seconds_total", "process_resident_memory_bytes"}
    )


def substituted(expr: str) -> str:
    """The expression as Grafana would send it, with our test values for the variables."""
    for variable, value in SUBSTITUTIONS.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    return expr


def test_the_dashboards_are_generated_from_their_script() -> None:
    """The JSON files are what dashboards/generate.py writes: nobody edited one by hand."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate", FOLDER / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.rendered() == {name: (FOLDER / name).read_text() for name in FILES}


def test_every_dashboard_has_a_datasource_variable_and_unique_panel_ids() -> None:
    """Each dashboard has a Prometheus datasource variable, its own uid, unique panel ids
    and a schema version of Grafana 10 or 11."""
    uids = set()
    for name, board in dashboards().items():
        variables = {v["name"]: v for v in board["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", name
        assert variables["datasource"]["query"] == "prometheus", name
        ids = [panel["id"] for panel in board["panels"]]
        assert len(ids) == len(set(ids)), name
        assert 36 <= board["schemaVersion"] <= 41, name
        uids.add(board["uid"])
    assert len(uids) == len(FILES)
    assert dashboards()["mailbox.json"]["templating"]["list"][1]["query"]["query"] == (
        "label_values(bma_mailbox_info, mailbox)"
    )


def test_every_panel_has_a_unit_a_title_and_the_datasource_variable() -> None:
    """No panel lacks a unit or a title, and none names a datasource other than the variable."""
    for name, panel in panels():
        where = f"{name}: {panel.get('title')}"
        assert panel["title"].strip(), where
        assert panel["fieldConfig"]["defaults"]["unit"], where
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, where
        for query in panel["targets"]:
            assert query.get("datasource", panel["datasource"]) == panel["datasource"], where
            assert query["expr"].strip(), where


def test_no_datasource_uid_is_hard_coded() -> None:
    """Every `uid` under a datasource is the variable, wherever it sits in the JSON."""

    def walk(node: Any) -> Iterator[Any]:
        if isinstance(node, dict):
            if isinstance(node.get("datasource"), dict):
                yield node["datasource"].get("uid")
            for value in node.values():
                yield from walk(value)
        elif isinstance(node, list):
            for value in node:
                yield from walk(value)

    for name, board in dashboards().items():
        assert set(walk(board)) == {"${datasource}"}, name


def test_every_query_reads_only_series_the_daemon_exports() -> None:
    """No panel reads a metric the daemon does not define (a misspelt name would only show
    as an empty panel in Grafana)."""
    known = exported_names()
    for name, title, expr in queries():
        assert metric_names(expr), f"{name}: {title}: reads no series"
        unknown = metric_names(expr) - known
        assert not unknown, f"{name}: {title}: unknown series {sorted(unknown)}"


def test_metric_names_are_found_in_promql() -> None:
    """The name extraction the check above relies on sees series and skips the rest."""
    expr = (
        'sum by (server) (rate(a_total{x="y"}[$__rate_interval])) / on(mailbox) '
        "group_left(name) b_info >= bool 2 * 86400 - time()"
    )
    assert metric_names(expr) == {"a_total", "b_info"}


# The live check ------------------------------------------------------------------------


def write_daemon_config(directory: Path, dovecot: DovecotServer, relay: int, port: int) -> Path:
    """The daemon's config: IMAP and POP3, a canary, inventory expiry dates, a wrong password."""
    path = fleet.write_config(
        directory,
        dovecot,
        "starttls",
        MAILBOXES,
        passwords={REFUSED: "wrong"},
        protocols={"imap": {}, "pop3": {}},
        probing={"interval": "1s", "timeout": "900ms"},
        extra={
            "http": {"listen": f"127.0.0.1:{port}"},
            "logging": {"format": "json", "level": "info"},
            "canary": {
                "enabled": True,
                "mailboxes": [fleet.address(CHOSEN)],
                "sender": fleet.address(fleet.EMPTY),
                "relay": {"host": "127.0.0.1", "port": relay, "tls": "none"},
                "every": "1m",  # its floor: the first round comes before any login, skipped
                "deadline": "5s",
                "poll": "1s",
            },
        },
    )
    document = yaml.safe_load(path.read_text())
    today = dt.date.today()
    expires = {CHOSEN: today + dt.timedelta(days=10), EXPIRED: today - dt.timedelta(days=1)}
    for entry in document["mailboxes"]:
        local = entry["address"].split("@")[0]
        if local in expires:
            entry["password_expires"] = expires[local].isoformat()
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def seed_growth(state_file: Path) -> None:
    """Three days of growth before now for CHOSEN, so the daemon forecasts when it is full."""
    now = time.time()
    day = 86400.0
    store = StateStore.open(state_file)
    try:
        points = [(now - 3 * day, 6 * fleet.MB), (now - 2 * day, 7 * fleet.MB)]
        points += [(now - day, 8 * fleet.MB), (now - 3600, 9 * fleet.MB - 1000)]
        save_history(store, fleet.address(CHOSEN), points)
    finally:
        store.close()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """A live daemon over a Dovecot of its own (IMAP, POP3, LMTP behind an SMTP relay for
    the canary), scraped every second by a private Prometheus."""
    work = tmp_path_factory.mktemp("dashboards")
    users = [u for u in fleet.users() if u.address.split("@")[0] in MAILBOXES]
    with DovecotServer(work / "dovecot", users, quota=True, lmtp=True) as dovecot:
        for local, batches in fleet.CONTENT.items():
            if local in MAILBOXES:
                for folder, count, size in batches:
                    dovecot.add_messages(fleet.address(local), count, size, folder=folder)
        with DeliveryFront("127.0.0.1", dovecot.lmtp_port, mode="pass") as relay:
            port = free_port()
            config = write_daemon_config(work / "daemon", dovecot, relay.port, port)
            seed_growth(config.parent / "state.db")
            daemon = DaemonProcess(config, port, REFUSED)
            server = PrometheusServer(work / "prometheus", [f"127.0.0.1:{port}"])
            try:
                server.start()  # ready once the daemon is scraped
                yield server
            finally:
                server.stop()
                daemon.stop()
        assert dovecot.canaries() == []


def label_values(server: PrometheusServer, label: str, metric: str) -> list[str]:
    """A Grafana `label_values(metric, label)` variable's values, as Prometheus gives them."""
    query = urllib.parse.urlencode({"match[]": metric})
    return list(server.get(f"/api/v1/label/{label}/values?{query}")["data"])


def empty_queries(server: PrometheusServer) -> list[str]:
    """Every panel query that answers with no data now."""
    return [
        f"{name}: {title}: {expr}"
        for name, title, expr in queries()
        if not server.query(substituted(expr))
    ]


def test_every_panel_query_returns_data_from_a_live_daemon(prometheus: PrometheusServer) -> None:
    """Each query of each panel of each dashboard, its variables filled in, returns series
    from Prometheus scraping the daemon (the canary's series take its first full round)."""
    deadline = time.monotonic() + 100  # the canary's first round after a login: 60 s
    empty = empty_queries(prometheus)
    while empty and time.monotonic() < deadline:
        time.sleep(1)
        empty = empty_queries(prometheus)
    assert empty == []


def test_the_variables_list_the_live_mailboxes_and_servers(prometheus: PrometheusServer) -> None:
    """The dashboards' variable queries name what the daemon probes."""
    eventually(lambda: bool(prometheus.query("bma_mailbox_info")))
    mailboxes = label_values(prometheus, "mailbox", "bma_mailbox_info")
    servers = label_values(prometheus, "server", "bma_mailboxes")
    assert set(mailboxes) == set(MAILBOXES)
    assert servers == ["dovecot"]
