"""The committed JSON Schema is generated from the typed model and must not go stale."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from baseline.portfolio import SCHEMA_FILE, render_schema

REPO = Path(__file__).resolve().parents[2]


def test_committed_schema_matches_the_model() -> None:
    assert SCHEMA_FILE.read_text() == render_schema(), (
        "baseline/override.schema.json is stale: run `vend schema > baseline/override.schema.json`"
    )


def test_schema_accepts_examples_and_rejects_unknown_keys() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    for path in (REPO / "overrides").glob("*.yaml"):
        jsonschema.validate(yaml.safe_load(path.read_text()), schema)
    doc = yaml.safe_load((REPO / "overrides" / "brightmart.yaml").read_text())
    doc["regoins"] = ["eu-west-1"]
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(doc))
    assert [e.validator for e in errors] == ["additionalProperties"]
