"""`vend show CLIENT`: a client's effective config, and the layer that set each value.

The layers are merged in this order, later wins: ``baseline/defaults.yaml`` -> each
profile the client lists (in order) -> the client's own file. For every field of the
effective config this names the last layer that wrote it, with file and line, so a
reviewer can see at a glance whether a value is the MSP default, comes from ``hipaa``,
or was set for this client. Values vend combines from several layers name the layer whose
value decides, by the rule the merge itself uses (``baseline.portfolio.COMBINE``): the log
retention is the longest any layer asks for, trail data events are on when any profile
turns them on, everything else is the last layer's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from baseline.portfolio import DEFAULTS_FILE, PROFILES_DIR, Portfolio, deciding_layer
from baseline.yamlsource import SourceDoc, load_yaml

P = tuple[str | int, ...]

# Effective field -> where each layer writes it: (defaults path, profile path, client path).
# None: that layer cannot set the field.
FIELD_PATHS: dict[str, tuple[P | None, P | None, P | None]] = {
    "client": (None, None, ("client",)),
    "display_name": (None, None, ("display_name",)),
    "account_id": (None, None, ("account_id",)),
    "home_region": (None, None, ("home_region",)),
    "regions": (None, None, ("regions",)),
    "engagement": (None, None, ("engagement",)),
    "deploy_role_arn": (None, None, ("access", "deploy_role_arn")),
    "external_id": (None, None, ("access", "external_id")),
    "profiles": (None, None, ("profiles",)),
    "budget_limit_usd": (None, None, ("budget", "monthly_limit_usd")),
    "budget_thresholds_pct": (("client_defaults", "budget_thresholds_pct"), None, ("budget", "thresholds_pct")),
    "budget_notify": (("client_defaults", "budget_notify"), None, ("budget", "notify")),
    "budget_forecast_thresholds_pct": (
        ("client_defaults", "budget_forecast_thresholds_pct"),
        None,
        ("budget", "forecast_thresholds_pct"),
    ),
    "anomaly_threshold_usd": (("client_defaults", "anomaly_threshold_usd"), None, ("budget", "anomaly_threshold_usd")),
    "required_tags": (("client_defaults", "required_tags"), None, ("tags", "required")),
    "finding_publishing_frequency": (
        ("client_defaults", "finding_publishing_frequency"),
        None,
        ("guardduty", "finding_publishing_frequency"),
    ),
    "guardduty_features": (("client_defaults", "guardduty_features"), None, ("guardduty", "features")),
    "log_retention_days": (("log_archive", "retention_days"), ("log_retention_days",), None),
    "trail_s3_data_events": (None, ("trail", "s3_data_events"), None),
    "trail_cloudwatch_logs_days": (None, ("trail", "cloudwatch_logs_retention_days"), None),
    "inherited": (None, None, ("inherited",)),
    "exceptions": (None, None, ("exceptions",)),
}


@dataclass(frozen=True)
class Origin:
    layer: str  # default | profile:<name> | client | built-in | derived
    file: str
    line: int

    def __str__(self) -> str:
        return f"{self.layer} {self.file}:{self.line}" if self.file else self.layer


def _get(data: Any, path: P) -> Any:
    for part in path:
        in_dict = isinstance(data, dict) and isinstance(part, str) and part in data
        in_list = isinstance(data, list) and isinstance(part, int) and part < len(data)
        if not (in_dict or in_list):
            return _MISSING
        data = data[part]
    return data


_MISSING = object()


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class _Layers:
    """The parsed documents of one client's layers, in merge order."""

    def __init__(self, client_file: Path, profiles: tuple[str, ...], defaults_file: Path, profiles_dir: Path) -> None:
        self.docs: list[tuple[str, SourceDoc]] = []
        for layer, path in (
            ("default", defaults_file),
            *((f"profile:{name}", profiles_dir / f"{name}.yaml") for name in profiles),
            ("client", client_file),
        ):
            doc, _ = load_yaml(path)
            if doc is not None:
                doc.file = _display(path)
                self.docs.append((layer, doc))

    def origin(self, field_name: str, value: Any, sub: P = ()) -> Origin:
        """The layer whose value of ``field_name`` (or of the leaf ``sub`` inside it) the
        effective config took: the merge's own rule (``COMBINE``) picks it among the layers."""
        paths = FIELD_PATHS.get(field_name)
        if paths is None:
            return Origin("derived", "", 0)
        d_path, p_path, c_path = paths
        found: list[tuple[str, SourceDoc, P] | None] = []
        values: list[Any] = []
        for layer, doc in self.docs:
            path = d_path if layer == "default" else c_path if layer == "client" else p_path
            raw = _get(doc.data, (*path, *sub)) if path is not None else _MISSING
            present = raw is not _MISSING and raw is not None
            found.append((layer, doc, (*path, *sub)) if present and path is not None else None)
            values.append(raw if present else None)
        index = deciding_layer(field_name, values) if not sub else None
        if index is None:
            index = max((i for i, f in enumerate(found) if f is not None), default=None)
        hit = found[index] if index is not None else None
        if hit is None:
            return Origin("built-in", "", 0)  # no layer writes it: vend's own default
        layer, doc, path = hit
        return Origin(layer, doc.file, doc.line_of(path))

    def rule_origin(self, name: str) -> Origin:
        """A Config rule comes from the defaults or the last profile that defines it."""
        hit = Origin("derived", "", 0)
        for layer, doc in self.docs:
            if layer == "client":
                continue
            for i, rule in enumerate((doc.data or {}).get("config_rules") or []):
                if isinstance(rule, dict) and rule.get("name") == name:
                    hit = Origin(layer, doc.file, doc.line_of(("config_rules", i, "name")))
        return hit


def _entry(value: Any, o: Origin) -> dict[str, Any]:
    return {"value": value, "layer": o.layer, "source": f"{o.file}:{o.line}" if o.file else ""}


def _mapping_entry(layers: _Layers, name: str, value: dict[str, Any], sub: P = ()) -> dict[str, Any]:
    """A mapping field gets a layer per leaf (``fields``): ``guardduty.features:
    {runtime_monitoring: true}`` in a client file sets that one feature, the others stay the
    defaults'. The mapping's own ``layer`` is its leaves' layer, or ``mixed``."""
    leaves: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, dict) and item:
            leaves[key] = _mapping_entry(layers, name, item, (*sub, key))
        else:
            leaves[key] = _entry(item, layers.origin(name, item, (*sub, key)))
    kinds = {(e["layer"], e["source"] if "fields" not in e else "") for e in leaves.values()}
    names = {e["layer"] for e in leaves.values()}
    if len(names) == 1:
        (layer,) = names
        whole = layers.origin(name, value, sub)  # where the mapping itself is written
        source = (f"{whole.file}:{whole.line}" if whole.file else "") if whole.layer == layer else ""
        if len(kinds) == 1 and not source:
            source = next(iter(kinds))[1]
    else:
        layer, source = "mixed", ""
    return {"value": value, "layer": layer, "source": source, "fields": leaves}


def provenance(
    portfolio: Portfolio,
    client: str,
    *,
    defaults_file: Path = DEFAULTS_FILE,
    profiles_dir: Path = PROFILES_DIR,
) -> dict[str, Any]:
    """``{"client": ..., "fields": {name: {"value", "layer", "source"}}}`` for one client.

    A mapping (``guardduty_features``, ``inherited``) also has ``fields``: the same record for
    each of its keys, since different layers may set different keys.
    """
    c = portfolio.client(client)
    layers = _Layers(Path(c.source_file), c.profiles, defaults_file, profiles_dir)
    data = c.model_dump(mode="json", exclude={"source_file"})
    fields: dict[str, Any] = {}
    for name, value in data.items():
        if name == "config_rules":
            fields[name] = [_entry(rule, layers.rule_origin(rule["name"])) for rule in value]
        elif isinstance(value, dict) and value:
            fields[name] = _mapping_entry(layers, name, value)
        elif name == "exceptions" and value:
            entry = _entry(value, layers.origin(name, value))
            entry["items"] = [_entry(item, layers.origin(name, item, (i,))) for i, item in enumerate(value)]
            fields[name] = entry
        else:
            fields[name] = _entry(value, layers.origin(name, getattr(c, name)))
    return {"client": client, "file": _display(Path(c.source_file)), "fields": fields}


def _flow(value: Any) -> str:
    """One YAML value on one line (flow style), quoted wherever YAML needs it."""
    text = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=1_000_000, allow_unicode=True)
    return text.strip().removesuffix("...").strip()


def _note(entry: dict[str, Any]) -> str:
    return f"  # {entry['layer']}" + (f" {entry['source']}" if entry["source"] else "")


def _key(name: str) -> str:
    return _flow(name)  # a key that YAML would misread (`on`, `1`, `a: b`) comes out quoted


def _yaml_mapping(entry: dict[str, Any], indent: int) -> list[str]:
    lines = []
    pad = " " * indent
    for key, leaf in entry["fields"].items():
        if "fields" in leaf:
            lines.append(f"{pad}{_key(key)}:{_note(leaf)}")
            lines += _yaml_mapping(leaf, indent + 2)
        else:
            lines.append(f"{pad}{_key(key)}: {_flow(leaf['value'])}{_note(leaf)}")
    return lines


def render_yaml(prov: dict[str, Any]) -> str:
    """The effective config as a YAML document (``yaml.safe_load`` reads it back), each value
    followed by a comment ``# layer file:line`` naming the layer that set it. Config rules
    are shown without their ``why`` (``--format json`` has it)."""
    lines = [
        f"# {prov['client']}: effective config = defaults -> profiles -> {prov['file']}",
        "# each value is followed by the layer that set it; config rules without `why` (see --format json)",
    ]
    for name, entry in prov["fields"].items():
        if name == "config_rules":
            lines.append(f"config_rules:  # {len(entry)} rule(s)")
            for r in entry:
                v = {k: r["value"][k] for k in ("name", "identifier", "scope", "parameters") if r["value"].get(k)}
                lines.append(f"  - {_flow(v)}{_note(r)}")
        elif "fields" in entry:
            lines.append(f"{_key(name)}:{_note(entry)}")
            lines += _yaml_mapping(entry, 2)
        elif "items" in entry:
            lines.append(f"{_key(name)}:{_note(entry)}")
            lines += [f"  - {_flow(item['value'])}{_note(item)}" for item in entry["items"]]
        else:
            lines.append(f"{_key(name)}: {_flow(entry['value'])}{_note(entry)}")
    return "\n".join(lines) + "\n"


def render(prov: dict[str, Any], fmt: str) -> str:
    return json.dumps(prov, indent=2) + "\n" if fmt == "json" else render_yaml(prov)
