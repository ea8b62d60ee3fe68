"""Remember the override files that passed validation, so a run over 1,000 unchanged files
does not parse and check each one again (~0.6 s of every ``vend deploy --all``).

An entry is keyed by everything that decides a file's result: its path and bytes, the MSP
defaults and profiles, the validation code and the versions of the libraries it uses, and
the date (exception expiry warnings and errors depend on it). Only files without errors are
remembered: a broken file is checked again every time, and reported in full.

Entries are JSON, one per override path (so the cache does not grow with every edit), never
pickle: a cache directory restored in CI must not be able to run code. Nor can an entry
supply configuration: the values vend uses are always parsed from the file itself (with
libyaml's fast loader, no line marks), and an entry whose remembered values differ from
them is a miss. A cache that cannot be read or written is skipped: it only saves time.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import astuple
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from baseline.yamlsource import Problem, SourceDoc

PACKAGE_DIR = Path(__file__).resolve().parent
#: Libraries whose behaviour decides a file's result.
LIBRARIES = ("pydantic", "pydantic-core", "jsonschema", "PyYAML")
#: Bump when an entry's layout changes.
FORMAT = 2


class _PlainLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's safe loader (pure Python where libyaml is missing), keeping dates as text
    as ``yamlsource.load_yaml`` does: what a remembered file's values are checked against."""


_PlainLoader.add_constructor("tag:yaml.org,2002:timestamp", lambda loader, node: node.value)


def context_key(inputs: Iterable[tuple[Path, bytes]], today: date) -> str:
    """What every file's result depends on besides the file: ``inputs`` (the defaults and
    profile files, with the bytes the caller parses), the validation code (this package),
    Python's and the libraries' versions, and ``today``."""
    digest = hashlib.sha256(f"vend-validation {FORMAT} {today.isoformat()} {sys.version}\0".encode())
    code = [(path, path.read_bytes()) for path in sorted(PACKAGE_DIR.glob("*.py"))]
    for path, data in [*code, *inputs]:
        digest.update(str(path).encode() + b"\0" + data + b"\0")
    for library in LIBRARIES:
        try:
            digest.update(f"{library}=={metadata.version(library)}\0".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{library} missing\0".encode())
    return digest.hexdigest()


class ValidationCache:
    """Validated override files under ``directory``, for one ``context_key``."""

    def __init__(self, directory: Path, context: str) -> None:
        self.directory = directory
        self.context = context

    def key(self, path: Path, data: bytes) -> str:
        return hashlib.sha256(f"{self.context}\0{path}\0".encode() + data).hexdigest()

    def lookup(self, path: Path, key: str, data: bytes) -> tuple[SourceDoc, list[Problem]] | None:
        """The document and warnings remembered for ``path`` under ``key``, if any, and only
        if the remembered values are the ones ``data`` (the file's bytes) holds."""
        try:
            entry = json.loads(_read_regular(self._entry(path)))
            if entry.get("key") != key:
                return None
            doc, problems = _decode_doc(entry["doc"]), [Problem(*p) for p in entry["problems"]]
            if yaml.load(data, Loader=_PlainLoader) != doc.data:  # noqa: S506 - a safe loader
                return None
        except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError):
            return None
        return doc, problems

    def store(self, path: Path, key: str, doc: SourceDoc, problems: list[Problem]) -> None:
        """Remember a file that passed (``problems``: its warnings); atomically, so a reader
        running at the same time sees the old entry or the new one."""
        if any(p.severity == "error" for p in problems):
            return
        encoded = _encode_doc(doc)
        try:
            if _decode_doc(json.loads(json.dumps(encoded))).__dict__ != doc.__dict__:
                return  # a value JSON cannot carry exactly (e.g. a non-text key): never cache it
            self.directory.mkdir(parents=True, exist_ok=True)
            text = json.dumps({"key": key, "doc": encoded, "problems": [list(astuple(p)) for p in problems]})
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        except (OSError, TypeError, ValueError):
            return
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(tmp, self._entry(path))
        except OSError:
            Path(tmp).unlink(missing_ok=True)

    def _entry(self, path: Path) -> Path:
        return self.directory / (hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:32] + ".json")


def _read_regular(path: Path) -> str:
    """A regular file's text; anything else (a FIFO, a directory) raises OSError at once,
    so a cache entry can never make vend wait."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise OSError(f"{path} is not a regular file")
        return handle.read().decode("utf-8")


def _encode_doc(doc: SourceDoc) -> dict[str, Any]:
    return {
        "file": doc.file,
        "data": doc.data,
        "marks": [[list(k), list(v)] for k, v in doc.marks.items()],
        "key_marks": [[list(k), list(v)] for k, v in doc.key_marks.items()],
        "plain_scalars": [[list(k), v] for k, v in doc.plain_scalars.items()],
        "containers": [list(k) for k in doc.containers],
    }


def _decode_doc(raw: dict[str, Any]) -> SourceDoc:
    return SourceDoc(
        file=raw["file"],
        data=raw["data"],
        marks={tuple(k): (v[0], v[1]) for k, v in raw["marks"]},
        key_marks={tuple(k): (v[0], v[1]) for k, v in raw["key_marks"]},
        plain_scalars={tuple(k): v for k, v in raw["plain_scalars"]},
        containers={tuple(k) for k in raw["containers"]},
    )
