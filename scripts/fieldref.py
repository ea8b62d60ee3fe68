"""The override file's field reference (``docs/override-reference.md``), generated from the
typed model's JSON Schema so it cannot drift from what validation accepts:

    vend reference > docs/override-reference.md

A test fails when the committed page is stale.
"""

from __future__ import annotations

import json
from typing import Any

from baseline.portfolio import json_schema

HEADER = """# Override file reference

Generated from `baseline/model.py` by `vend reference` (do not edit by hand). Every key of
`overrides/<client>.yaml`; unknown keys are errors. Editors complete and check these files
through the first line `# yaml-language-server: $schema=../baseline/override.schema.json`.

| key | type | required | default | description | example |
|---|---|---|---|---|---|
"""


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        return {**defs[node["$ref"].rsplit("/", 1)[-1]], **{k: v for k, v in node.items() if k != "$ref"}}
    if "allOf" in node and len(node["allOf"]) == 1:
        return {**_resolve(node["allOf"][0], defs), **{k: v for k, v in node.items() if k != "allOf"}}
    return node


def _type(node: dict[str, Any], defs: dict[str, Any]) -> str:
    node = _resolve(node, defs)
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "const" in node:
        return f"`{node['const']}`"
    t = node.get("type")
    if t == "array":
        items = _resolve(node.get("items", {}), defs)
        return f"list of {_type(items, defs) if 'properties' not in items else 'mappings'}"
    if t == "object" or "properties" in node:
        return "mapping"
    if node.get("format") == "date":
        return "date (YYYY-MM-DD)"
    return {"string": "text", "integer": "whole number", "number": "number", "boolean": "true/false"}.get(
        str(t), str(t or "any")
    )


def _limits(node: dict[str, Any]) -> str:
    parts = []
    for key, label in (
        ("minLength", "min length"),
        ("maxLength", "max length"),
        ("minItems", "min items"),
        ("maxItems", "max items"),
        ("minimum", "≥"),
        ("exclusiveMinimum", ">"),
        ("maximum", "≤"),
    ):
        if key in node:
            parts.append(f"{label} {node[key]}")
    if "pattern" in node:
        parts.append(f"pattern `{node['pattern']}`")
    return "; ".join(parts)


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def rows(schema: dict[str, Any]) -> list[str]:
    defs = schema.get("$defs", {})
    out: list[str] = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        node = _resolve(node, defs)
        required = set(node.get("required", []))
        for key, child in node.get("properties", {}).items():
            path = f"{prefix}{key}"
            full = _resolve(child, defs)
            items = _resolve(full.get("items", {}), defs) if full.get("type") == "array" else {}
            desc = child.get("description") or full.get("description") or ""
            limits = _limits({**full, **items} if items and "properties" not in items else full)
            desc = f"{desc} ({limits})" if limits else desc
            example = child.get("examples", full.get("examples"))
            default = child.get("default", full.get("default", ""))
            out.append(
                f"| `{path}` | {_type(child, defs)} | {'yes' if key in required else ''} | "
                f"{_md(json.dumps(default)) if default not in ('', None) else ''} | {_md(desc)} | "
                f"{_md(json.dumps(example[0])) if example else ''} |"
            )
            if "properties" in full:
                walk(full, f"{path}.")
            elif "properties" in items:
                walk(items, f"{path}[].")

    walk(schema, "")
    return out


def render() -> str:
    return HEADER + "\n".join(rows(json_schema())) + "\n"
