"""The field reference page is generated from the model, and every field is described."""

from __future__ import annotations

import re
from pathlib import Path

from baseline.portfolio import json_schema
from scripts.fieldref import render, rows

REPO = Path(__file__).resolve().parents[2]


def test_committed_reference_is_current() -> None:
    page = REPO / "docs" / "override-reference.md"
    assert page.read_text() == render(), (
        "docs/override-reference.md is stale: run `vend reference > docs/override-reference.md`"
    )


def test_every_field_has_a_description() -> None:
    cells = [re.split(r"(?<!\\)\|", row) for row in rows(json_schema())]
    undocumented = [c[1].strip() for c in cells if c[5].strip() == ""]
    assert undocumented == []


def test_every_example_override_starts_with_the_schema_line() -> None:
    for path in sorted((REPO / "overrides").glob("*.yaml")):
        first = path.read_text().splitlines()[0]
        assert first == "# yaml-language-server: $schema=../baseline/override.schema.json", path
