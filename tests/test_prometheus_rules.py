"""The shipped Prometheus rules: promtool accepts them; every alert is tested and documented."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "config" / "prometheus" / "bma-monitor.rules.yml"
TESTS = sorted((ROOT / "config" / "prometheus" / "tests").glob("*.yml"))
RUNBOOK = ROOT / "docs" / "runbook.md"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None, reason="promtool missing: scripts/setup installs prometheus, which ships it"
)


def _alerts() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def _alert_cases() -> list[dict[str, Any]]:
    return [
        case
        for path in TESTS
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]
        for case in test.get("alert_rule_test", [])
    ]


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL is not None
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


@needs_promtool
def test_rules_pass_promtool_check_with_every_lint() -> None:
    """promtool check rules, all lints fatal, accepts the rules file."""
    done = _promtool("check", "rules", "--lint=all", "--lint-fatal", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr


@needs_promtool
@pytest.mark.parametrize("test_file", TESTS, ids=lambda p: p.name)
def test_promtool_unit_tests_pass(test_file: Path) -> None:
    """Each promtool unit test file passes against the rules."""
    done = _promtool("test", "rules", str(test_file))
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_has_a_promtool_test() -> None:
    """Every alert name appears in some alert_rule_test."""
    tested = {case["alertname"] for case in _alert_cases()}
    missing = {rule["alert"] for rule in _alerts()} - tested
    assert not missing


def test_every_alert_fires_in_some_test() -> None:
    """Every alert is expected to fire at least once, not only to stay silent."""
    fired = {case["alertname"] for case in _alert_cases() if case.get("exp_alerts")}
    assert not {rule["alert"] for rule in _alerts()} - fired


def test_every_alert_follows_the_conventions() -> None:
    """Prefix, severity, annotations, and a runbook_url whose anchor is a runbook section."""
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line[3:].strip().lower()).replace(" ", "-")
        for line in RUNBOOK.read_text(encoding="utf-8").splitlines()
        if line.startswith("## ")
    }
    for rule in _alerts():
        name = rule["alert"]
        assert re.fullmatch(r"Bma[A-Z][A-Za-z0-9]+", name), name
        assert rule["labels"]["severity"] in {"page", "ticket"}, name
        annotations = rule["annotations"]
        assert annotations["summary"] and annotations["description"], name
        url, _, anchor = annotations["runbook_url"].partition("#")
        assert url.endswith("docs/runbook.md"), name
        assert anchor == name.lower() and anchor in anchors, name
