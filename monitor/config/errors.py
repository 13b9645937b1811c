"""Configuration errors that name the file, the YAML path and the broken rule."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# A value echoed in a rule is cut to this many characters: a rejected value can be a
# whole file's worth of text, and the operator needs only its beginning to find it.
ECHO_LIMIT = 80
# Problems listed at most: an inventory of 100,000 bad rows needs its first ones fixed,
# not 100,000 lines on a terminal or in one log event.
PROBLEMS_LISTED = 100


@dataclass(frozen=True, slots=True)
class Problem:
    """One broken rule at one place in one file."""

    file: Path
    path: str  # e.g. `probing.interval` or `mailboxes[3].fase`; empty for the whole file
    rule: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else str(self.file)
        at = f" {self.path}:" if self.path else ""
        return f"{where}:{at} {self.rule}"


class ConfigError(Exception):
    """The configuration cannot be used; carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(self.listed()))

    def listed(self, limit: int = PROBLEMS_LISTED) -> list[str]:
        """The first `limit` problems as text, then how many more there are."""
        lines = [str(p) for p in self.problems[:limit]]
        if len(self.problems) > limit:
            lines.append(f"... and {len(self.problems) - limit:,} more problem(s)")
        return lines


def shown(value: object) -> str:
    """The value as a rule echoes it: its repr, cut to about ECHO_LIMIT characters."""
    text = repr(value)
    if len(text) <= ECHO_LIMIT:
        return text
    size = f" ({len(value):,} characters)" if isinstance(value, str) else ""
    return f"{text[: ECHO_LIMIT - len(size) - 3]}...{size}"


def shown_path(path: object) -> str:
    """A file path as a rule echoes it, keeping its end (the file name) when cut."""
    text = str(path)
    return text if len(text) <= ECHO_LIMIT else "..." + text[-(ECHO_LIMIT - 3) :]


def format_path(parts: tuple[int | str, ...]) -> str:
    """Render a location like ('mailboxes', 3, 'fase') as `mailboxes[3].fase`."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            key = shortened(str(part))
            out += f".{key}" if out else key
    return out


def shortened(text: str, limit: int = ECHO_LIMIT) -> str:
    """`text` cut to `limit` characters, ending in `...` when cut."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
