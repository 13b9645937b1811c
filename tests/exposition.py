"""Reading per-mailbox families rendered as text, as a scraper would."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


def text_families(render: Callable[[], tuple[int, Iterator[bytes]]]) -> dict[str, Metric]:
    """The families a text section renders, parsed by prometheus_client, by name."""
    size, pieces = render()
    body = b"".join(pieces)
    assert len(body) == size
    return {f.name: f for f in text_string_to_metric_families(body.decode())}
