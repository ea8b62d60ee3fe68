"""Which property changes make CloudFormation replace a resource.

The CloudFormation resource provider schemas list, per resource type, the
``createOnlyProperties``: a change to any of them (or below them) creates a new physical
resource and deletes the old one ("Update requires: Replacement" in the template
reference). ``scripts/cfn_create_only.json`` is that list for every type, generated from
the us-east-1 schemas that cfn-lint (a pinned dev dependency) ships, so `vend diff`
needs neither network nor AWS access. Regenerate after bumping cfn-lint:

    python -m scripts.cfnspec > scripts/cfn_create_only.json

A test fails when the committed file differs from what the installed cfn-lint gives.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from functools import cache
from pathlib import Path

DATA_FILE = Path(__file__).with_name("cfn_create_only.json")
SCHEMA_REGION = "us-east-1"

PathPart = str | int


@cache
def _table() -> dict[str, tuple[tuple[str, ...], ...]]:
    raw: dict[str, list[str]] = json.loads(DATA_FILE.read_text(encoding="utf-8"))
    return {rtype: tuple(tuple(p.split("/")) for p in paths) for rtype, paths in raw.items()}


def create_only_paths(resource_type: str) -> tuple[tuple[str, ...], ...]:
    """The create-only property paths of ``resource_type`` (``*`` stands for any list index)."""
    return _table().get(resource_type, ())


def is_known_type(resource_type: str) -> bool:
    return resource_type in _table()


def _overlaps(changed: Sequence[PathPart], create_only: Sequence[str]) -> bool:
    """True when one path is a prefix of the other (``*`` matches any list index)."""
    for a, b in zip(changed, create_only, strict=False):
        if b == "*" and isinstance(a, int):
            continue
        if str(a) != b:
            return False
    return True


def replacing_path(resource_type: str, changed: Sequence[PathPart]) -> str | None:
    """The create-only property that a change at ``changed`` touches, or None."""
    for path in create_only_paths(resource_type):
        if _overlaps(changed, path):
            return "/".join(path)
    return None


def generate() -> dict[str, list[str]]:
    """Build the table from cfn-lint's bundled provider schemas."""
    import cfnlint  # dev dependency: only needed to regenerate

    schemas = Path(cfnlint.__file__).parent / "data" / "schemas"
    index: dict[str, str] = json.loads((schemas / "providers" / f"{SCHEMA_REGION}.json").read_text())
    out: dict[str, list[str]] = {}
    for rtype, digest in sorted(index.items()):
        schema = json.loads((schemas / "resources" / f"{digest}.json").read_text())
        paths = schema.get("createOnlyProperties") or []
        if paths:
            out[rtype] = sorted(p.removeprefix("/properties/") for p in paths)
    return out


def render() -> str:
    return json.dumps(generate(), indent=0, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
