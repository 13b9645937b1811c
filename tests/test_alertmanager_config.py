"""The shipped Alertmanager example loads, and routes pages and tickets apart."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).parent.parent / "config" / "alertmanager" / "alertmanager.yml"
AMTOOL = shutil.which("amtool")

pytestmark = pytest.mark.skipif(AMTOOL is None, reason="amtool missing: run scripts/setup")


def _amtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert AMTOOL is not None
    return subprocess.run([AMTOOL, *args], capture_output=True, text=True, timeout=30)


def test_example_passes_check_config() -> None:
    """`amtool check-config` accepts the example, with both receivers and the inhibitions."""
    done = _amtool("check-config", str(EXAMPLE))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
    assert "2 receivers" in done.stdout and "3 inhibit rules" in done.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["alertname=BmaServerDown", "severity=page", "server=s1", "protocol=imap"], "pager"),
        (["alertname=BmaMailboxFull", "severity=page", "server=s1", "mailbox=m"], "pager"),
        (["alertname=BmaMailboxLoginFailing", "severity=ticket", "server=s1"], "tickets"),
        (["alertname=BmaPasswordExpiring", "severity=ticket", "mailbox=m"], "tickets"),
        (["alertname=SomethingUnrouted"], "tickets"),
    ],
)
def test_routes_send_pages_to_the_pager_and_tickets_to_the_ticket_queue(
    labels: list[str], receiver: str
) -> None:
    """`amtool config routes test` picks the pager for pages, tickets for the rest."""
    done = _amtool(
        "config", "routes", "test", f"--config.file={EXAMPLE}", f"--verify.receivers={receiver}",
        *labels,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == [receiver]


def test_a_wrong_receiver_is_reported() -> None:
    """The route check can fail: a page verified against the ticket receiver is refused."""
    done = _amtool(
        "config", "routes", "test", f"--config.file={EXAMPLE}", "--verify.receivers=tickets",
        "alertname=BmaServerDown", "severity=page", "server=s1",
    )  # fmt: skip
    assert done.returncode != 0
