"""Load YAML keeping the line of every value, and refuse YAML 1.1's silent conversions.

PyYAML follows YAML 1.1: an unquoted ``012345670123`` becomes an octal integer and an
unquoted ``no`` becomes ``False``. For an override file these are always mistakes, so they
are reported as problems with the file and line instead of being converted.

Hostile input is refused before it is built: nesting deeper than :data:`MAX_DEPTH` (PyYAML
recurses once per level) and aliases that expand past :data:`MAX_VALUES` values (the
"billion laughs"). Explicit tags (``!!binary``, ``!!python/...``, ``!foo``) and merge keys
are refused too: an override file holds plain text, numbers, booleans, lists and mappings.
"""

from __future__ import annotations

import math
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
#: An override file needs a few levels (``exceptions: - regions: [...]`` is three); deeper
#: nesting is a mistake or an attack: PyYAML's composer recurses once per level.
MAX_DEPTH = 20
#: Values a document may hold once its aliases are expanded. An override file has a few
#: hundred; nine levels of nine aliases (1 KB of text) would expand to 387 million.
MAX_VALUES = 10_000
_YAML_TAG = "tag:yaml.org,2002:"
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


def _line_col(text: str, position: int) -> tuple[int, int]:
    before = text[:position]
    return before.count("\n") + 1, position - (before.rfind("\n") + 1) + 1


def _hostile(text: str, name: str) -> Problem | None:
    """Nesting deeper than MAX_DEPTH, or aliases expanding past MAX_VALUES, found in the event
    stream (no recursion, nothing expanded). Syntax errors are left to the composer."""
    anchors: dict[str, tuple[int, int]] = {}  # anchor -> (values, levels) of its node
    stack: list[list[Any]] = []  # open collections: [anchor, values, levels below]
    total = 0

    def close(values: int, levels: int) -> None:
        if stack:
            stack[-1][1] += values
            stack[-1][2] = max(stack[-1][2], levels)

    try:
        for event in yaml.parse(text, Loader=_LOADER):
            mark = event.start_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            if isinstance(event, yaml.CollectionStartEvent):
                stack.append([event.anchor, 1, 0])
                total += 1
                if len(stack) > MAX_DEPTH:
                    return Problem(
                        name,
                        line,
                        col,
                        "",
                        f"nested more than {MAX_DEPTH} levels deep; an override "
                        "file needs only a few levels (mappings and lists)",
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                anchor, values, below = stack.pop()
                if anchor:
                    anchors[anchor] = (values, below + 1)
                close(values, below + 1)
            elif isinstance(event, yaml.ScalarEvent):
                total += 1
                if event.anchor:
                    anchors[event.anchor] = (1, 0)
                close(1, 0)
            elif isinstance(event, yaml.AliasEvent):
                values, levels = anchors.get(event.anchor or "", (1, 0))
                total += values
                if len(stack) + levels > MAX_DEPTH:
                    return Problem(
                        name,
                        line,
                        col,
                        "",
                        f"the alias *{event.anchor} nests this document more than "
                        f"{MAX_DEPTH} levels deep; write the values out instead",
                    )
                if total > MAX_VALUES:
                    return Problem(
                        name,
                        line,
                        col,
                        "",
                        f"aliases expand this document to more than {MAX_VALUES:,} "
                        f"values (*{event.anchor} alone stands for {values:,}); write the values out instead "
                        "of nesting aliases",
                    )
                close(values, levels)
    except yaml.YAMLError:
        return None  # the composer reports it, with its position
    return None


def _syntax_message(problem: str) -> str:
    """PyYAML's words for a syntax error, made into advice where they are cryptic."""
    if r"'\t'" in problem or "tab character" in problem:
        return "YAML does not allow tabs for indentation; use spaces"
    if "found another document" in problem:
        return "a second YAML document starts here (---); an override file is one document: remove it"
    return f"not valid YAML: {problem}"


def load_yaml(path: Path, data: bytes | None = None) -> tuple[SourceDoc | None, list[Problem]]:
    """Parse ``path`` (``data``: its bytes, when the caller has read them); return the
    document (None if unusable) and every trap found."""
    name = str(path)
    try:
        data = path.read_bytes() if data is None else data
    except OSError as exc:
        return None, [Problem(name, 1, 1, "", f"cannot read file: {exc.strerror or exc}")]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, [
            Problem(name, line, col, "", f"is not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8")
        ]
    hostile = _hostile(text, name)
    if hostile is not None:
        return None, [hostile]
    try:
        node = _compose(text)
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow, e.g. a NUL byte
        line, col = _line_col(text, exc.position)
        char = exc.character if isinstance(exc.character, str) else chr(exc.character)
        what = "a NUL byte" if char == "\0" else f"the control character U+{ord(char):04X}"
        return None, [Problem(name, line, col, "", f"contains {what}, which YAML does not allow; remove it")]
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, [Problem(name, line, col, "", _syntax_message(str(exc.problem)))]
    except yaml.YAMLError as exc:
        return None, [Problem(name, 1, 1, "", f"not valid YAML: {' '.join(str(exc).split())}")]
    except RecursionError:  # pragma: no cover - _hostile refuses such nesting first
        return None, [Problem(name, 1, 1, "", f"nested more than {MAX_DEPTH} levels deep")]
    if node is None:
        return None, [Problem(name, 1, 1, "", "file is empty; see overrides/ for an example")]
    doc = SourceDoc(file=name, data=None)
    problems: list[Problem] = []
    doc.data = _convert(node, (), doc, problems)
    return doc, problems


_constructor = yaml.constructor.SafeConstructor()
_resolver = yaml.resolver.Resolver()


def _explicit_tag(node: yaml.Node) -> str | None:
    """The tag written in the file (``!!binary``, ``!foo``), or None when YAML chose it."""
    if isinstance(node, yaml.ScalarNode):
        implicit = _resolver.resolve(yaml.ScalarNode, node.value, (True, False)) if not node.style else None
        implicit = implicit or f"{_YAML_TAG}str"
    else:
        implicit = f"{_YAML_TAG}seq" if isinstance(node, yaml.SequenceNode) else f"{_YAML_TAG}map"
    if node.tag in (implicit, f"{_YAML_TAG}str"):  # !!str "forces text": allowed
        return None
    return node.tag


def _tag_message(tag: str) -> str:
    short = tag.replace(_YAML_TAG, "!!")
    return (
        f"the YAML tag {short} is not allowed in an override file; remove it and write the value itself "
        "(text in quotes, a number, true/false, a list or a mapping)"
    )


def _key_message(raw: str, key: Any) -> str:
    if isinstance(key, bool):
        return (
            f"the key {raw} is read by YAML 1.1 as the boolean {str(key).lower()} (so are on, off, yes, no, y, n), "
            f'not as text; put it in quotes if you mean the key: "{raw}"'
        )
    kind = "null (no value)" if key is None else f"the number {key}" if isinstance(key, int | float) else "a value"
    return f'the key {raw} is read by YAML as {kind}, not as text; put it in quotes if you mean the key: "{raw}"'


def _mark(node: yaml.Node) -> Mark:
    return (node.start_mark.line + 1, node.start_mark.column + 1)


def _convert(node: yaml.Node, path: Path_, doc: SourceDoc, problems: list[Problem]) -> Any:
    doc.marks[path] = _mark(node)
    if not isinstance(node, yaml.ScalarNode) and (tag := _explicit_tag(node)) is not None:
        problems.append(Problem(doc.file, *_mark(node), format_path(path), _tag_message(tag)))  # e.g. !!set
    if isinstance(node, yaml.MappingNode):
        doc.containers.add(path)
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line, col = _mark(key_node)
            raw = str(key_node.value) if isinstance(key_node, yaml.ScalarNode) else "?"
            if key_node.tag == f"{_YAML_TAG}merge":
                problems.append(
                    Problem(
                        doc.file,
                        line,
                        col,
                        format_path((*path, raw)),
                        "merge keys (<<) are not supported in an override file; write the keys out",
                    )
                )
                doc.key_marks[(*path, raw)] = (line, col)
                continue
            tag = _explicit_tag(key_node)
            if tag is not None:
                problems.append(Problem(doc.file, line, col, format_path((*path, raw)), _tag_message(tag)))
                key: Any = raw
            else:
                try:
                    key = _constructor.construct_object(key_node)
                except (yaml.YAMLError, ValueError, TypeError, OverflowError) as exc:
                    problems.append(Problem(doc.file, line, col, format_path(path), _unreadable(key_node, exc)))
                    key = raw
            if not isinstance(key, str):
                # the raw text stays the key, so "unknown key" is not reported a second time
                problems.append(Problem(doc.file, line, col, format_path((*path, raw)), _key_message(raw, key)))
                key = raw
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
    tag = _explicit_tag(node)
    if tag is not None:
        line, col = _mark(node)
        problems.append(Problem(doc.file, line, col, format_path(path), _tag_message(tag)))
        return node.value
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
    if isinstance(value, float) and not math.isfinite(value):
        return (
            f"unquoted {text} is read by YAML as {_special(value)}; write a number, "
            f'or "{text}" in quotes if you mean the text'
        )
    return None


def _special(value: float) -> str:
    return "not-a-number (NaN)" if math.isnan(value) else f"{'minus ' if value < 0 else ''}infinity"


def number_trap(text: str, value: Any) -> str | None:
    """For a field that takes a number: what YAML made of ``text`` and what to write instead
    (never "put it in quotes": a quoted number is text)."""
    if isinstance(value, bool):
        return f"must be a number, not {text} (YAML 1.1 reads unquoted {text} as the boolean {str(value).lower()})"
    if isinstance(value, float) and not math.isfinite(value):
        return f"unquoted {text} is read by YAML as {_special(value)}; write the number itself, e.g. 100"
    if not isinstance(value, int | float):
        return None
    digits = text.lstrip("+-")
    if re.fullmatch(r"0[0-7_]+", digits):
        meant = int(digits.replace("_", ""))
        return (
            f"unquoted {text} is read by YAML as the octal number {value} (a leading 0 means octal), "
            f"not {meant}; write {meant}"
        )
    if ":" in digits:
        return f"unquoted {text} is read by YAML as the base-60 number {value}; write the number itself, e.g. {value}"
    if "_" in digits:
        return f"unquoted {text} is read by YAML as {value} (YAML 1.1 drops the underscores); write {value}"
    return None
