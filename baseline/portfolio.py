"""Load, validate and merge the portfolio: defaults -> profiles -> each client's override.

Validation reports every problem at once (``file:line: path: message``) and returns no
portfolio when any error is found, so nothing is synthesized or deployed from bad input.
This module must not import aws_cdk: the driver imports it.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import jsonschema
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import GenerateJsonSchema

from baseline.exceptions import exception_problems
from baseline.model import ClientOverride, EffectiveClient, MspDefaults, Profile
from baseline.regions import COMMERCIAL_REGIONS
from baseline.yamlsource import Problem, SourceDoc, format_path, load_yaml

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULTS_FILE = PACKAGE_DIR / "defaults.yaml"
PROFILES_DIR = PACKAGE_DIR / "profiles"
SCHEMA_FILE = PACKAGE_DIR / "override.schema.json"

M = TypeVar("M", bound=BaseModel)


class _OptionalMeansAbsent(GenerateJsonSchema):
    """An optional key is written by leaving it out, so ``null`` is not a valid value."""

    def nullable_schema(self, schema: Any) -> Any:
        return self.generate_inner(schema["schema"])


def json_schema(model: type[BaseModel] = ClientOverride) -> dict[str, Any]:
    """The JSON Schema of ``model``; for ClientOverride it is committed as override.schema.json."""
    return copy.deepcopy(_json_schema(model))


@cache
def _json_schema(model: type[BaseModel]) -> dict[str, Any]:
    # Generating the schema costs ~17 ms; a portfolio of 1,000 files validates against one.
    schema = model.model_json_schema(schema_generator=_OptionalMeansAbsent)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://vend.example/override.schema.json"
    return schema


def render_schema() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


@dataclass(frozen=True)
class Portfolio:
    """Everything the CDK app and the driver need, validated."""

    defaults: MspDefaults
    profiles: dict[str, Profile]
    clients: tuple[EffectiveClient, ...]

    def client(self, name: str) -> EffectiveClient:
        for c in self.clients:
            if c.client == name:
                return c
        raise KeyError(name)


# --- public entry points ------------------------------------------------------------------


def override_files(paths: Iterable[Path]) -> list[Path]:
    """Expand directories into their ``*.yaml``/``*.yml`` files, sorted."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted([*p.glob("*.yaml"), *p.glob("*.yml")]))
        else:
            files.append(p)
    return files


def load_portfolio(
    overrides: Path | Sequence[Path],
    *,
    defaults_file: Path = DEFAULTS_FILE,
    profiles_dir: Path = PROFILES_DIR,
    today: date | None = None,
) -> tuple[Portfolio | None, list[Problem]]:
    """Validate every file; return the portfolio only if there is no error.

    ``today`` dates the exception expiry checks; default: ``VEND_TODAY`` (ISO date) if set,
    else the current date (`vend diff` synthesizes its base side as of the base commit).
    """
    today = today or _today()
    paths = [overrides] if isinstance(overrides, Path) else list(overrides)
    problems: list[Problem] = []
    defaults = _load_model(defaults_file, MspDefaults, problems)
    profiles: dict[str, Profile] = {}
    for pf in sorted(profiles_dir.glob("*.yaml")):
        profile = _load_model(pf, Profile, problems)
        if profile is not None:
            profiles[pf.stem] = profile
    files = override_files(paths)
    for p in paths:
        if not p.exists():
            problems.append(Problem(str(p), 1, 1, "", "no such file or directory"))
    loaded: list[tuple[SourceDoc, ClientOverride]] = []
    for f in files:
        default_rules = [r.name for r in defaults.config_rules] if defaults else []
        doc, override = _load_override(f, profiles, problems, today=today, default_rules=default_rules)
        if doc is not None and override is not None:
            loaded.append((doc, override))
    problems.extend(_cross_file_problems(loaded))
    errors = [p for p in problems if p.severity == "error"]
    if errors or defaults is None:
        return None, sorted(problems)
    clients = tuple(_effective(doc.file, o, defaults, profiles) for doc, o in loaded)
    return Portfolio(defaults=defaults, profiles=profiles, clients=clients), sorted(problems)


def _today() -> date:
    value = os.environ.get("VEND_TODAY")
    return date.fromisoformat(value) if value else date.today()


def effective_client(
    override: ClientOverride, defaults: MspDefaults, profiles: dict[str, Profile], source_file: str = ""
) -> EffectiveClient:
    """Merge defaults -> profiles (in order) -> the client's own values."""
    return _effective(source_file, override, defaults, profiles)


# --- per file -----------------------------------------------------------------------------


def _load_model(path: Path, model: type[M], problems: list[Problem]) -> M | None:
    doc, traps = load_yaml(path)
    problems.extend(traps)
    if doc is None:
        return None
    schema_problems = _schema_problems(doc, json_schema(model), {p.path for p in traps})
    problems.extend(schema_problems)
    if traps or schema_problems:
        return None
    try:
        return model.model_validate(doc.data)
    except ValidationError as exc:  # the schema and the model should agree; report, never crash
        problems.extend(_pydantic_problems(doc, exc))
        return None


def _load_override(
    path: Path,
    profiles: dict[str, Profile],
    problems: list[Problem],
    *,
    today: date | None = None,
    default_rules: Sequence[str] = (),
) -> tuple[SourceDoc | None, ClientOverride | None]:
    if path.suffix not in (".yaml", ".yml"):
        problems.append(Problem(str(path), 1, 1, "", "override files must end in .yaml"))
        return None, None
    doc, traps = load_yaml(path)
    problems.extend(traps)
    if doc is None:
        return None, None
    if not isinstance(doc.data, dict):
        problems.append(Problem(doc.file, 1, 1, "", "must be a mapping of keys such as client:, account_id:"))
        return None, None
    schema_problems = _schema_problems(doc, _json_schema(ClientOverride), {p.path for p in traps})
    problems.extend(schema_problems)
    if traps or schema_problems:
        return doc, None
    try:
        override = ClientOverride.model_validate(doc.data)
    except ValidationError as exc:
        problems.extend(_pydantic_problems(doc, exc))
        return doc, None
    semantic = _semantic_problems(doc, override, profiles, path)
    semantic += _exception_problems(doc, override, profiles, today or _today(), default_rules)
    problems.extend(semantic)
    return doc, (None if any(p.severity == "error" for p in semantic) else override)


def _exception_problems(
    doc: SourceDoc, o: ClientOverride, profiles: dict[str, Profile], today: date, default_rules: Sequence[str]
) -> list[Problem]:
    """Expired exceptions fail, those expiring within 30 days warn (baseline/exceptions.py)."""
    rule_names = [*default_rules, *(r.name for p in o.profiles if p in profiles for r in profiles[p].config_rules)]
    return [
        doc.problem(path, message, severity)
        for path, message, severity in exception_problems(o.exceptions, o.regions, rule_names, today)
    ]


def _semantic_problems(doc: SourceDoc, o: ClientOverride, profiles: dict[str, Profile], path: Path) -> list[Problem]:
    out: list[Problem] = []

    def add(p: tuple[str | int, ...], message: str) -> None:
        out.append(doc.problem(p, message))

    if o.client != path.stem:
        add(("client",), f"must equal the file name: the file is {path.name}, so client: {path.stem}")
    for i, region in enumerate(o.regions):
        if region not in COMMERCIAL_REGIONS:
            add(("regions", i), f"unknown region {region}{_did_you_mean(region, COMMERCIAL_REGIONS)}")
    if len(set(o.regions)) != len(o.regions):
        add(("regions",), "lists a region twice")
    if o.home_region not in COMMERCIAL_REGIONS:
        add(("home_region",), f"unknown region {o.home_region}{_did_you_mean(o.home_region, COMMERCIAL_REGIONS)}")
    elif o.home_region not in o.regions:
        add(("home_region",), f"{o.home_region} must also be listed in regions")
    role_account = o.access.deploy_role_arn.split(":")[4]
    if role_account != o.account_id:
        add(
            ("access", "deploy_role_arn"),
            f"role is in account {role_account} but account_id is {o.account_id}; use the role in the client's account",
        )
    for i, name in enumerate(o.profiles):
        if name not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            add(("profiles", i), f"unknown profile {name!r} (known: {known}){_did_you_mean(name, profiles)}")
    if o.budget.thresholds_pct and len(set(o.budget.thresholds_pct)) != len(o.budget.thresholds_pct):
        add(("budget", "thresholds_pct"), "lists a threshold twice")
    if o.tags and len({k.lower() for k in o.tags.required}) != len(o.tags.required):
        add(("tags", "required"), "lists a tag key twice")
    return out


def _cross_file_problems(loaded: list[tuple[SourceDoc, ClientOverride]]) -> list[Problem]:
    out: list[Problem] = []
    for field, label in (("client", "client slug"), ("account_id", "account id"), ("external_id", "ExternalId")):
        seen: dict[str, SourceDoc] = {}
        for doc, o in loaded:
            value = o.access.external_id if field == "external_id" else getattr(o, field)
            path: tuple[str, ...] = ("access", "external_id") if field == "external_id" else (field,)
            if value in seen:
                first = seen[value]
                out.append(
                    doc.problem(
                        path,
                        f"{label} {value} is already used by {first.file}:{first.line_of(path)}; "
                        "each client needs its own",
                    )
                )
            else:
                seen[value] = doc
    return out


# --- schema errors in words ---------------------------------------------------------------


@cache
def _validator(schema_json: str) -> jsonschema.protocols.Validator:
    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)  # type: ignore[no-any-return]


def _schema_problems(doc: SourceDoc, schema: dict[str, Any], trap_paths: set[str]) -> list[Problem]:
    validator = _validator(json.dumps(schema, sort_keys=True))
    out: list[Problem] = []
    for err in validator.iter_errors(doc.data):
        for path, message in _explain(err, doc):
            if format_path(path) in trap_paths:
                continue  # already explained by the YAML trap
            out.append(doc.problem(path, message, at_key=err.validator == "additionalProperties"))
    return out


def _explain(err: jsonschema.ValidationError, doc: SourceDoc) -> list[tuple[tuple[str | int, ...], str]]:
    path: tuple[str | int, ...] = tuple(err.absolute_path)
    kind = err.validator
    schema = err.schema if isinstance(err.schema, dict) else {}
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        extra = sorted(set(err.instance) - set(allowed))
        return [
            ((*path, key), f"unknown key {key!r}{_did_you_mean(key, allowed)}; allowed keys: {', '.join(allowed)}")
            for key in extra
        ]
    if kind == "required":
        missing = str(err.message).split("'")[1] if "'" in err.message else err.message
        return [(path, f"missing required key {missing!r}")]
    if kind == "type":
        if err.instance is None:
            return [(path, "is empty; give it a value or remove the key")]
        expected = err.validator_value
        raw = doc.plain_scalars.get(path)
        if expected == "string" and raw is not None:
            return [(path, f'unquoted {raw} is read by YAML as {_yaml_type(err.instance)}; put it in quotes: "{raw}"')]
        return [(path, f"must be {_article(expected)}, not {_yaml_type(err.instance)}")]
    if kind in ("pattern", "minLength", "maxLength", "minItems", "maxItems") and "x-error" in schema:
        return [(path, f"{err.instance!r} {schema['x-error']}" if kind == "pattern" else str(schema["x-error"]))]
    if kind in ("enum", "const"):
        options = err.validator_value if kind == "enum" else [err.validator_value]
        return [
            (
                path,
                f"{err.instance!r} is not one of: {', '.join(map(str, options))}"
                f"{_did_you_mean(str(err.instance), [str(o) for o in options])}",
            )
        ]
    if kind == "exclusiveMinimum":
        return [(path, f"must be greater than {err.validator_value}")]
    if kind == "minimum":
        return [(path, f"must be at least {err.validator_value}")]
    if kind == "maximum":
        return [(path, f"must be at most {err.validator_value}")]
    if kind == "maxItems":
        return [(path, f"takes at most {err.validator_value} items")]
    if kind == "minItems":
        return [(path, f"needs at least {err.validator_value} item(s)")]
    return [(path, err.message)]


def _pydantic_problems(doc: SourceDoc, exc: ValidationError) -> list[Problem]:
    out = []
    for e in exc.errors():
        path = tuple(e["loc"])
        out.append(doc.problem(path, e["msg"]))
    return out


def _did_you_mean(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _article(expected: Any) -> str:
    names = {
        "string": "text",
        "integer": "a whole number",
        "number": "a number",
        "array": "a list",
        "object": "a mapping",
    }
    if isinstance(expected, list):
        return " or ".join(names.get(str(e), str(e)) for e in expected)
    return names.get(expected, str(expected))


def _yaml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "text"


# --- merge --------------------------------------------------------------------------------


def _effective(
    source_file: str, o: ClientOverride, defaults: MspDefaults, profiles: dict[str, Profile]
) -> EffectiveClient:
    d = defaults.client_defaults
    rules = {r.name: r for r in defaults.config_rules}
    retention = defaults.log_archive.retention_days
    for name in o.profiles:  # later profiles win on a rule of the same name
        profile = profiles[name]
        rules.update({r.name: r for r in profile.config_rules})
        retention = max(retention, profile.log_retention_days or 0)
    return EffectiveClient(
        client=o.client,
        display_name=o.display_name,
        account_id=o.account_id,
        home_region=o.home_region,
        regions=tuple(o.regions),
        engagement=o.engagement,
        deploy_role_arn=o.access.deploy_role_arn,
        external_id=o.access.external_id,
        profiles=tuple(o.profiles),
        budget_limit_usd=o.budget.monthly_limit_usd,
        budget_thresholds_pct=tuple(sorted(o.budget.thresholds_pct or d.budget_thresholds_pct)),
        budget_notify=tuple(o.budget.notify or d.budget_notify),
        required_tags=tuple(o.tags.required if o.tags else d.required_tags),
        finding_publishing_frequency=(
            (o.guardduty.finding_publishing_frequency if o.guardduty else None) or d.finding_publishing_frequency
        ),
        config_rules=tuple(rules.values()),
        log_retention_days=retention,
        source_file=source_file,
        # issue 6 (inherited accounts): what to do with a recorder/channel/detector/trail found by the preflight
        **({"inherited": o.inherited} if o.inherited else {}),
        exceptions=tuple(o.exceptions),  # issue 4: waived controls (baseline/exceptions.py)
        # issue 3 (auditor-ready baseline): forecast/anomaly budgets, GuardDuty plans, trail per profile
        budget_forecast_thresholds_pct=tuple(
            sorted(
                o.budget.forecast_thresholds_pct
                if o.budget.forecast_thresholds_pct is not None
                else d.budget_forecast_thresholds_pct
            )
        ),
        anomaly_threshold_usd=o.budget.anomaly_threshold_usd or d.anomaly_threshold_usd,
        guardduty_features=d.guardduty_features.model_copy(
            update=o.guardduty.features.model_dump(exclude_none=True) if o.guardduty and o.guardduty.features else {}
        ),
        trail_s3_data_events=any((t := profiles[name].trail) is not None and t.s3_data_events for name in o.profiles),
        trail_cloudwatch_logs_days=max(
            (
                t.cloudwatch_logs_retention_days
                for name in o.profiles
                if (t := profiles[name].trail) and t.cloudwatch_logs_retention_days
            ),
            default=None,
        ),
    )
