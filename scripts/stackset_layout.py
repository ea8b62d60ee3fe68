"""The portfolio as CloudFormation StackSets: one stack set per baseline template, stack
instances per client account and region, the client's values as parameter overrides.

Written by ``vend synth`` next to the cloud assembly (``<assembly>/stacksets.json`` and
``<assembly>/stacksets/<name>.template.json``) and read by ``vend deploy --engine stacksets``
(scripts/stacksets.py). It is made from the same prototype templates as the per-client
templates that direct mode deploys (scripts/shapes.py): each sentinel of a prototype becomes
a parameter (``${Client}``, ``${ExternalId}``, ``${BudgetLimitUsd}``...), the stack's own
account and region become ``AWS::AccountId`` and ``AWS::Region``. So a stack instance
resolves to exactly the template direct mode deploys for that client and region, save the
description (tests/scripts/test_stackset_layout.py proves it for a varied portfolio), and
every client of a stack set runs a byte-identical template.

A stack set is named by the fields its template depends on (:func:`scripts.shapes.stack_set_key`):
baseline code changes update stack sets in place; a client whose engagement, profiles or
budget thresholds change moves to another stack set.

This module never imports aws_cdk.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from baseline.adoption import without_imported
from baseline.model import EffectiveClient, MspDefaults
from baseline.spec import client_logging, decimal_text
from scripts.render import ShapeEntry, with_hash
from scripts.shapes import SentinelFinder, stack_set_key

LAYOUT_FILE = "stacksets.json"
LAYOUT_INPUTS_FILE = "stacksets.inputs"  # what the layout was built from (a digest)
TEMPLATE_DIR = "stacksets"
LAYOUT_VERSION = 1
#: Placeholder name (scripts/shapes.py) -> template parameter.
PARAMETERS = {
    "client": "Client",
    "display": "DisplayName",
    "external_id": "ExternalId",
    "deploy_role": "DeployRoleArn",
    "budget_limit": "BudgetLimitUsd",
    "anomaly_threshold": "AnomalyThresholdUsd",
    # The client's central log bucket and key (its log shard): parameters too, so that adding
    # shards moves no stack between stack sets.
    "log_bucket": "LogBucket",
    "log_key": "LogKeyArn",
}
NUMBER_PARAMETERS = {"BudgetLimitUsd", "AnomalyThresholdUsd"}
HOME_REGION = "HomeRegion"
_PSEUDO = ("AWS::AccountId", "AWS::Region")
_DESCRIPTIONS = {
    "Client": "The client's slug (vend:client).",
    "DisplayName": "The client's display name.",
    "ExternalId": "The ExternalId the MSP role requires (sts:ExternalId).",
    "DeployRoleArn": "The client's deploy role.",
    "BudgetLimitUsd": "Monthly budget in USD.",
    "AnomalyThresholdUsd": "Cost anomaly alert threshold in USD.",
    HOME_REGION: "The client's home region.",
    "LogBucket": "The central log bucket (the client's log shard).",
    "LogKeyArn": "The central log key's alias ARN (the client's log shard).",
}


class LayoutError(Exception):
    """A template cannot be expressed as a stack set template (a bug in the stack set key or
    a new kind of per-client value): the message says which."""


@dataclass(frozen=True)
class StackSetSpec:
    name: str
    kind: str  # global | regional
    template_file: str  # relative to the assembly
    parameters: tuple[str, ...]


@dataclass(frozen=True)
class InstanceSpec:
    """One client's instances of one stack set: its account, the regions, its values."""

    client: str
    account_id: str
    stack_set: str
    regions: tuple[str, ...]
    parameters: Mapping[str, str]
    #: The stacks direct mode deploys for the same templates (for reports and drift).
    direct_stacks: tuple[str, ...]


@dataclass
class Layout:
    stack_sets: dict[str, StackSetSpec] = field(default_factory=dict)
    instances: list[InstanceSpec] = field(default_factory=list)
    #: Clients that cannot run from a stack set, and why (deploy them in direct mode).
    unsupported: dict[str, str] = field(default_factory=dict)
    templates: dict[str, str] = field(default_factory=dict)  # stack set -> template text


# --- one template --------------------------------------------------------------------------


def _escape_sub(text: str) -> str:
    """Literal text inside Fn::Sub: ``${`` would start a variable."""
    return text.replace("${", "${!")


class _Parametrizer:
    def __init__(self, sentinels: Mapping[str, str | float], own_region: str, home_region: str) -> None:
        self.finder = SentinelFinder(sentinels)
        self.numbers = {
            float(v): name for name, v in sentinels.items() if name in ("budget_limit", "anomaly_threshold")
        }
        self.own_region = own_region  # placeholder names: region<i>
        self.home_region = home_region
        self.used: set[str] = set()

    def parameter(self, placeholder: str) -> str:
        if placeholder == "account":
            return "AWS::AccountId"
        if placeholder == self.own_region:
            return "AWS::Region"
        if placeholder == self.home_region:
            name = HOME_REGION
        elif placeholder.startswith("region"):
            raise LayoutError(f"the template names another of the client's regions ({placeholder})")
        elif placeholder.startswith("notify"):
            name = f"Notify{placeholder.removeprefix('notify')}"
        else:
            name = PARAMETERS[placeholder]
        self.used.add(name)
        return name

    def _sub(self, text: str, *, literal: bool) -> str:
        out: list[str] = []
        position = 0
        for match, placeholder in self.finder.finditer(text):
            piece = text[position : match.start()]
            out.append(_escape_sub(piece) if literal else piece)
            out.append(f"${{{self.parameter(placeholder)}}}")
            position = match.end()
        rest = text[position:]
        out.append(_escape_sub(rest) if literal else rest)
        return "".join(out)

    def walk(self, value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {"Fn::Sub"}:
                arg = value["Fn::Sub"]
                if isinstance(arg, str):
                    return {"Fn::Sub": self._sub(arg, literal=False)}
                return {"Fn::Sub": [self._sub(arg[0], literal=False), self.walk(arg[1])]}
            for key in value:
                if next(self.finder.finditer(key), None) is not None:
                    raise LayoutError(f"a client value in a key: {key!r}")
            return {k: self.walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.walk(v) for v in value]
        if isinstance(value, str):
            matches = list(self.finder.finditer(value))
            if not matches:
                return value
            if len(matches) == 1 and matches[0][0].span() == (0, len(value)):
                return {"Ref": self.parameter(matches[0][1])}
            return {"Fn::Sub": self._sub(value, literal=True)}
        if isinstance(value, int | float) and not isinstance(value, bool) and float(value) in self.numbers:
            return {"Ref": self.parameter(self.numbers[float(value)])}
        return value


def parametrize(
    template_text: str, sentinels: Mapping[str, str | float], *, own_region: str, home_region: str, kind: str
) -> tuple[str, tuple[str, ...]]:
    """A prototype's template (canonical text, no hash output) as a stack set template:
    its text (canonical, with the hash output) and its parameters.

    ``own_region`` / ``home_region``: the placeholder names (``region<i>``) of the stack's
    region and of the client's home region."""
    # StackSets cannot import into a stack instance: adopted resources stay the account's.
    template = without_imported(json.loads(template_text))
    p = _Parametrizer(sentinels, own_region, home_region)
    template.pop("Description", None)  # a literal string: no parameter can reach it
    body = p.walk(template)
    body["Description"] = f"vend baseline ({kind} stack) for every client of this stack set"
    declared = dict(body.get("Parameters") or {})
    for name in sorted(p.used):
        declared[name] = {
            "Type": "Number" if name in NUMBER_PARAMETERS else "String",
            "Description": _DESCRIPTIONS.get(name, "A budget notification recipient."),
        }
    body["Parameters"] = declared
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return with_hash(canonical), tuple(sorted(p.used))


def parameter_values(values: Mapping[str, str | float], home_region: str) -> dict[str, str]:
    """A client's parameter values, by parameter name (every one a stack set may declare);
    ``values``: its placeholders (scripts/shapes.py) plus ``log_bucket`` and ``log_key``."""
    out: dict[str, str] = {HOME_REGION: home_region}
    for placeholder, value in values.items():
        if placeholder in PARAMETERS:
            name = PARAMETERS[placeholder]
            out[name] = decimal_text(float(value)) if name in NUMBER_PARAMETERS else str(value)
        elif placeholder.startswith("notify"):
            out[f"Notify{placeholder.removeprefix('notify')}"] = str(value)
    return out


# --- the portfolio -------------------------------------------------------------------------


def stack_set_name(kind: str, key: str) -> str:
    return f"vend-{kind}-{key[:16]}"


def _kind_and_region(artifact: Mapping[str, Any], artifact_id: str) -> tuple[str, str]:
    region = str(artifact["environment"]).rsplit("/", 1)[1]
    return ("global" if artifact_id.endswith("-global") else "regional"), region


def build_layout(
    clients: Sequence[EffectiveClient],
    defaults: MspDefaults,
    shape_of: Mapping[str, tuple[str, Mapping[str, str | float]]],
    entries: Mapping[str, ShapeEntry],
    unsupported: Mapping[str, str],
) -> Layout:
    """``shape_of``: client -> (shape digest, its values); ``entries``: shape digest -> the
    cached prototype; ``unsupported``: clients synthesized on their own, and why."""
    layout = Layout(unsupported=dict(unsupported))
    templates: dict[tuple[str, int], tuple[str, tuple[str, ...], str]] = {}
    first_client: dict[str, str] = {}
    names: dict[tuple[str, str, str], str] = {}
    for c in clients:
        if c.client in unsupported:
            continue
        digest, values = shape_of[c.client]
        entry = entries[digest]
        by_region = {str(v): k for k, v in entry.sentinels.items() if k.startswith("region")}
        home = f"region{c.regions.index(c.home_region)}"
        logging = client_logging(c, defaults)  # the shape's prototype is in the same log shard
        log = {"log_bucket": logging.bucket_name, "log_key": logging.kms_alias_arn}
        params = parameter_values({**values, **log}, c.home_region)
        sentinels = {**entry.sentinels, **log}
        grouped: dict[str, list[tuple[str, str]]] = {}
        for index, stack in enumerate(entry.stacks):
            artifact = json.loads(stack.artifact)
            kind, proto_region = _kind_and_region(artifact, stack.artifact_id)
            own = by_region[proto_region]
            region = c.regions[int(own.removeprefix("region"))]
            if (digest, own, kind) not in names:  # the same for every client of the shape
                key = stack_set_key(c, defaults, None if kind == "global" else region)
                names[(digest, own, kind)] = stack_set_name(kind, key)
            name = names[(digest, own, kind)]
            if (digest, index) not in templates:
                try:
                    text, used = parametrize(stack.template, sentinels, own_region=own, home_region=home, kind=kind)
                except LayoutError as exc:
                    raise LayoutError(f"{c.client}: {stack.artifact_id}: {exc}") from exc
                templates[(digest, index)] = (text, used, kind)
            text, used, _ = templates[(digest, index)]
            if name not in layout.stack_sets:
                layout.stack_sets[name] = StackSetSpec(name, kind, f"{TEMPLATE_DIR}/{name}.template.json", used)
                layout.templates[name] = text
                first_client[name] = c.client
            elif layout.templates[name] != text:
                raise LayoutError(
                    f"stack set {name}: the {kind} stacks of {first_client[name]} and {c.client} have different "
                    "templates but the same key: a field that changes this template is missing from its key "
                    "(scripts/shapes.py STACK_SET_FIELDS); deploy in direct mode meanwhile"
                )
            direct_name = f"vend-{c.client}-global" if kind == "global" else f"vend-{c.client}-{region}"
            grouped.setdefault(name, []).append((region, direct_name))
        for name, stacks in grouped.items():
            spec = layout.stack_sets[name]
            layout.instances.append(
                InstanceSpec(
                    client=c.client,
                    account_id=c.account_id,
                    stack_set=name,
                    regions=tuple(r for r, _ in stacks),
                    parameters={p: params[p] for p in spec.parameters},
                    direct_stacks=tuple(s for _, s in stacks),
                )
            )
    return layout


def layout_current(outdir: Path, inputs: str) -> bool:
    """Whether ``outdir`` holds the layout written from ``inputs`` (see :func:`write_layout`)."""
    try:
        return (outdir / LAYOUT_INPUTS_FILE).read_text(encoding="utf-8") == inputs and (outdir / LAYOUT_FILE).is_file()
    except OSError:
        return False


def write_layout(outdir: Path, layout: Layout, *, inputs: str = "") -> None:
    """Write the layout; ``inputs`` (a digest of what it was built from) lets the next
    synthesis of the same inputs keep it (:func:`layout_current`)."""
    (outdir / LAYOUT_INPUTS_FILE).unlink(missing_ok=True)  # first: never vouch for a half-written layout
    folder = outdir / TEMPLATE_DIR
    folder.mkdir(parents=True, exist_ok=True)
    keep = set()
    for name, spec in layout.stack_sets.items():
        path = outdir / spec.template_file
        keep.add(path.name)
        if not path.exists() or path.read_text(encoding="utf-8") != layout.templates[name]:
            path.write_text(layout.templates[name], encoding="utf-8")
    for stale in folder.glob("*.template.json"):
        if stale.name not in keep:
            stale.unlink()
    data = {
        "version": LAYOUT_VERSION,
        "stack_sets": [asdict(s) for s in layout.stack_sets.values()],
        "instances": [asdict(i) for i in layout.instances],
        "unsupported": layout.unsupported,
    }
    (outdir / LAYOUT_FILE).write_text(json.dumps(data, indent=1), encoding="utf-8")
    if inputs:
        (outdir / LAYOUT_INPUTS_FILE).write_text(inputs, encoding="utf-8")


def read_layout(assembly: Path) -> Layout:
    """The layout ``vend synth`` wrote into ``assembly``; raise LayoutError when there is none."""
    try:
        data = json.loads((assembly / LAYOUT_FILE).read_text(encoding="utf-8"))
    except OSError as exc:
        raise LayoutError(f"no {LAYOUT_FILE} in {assembly}: run `vend synth` (it writes the stack set layout)") from exc
    except ValueError as exc:
        raise LayoutError(f"{assembly / LAYOUT_FILE} is not valid JSON: {exc}") from exc
    if data.get("version") != LAYOUT_VERSION:
        raise LayoutError(f"{assembly / LAYOUT_FILE} is from another vend version: run `vend synth` again")
    layout = Layout(unsupported=dict(data.get("unsupported") or {}))
    for s in data["stack_sets"]:
        spec = StackSetSpec(s["name"], s["kind"], s["template_file"], tuple(s["parameters"]))
        layout.stack_sets[spec.name] = spec
        layout.templates[spec.name] = (assembly / spec.template_file).read_text(encoding="utf-8")
    for i in data["instances"]:
        layout.instances.append(
            InstanceSpec(
                i["client"],
                i["account_id"],
                i["stack_set"],
                tuple(i["regions"]),
                dict(i["parameters"]),
                tuple(i["direct_stacks"]),
            )
        )
    return layout


_REF = re.compile(r"\$\{([^}!][^}]*)\}")


def resolve(value: Any, values: Mapping[str, Any]) -> Any:
    """Substitute ``values`` (parameters and pseudo parameters) into ``Ref`` and ``Fn::Sub``,
    leaving every other reference as it is: what CloudFormation does with the parameters,
    for the tests and for ``vend diff``-style comparisons."""
    if isinstance(value, list):
        return [resolve(v, values) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"} and value["Ref"] in values:
        return values[value["Ref"]]
    if set(value) == {"Fn::Sub"}:
        arg = value["Fn::Sub"]
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
        done = _REF.sub(lambda m: str(values.get(m.group(1), m.group(0))), text)
        if extra:
            return {"Fn::Sub": [done, resolve(extra, values)]}
        return done.replace("${!", "${") if not _REF.search(done) else {"Fn::Sub": done}
    return {k: resolve(v, values) for k, v in value.items()}
