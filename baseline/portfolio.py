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
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.json_schema import GenerateJsonSchema

from baseline.exceptions import ControlException, exception_problems
from baseline.model import (
    MAX_BUDGET_NOTIFICATIONS,
    ClientDefaults,
    ClientOverride,
    EffectiveClient,
    MspDefaults,
    Profile,
)
from baseline.regions import COMMERCIAL_REGIONS
from baseline.validation_cache import ValidationCache, context_key
from baseline.yamlsource import Problem, SourceDoc, format_path, load_yaml, number_trap

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULTS_FILE = PACKAGE_DIR / "defaults.yaml"
PROFILES_DIR = PACKAGE_DIR / "profiles"
SCHEMA_FILE = PACKAGE_DIR / "override.schema.json"

if TYPE_CHECKING:
    import jsonschema

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
    """Expand directories into their ``*.yaml``/``*.yml`` files, sorted; a file named twice
    (``overrides overrides/acme-health.yaml``) is read once."""
    files: list[Path] = []
    seen: set[Path] = set()
    for p in paths:
        for f in sorted([*p.glob("*.yaml"), *p.glob("*.yml")]) if p.is_dir() else [p]:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                files.append(f)
    return files


def _path_problems(paths: Sequence[Path]) -> list[Problem]:
    """A path that is missing, a folder named like a file, or a folder without override files."""
    out = []
    for p in paths:
        if not p.exists():
            out.append(Problem(str(p), 1, 1, "", "no such file or directory"))
        elif p.is_dir() and p.suffix in (".yaml", ".yml"):
            out.append(Problem(str(p), 1, 1, "", "is a directory, not an override file"))
        elif p.is_dir() and not any([*p.glob("*.yaml"), *p.glob("*.yml")]):
            out.append(Problem(str(p), 1, 1, "", "no override files (*.yaml) in this directory"))
    return out


def load_portfolio(
    overrides: Path | Sequence[Path],
    *,
    defaults_file: Path = DEFAULTS_FILE,
    profiles_dir: Path = PROFILES_DIR,
    today: date | None = None,
    cache_dir: Path | None = None,
) -> tuple[Portfolio | None, list[Problem]]:
    """Validate every file; return the portfolio only if there is no error.

    ``today`` dates the exception expiry checks; default: ``VEND_TODAY`` (ISO date) if set,
    else the current date (`vend diff` synthesizes its base side as of the base commit).
    ``cache_dir``: remember the files that passed there, and skip checking them again while
    they, the defaults, the profiles, the code and the date stay the same
    (``validation_cache.py``).
    """
    today = today or current_date()
    paths = [overrides] if isinstance(overrides, Path) else list(overrides)
    problems: list[Problem] = []
    profile_files = sorted(profiles_dir.glob("*.yaml"))
    # Read once: the bytes that key the cache are the bytes parsed, even if a file changes meanwhile.
    inputs = {path: _read(path) for path in [defaults_file, *profile_files]}
    cache = _cache(cache_dir, inputs, today)
    defaults = _load_model(defaults_file, inputs[defaults_file], MspDefaults, problems, cache)
    profiles: dict[str, Profile] = {}
    for pf in profile_files:
        profile = _load_model(pf, inputs[pf], Profile, problems, cache)
        if profile is not None:
            profiles[pf.stem] = profile
    if defaults is not None:
        problems.extend(_defaults_problems(defaults_file, defaults))
    files = override_files(paths)
    problems.extend(_path_problems(paths))
    loaded: list[tuple[SourceDoc, ClientOverride]] = []
    checked: list[tuple[SourceDoc, set[str]]] = []  # every readable file, with the paths that are wrong
    for f in files:
        data = _read(f)
        key = _key(cache, f, data)
        remembered = _remembered(cache, f, data, key, ClientOverride)
        if remembered is not None:
            problems.extend(remembered[1])
            checked.append((remembered[0], set()))
            loaded.append((remembered[0], remembered[2]))
            continue
        default_rules = [r.name for r in defaults.config_rules] if defaults else []
        before = len(problems)
        doc, override = _load_override(
            f,
            profiles,
            problems,
            today=today,
            default_rules=default_rules,
            client_defaults=defaults.client_defaults if defaults else None,
            data=data,
        )
        if doc is not None and isinstance(doc.data, dict):
            checked.append((doc, _bad_paths(problems[before:])))
        if doc is not None and override is not None:
            loaded.append((doc, override))
            if cache is not None and key:
                cache.store(f, key, doc, problems[before:])
    problems.extend(_cross_file_problems(checked))
    errors = [p for p in problems if p.severity == "error"]
    if errors or defaults is None:
        return None, sorted(problems)
    clients = tuple(_effective(doc.file, o, defaults, profiles) for doc, o in loaded)
    return Portfolio(defaults=defaults, profiles=profiles, clients=clients), sorted(problems)


def _cache(cache_dir: Path | None, inputs: dict[Path, bytes | None], today: date) -> ValidationCache | None:
    if cache_dir is None or any(data is None for data in inputs.values()):
        return None
    try:
        context = context_key([(path, data) for path, data in inputs.items() if data is not None], today)
    except OSError:
        return None
    return ValidationCache(cache_dir / "validated", context)


def _read(path: Path) -> bytes | None:
    """The file's bytes, read once for both the cache key and the parser (None: unreadable or
    not YAML, which the parser reports)."""
    if path.suffix not in (".yaml", ".yml"):
        return None
    try:
        return path.read_bytes()
    except OSError:
        return None


def _key(cache: ValidationCache | None, path: Path, data: bytes | None) -> str:
    """The file's cache key; "" without a cache or without the file's bytes."""
    return cache.key(path, data) if cache is not None and data is not None else ""


def _remembered(
    cache: ValidationCache | None, path: Path, data: bytes | None, key: str, model: type[M]
) -> tuple[SourceDoc, list[Problem], M] | None:
    """The file as it passed before, if the cache holds it (a miss: check it now)."""
    if cache is None or data is None or not key:
        return None
    remembered = cache.lookup(path, key, data)
    if remembered is None:
        return None
    try:
        return remembered[0], remembered[1], model.model_validate(remembered[0].data)
    except ValidationError:  # an entry the model refuses was not written by vend: check the file
        return None


def _defaults_problems(defaults_file: Path, defaults: MspDefaults) -> list[Problem]:
    """What the defaults' schema cannot say: their own budget notifications must fit."""
    d = defaults.client_defaults
    count = len(d.budget_thresholds_pct) + len(d.budget_forecast_thresholds_pct)
    if count <= MAX_BUDGET_NOTIFICATIONS:
        return []
    doc, _ = load_yaml(defaults_file)
    message = (
        f"{len(d.budget_thresholds_pct)} actual and {len(d.budget_forecast_thresholds_pct)} forecast threshold(s) "
        f"make {count} notifications of every client's budget; {_NOTIFICATION_LIMIT}: list at most "
        f"{MAX_BUDGET_NOTIFICATIONS} in budget_thresholds_pct and budget_forecast_thresholds_pct together"
    )
    if doc is None:
        return [Problem(str(defaults_file), 1, 1, "client_defaults.budget_thresholds_pct", message)]
    return [doc.problem(("client_defaults", "budget_thresholds_pct"), message)]


_NOTIFICATION_LIMIT = (
    f"AWS allows at most {MAX_BUDGET_NOTIFICATIONS} notifications per budget (AWS::Budgets::Budget "
    "NotificationsWithSubscribers)"
)


def current_date() -> date:
    """The date exceptions expire against: ``VEND_TODAY`` (ISO) if set, else today; a bad
    ``VEND_TODAY`` raises ValueError (the CLI checks it first)."""
    value = os.environ.get("VEND_TODAY")
    return date.fromisoformat(value) if value else date.today()


def effective_client(
    override: ClientOverride, defaults: MspDefaults, profiles: dict[str, Profile], source_file: str = ""
) -> EffectiveClient:
    """Merge defaults -> profiles (in order) -> the client's own values."""
    return _effective(source_file, override, defaults, profiles)


# --- per file -----------------------------------------------------------------------------


def _load_model(
    path: Path, data: bytes | None, model: type[M], problems: list[Problem], cache: ValidationCache | None
) -> M | None:
    key = _key(cache, path, data)
    remembered = _remembered(cache, path, data, key, model)
    if remembered is not None:
        return remembered[2]
    doc, traps = load_yaml(path, data)
    problems.extend(traps)
    if doc is None:
        return None
    schema_problems = _schema_problems(doc, model, {p.path for p in traps})
    problems.extend(schema_problems)
    if traps or schema_problems:
        return None
    try:
        loaded = model.model_validate(doc.data)
    except ValidationError as exc:  # the schema and the model should agree; report, never crash
        problems.extend(_pydantic_problems(doc, exc))
        return None
    if cache is not None and key:
        cache.store(path, key, doc, [])
    return loaded


def _load_override(
    path: Path,
    profiles: dict[str, Profile],
    problems: list[Problem],
    *,
    today: date | None = None,
    default_rules: Sequence[str] = (),
    client_defaults: ClientDefaults | None = None,
    data: bytes | None = None,
) -> tuple[SourceDoc | None, ClientOverride | None]:
    if path.suffix not in (".yaml", ".yml"):
        problems.append(Problem(str(path), 1, 1, "", "override files must end in .yaml"))
        return None, None
    doc, traps = load_yaml(path, data)
    if doc is None:
        problems.extend(traps)
        return None, None
    if not isinstance(doc.data, dict):
        problems.extend(traps)
        problems.append(Problem(doc.file, 1, 1, "", "must be a mapping of keys such as client:, account_id:"))
        return None, None
    schema = _json_schema(ClientOverride)
    traps = [_for_field(p, doc, schema) for p in traps] + _text_problems(doc)
    problems.extend(traps)
    schema_problems = _schema_problems(doc, ClientOverride, {p.path for p in traps})
    problems.extend(schema_problems)
    override: ClientOverride | None = None
    found = [*traps, *schema_problems]
    if not found:
        try:
            override = ClientOverride.model_validate(doc.data)
        except ValidationError as exc:  # the schema and the model should agree; report, never crash
            found = _pydantic_problems(doc, exc)
            problems.extend(found)
    # The semantic checks run even when other parts of the file are wrong: each one only reads
    # values that passed the schema, so every independent problem is reported in one round.
    bad = _bad_paths(found)
    semantic = _semantic_problems(doc, profiles, path, bad, client_defaults)
    semantic += _exception_problems(doc, profiles, today or current_date(), default_rules, bad)
    problems.extend(semantic)
    if override is None or any(p.severity == "error" for p in semantic):
        return doc, None
    return doc, override


_Path = tuple[str | int, ...]
_MISSING = object()


def _bad_paths(problems: Iterable[Problem]) -> set[str]:
    return {p.path for p in problems if p.severity == "error"}


def _step(data: Any, part: str | int) -> Any:
    if isinstance(part, str):
        return data[part] if isinstance(data, dict) and part in data else _MISSING
    return data[part] if isinstance(data, list) and 0 <= part < len(data) else _MISSING


def _value(data: Any, path: _Path) -> Any:
    for part in path:
        data = _step(data, part)
        if data is _MISSING:
            return _MISSING
    return data


def _usable(data: Any, bad: set[str], *paths: _Path) -> bool:
    """True when every value at ``paths`` is present and neither it, a part of it, nor a
    mapping around it has an error: then the schema has checked its type and format."""
    for path in paths:
        if _value(data, path) is _MISSING:
            return False
        fp = format_path(path)
        for b in bad:
            if not b:
                continue  # a document-level problem (a missing key) leaves the other keys usable
            if b == fp or b.startswith((f"{fp}.", f"{fp}[")) or fp.startswith((f"{b}.", f"{b}[")):
                return False
    return True


def _exception_problems(
    doc: SourceDoc, profiles: dict[str, Profile], today: date, default_rules: Sequence[str], bad: set[str]
) -> list[Problem]:
    """Expired exceptions fail, those expiring within 30 days warn (baseline/exceptions.py)."""
    data = doc.data
    if not _usable(data, bad, ("exceptions",), ("regions",)):
        return []
    if not (_usable(data, bad, ("profiles",)) or "profiles" not in data):
        return []  # the rule names depend on the profiles
    try:
        exceptions = TypeAdapter(list[ControlException]).validate_python(data["exceptions"])
    except ValidationError:
        return []  # reported by the model validation
    client_profiles = data.get("profiles", [])
    rule_names = [*default_rules, *(r.name for p in client_profiles if p in profiles for r in profiles[p].config_rules)]
    return [
        doc.problem(path, message, severity)
        for path, message, severity in exception_problems(exceptions, data["regions"], rule_names, today)
    ]


def _for_field(trap: Problem, doc: SourceDoc, schema: dict[str, Any]) -> Problem:
    """A YAML trap in words that fit the field: a field that takes a number is never told to
    put its value in quotes (quoted, it would be text)."""
    path = _path_of(doc, trap.path)
    if path is None or path not in doc.plain_scalars or "string" in _expected_types(schema, path):
        return trap
    message = number_trap(doc.plain_scalars[path], _value(doc.data, path))
    if message is None or not _expected_types(schema, path) & {"number", "integer"}:
        return trap
    return Problem(trap.file, trap.line, trap.col, trap.path, message, trap.severity)


def _path_of(doc: SourceDoc, text: str) -> _Path | None:
    return next((p for p in doc.marks if format_path(p) == text), None)


def _subschemas(schema: dict[str, Any], path: _Path) -> list[dict[str, Any]]:
    """Every schema that applies to the value at ``path`` ($ref and anyOf followed)."""
    defs = schema.get("$defs", {})

    def expand(node: Any) -> list[dict[str, Any]]:
        if not isinstance(node, dict):
            return []
        if "$ref" in node:
            return expand(defs.get(str(node["$ref"]).rsplit("/", 1)[-1]))
        out = [node]
        for key in ("anyOf", "oneOf", "allOf"):
            for sub in node.get(key, []):
                out += expand(sub)
        return out

    nodes = expand(schema)
    for part in path:
        nxt: list[dict[str, Any]] = []
        for node in nodes:
            if isinstance(part, int):
                nxt += expand(node.get("items"))
            elif part in node.get("properties", {}):
                nxt += expand(node["properties"][part])
            elif isinstance(node.get("additionalProperties"), dict):
                nxt += expand(node["additionalProperties"])
        nodes = nxt
    return nodes


def _expected_types(schema: dict[str, Any], path: _Path) -> set[str]:
    return {str(n["type"]) for n in _subschemas(schema, path) if "type" in n}


def _required(schema: dict[str, Any], path: _Path) -> bool:
    """True when the key at the end of ``path`` must be present in its mapping."""
    return bool(path) and any(path[-1] in n.get("required", []) for n in _subschemas(schema, path[:-1]))


# Free text that may span lines: a folded (>) or literal (|) block ends with a line break.
_MULTILINE_TEXT = ("reason",)
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\u0085\u2028\u2029]")  # all but tab


def _text_problems(doc: SourceDoc) -> list[Problem]:
    """Text values with line breaks or control characters: an account id that ends in a line
    break passes a JSON Schema pattern (``$`` matches before a final newline) but not AWS."""
    out = []

    def walk(value: Any, path: _Path) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, (*path, k))
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, (*path, i))
        elif isinstance(value, str):
            multiline = bool(path) and path[-1] in _MULTILINE_TEXT
            found = _CONTROL.search(value.replace("\n", "").replace("\r", "") if multiline else value)
            if found is None:
                return
            char = found.group()
            shown = json.dumps(value, ensure_ascii=False)
            if char == "\n" and value.endswith("\n") and "\n" not in value[:-1]:
                message = (
                    f"{shown} ends with a line break; remove it (in double quotes \\n is a line break; "
                    "a | or > block keeps one unless written |- or >-)"
                )
            elif char in "\r\n\u0085\u2028\u2029":
                message = f"{shown} contains a line break; write the value on one line"
            else:
                message = f"{shown} contains the control character U+{ord(char):04X}; remove it"
            out.append(doc.problem(path, message))

    walk(doc.data, ())
    return out


def _semantic_problems(
    doc: SourceDoc,
    profiles: dict[str, Profile],
    path: Path,
    bad: set[str],
    client_defaults: ClientDefaults | None = None,
) -> list[Problem]:
    """The rules a schema cannot express, each run on the values it reads if those are valid."""
    out: list[Problem] = []
    data = doc.data

    def add(p: tuple[str | int, ...], message: str) -> None:
        out.append(doc.problem(p, message))

    def ok(*paths: _Path) -> bool:
        return _usable(data, bad, *paths)

    if ok(("client",)) and data["client"] != path.stem:
        add(("client",), f"must equal the file name: the file is {path.name}, so client: {path.stem}")
    regions: list[str] = data["regions"] if ok(("regions",)) else []
    for i, region in enumerate(regions):
        if region not in COMMERCIAL_REGIONS:
            add(("regions", i), f"unknown region {region}{_did_you_mean(region, COMMERCIAL_REGIONS)}")
    if len(set(regions)) != len(regions):
        add(("regions",), "lists a region twice")
    if ok(("home_region",)):
        home = data["home_region"]
        if home not in COMMERCIAL_REGIONS:
            add(("home_region",), f"unknown region {home}{_did_you_mean(home, COMMERCIAL_REGIONS)}")
        elif ok(("regions",)) and home not in regions:
            add(("home_region",), f"{home} must also be listed in regions")
    if ok(("access", "deploy_role_arn"), ("account_id",)):
        role_account = data["access"]["deploy_role_arn"].split(":")[4]
        if role_account != data["account_id"]:
            add(
                ("access", "deploy_role_arn"),
                f"role is in account {role_account} but account_id is {data['account_id']}; "
                "use the role in the client's account",
            )
    monitor = _value(data, ("inherited", "anomaly_monitor"))
    if isinstance(monitor, str) and ok(("inherited", "anomaly_monitor"), ("account_id",)):
        monitor_account = monitor.split(":")[4]
        if monitor_account != data["account_id"]:
            add(
                ("inherited", "anomaly_monitor"),
                f"monitor is in account {monitor_account} but account_id is {data['account_id']}; "
                "adopt the client's own AWS services monitor",
            )
    for i, name in enumerate(data["profiles"] if ok(("profiles",)) else []):
        if name not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            add(("profiles", i), f"unknown profile {name!r} (known: {known}){_did_you_mean(name, profiles)}")
    if ok(("budget", "thresholds_pct")):
        thresholds = data["budget"]["thresholds_pct"]
        if len(set(thresholds)) != len(thresholds):
            add(("budget", "thresholds_pct"), "lists a threshold twice")
    out += _notification_problems(doc, bad, client_defaults)
    if ok(("tags", "required")):
        keys = data["tags"]["required"]
        if len({k.lower() for k in keys}) != len(keys):
            add(("tags", "required"), "lists a tag key twice")
    return out


def _notification_problems(doc: SourceDoc, bad: set[str], d: ClientDefaults | None) -> list[Problem]:
    """The effective budget (defaults, then the client's file: profiles set no budget) sends one
    notification per actual and per forecast threshold; AWS allows 5 per budget."""
    data = doc.data
    counts: dict[str, tuple[int, str]] = {}
    for key, default in (
        ("thresholds_pct", d.budget_thresholds_pct if d else None),
        ("forecast_thresholds_pct", d.budget_forecast_thresholds_pct if d else None),
    ):
        if "budget" in data and isinstance(data["budget"], dict) and key in data["budget"]:
            if not _usable(data, bad, ("budget", key)):
                return []
            counts[key] = (len(data["budget"][key]), "")
        elif default is None:
            return []
        else:
            counts[key] = (len(default), f" ({key} from defaults.yaml: {list(default)})")
    actual, forecast = counts["thresholds_pct"], counts["forecast_thresholds_pct"]
    total = actual[0] + forecast[0]
    if total <= MAX_BUDGET_NOTIFICATIONS:
        return []
    written = [k for k, (_, source) in counts.items() if not source]
    at: _Path = ("budget", written[0]) if len(written) == 1 else ("budget",)
    return [
        doc.problem(
            at,
            f"{actual[0]} actual{actual[1]} and {forecast[0]} forecast{forecast[1]} threshold(s) make {total} "
            f"budget notifications; {_NOTIFICATION_LIMIT}: list at most {MAX_BUDGET_NOTIFICATIONS} in "
            "thresholds_pct and forecast_thresholds_pct together",
        )
    ]


def _cross_file_problems(checked: list[tuple[SourceDoc, set[str]]]) -> list[Problem]:
    """Duplicates across files, among the values that are valid (a file with other errors
    still counts: its account id is as taken as any other)."""
    out: list[Problem] = []
    for field, label in (("client", "client slug"), ("account_id", "account id"), ("external_id", "ExternalId")):
        seen: dict[str, SourceDoc] = {}
        for doc, bad in checked:
            path: tuple[str, ...] = ("access", "external_id") if field == "external_id" else (field,)
            if not _usable(doc.data, bad, path):
                continue
            value = _value(doc.data, path)
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


def _inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """``node`` with every ``{"$ref": "#/$defs/X"}`` replaced by X itself (the model has no
    recursive types): resolving references is half the cost of validating 1,000 files."""
    if isinstance(node, list):
        return [_inline_refs(v, defs) for v in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        rest = {k: v for k, v in node.items() if k != "$ref"}
        target = _inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {**target, **_inline_refs(rest, defs)} if rest else target
    return {k: _inline_refs(v, defs) for k, v in node.items() if k != "$defs"}


@cache
def _validator(model: type[BaseModel]) -> jsonschema.protocols.Validator:
    import jsonschema  # ~75 ms to import; a run whose files are all remembered never needs it

    schema = _inline_refs(_json_schema(model), _json_schema(model).get("$defs", {}))
    cls = jsonschema.validators.validator_for(schema)
    # Only the formats the model uses: a date must be a real YYYY-MM-DD day (exceptions[].expires).
    return cls(schema, format_checker=jsonschema.FormatChecker(formats=["date"]))  # type: ignore[no-any-return]


def _schema_problems(doc: SourceDoc, model: type[BaseModel], trap_paths: set[str]) -> list[Problem]:
    validator, schema = _validator(model), _json_schema(model)
    out: list[Problem] = []
    for err in validator.iter_errors(doc.data):
        for path, message in _explain(err, doc, schema):
            if format_path(path) in trap_paths:
                continue  # already explained by the YAML trap
            out.append(doc.problem(path, message, at_key=err.validator == "additionalProperties"))
    return out


def _explain(
    err: jsonschema.ValidationError, doc: SourceDoc, root: dict[str, Any]
) -> list[tuple[tuple[str | int, ...], str]]:
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
        raw = doc.plain_scalars.get(path)
        if err.instance is None:
            written = f"{raw} means no value" if raw else "no value is given"
            if _required(root, path):
                return [(path, f"is empty ({written}); {path[-1]} is required: give it a value")]
            return [(path, f"is empty ({written}); give it a value or remove the key")]
        expected = err.validator_value
        if expected == "string" and schema.get("format") == "date" and raw is not None:
            return [(path, _date_not_text(raw, err.instance))]
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
    if kind == "format" and err.validator_value == "date":
        return [(path, _date_message(err.instance))]
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


def _date_not_text(raw: str, value: Any) -> str:
    """``expires: 20261231``: YAML made a number of it; say so, and how to write the date."""
    suggestion = ""
    if re.fullmatch(r"[0-9]{8}", raw):
        try:
            suggestion = f": {date(int(raw[:4]), int(raw[4:6]), int(raw[6:])).isoformat()}"
        except ValueError:
            suggestion = ""
    return (
        f"unquoted {raw} is read by YAML as {_yaml_type(value)}, not a date; write the date as YYYY-MM-DD"
        f"{suggestion or ', e.g. 2026-12-31'}"
    )


def _date_message(value: Any) -> str:
    why = ""
    if isinstance(value, str):
        try:
            date.fromisoformat(value)
        except ValueError as exc:
            why = f" ({exc})" if str(exc).startswith(("day", "month", "year")) else ""
    return f"{value!r} is not a valid date{why}; write it as YYYY-MM-DD, e.g. 2026-12-31"


def _pydantic_problems(doc: SourceDoc, exc: ValidationError) -> list[Problem]:
    out = []
    for e in exc.errors():
        path = tuple(e["loc"])
        message = _date_message(e.get("input")) if e["type"].startswith("date_") else e["msg"]
        out.append(doc.problem(path, message))
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

#: How the layers' values of an effective field combine when several layers set it. A field
#: not named here takes the last layer's value (defaults -> profiles in order -> the client).
#: `vend show` names the deciding layer by the same rule (:func:`deciding_layer`).
COMBINE: dict[str, str] = {
    "log_retention_days": "max",  # the longest retention any layer asks for
    "trail_s3_data_events": "any",  # on when any profile turns it on
    "trail_cloudwatch_logs_days": "max",
}


def combine(field_name: str, values: Sequence[Any]) -> Any:
    """The effective value of ``field_name`` from the values its layers set, in merge order
    (None: a layer that does not set it)."""
    present = [v for v in values if v is not None]
    rule = COMBINE.get(field_name, "last")
    if not present:
        return None
    if rule == "max":
        return max(present)
    if rule == "any":
        return any(present)
    return present[-1]


def deciding_layer(field_name: str, values: Sequence[Any]) -> int | None:
    """Index of the layer whose value the effective value comes from (the last one holding
    it), or None when no layer sets the field."""
    result = combine(field_name, values)
    if result is None:
        return None
    return max(i for i, v in enumerate(values) if v is not None and v == result)


def _effective(
    source_file: str, o: ClientOverride, defaults: MspDefaults, profiles: dict[str, Profile]
) -> EffectiveClient:
    d = defaults.client_defaults
    rules = {r.name: r for r in defaults.config_rules}
    for name in o.profiles:  # later profiles win on a rule of the same name
        rules.update({r.name: r for r in profiles[name].config_rules})
    trails = [profiles[name].trail for name in o.profiles]
    retention = combine(
        "log_retention_days",
        [defaults.log_archive.retention_days, *(profiles[name].log_retention_days for name in o.profiles)],
    )
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
        trail_s3_data_events=bool(combine("trail_s3_data_events", [t.s3_data_events if t else None for t in trails])),
        trail_cloudwatch_logs_days=combine(
            "trail_cloudwatch_logs_days", [t.cloudwatch_logs_retention_days if t else None for t in trails]
        ),
    )
