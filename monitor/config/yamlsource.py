"""YAML reading that remembers the line of every key, so errors can point at it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from monitor.config.errors import ConfigError, Problem, format_path

Location = tuple[int | str, ...]

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: Path) -> tuple[Any, dict[Location, int]]:
    """Parse a YAML file; return the data and a map from location to 1-based line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([Problem(path, "", f"cannot read file: {exc.strerror}")]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(path, "", "file is not UTF-8 text")]) from exc
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([Problem(path, "", f"invalid YAML: {problem}", line)]) from exc
    finally:
        loader.dispose()
    lines: dict[Location, int] = {}
    duplicates: list[Problem] = []
    if node is not None:
        _index(node, (), lines, duplicates, path)
    if duplicates:
        raise ConfigError(duplicates)
    return data, lines


def _index(
    node: yaml.Node,
    at: Location,
    lines: dict[Location, int],
    duplicates: list[Problem],
    path: Path,
) -> None:
    lines[at] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                # PyYAML keeps the last value silently; an operator would not expect that.
                duplicates.append(
                    Problem(
                        path,
                        format_path((*at, key)),
                        "duplicate key",
                        key_node.start_mark.line + 1,
                    )
                )
            seen.add(key)
            _index(value_node, (*at, key), lines, duplicates, path)
            lines[(*at, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*at, i), lines, duplicates, path)


def line_of(lines: dict[Location, int], at: Location) -> int | None:
    """The line of the deepest known location at or above `at`."""
    while at:
        if at in lines:
            return lines[at]
        at = at[:-1]
    return lines.get(())
