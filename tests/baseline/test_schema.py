"""The committed JSON Schema is generated from the typed model and must not go stale."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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


def _fields(schema: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(path, the property's own schema, the schema it refers to) for every field, nested ones too."""
    defs = schema.get("$defs", {})

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = defs[node["$ref"].rsplit("/", 1)[-1]]
        return node

    out: list[tuple[str, dict[str, Any], dict[str, Any]]] = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, prop in resolve(node).get("properties", {}).items():
            target = resolve(prop)
            out.append((f"{prefix}{key}", prop, target))
            if "properties" in target:
                walk(target, f"{prefix}{key}.")
            elif target.get("type") == "array" and "properties" in resolve(target.get("items", {})):
                walk(target["items"], f"{prefix}{key}[].")

    walk(schema, "")
    return out


def test_every_field_has_a_description_and_an_example() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    fields = _fields(schema)
    assert len(fields) > 30  # nested fields are walked too
    missing = [
        (path, what)
        for path, prop, target in fields
        for what in ("description", "examples")
        if not (prop.get(what) or target.get(what))
    ]
    assert missing == []


def test_every_example_is_valid_for_its_field() -> None:
    schema = json.loads(SCHEMA_FILE.read_text())
    for path, prop, target in _fields(schema):
        for example in prop.get("examples") or target.get("examples"):
            validator = jsonschema.Draft202012Validator({**prop, "$defs": schema["$defs"]})
            assert [e.message for e in validator.iter_errors(example)] == [], (path, example)
