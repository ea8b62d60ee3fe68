"""Client *shapes*: synthesize one prototype per shape, render every client from it.

Two clients have the same shape when their effective configs differ only in per-client
values: slug, display name, account, ExternalId, budget amounts, recipients and region
names (by position). The CDK builds the same resources for both; only those values differ
in the templates. So :mod:`scripts.synth` synthesizes one *prototype* client per shape,
with distinctive sentinel values, and renders each client's templates by replacing the
prototype's sentinels with the client's values in one pass. A test synthesizes a varied
portfolio both ways and requires identical templates (``tests/scripts/test_shapes.py``).

The log shard is part of the shape (it picks the central bucket and key), and so is
everything else: engagement, profiles, thresholds, tag keys, GuardDuty settings,
inherited-resource settings and exceptions (with their regions by position).

This module never imports aws_cdk.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from baseline.model import EffectiveClient, MspDefaults
from baseline.regions import COMMERCIAL_REGIONS
from baseline.spec import decimal_text, log_shard

#: Fields whose values vary per client and are rendered by substitution (by name).
SCALAR_FIELDS = {
    "client": "client",
    "display_name": "display",
    "account_id": "account",
    "external_id": "external_id",
    "deploy_role_arn": "deploy_role",
    "budget_limit_usd": "budget_limit",
    "anomaly_threshold_usd": "anomaly_threshold",
}
_NUMBERS = {"budget_limit", "anomaly_threshold"}
_SENTINEL_NUMBER_BASE = 973_100_000


class NoShape(Exception):
    """A client that cannot be rendered from a prototype (synthesized on its own)."""


@dataclass(frozen=True)
class ClientShape:
    """A client's shape key (JSON) and its values by placeholder name."""

    key: str
    values: Mapping[str, str | float]

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.key.encode()).hexdigest()[:20]


def _placeholders(client: EffectiveClient) -> dict[str, str | float]:
    values: dict[str, str | float] = {name: getattr(client, field) for field, name in SCALAR_FIELDS.items()}
    for i, email in enumerate(client.budget_notify):
        values[f"notify{i}"] = email
    for i, region in enumerate(client.regions):
        values[f"region{i}"] = region
    return values


def _map_regions(value: Any, regions: Mapping[str, str]) -> Any:
    """``value`` with every string (and mapping key) naming one of the client's regions replaced."""
    if isinstance(value, dict):
        return {regions.get(k, k): _map_regions(v, regions) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_map_regions(v, regions) for v in value]
    if isinstance(value, str):
        return regions.get(value, value)
    return value


def _abstract(client: EffectiveClient, region_names: Mapping[str, str], notify: Sequence[str]) -> dict[str, Any]:
    """The client's effective config with its values replaced (regions via ``region_names``)."""
    data = client.model_dump(mode="json", exclude={"source_file"})
    for field_name, name in SCALAR_FIELDS.items():
        data[field_name] = f"<{name}>"
    data["budget_notify"] = list(notify)
    data["regions"] = [region_names[r] for r in client.regions]
    data["home_region"] = region_names[client.home_region]
    for key in ("exceptions", "inherited"):
        data[key] = _map_regions(data[key], region_names)
    return data


def shape_of(client: EffectiveClient, defaults: MspDefaults) -> ClientShape:
    names = {r: f"<region{i}>" for i, r in enumerate(client.regions)}
    data = _abstract(client, names, [f"<notify{i}>" for i in range(len(client.budget_notify))])
    data["log_shard"] = log_shard(client.account_id, defaults.log_archive.shards)
    return ClientShape(key=json.dumps(data, sort_keys=True, separators=(",", ":")), values=_placeholders(client))


def sentinel_regions(defaults: MspDefaults, avoid_text: str) -> tuple[str, ...]:
    """Regions a prototype may use: real ones (the CDK and the specs expect real regions)
    that appear nowhere in the defaults or the baseline code, so every occurrence of one
    in a prototype's template comes from the prototype's own regions."""
    taken = {defaults.log_archive.region} | {r for r in COMMERCIAL_REGIONS if r in avoid_text}
    return tuple(r for r in reversed(COMMERCIAL_REGIONS) if r not in taken)


def _account_in_shard(index: int, shard: int, shards: int) -> str:
    for n in range(100_000):
        account = f"9{index:05d}{n:06d}"
        if log_shard(account, shards) == shard:
            return account
    raise NoShape(f"no prototype account lands in log shard {shard}")  # pragma: no cover


@dataclass(frozen=True)
class Prototype:
    """The stand-in client synthesized for a shape, and its sentinel for each placeholder."""

    client: EffectiveClient
    sentinels: Mapping[str, str | float]


def prototype(client: EffectiveClient, defaults: MspDefaults, index: int, pool: Sequence[str]) -> Prototype:
    """A prototype of ``client``'s shape; ``index`` makes its sentinels unique in one app."""
    if len(client.regions) > len(pool):
        raise NoShape(f"{len(client.regions)} regions, more than the {len(pool)} sentinel regions")
    tag = f"{index:05d}"
    shard = log_shard(client.account_id, defaults.log_archive.shards)
    account = _account_in_shard(index, shard, defaults.log_archive.shards)
    regions = {r: pool[i] for i, r in enumerate(client.regions)}
    notify = [f"vendmail{tag}n{i}@prototype.example" for i in range(len(client.budget_notify))]
    data = _abstract(client, regions, notify)
    sentinels: dict[str, str | float] = {
        "client": f"vendproto{tag}",
        "display": f"Vend Prototype Display {tag}",
        "account": account,
        "external_id": f"vendxid{tag}q",
        "deploy_role": f"arn:aws:iam::{account}:role/VendProtoDeploy{tag}",
        "budget_limit": float(_SENTINEL_NUMBER_BASE + 2 * index),
        "anomaly_threshold": float(_SENTINEL_NUMBER_BASE + 2 * index + 1),
    }
    sentinels.update({f"notify{i}": e for i, e in enumerate(notify)})
    sentinels.update({f"region{i}": pool[i] for i in range(len(client.regions))})
    for field_name, name in SCALAR_FIELDS.items():
        data[field_name] = sentinels[name]
    data["source_file"] = f"<prototype {tag}>"
    return Prototype(client=EffectiveClient.model_validate(data), sentinels=sentinels)


def replacements(values: Mapping[str, str | float]) -> dict[str, str]:
    """Each value as it appears inside a JSON text: numbers as JavaScript writes them, text
    JSON-escaped (a display name may hold quotes)."""
    return {
        name: decimal_text(float(v)) if name in _NUMBERS else json.dumps(str(v), ensure_ascii=False)[1:-1]
        for name, v in values.items()
    }


class SentinelFinder:
    """Finds a prototype's sentinels in a text, all in one pass, longest first (a sentinel
    that another contains can never win); region names only as whole names, accounts and
    numbers only where no digit touches them."""

    def __init__(self, sentinels: Mapping[str, str | float]) -> None:
        self.by_text: dict[str, str] = {}
        patterns: list[str] = []
        for name, sentinel in sentinels.items():
            if name in _NUMBERS:
                literal = decimal_text(float(sentinel))
                patterns.append(rf"(?<![0-9.]){re.escape(literal)}(?:\.0)?(?![0-9])")
            else:
                literal = str(sentinel)
                if name.startswith("region"):
                    patterns.append(rf"(?<![a-z0-9]){re.escape(literal)}(?![0-9])")
                elif name == "account":
                    patterns.append(rf"(?<![0-9]){re.escape(literal)}(?![0-9])")
                elif name.startswith("log_"):  # shard 0's name is the start of shard 1's
                    patterns.append(rf"{re.escape(literal)}(?![-0-9A-Za-z])")
                else:
                    patterns.append(re.escape(literal))
            self.by_text[literal] = name
        patterns.sort(key=len, reverse=True)
        self.regex = re.compile("|".join(patterns)) if patterns else None

    def finditer(self, text: str) -> Iterator[tuple[re.Match[str], str]]:
        """Each match with the placeholder name of its sentinel."""
        if self.regex is None:
            return
        for match in self.regex.finditer(text):
            yield match, self.by_text[match.group(0).removesuffix(".0")]


class Stencil:
    """A prototype's text cut at its sentinels, so rendering a client is one join.

    All sentinels are found in one pass, longest first (a sentinel that another contains
    can never win); region names only as whole names, accounts and numbers only where no
    digit touches them.
    """

    def __init__(self, text: str, sentinels: Mapping[str, str | float]) -> None:
        finder = SentinelFinder(sentinels)
        self.parts: list[str] = []
        self.names: list[str] = []
        position = 0
        for match, name in finder.finditer(text):
            self.parts.append(text[position : match.start()])
            self.names.append(name)
            position = match.end()
        self.parts.append(text[position:])

    def render(self, values: Mapping[str, str]) -> str:
        """``values``: :func:`replacements` of one client."""
        out = [self.parts[0]]
        for name, part in zip(self.names, self.parts[1:], strict=True):
            out.append(values[name])
            out.append(part)
        return "".join(out)


def write_prototypes(path: Path, defaults: MspDefaults, prototypes: Sequence[Prototype]) -> None:
    """The input of ``VEND_PROTOTYPES=path python app.py``."""
    data = {
        "defaults": defaults.model_dump(mode="json"),
        "clients": [p.client.model_dump(mode="json") for p in prototypes],
    }
    path.write_text(json.dumps(data), encoding="utf-8")


def load_prototypes(path: Path) -> tuple[MspDefaults, list[EffectiveClient]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return MspDefaults.model_validate(data["defaults"]), [EffectiveClient.model_validate(c) for c in data["clients"]]


# --- stack sets: which template a stack of a client runs -------------------------------------

#: How each field of a client's effective config reaches its stacks, for StackSets
#: (scripts/stackset_layout.py). A stack set is one template that many clients' stacks run.
#: It must stay the same stack set when the MSP changes its baseline (code, defaults.yaml,
#: a profile: the stack set's template is updated in place, one operation for every client),
#: so it is named by what the *client* chose, never by the values defaults and profiles give:
#:
#: - ``value``: differs per client, a parameter of the template (or AWS::AccountId/Region);
#: - ``client``: the client's own choice, part of the key (engagement, profiles, exceptions,
#:   inherited resources, relative to the stack's region);
#: - ``default``: from defaults.yaml unless the client overrides it: part of the key only
#:   where the client's value differs from the default;
#: - ``profiles``: made from defaults.yaml and the client's profiles (named in the key);
#: - ``none``: never in a template.
#:
#: A test fails when a field is missing here; synthesis fails when two stacks with one key
#: get different templates. One edge: a client that set a value which later becomes the
#: default moves once to the stack set of the clients on the default (``vend deploy``
#: refuses the move without ``--move-stacks``).
STACK_SET_FIELDS: Mapping[str, str] = {
    "client": "value",
    "display_name": "value",
    "account_id": "value",
    "external_id": "value",
    "deploy_role_arn": "value",
    "budget_limit_usd": "value",
    "anomaly_threshold_usd": "value",
    "budget_notify": "value",  # how many recipients is a default or the client's choice
    "regions": "value",  # the stack's own region is AWS::Region; the home region, a role
    "home_region": "value",
    "source_file": "none",
    "engagement": "client",
    "profiles": "client",
    "inherited": "client",
    "exceptions": "client",
    "budget_thresholds_pct": "default",
    "budget_forecast_thresholds_pct": "default",
    "required_tags": "default",
    "finding_publishing_frequency": "default",
    "guardduty_features": "default",
    "config_rules": "profiles",
    "log_retention_days": "profiles",
    "trail_s3_data_events": "profiles",
    "trail_cloudwatch_logs_days": "profiles",
}
_GLOBAL_DEFAULTS = ("budget_thresholds_pct", "budget_forecast_thresholds_pct")
_REGIONAL_DEFAULTS = ("required_tags", "finding_publishing_frequency", "guardduty_features")


def _relative_regions(value: Any, roles: Mapping[str, str]) -> Any:
    """Region names replaced by their role for one stack; lists of names deduplicated."""
    mapped = _map_regions(value, roles)
    if isinstance(mapped, list) and all(isinstance(v, str) for v in mapped):
        return sorted(set(mapped))
    if isinstance(mapped, dict):
        return {k: _relative_regions(v, roles) for k, v in mapped.items()}
    if isinstance(mapped, list):
        return [_relative_regions(v, roles) for v in mapped]
    return mapped


def _own_choice(value: Any, default: Any) -> Any:
    """The client's value where it differs from the MSP default, else a marker."""
    if isinstance(value, dict) and isinstance(default, dict):
        return {k: v for k, v in value.items() if default.get(k) != v} or "<default>"
    if isinstance(value, list) and isinstance(default, list) and sorted(value) == sorted(default):
        return "<default>"  # thresholds are sorted in the effective config
    return "<default>" if value == default else value


def stack_set_key(client: EffectiveClient, defaults: MspDefaults, region: str | None) -> str:
    """The stack set of one of ``client``'s stacks: the global stack (``region`` None) or the
    regional stack of ``region``. Digest of what the client chose that this kind of stack
    depends on, with region names as roles (this stack's region, the home region, another)."""
    kind = "global" if region is None else "regional"
    this = region or client.home_region
    roles = {r: "<this>" if r == this else "<home>" if r == client.home_region else "<other>" for r in client.regions}
    data = client.model_dump(mode="json", exclude={"source_file"})
    default = defaults.client_defaults.model_dump(mode="json")
    key: dict[str, Any] = {
        "kind": kind,
        "home": this == client.home_region,
        "engagement": data["engagement"] if kind == "global" else None,
        "profiles": data["profiles"],
        "inherited": _relative_regions(data["inherited"], roles),
        "exceptions": [
            _relative_regions({k: e[k] for k in ("control", "regions", "rules")}, roles) for e in data["exceptions"]
        ],
    }
    if kind == "global":
        key["notify"] = _own_choice(len(client.budget_notify), len(default["budget_notify"]))
    for name in _GLOBAL_DEFAULTS if kind == "global" else _REGIONAL_DEFAULTS:
        key[name] = _own_choice(data[name], default[name])
    return hashlib.sha256(json.dumps(key, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
