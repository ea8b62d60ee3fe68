"""Load YAML keeping the line of every value, and refuse YAML 1.1's silent conversions.

PyYAML follows YAML 1.1: an unquoted ``012345670123`` becomes an octal integer and an
unquoted ``no`` becomes ``False``. For an override file these are always mistakes, so they
are reported as problems with the file and line instead of being converted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

# libyaml's parser when PyYAML was built with it (10x faster on a portfolio of 1,000 files);
# it keeps the same marks, so file:line:col is unchanged.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

Path_ = tuple[str | int, ...]

_TRUE_FALSE = {"true", "false"}
_OCTAL_OR_SEXAGESIMAL = re.compile(r"^[-+]?(0[0-7_]+|0o[0-7_]+|[0-9][0-9_]*(:[0-5]?[0-9])+|.*_.*)$")


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with an input file, printed as ``file:line:col: path: message``.

    ``line`` and ``col`` are 1-based, as editors and CI annotations count them. A warning
    (``severity="warning"``) prints ``warning:`` before the message and never fails validation.
    """

    file: str
    line: int
    col: int
    path: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        label = "warning: " if self.severity == "warning" else ""
        return f"{self.file}:{self.line}:{self.col}: {self.path or '(document)'}: {label}{self.message}"


def format_path(path: Path_) -> str:
    """``("budget", "notify", 0)`` -> ``budget.notify[0]``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


Mark = tuple[int, int]  # (line, column), both 1-based


@dataclass
class SourceDoc:
    """A parsed YAML document plus where each value and key came from."""

    file: str
    data: Any
    marks: dict[Path_, Mark] = field(default_factory=dict)
    key_marks: dict[Path_, Mark] = field(default_factory=dict)
    plain_scalars: dict[Path_, str] = field(default_factory=dict)
    containers: set[Path_] = field(default_factory=set)

    def mark_of(self, path: Path_) -> Mark:
        """Where a problem at ``path`` is reported: a scalar's own position; for a mapping or
        list, the key that introduces it; else the nearest parent that has a position."""
        for end in range(len(path), -1, -1):
            sub = path[:end]
            if sub in self.containers and sub in self.key_marks:
                return self.key_marks[sub]
            if sub in self.marks:
                return self.marks[sub]
        return (1, 1)

    def line_of(self, path: Path_) -> int:
        return self.mark_of(path)[0]

    def key_mark_of(self, path: Path_) -> Mark:
        """Position of the key at ``path`` (or of the value when it has no key)."""
        return self.key_marks.get(path) or self.mark_of(path)

    def problem(self, path: Path_, message: str, severity: str = "error", *, at_key: bool = False) -> Problem:
        line, col = self.key_mark_of(path) if at_key else self.mark_of(path)
        return Problem(self.file, line, col, format_path(path), message, severity)


def _compose(text: str) -> yaml.Node | None:
    try:
        return yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError:
        # PyYAML's own parser words syntax errors better ("expected ',' or ']', but got ':'").
        return yaml.compose(text, Loader=yaml.SafeLoader)


def load_yaml(path: Path) -> tuple[SourceDoc | None, list[Problem]]:
    """Parse ``path``; return the document (None if unusable) and every trap found."""
    name = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return None, [Problem(name, 1, 1, "", f"cannot read file: {exc}")]
    try:
        node = _compose(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, [Problem(name, line, col, "", f"not valid YAML: {exc.problem}")]
    except yaml.YAMLError as exc:
        return None, [Problem(name, 1, 1, "", f"not valid YAML: {exc}")]
    if node is None:
        return None, [Problem(name, 1, 1, "", "file is empty; see overrides/ for an example")]
    doc = SourceDoc(file=name, data=None)
    problems: list[Problem] = []
    doc.data = _convert(node, (), doc, problems)
    return doc, problems


_constructor = yaml.constructor.SafeConstructor()


def _mark(node: yaml.Node) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _convert(node: yaml.Node, path: Path_, doc: SourceDoc, problems: list[Problem]) -> Any:
    doc.marks[path] = _mark(node)
    if isinstance(node, yaml.MappingNode):
        doc.containers.add(path)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line, col = _mark(key_node)
            try:
                key = _constructor.construct_object(key_node)
            except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
                problems.append(Problem(doc.file, line, col, format_path(path), _unreadable(key_node, exc)))
                key = str(getattr(key_node, "value", "?"))
            if not isinstance(key, str):
                problems.append(Problem(doc.file, line, col, format_path(path), f"key {key!r} must be text"))
                key = str(key)
            if key in out:
                problems.append(
                    Problem(
                        doc.file,
                        line,
                        col,
                        format_path((*path, key)),
                        "duplicate key; YAML would silently keep only the last one",
                    )
                )
            doc.key_marks[(*path, key)] = (line, col)
            out[key] = _convert(value_node, (*path, key), doc, problems)
        return out
    if isinstance(node, yaml.SequenceNode):
        doc.containers.add(path)
        return [_convert(item, (*path, i), doc, problems) for i, item in enumerate(node.value)]
    assert isinstance(node, yaml.ScalarNode)
    try:
        value = _constructor.construct_object(node)
    except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
        # e.g. `expires: 2027-02-30`: YAML 1.1 reads it as a date, and there is no such day.
        line, col = _mark(node)
        problems.append(Problem(doc.file, line, col, format_path(path), _unreadable(node, exc)))
        doc.plain_scalars[path] = node.value
        return node.value
    if isinstance(value, date | datetime):
        return node.value  # dates stay text (ISO 8601); the model parses them where it expects one
    if not node.style:  # plain (unquoted) scalar (libyaml says "", PyYAML None): YAML 1.1 may have converted it
        doc.plain_scalars[path] = node.value
        trap = _trap(node, value)
        if trap:
            line, col = _mark(node)
            problems.append(Problem(doc.file, line, col, format_path(path), trap))
    return value


_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"


def _unreadable(node: yaml.Node, exc: Exception) -> str:
    """Why YAML cannot turn a scalar into a value, in words (never a traceback)."""
    text = node.value if isinstance(node, yaml.ScalarNode) else "?"
    if node.tag == _TIMESTAMP_TAG:
        return (
            f"unquoted {text} is read by YAML as a date, but it is not a valid one ({exc}); "
            f'write a real date as YYYY-MM-DD, or put it in quotes if you mean the text: "{text}"'
        )
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem:
        return f"not valid YAML: {exc.problem}"
    return f"not valid YAML: {exc}"


def _trap(node: yaml.ScalarNode, value: Any) -> str | None:
    text = node.value
    if isinstance(value, bool) and text.lower() not in _TRUE_FALSE:
        return (
            f"unquoted {text} is read by YAML as the boolean {str(value).lower()}; "
            f'write "{text}" in quotes if you mean the text, or true/false if you mean a boolean'
        )
    if isinstance(value, int | float) and not isinstance(value, bool) and _OCTAL_OR_SEXAGESIMAL.match(text):
        return f'unquoted {text} is read by YAML as the number {value}, not as written; put it in quotes: "{text}"'
    return None
