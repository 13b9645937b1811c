"""YAML reading held to size limits, remembering the line of every key so errors point at it."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

from monitor.config.errors import ECHO_LIMIT, ConfigError, Problem, format_path, shortened, shown

try:
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # PyYAML built without libyaml
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

Location = tuple[int | str, ...]

# Limits on what one YAML file (the config or an inventory) may hold. A config is a few
# kilobytes and 10,000 mailboxes with names and contacts take 1.2 MB, 100,000 nodes and
# 1.6 s to load; the limits leave room for several times that. Without them an alias bomb
# (8 levels of 9 aliases, 43 million nodes once expanded) ran out of memory, and nesting
# about 1,000 deep overflowed the recursion of the code walking it. Nothing in a config
# nests beyond 4 levels.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_NODES = 250_000
MAX_DEPTH = 20
# The longest number or date read: longer integers take quadratic time to convert
# (YAML 1.1 reads 1:2:3 in base 60).
MAX_TYPED_CHARS = 100

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_MENTIONS_TAB = re.compile(r"\btab\b|\t")


class _Loader(_SafeLoader):
    """The safe loader, turning values it cannot convert into YAML errors with a line."""


_Construct = Callable[[_Loader, yaml.ScalarNode], Any]


def _checked(name: str, construct: _Construct) -> _Construct:
    """`construct`, refusing overlong values and reporting a failed conversion as YAML."""

    def construct_checked(loader: _Loader, node: yaml.ScalarNode) -> Any:
        if len(str(node.value)) > MAX_TYPED_CHARS:
            rule = f"{name} longer than {MAX_TYPED_CHARS} characters"
            raise ConstructorError(None, None, rule, node.start_mark)
        try:
            return construct(loader, node)
        # PyYAML converts a tagged value (`!!int zz`, `!!bool x`) or a date like 2024-13-01
        # without checking it: these are what its conversions raise.
        except (ValueError, KeyError, IndexError, AttributeError, OverflowError):
            rule = f"{shown(node.value)} is not a valid {name}"
            raise ConstructorError(None, None, rule, node.start_mark) from None

    return construct_checked


_CHECKED_TYPES = {"bool": "boolean", "int": "whole number", "float": "number", "timestamp": "date"}
for _type, _name in _CHECKED_TYPES.items():
    _tag = f"tag:yaml.org,2002:{_type}"
    _Loader.add_constructor(_tag, _checked(_name, _Loader.yaml_constructors[_tag]))


def load_yaml(path: Path) -> tuple[Any, dict[Location, int]]:
    """Parse a YAML file; return the data and a map from location to 1-based line."""
    text = _read(path)
    lines: dict[Location, int] = {}
    duplicates: list[Problem] = []
    try:
        _check_shape(text, path)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is not None:
                # Indexed before construction: merge keys (`<<: *defaults`) are then still
                # apart from the keys written beside them, which may override them.
                _index(node, (), lines, duplicates, path, set())
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise ConfigError([_syntax_problem(exc, text, path)]) from None
    if duplicates:
        raise ConfigError(duplicates)
    return data, lines


def _read(path: Path) -> str:
    # In pieces: one read of the whole cap would allocate the 4 MiB for every small file.
    chunks: list[bytes] = []
    size = 0
    try:
        with path.open("rb") as handle:
            while size <= MAX_FILE_BYTES and (chunk := handle.read(64 * 1024)):
                chunks.append(chunk)
                size += len(chunk)
    except OSError as exc:
        raise ConfigError([Problem(path, "", f"cannot read file: {exc.strerror}")]) from None
    if size > MAX_FILE_BYTES:
        rule = f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB"
        raise ConfigError([Problem(path, "", rule)])
    try:
        return b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([Problem(path, "", "file is not UTF-8 text")]) from None


@dataclass
class _Open:
    """A collection whose end has not been read yet."""

    anchor: str | None
    nodes: int = 1
    height: int = 0


def _check_shape(text: str, path: Path) -> None:
    """Refuse a document too big or too deep once aliases are expanded, before building it.

    One pass over the parser's events, counting for each anchor the nodes and depth its
    aliases stand for: the cost follows the text, not what it expands to.
    """
    open_: list[_Open] = []
    anchored: dict[str, tuple[int, int]] = {}  # anchor: (nodes, height) of its node
    total = 0

    def close(anchor: str | None, nodes: int, height: int) -> None:
        if open_:
            open_[-1].nodes += nodes
            open_[-1].height = max(open_[-1].height, height)
        if anchor is not None:
            anchored[anchor] = (nodes, height)

    def refuse(event: yaml.Event, rule: str) -> ConfigError:
        mark = event.start_mark
        return ConfigError([Problem(path, "", rule, mark.line + 1 if mark else None)])

    for event in yaml.parse(text, Loader=_Loader):
        if isinstance(event, yaml.CollectionStartEvent):
            open_.append(_Open(event.anchor))
            total += 1
            if len(open_) > MAX_DEPTH:
                raise refuse(event, f"nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, yaml.CollectionEndEvent):
            done = open_.pop()
            close(done.anchor, done.nodes, done.height + 1)
        elif isinstance(event, yaml.ScalarEvent):
            total += 1
            close(event.anchor, 1, 1)
        elif isinstance(event, yaml.AliasEvent):
            if any(o.anchor == event.anchor for o in open_):
                raise refuse(event, "an alias refers to a node that contains it")
            # An unknown anchor counts as one node; composing the document reports it.
            nodes, height = anchored.get(str(event.anchor), (1, 1))
            total += nodes
            if len(open_) + height > MAX_DEPTH:
                raise refuse(
                    event, f"nested deeper than {MAX_DEPTH} levels once aliases are expanded"
                )
            close(None, nodes, height)
        if total > MAX_NODES:
            if isinstance(event, yaml.AliasEvent):
                raise refuse(event, f"aliases expand to more than {MAX_NODES:,} nodes")
            raise refuse(event, f"more than {MAX_NODES:,} nodes in one file")


def _syntax_problem(exc: yaml.YAMLError, text: str, path: Path) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    line = mark.line + 1 if mark is not None else None
    # A message can quote the text it stopped at, e.g. an unknown tag of any length.
    problem = shortened(getattr(exc, "problem", None) or str(exc), 2 * ECHO_LIMIT)
    if "maximum nesting depth" in problem:
        # libyaml's own limit (1,000), met first when its scanner reads ahead of our count.
        return Problem(path, "", f"nested deeper than {MAX_DEPTH} levels", line)
    if mark is not None and (
        _MENTIONS_TAB.search(problem) or _tab_in_indentation(text, mark.line, mark.column)
    ):
        # libyaml says only "found character that cannot start any token".
        problem = "tab character used for indentation (YAML allows only spaces)"
    return Problem(path, "", f"invalid YAML: {problem}", line)


def _tab_in_indentation(text: str, line: int, column: int) -> bool:
    lines = _LINE_BREAK.split(text)
    if line >= len(lines):
        return False
    row = lines[line]
    indentation = row[: len(row) - len(row.lstrip(" \t"))]
    return column <= len(indentation) and "\t" in indentation


def _index(
    node: yaml.Node,
    at: Location,
    lines: dict[Location, int],
    duplicates: list[Problem],
    path: Path,
    seen: set[int],
) -> None:
    lines[at] = node.start_mark.line + 1
    # An alias is the very node its anchor names: indexed once, where it is written, so
    # the work follows the text, and a place reached through an alias points at the alias.
    if id(node) in seen:
        return
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[str] = set()
        for key_node, value_node in node.value:
            # A key that is a list or mapping: construction refuses it just after.
            key = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            if key in keys and key != "?":
                # PyYAML keeps the last value silently; an operator would not expect that.
                duplicates.append(
                    Problem(
                        path,
                        format_path((*at, key)),
                        "duplicate key",
                        key_node.start_mark.line + 1,
                    )
                )
            keys.add(key)
            _index(value_node, (*at, key), lines, duplicates, path, seen)
            lines[(*at, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _index(item, (*at, i), lines, duplicates, path, seen)


def line_of(lines: dict[Location, int], at: Location) -> int | None:
    """The line of the deepest known location at or above `at`."""
    while at:
        if at in lines:
            return lines[at]
        at = at[:-1]
    return lines.get(())
