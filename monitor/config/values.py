"""Setting types that read raw YAML values and hold them to a range an operator can read."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

from pydantic import BeforeValidator, ByteSize, TypeAdapter, ValidationError

from monitor.config.errors import shown

MS = 0.001
SECOND = 1.0
MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0
KIB = 1024
MIB = 1024**2
GIB = 1024**3
TIB = 1024**4

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?$")
_UNIT_SECONDS = {"ms": MS, "s": SECOND, "m": MINUTE, "h": HOUR, "d": DAY, None: SECOND}
_WHOLE = re.compile(r"^[+-]?\d{1,18}$")
_BYTE_SIZE: TypeAdapter[ByteSize] = TypeAdapter(ByteSize)


def parse_duration(value: Any) -> float:
    """Read `90`, `90s`, `5m`, `6h` or `7d` as seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        # Stripped first: a pattern with \s* at both ends backtracks quadratically on a
        # long run of spaces.
        match = _DURATION.match(value.strip())
        if match:
            return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError(f"must be a duration like 30s, 5m or 6h (got {shown(value)})")


def format_duration(seconds: float) -> str:
    """Write seconds the way a config file would: `100ms`, `10m`, `1d`."""
    for name, unit in (("d", DAY), ("h", HOUR), ("m", MINUTE), ("s", SECOND)):
        count = seconds / unit
        if count >= 1 and count == round(count):
            return f"{round(count)}{name}"
    return f"{seconds / MS:g}ms"


def duration(low: float, high: float, *, optional: bool = False) -> BeforeValidator:
    """A duration in seconds from `low` to `high`; `optional` lets null through."""

    def check(value: Any) -> float | None:
        if value is None and optional:
            return None
        seconds = parse_duration(value)
        # `not low <= x <= high` and not `x < low or x > high`: it also refuses NaN.
        if not low <= seconds <= high:
            raise ValueError(
                f"must be a duration between {format_duration(low)} and "
                f"{format_duration(high)} (got {shown(value)})"
            )
        return seconds

    return BeforeValidator(check)


def whole(low: int, high: int) -> BeforeValidator:
    """A whole number from `low` to `high`."""

    def check(value: Any) -> int:
        number = _as_whole(value)
        if number is None or not low <= number <= high:
            raise ValueError(
                f"must be a whole number between {low} and {high} (got {shown(value)})"
            )
        return number

    return BeforeValidator(check)


def number(low: float, high: float, *, zero_means: str | None = None) -> BeforeValidator:
    """A number from `low` to `high`; with `zero_means`, 0 is allowed too and means that."""

    def check(value: Any) -> float:
        real = _as_real(value)
        if real is not None and (low <= real <= high or (zero_means and real == 0)):
            return real
        rule = f"a number between {low:g} and {high:g}"
        if zero_means:
            rule = f"0 ({zero_means}) or {rule}"
        raise ValueError(f"must be {rule} (got {shown(value)})")

    return BeforeValidator(check)


def size(low: int, high: int) -> BeforeValidator:
    """A size in bytes from `low` to `high`, written as bytes or with a unit (500MB, 2GiB)."""

    def check(value: Any) -> ByteSize:
        rule = f"must be a size between {_format_size(low)} and {_format_size(high)}, e.g. 2GiB"
        if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
            raise ValueError(f"{rule} (got {shown(value)})")
        try:
            parsed = _BYTE_SIZE.validate_python(value)
        except ValidationError:
            raise ValueError(f"{rule} (got {shown(value)})") from None
        if not low <= parsed <= high:
            raise ValueError(f"{rule} (got {shown(value)})")
        return parsed

    return BeforeValidator(check)


def _system_limit(name: str, fallback: int) -> int:
    try:
        return os.pathconf("/", name)
    except (OSError, ValueError, AttributeError):
        return fallback


# Linux counts the final NUL in PATH_MAX; both are bytes, not characters.
PATH_MAX_BYTES = _system_limit("PC_PATH_MAX", 4096) - 1
NAME_MAX_BYTES = _system_limit("PC_NAME_MAX", 255)


def usable_path(path: Path) -> Path:
    """Refuse a path the system could not open, before anything tries to."""
    text = str(path)
    if "\0" in text:
        raise ValueError("path contains a NUL character")
    length = len(os.fsencode(text))
    if length > PATH_MAX_BYTES:
        raise ValueError(
            f"path is too long ({length:,} bytes; the system allows {PATH_MAX_BYTES:,})"
        )
    longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
    if longest > NAME_MAX_BYTES:
        raise ValueError(
            f"path is too long (a name of {longest:,} bytes; "
            f"the system allows {NAME_MAX_BYTES} per name)"
        )
    return path


def _as_whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _WHOLE.match(value.strip()):
        return int(value)
    return None


def _as_real(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        return float(value)
    except (ValueError, OverflowError):
        return None


def _format_size(size: int) -> str:
    for name, unit in (("TiB", TIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size >= unit and size % unit == 0:
            return f"{size // unit}{name}"
    return f"{size}B"
