"""Remember the override files that passed validation, so a run over 1,000 unchanged files
does not parse and check each one again (~0.6 s of every ``vend deploy --all``).

An entry is keyed by everything that decides a file's result: its path and bytes, the MSP
defaults and profiles, the validation code and the versions of the libraries it uses, and
the date (exception expiry warnings and errors depend on it). Only files without errors are
remembered: a broken file is checked again every time, and reported in full.

Entries are JSON, one per override path (so the cache does not grow with every edit), never
pickle: a cache directory restored in CI must not be able to run code. A cache that cannot
be read or written is skipped: it only saves time.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import astuple
from datetime import date
from importlib import metadata
from pathlib import Path
from typing import Any

from baseline.yamlsource import Problem, SourceDoc

PACKAGE_DIR = Path(__file__).resolve().parent
#: Libraries whose behaviour decides a file's result.
LIBRARIES = ("pydantic", "pydantic-core", "jsonschema", "PyYAML")
#: Bump when an entry's layout changes.
FORMAT = 1


def context_key(inputs: Iterable[Path], today: date) -> str:
    """What every file's result depends on besides the file: ``inputs`` (the defaults and
    profile files), the validation code (this package), library versions and ``today``."""
    digest = hashlib.sha256(f"vend-validation {FORMAT} {today.isoformat()}\0".encode())
    for path in [*sorted(PACKAGE_DIR.glob("*.py")), *inputs]:
        digest.update(str(path).encode() + b"\0" + path.read_bytes() + b"\0")
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
        self.hits = 0

    def key(self, path: Path, data: bytes) -> str:
        return hashlib.sha256(f"{self.context}\0{path}\0".encode() + data).hexdigest()

    def lookup(self, path: Path, key: str) -> tuple[SourceDoc, list[Problem]] | None:
        """The document and warnings remembered for ``path`` under ``key``, if any."""
        try:
            entry = json.loads(self._entry(path).read_text(encoding="utf-8"))
            if entry.get("key") != key:
                return None
            doc, problems = _decode_doc(entry["doc"]), [Problem(*p) for p in entry["problems"]]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        self.hits += 1
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
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(text)
            os.replace(tmp, self._entry(path))
        except (OSError, TypeError, ValueError):
            return

    def _entry(self, path: Path) -> Path:
        return self.directory / (hashlib.sha256(os.path.abspath(path).encode()).hexdigest()[:32] + ".json")


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
