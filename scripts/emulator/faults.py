"""Fault injection for the emulator: rehearse a fleet-wide deploy against a bad day in AWS.

``vend emulator --faults FILE`` and ``vend demo --faults FILE`` read a YAML file like::

    seed: 7                              # optional: makes probabilities reproducible
    faults:
      - service: cloudformation          # botocore service name, or "*"
        operation: CreateChangeSet       # API operation, or "*" (the default)
        account: "111122223333"          # optional; sts AssumeRole: the role's account
        region: us-east-1                # optional
        error: Throttling                # error code to answer with (optional with latency_ms)
        message: Rate exceeded
        http_status: 400                 # default 400 (403 for AccessDenied*, 5xx codes as named)
        probability: 0.3                 # or count: N (the first N matching calls); default: always
        latency_ms: 0                    # optional: the call takes at least this long
    stacks:                              # preset states of stacks
      - account: "777788889999"
        region: us-east-1
        stack: vend-ledgerly-global
        status: UPDATE_ROLLBACK_FAILED   # see STACK_STATUSES
        reason: why the last operation failed (optional)
        settle_after_s: 5                # *_IN_PROGRESS only: then becomes `then`
        then: UPDATE_COMPLETE

Rules are checked in file order. A rule *matches* a request by service, operation, account
(the account of the request's credentials; for ``sts:AssumeRole`` the account of the role
being assumed) and region; a matching rule *fires* with its probability, or for its first
``count`` matches, or always. A firing rule adds its ``latency_ms``; if it has an
``error``, the call waits that long and answers with the error, and no later rule is
checked; otherwise the request goes on to the next rules and then to moto, and is answered
no sooner than the latency after it arrived: like a real API's, the latency includes the
service's own work (moto's), which does not come on top of it. S3 requests are matched by service only
(``operation: "*"``): moto serves S3 outside its common dispatch.

One stack instance of a StackSets operation fails with ``operation: StackInstance`` (a
pseudo-operation of ``cloudformation``, matched by name only, never by ``"*"``), its
``account`` and ``region`` being the instance's target, not the caller's::

      - service: cloudformation
        operation: StackInstance
        account: "222233334444"
        region: eu-west-1
        error: AccessDenied               # required; the message becomes the StatusReason
        message: Account 222233334444 should have 'VendExec' role with trust relationship

The API call succeeds; that instance fails before its stack is touched (as when the
execution role is missing), the others go on (``scripts/emulator/stacksets.py``).

Preset stacks are put in place the first time a request reaches that account and region
(and again after ``POST /moto-api/reset``): an existing stack just changes status; a
missing one is created with a placeholder template. Events tell the story of the failure
(``reason``), so a driver can report the first failed resource. The emulator also answers
``ContinueUpdateRollback`` (moto lacks it): UPDATE_ROLLBACK_FAILED becomes
UPDATE_ROLLBACK_COMPLETE.

``GET /vend-emulator/calls`` returns every request counted by service, operation, account
and region (also without a fault file), for benchmarks and tests.

The file is validated like the override files: every problem with file, line and path,
and nothing runs when there is one (``vend`` exits 2).
"""

from __future__ import annotations

import difflib
import json
import random
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

# --------------------------------------------------------------------------- the plan

ANY = "*"
ACCOUNT_RE = re.compile(r"^[0-9]{12}$")
REGION_RE = re.compile(r"^[a-z]{2}(-[a-z]+)+-[0-9]$")
ERROR_CODE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9._:-]{0,127}$")
STACK_NAME_RE = re.compile(r"^[A-Za-z][-A-Za-z0-9]{0,127}$")
#: Pseudo-operation of ``cloudformation``: one stack instance inside a StackSets operation.
STACK_INSTANCE = "StackInstance"

#: Statuses a preset stack may have, and the status an *_IN_PROGRESS one settles to by default.
STACK_STATUSES: dict[str, str | None] = {
    "ROLLBACK_COMPLETE": None,
    "ROLLBACK_FAILED": None,
    "UPDATE_ROLLBACK_FAILED": None,
    "UPDATE_ROLLBACK_COMPLETE": None,
    "DELETE_FAILED": None,
    "CREATE_IN_PROGRESS": "CREATE_COMPLETE",
    "UPDATE_IN_PROGRESS": "UPDATE_COMPLETE",
    "UPDATE_ROLLBACK_IN_PROGRESS": "UPDATE_ROLLBACK_COMPLETE",
    "DELETE_IN_PROGRESS": "DELETE_COMPLETE",
}
SETTLED_STATUSES = (
    "CREATE_COMPLETE",
    "UPDATE_COMPLETE",
    "UPDATE_ROLLBACK_COMPLETE",
    "UPDATE_ROLLBACK_FAILED",
    "ROLLBACK_COMPLETE",
    "DELETE_COMPLETE",
)
_DEFAULT_STATUS = {
    "AccessDenied": 403,
    "AccessDeniedException": 403,
    "InternalFailure": 500,
    "InternalError": 500,
    "InternalServerError": 500,
    "ServiceUnavailable": 503,
    "ServiceUnavailableException": 503,
    "TooManyRequestsException": 429,
}
_RULE_KEYS = (
    "service",
    "operation",
    "account",
    "region",
    "error",
    "message",
    "http_status",
    "probability",
    "count",
    "latency_ms",
)
_STACK_KEYS = ("account", "region", "stack", "status", "reason", "settle_after_s", "then")
_TOP_KEYS = ("faults", "stacks", "seed")


@dataclass(frozen=True)
class FaultRule:
    """One rule of a fault file; ``line`` is where it starts, for messages."""

    service: str
    operation: str = ANY
    account: str | None = None
    region: str | None = None
    error: str | None = None
    message: str = ""
    http_status: int = 400
    probability: float | None = None
    count: int | None = None
    latency_ms: float = 0.0
    line: int = 0

    def matches(self, service: str, operation: str, account: str, region: str) -> bool:
        if (operation == STACK_INSTANCE) != (self.operation == STACK_INSTANCE):
            return False  # stack instance faults are asked for by name, and fail no API call
        return (
            self.service in (ANY, service)
            and self.operation in (ANY, operation)
            and self.account in (None, account)
            and self.region in (None, region)
        )


@dataclass(frozen=True)
class StackPreset:
    """A stack that is in ``status`` when the driver first looks at it."""

    account: str
    region: str
    stack: str
    status: str
    reason: str = ""
    settle_after_s: float | None = None
    then: str | None = None
    line: int = 0


@dataclass(frozen=True)
class FaultPlan:
    """A validated fault file."""

    rules: tuple[FaultRule, ...] = ()
    stacks: tuple[StackPreset, ...] = ()
    seed: int | None = None
    source: str = ""


@dataclass(frozen=True, order=True)
class FaultFileProblem:
    """One thing wrong with a fault file, printed as ``file:line:col: path: message``."""

    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}: {self.path or '(document)'}: {self.message}"


# --------------------------------------------------------------------------- validation


@dataclass
class _Doc:
    file: str
    marks: dict[tuple[str | int, ...], tuple[int, int]] = field(default_factory=dict)
    key_marks: dict[tuple[str | int, ...], tuple[int, int]] = field(default_factory=dict)
    problems: list[FaultFileProblem] = field(default_factory=list)

    def add(self, path: tuple[str | int, ...], message: str, *, at_key: bool = False) -> None:
        line, col = (1, 1)
        if at_key and path in self.key_marks:
            line, col = self.key_marks[path]
            self.problems.append(FaultFileProblem(self.file, line, col, _format_path(path), message))
            return
        for end in range(len(path), -1, -1):
            if path[:end] in self.marks:
                line, col = self.marks[path[:end]]
                break
        self.problems.append(FaultFileProblem(self.file, line, col, _format_path(path), message))


def _format_path(path: tuple[str | int, ...]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Loader(yaml.SafeLoader):
    pass


def _build(node: yaml.Node, path: tuple[str | int, ...], doc: _Doc) -> Any:
    """Python data from a composed YAML node, recording where every value came from."""
    doc.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else repr(key_node)
            key_mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in out:
                doc.key_marks[(*path, key)] = key_mark
                doc.add((*path, key), f"duplicate key {key!r}", at_key=True)
                continue
            doc.key_marks[(*path, key)] = key_mark
            out[key] = _build(value_node, (*path, key), doc)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), doc) for i, item in enumerate(node.value)]
    try:
        return _Loader("").construct_object(node, deep=True)
    except ConstructorError as err:
        doc.add(path, f"cannot read value: {err.problem}")
        return None


@cache
def _botocore_session() -> Any:
    import botocore.session

    return botocore.session.get_session()


@cache
def known_services() -> frozenset[str]:
    return frozenset(_botocore_session().get_available_services())


@cache
def known_operations(service: str) -> frozenset[str]:
    return frozenset(_botocore_session().get_service_model(service).operation_names)


@cache
def known_regions() -> frozenset[str]:
    session = _botocore_session()
    regions: set[str] = set()
    for partition in session.get_available_partitions():
        for service in ("cloudformation", "sts", "ec2"):
            regions.update(session.get_available_regions(service, partition_name=partition))
    return frozenset(regions)


def _suggest(word: str, choices: Iterable[str]) -> str:
    lowered = {c.lower().replace("_", "").replace("-", ""): c for c in choices}
    exact = lowered.get(word.lower().replace("_", "").replace("-", ""))
    if exact:
        return f' (did you mean "{exact}"?)'
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


def _unknown_keys(doc: _Doc, data: dict[Any, Any], allowed: Iterable[str], path: tuple[str | int, ...]) -> None:
    allowed = tuple(allowed)
    for key in data:
        if key not in allowed:
            doc.add(
                (*path, key),
                f"unknown key {key!r}{_suggest(str(key), allowed)}; allowed: {', '.join(allowed)}",
                at_key=True,
            )


def _string(doc: _Doc, data: dict[str, Any], key: str, path: tuple[str | int, ...], what: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool):
        doc.add((*path, key), f"must be {what} in quotes; YAML read {value!r} as a boolean")
        return None
    if isinstance(value, int | float):
        doc.add((*path, key), f"must be {what} in quotes; YAML read an unquoted number")
        return None
    if not isinstance(value, str):
        doc.add((*path, key), f"must be {what}")
        return None
    return value


def _account(doc: _Doc, data: dict[str, Any], path: tuple[str | int, ...]) -> str | None:
    value = _string(doc, data, "account", path, 'a 12-digit account id, e.g. "111122223333",')
    if value is not None and not ACCOUNT_RE.match(value):
        doc.add((*path, "account"), f'must be a 12-digit account id, e.g. "111122223333", not {value!r}')
        return None
    return value


def _region(doc: _Doc, data: dict[str, Any], path: tuple[str | int, ...]) -> str | None:
    value = _string(doc, data, "region", path, "a region code")
    if value is not None and value not in known_regions():
        doc.add((*path, "region"), f"unknown region {value!r}{_suggest(value, known_regions())}")
        return None
    return value


def _number(
    doc: _Doc,
    data: dict[str, Any],
    key: str,
    path: tuple[str | int, ...],
    *,
    low: float,
    high: float,
    integer: bool = False,
    low_open: bool = False,
) -> Any:
    value = data.get(key)
    if value is None:
        return None
    kind = "a whole number" if integer else "a number"
    if isinstance(value, bool) or not isinstance(value, int | float) or (integer and not isinstance(value, int)):
        doc.add((*path, key), f"must be {kind}, not {value!r}")
        return None
    if value < low or value > high or (low_open and value == low):
        bounds = f"{'more than' if low_open else 'at least'} {low:g} and at most {high:g}"
        doc.add((*path, key), f"must be {bounds}, not {value!r}")
        return None
    return value


def _rule(doc: _Doc, raw: Any, path: tuple[str | int, ...]) -> FaultRule | None:
    if not isinstance(raw, dict):
        doc.add(path, "must be a mapping with at least service and error or latency_ms")
        return None
    before = len(doc.problems)
    _unknown_keys(doc, raw, _RULE_KEYS, path)
    service = _string(doc, raw, "service", path, "a botocore service name")
    if service is None and "service" not in raw:
        doc.add(path, 'missing "service" (a botocore service name such as cloudformation, or "*")')
    elif service is not None and service != ANY and service not in known_services():
        doc.add((*path, "service"), f"unknown service {service!r}{_suggest(service, known_services())}")
        service = None
    operation = _string(doc, raw, "operation", path, "an API operation name")
    operation = ANY if operation is None and "operation" not in raw else operation
    if operation is not None and operation != ANY and service is not None:
        if service == ANY:
            doc.add((*path, "operation"), 'an operation needs a service; with service "*" use operation "*"')
        elif service == "s3":
            doc.add((*path, "operation"), 'the emulator matches S3 requests by service only: use operation "*"')
        elif service == "cloudformation" and operation == STACK_INSTANCE:
            if "error" not in raw:
                doc.add(path, f"a {STACK_INSTANCE} rule needs an error: it fails the instance with its message")
        elif operation not in known_operations(service):
            hint = _suggest(operation, known_operations(service))
            doc.add((*path, "operation"), f"{service} has no operation {operation!r}{hint}")
    account = _account(doc, raw, path)
    region = _region(doc, raw, path)
    error = _string(doc, raw, "error", path, "an error code")
    if error is not None and not ERROR_CODE_RE.match(error):
        doc.add((*path, "error"), f"must be an error code such as Throttling, not {error!r}")
    message = _string(doc, raw, "message", path, "text")
    http_status = _number(doc, raw, "http_status", path, low=400, high=599, integer=True)
    probability = _number(doc, raw, "probability", path, low=0, high=1, low_open=True)
    count = _number(doc, raw, "count", path, low=1, high=10**9, integer=True)
    latency = _number(doc, raw, "latency_ms", path, low=0, high=600_000)
    if "probability" in raw and "count" in raw:
        doc.add((*path, "count"), "give probability or count, not both")
    if "error" not in raw:
        if "latency_ms" not in raw:
            doc.add(path, "a rule needs an error to answer with, a latency_ms, or both")
        for key in ("message", "http_status"):
            if key in raw:
                doc.add((*path, key), f"{key} needs an error")
    if len(doc.problems) > before:
        return None
    assert service is not None and operation is not None
    return FaultRule(
        service=service,
        operation=operation,
        account=account,
        region=region,
        error=error,
        message=message or (f"{error} (injected by the vend emulator)" if error else ""),
        http_status=int(http_status or _DEFAULT_STATUS.get(error or "", 400)),
        probability=float(probability) if probability is not None else None,
        count=count,
        latency_ms=float(latency or 0),
        line=doc.marks.get(path, (0, 0))[0],
    )


def _stack(doc: _Doc, raw: Any, path: tuple[str | int, ...]) -> StackPreset | None:
    if not isinstance(raw, dict):
        doc.add(path, "must be a mapping with account, region, stack and status")
        return None
    before = len(doc.problems)
    _unknown_keys(doc, raw, _STACK_KEYS, path)
    for key in ("account", "region", "stack", "status"):
        if key not in raw:
            doc.add(path, f'missing "{key}"')
    account = _account(doc, raw, path)
    region = _region(doc, raw, path)
    stack = _string(doc, raw, "stack", path, "a stack name")
    if stack is not None and not STACK_NAME_RE.match(stack):
        doc.add((*path, "stack"), f"must be a CloudFormation stack name, not {stack!r}")
    status = _string(doc, raw, "status", path, "a stack status")
    if status is not None and status not in STACK_STATUSES:
        doc.add(
            (*path, "status"),
            f"cannot preset status {status!r}{_suggest(status, STACK_STATUSES)}; one of: {', '.join(STACK_STATUSES)}",
        )
        status = None
    reason = _string(doc, raw, "reason", path, "text")
    settle = _number(doc, raw, "settle_after_s", path, low=0, high=86_400)
    then = _string(doc, raw, "then", path, "a stack status")
    if status is not None and settle is not None and STACK_STATUSES[status] is None:
        doc.add((*path, "settle_after_s"), f"only an *_IN_PROGRESS status settles; {status} stays as it is")
    if then is not None:
        if settle is None:
            doc.add((*path, "then"), "then needs settle_after_s")
        elif then not in SETTLED_STATUSES:
            doc.add((*path, "then"), f"must be one of {', '.join(SETTLED_STATUSES)}")
    if len(doc.problems) > before:
        return None
    assert account is not None and region is not None and stack is not None and status is not None
    return StackPreset(
        account=account,
        region=region,
        stack=stack,
        status=status,
        reason=reason or "",
        settle_after_s=float(settle) if settle is not None else None,
        then=then or (STACK_STATUSES[status] if settle is not None else None),
        line=doc.marks.get(path, (0, 0))[0],
    )


def parse_fault_text(text: str, file: str = "<faults>") -> tuple[FaultPlan | None, list[FaultFileProblem]]:
    """Validate a fault file's text; return the plan only if there is no problem."""
    doc = _Doc(file)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        return None, [FaultFileProblem(file, line, col, "", f"not valid YAML: {err.problem}")]
    except yaml.YAMLError as err:
        return None, [FaultFileProblem(file, 1, 1, "", f"not valid YAML: {err}")]
    if node is None:
        return None, [FaultFileProblem(file, 1, 1, "", "file is empty; it needs faults: and/or stacks:")]
    data = _build(node, (), doc)
    if not isinstance(data, dict):
        doc.add((), "must be a mapping with faults: and/or stacks:")
        return None, sorted(doc.problems)
    _unknown_keys(doc, data, _TOP_KEYS, ())
    seed = _number(doc, data, "seed", (), low=0, high=2**63, integer=True)
    rules: list[FaultRule] = []
    presets: list[StackPreset] = []
    for key, parse, out in (("faults", _rule, rules), ("stacks", _stack, presets)):
        items = data.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            doc.add((key,), "must be a list")
            continue
        for index, raw in enumerate(items):
            parsed = parse(doc, raw, (key, index))
            if parsed is not None:
                out.append(parsed)  # type: ignore[arg-type]
    if "faults" not in data and "stacks" not in data and not doc.problems:
        doc.add((), "nothing to do: add faults: and/or stacks:")
    seen: dict[tuple[str, str, str], int] = {}
    for index, preset in enumerate(presets):
        key3 = (preset.account, preset.region, preset.stack)
        if key3 in seen:
            doc.add(("stacks", index), f"stack {preset.stack} in {preset.account}/{preset.region} is preset twice")
        seen[key3] = index
    if doc.problems:
        return None, sorted(doc.problems)
    return FaultPlan(rules=tuple(rules), stacks=tuple(presets), seed=seed, source=file), []


def load_fault_file(path: Path) -> tuple[FaultPlan | None, list[FaultFileProblem]]:
    """Read and validate a fault file."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return None, [FaultFileProblem(str(path), 1, 1, "", f"cannot read file: {err}")]
    return parse_fault_text(text, str(path))


# --------------------------------------------------------------------------- runtime


@dataclass(frozen=True)
class Call:
    """One request as the fault layer saw it."""

    service: str
    operation: str
    account: str
    region: str


class FaultInjector:
    """A plan's runtime state: counters, random draws, the call log, applied presets.

    Thread-safe: the emulator answers requests in parallel threads.
    """

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self.plan = plan or FaultPlan()
        self._lock = threading.RLock()
        self._random = random.Random(self.plan.seed)
        self._matched: Counter[int] = Counter()
        self.fired: Counter[int] = Counter()
        self.calls: Counter[Call] = Counter()
        self._applied: dict[tuple[str, str, str], float] = {}
        self._settled: set[tuple[str, str, str]] = set()

    def load(self, plan: FaultPlan | None) -> None:
        """Use another plan from now on (state starts over); for tests sharing one emulator."""
        with self._lock:
            self.plan = plan or FaultPlan()
            self.reset()

    def reset(self) -> None:
        """Back to the start (moto's state was reset): counters, draws and presets."""
        with self._lock:
            self._random = random.Random(self.plan.seed)
            self._matched.clear()
            self.fired.clear()
            self.calls.clear()
            self._applied.clear()
            self._settled.clear()

    def record(self, call: Call) -> None:
        with self._lock:
            self.calls[call] += 1

    def decide(self, call: Call) -> tuple[float, FaultRule | None]:
        """Seconds to wait and the rule whose error answers this call (None: let it through)."""
        delay = 0.0
        with self._lock:
            for index, rule in enumerate(self.plan.rules):
                if not rule.matches(call.service, call.operation, call.account, call.region):
                    continue
                self._matched[index] += 1
                if rule.count is not None and self._matched[index] > rule.count:
                    continue
                if rule.probability is not None and self._random.random() >= rule.probability:
                    continue
                self.fired[index] += 1
                delay += rule.latency_ms / 1000.0
                if rule.error:
                    return delay, rule
        return delay, None

    def calls_json(self) -> dict[str, Any]:
        with self._lock:
            rows = [
                {"service": c.service, "operation": c.operation, "account": c.account, "region": c.region, "count": n}
                for c, n in sorted(self.calls.items(), key=lambda item: (item[0].account, item[0].service))
            ]
            fired = {str(self.plan.rules[i].line or i): n for i, n in self.fired.items()}
        return {"calls": rows, "total": sum(r["count"] for r in rows), "fired_by_rule_line": fired}

    # ---- preset stacks

    def presets_for(self, account: str, region: str) -> list[StackPreset]:
        return [p for p in self.plan.stacks if p.account == account and p.region == region]

    def apply_presets(self, account: str, region: str) -> None:
        """Put this account and region's preset stacks in place (once), and settle due ones."""
        presets = self.presets_for(account, region)
        if not presets:
            return
        with self._lock:
            now = time.monotonic()
            for preset in presets:
                key = (preset.account, preset.region, preset.stack)
                if key not in self._applied:
                    _put_stack_in_state(preset)
                    self._applied[key] = now
                elif (
                    preset.settle_after_s is not None
                    and key not in self._settled
                    and now - self._applied[key] >= preset.settle_after_s
                ):
                    _settle_stack(preset)
                    self._settled.add(key)


# ---- preset stacks in moto's CloudFormation backend

PLACEHOLDER_TEMPLATE = json.dumps(
    {"Description": "placeholder created by the vend emulator for a preset stack state", "Resources": {}}
)


def _backend(account: str, region: str) -> Any:
    from moto.cloudformation.models import cloudformation_backends

    return cloudformation_backends[account][region]


def _find_stack(backend: Any, name: str) -> Any:
    for stack in backend.stacks.values():
        if stack.name == name or stack.stack_id == name:
            return stack
    return None


def _resource_event(stack: Any, logical_id: str, resource_type: str, status: str, reason: str) -> None:
    from moto.cloudformation.models import Event

    stack.events.append(
        Event(
            stack_id=stack.stack_id,
            stack_name=stack.name,
            logical_resource_id=logical_id,
            physical_resource_id="",
            resource_type=resource_type,
            resource_status=status,
            resource_status_reason=reason,
            resource_properties=None,
        )
    )


def _first_resource(stack: Any) -> tuple[str, str]:
    resources = (stack.template_dict or {}).get("Resources") or {}
    for logical_id, resource in resources.items():
        if isinstance(resource, dict):
            return logical_id, str(resource.get("Type", "AWS::CloudFormation::WaitConditionHandle"))
    return "BaselineResource", "AWS::CloudFormation::WaitConditionHandle"


def _put_stack_in_state(preset: StackPreset) -> None:
    backend = _backend(preset.account, preset.region)
    stack = _find_stack(backend, preset.stack)
    if stack is None:
        stack = backend.create_stack(name=preset.stack, template=PLACEHOLDER_TEMPLATE, parameters={})
        stack.events.clear()
    logical_id, resource_type = _first_resource(stack)
    reason = preset.reason or f"{preset.status} preset by the vend emulator's fault file"
    status = preset.status
    if status in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED"):
        stack._add_stack_event("CREATE_IN_PROGRESS", resource_status_reason="User Initiated")
        _resource_event(stack, logical_id, resource_type, "CREATE_FAILED", reason)
        stack._add_stack_event(
            "ROLLBACK_IN_PROGRESS",
            resource_status_reason=f"The following resource(s) failed to create: [{logical_id}].",
        )
        if status == "ROLLBACK_FAILED":
            _resource_event(stack, logical_id, resource_type, "DELETE_FAILED", reason)
    elif status in ("UPDATE_ROLLBACK_FAILED", "UPDATE_ROLLBACK_COMPLETE", "UPDATE_ROLLBACK_IN_PROGRESS"):
        stack._add_stack_event("UPDATE_IN_PROGRESS", resource_status_reason="User Initiated")
        _resource_event(stack, logical_id, resource_type, "UPDATE_FAILED", reason)
        stack._add_stack_event(
            "UPDATE_ROLLBACK_IN_PROGRESS",
            resource_status_reason=f"The following resource(s) failed to update: [{logical_id}].",
        )
        if status == "UPDATE_ROLLBACK_FAILED":
            _resource_event(stack, logical_id, resource_type, "UPDATE_FAILED", f"rollback failed: {reason}")
    elif status == "DELETE_FAILED":
        stack._add_stack_event("DELETE_IN_PROGRESS", resource_status_reason="User Initiated")
        _resource_event(stack, logical_id, resource_type, "DELETE_FAILED", reason)
    elif status.endswith("_IN_PROGRESS"):
        pass  # the status event below says it all
    stack.status = status
    stack._add_stack_event(status, resource_status_reason=preset.reason or None)


def _settle_stack(preset: StackPreset) -> None:
    backend = _backend(preset.account, preset.region)
    stack = _find_stack(backend, preset.stack)
    if stack is None or preset.then is None:
        return
    if preset.then == "DELETE_COMPLETE":
        backend.delete_stack(stack.stack_id)
        return
    stack.status = preset.then
    stack._add_stack_event(preset.then)


def continue_update_rollback(account: str, region: str, name: str) -> None:
    """What CloudFormation's ContinueUpdateRollback does when the blocking resource is fixed."""
    from moto.cloudformation.exceptions import ValidationError

    stack = _find_stack(_backend(account, region), name)
    if stack is None:
        raise ValidationError(name, f"Stack [{name}] does not exist")
    if stack.status != "UPDATE_ROLLBACK_FAILED":
        raise ValidationError(
            name, f"Stack:{stack.stack_id} is in {stack.status} state and can not be continued to rollback"
        )
    stack.status = "UPDATE_ROLLBACK_IN_PROGRESS"
    stack._add_stack_event("UPDATE_ROLLBACK_IN_PROGRESS", resource_status_reason="Continue rollback requested")
    stack.status = "UPDATE_ROLLBACK_COMPLETE"
    stack._add_stack_event("UPDATE_ROLLBACK_COMPLETE")


# ---- hooks into moto's dispatch

_active = threading.local()
_ORIGINALS: dict[str, Any] = {}


def _request_call(response: Any) -> Call:
    service = str(response.boto3_service_name or "")
    operation = str(response._get_action() or "")
    account = str(response.current_account)
    region = str(response.region)
    if service == "sts" and operation == "AssumeRole":
        role = response.querystring.get("RoleArn") or [""]
        arn = role[0] if isinstance(role, list) else str(role)
        parts = arn.split(":")
        if len(parts) >= 6 and ACCOUNT_RE.match(parts[4]):
            account = parts[4]
    return Call(service, operation, account, region)


def _error_triplet(protocol: str, rule: FaultRule) -> tuple[int, dict[str, str], str]:
    code, message, status = rule.error or "InternalFailure", rule.message, rule.http_status
    request_id = str(uuid.uuid4())
    if protocol in ("json", "rest-json", "query-json", "smithy-rpc-v2-cbor"):
        headers = {
            "Content-Type": "application/x-amz-json-1.1",
            "x-amzn-ErrorType": code,
            "x-amzn-RequestId": request_id,
            "x-amzn-query-error": f"{code};Sender",
        }
        return status, headers, json.dumps({"__type": code, "message": message, "Message": message})
    if protocol == "rest-xml":
        body = (
            f"<Error><Code>{_xml(code)}</Code><Message>{_xml(message)}</Message>"
            f"<RequestId>{request_id}</RequestId></Error>"
        )
        return status, {"Content-Type": "application/xml"}, body
    if protocol == "ec2":
        body = (
            f"<Response><Errors><Error><Code>{_xml(code)}</Code><Message>{_xml(message)}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        )
        return status, {"Content-Type": "text/xml"}, body
    kind = "Receiver" if status >= 500 else "Sender"
    body = (
        f"<ErrorResponse><Error><Type>{kind}</Type><Code>{_xml(code)}</Code><Message>{_xml(message)}</Message>"
        f"</Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    )
    return status, {"Content-Type": "text/xml"}, body


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _protocol(response: Any) -> str:
    from moto.core.utils import get_service_model

    try:
        return str(response.determine_response_protocol(get_service_model(response.boto3_service_name)))
    except Exception:  # an exotic service: the query shape is the most widely parsed
        return "query"


def _call_action(self: Any) -> Any:
    injector: FaultInjector | None = getattr(_active, "injector", None)
    if injector is None:
        return _ORIGINALS["call_action"](self)
    call = _request_call(self)
    _active.recorded = True
    injector.record(call)
    if call.service == "cloudformation":
        injector.apply_presets(call.account, call.region)
    arrived = getattr(_active, "arrived", None) or time.monotonic()  # set when the request came in
    delay, rule = injector.decide(call)
    if rule is not None:
        time.sleep(delay)
        return _error_triplet(_protocol(self), rule)
    result = _ORIGINALS["call_action"](self)
    # The middleware waits, once Flask and moto have made the HTTP response too: what is
    # left after the wait is writing it out.
    _active.deadline = arrived + delay
    return result


def _wait_until(deadline: float) -> None:
    """Answer no sooner than ``deadline``: a rule's latency includes moto's own work."""
    left = deadline - time.monotonic()
    if left > 0:
        time.sleep(left)


def stack_instance_fault(account: str, region: str) -> FaultRule | None:
    """The ``StackInstance`` rule that fails this target of a StackSets operation, if one fires.

    Called by the emulator's StackSets for each target, inside the API request.
    """
    injector: FaultInjector | None = getattr(_active, "injector", None)
    if injector is None:
        return None
    delay, rule = injector.decide(Call("cloudformation", STACK_INSTANCE, account, region))
    if delay:
        time.sleep(delay)
    return rule


def _continue_update_rollback(self: Any) -> str:
    continue_update_rollback(self.current_account, self.region, self._get_param("StackName"))
    return (
        '<ContinueUpdateRollbackResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">'
        "<ContinueUpdateRollbackResult/>"
        f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
        "</ContinueUpdateRollbackResponse>"
    )


def install_hooks() -> None:
    """Patch moto's dispatch once per process; a no-op for requests outside a FaultMiddleware."""
    if _ORIGINALS:
        return
    from moto.cloudformation.responses import CloudFormationResponse
    from moto.core.responses import BaseResponse

    _ORIGINALS["call_action"] = BaseResponse.call_action
    BaseResponse.call_action = _call_action  # type: ignore[method-assign]
    if not hasattr(CloudFormationResponse, "continue_update_rollback"):
        CloudFormationResponse.continue_update_rollback = _continue_update_rollback  # type: ignore[attr-defined]


_SCOPE = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")


def _scope(environ: dict[str, Any]) -> tuple[str, str, str] | None:
    """(access key, region, signing service) from a SigV4 Authorization header."""
    match = _SCOPE.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    return (match.group(1), match.group(2), match.group(3)) if match else None


def _account_of(access_key: str) -> str:
    from moto.iam.models import get_account_id_from

    return str(get_account_id_from(access_key))


#: The WSGI environ key of when the request's connection came in (set by the emulator's
#: request handler; without it, when the middleware saw the request).
ARRIVED = "vend.arrived"


class FaultMiddleware:
    """WSGI middleware in front of moto's app: activates the injector for each request,
    handles S3 (matched by service only), serves the call log, and notices resets."""

    CALLS_PATH = "/vend-emulator/calls"

    def __init__(self, app: Callable[..., Any], injector: FaultInjector) -> None:
        self.app = app
        self.injector = injector

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO", ""))
        if path == self.CALLS_PATH:
            body = json.dumps(self.injector.calls_json()).encode()
            start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
            return [body]
        scope = _scope(environ)
        if scope is not None and scope[2] == "s3":
            call = Call("s3", ANY, _account_of(scope[0]), scope[1])
            self.injector.record(call)
            arrived = environ.get(ARRIVED) or time.monotonic()
            delay, rule = self.injector.decide(call)
            if rule is not None:
                time.sleep(delay)
                status, headers, text = _error_triplet("rest-xml", rule)
                body = text.encode()
                start_response(f"{status} Error", [*headers.items(), ("Content-Length", str(len(body)))])
                return [body]
            result = self._through(environ, start_response, path)
            _wait_until(arrived + delay)
            return result
        _active.injector = self.injector
        _active.recorded = False
        _active.arrived = environ.get(ARRIVED) or time.monotonic()
        _active.deadline = None
        try:
            result = self._through(environ, start_response, path)
            if not _active.recorded and scope is not None:
                self.injector.record(Call(scope[2], "?", _account_of(scope[0]), scope[1]))
            if _active.deadline is not None:
                _wait_until(_active.deadline)
            return result
        finally:
            _active.injector = None

    def _through(self, environ: dict[str, Any], start_response: Callable[..., Any], path: str) -> Iterable[bytes]:
        result = self.app(environ, start_response)
        if path.startswith("/moto-api/reset") and environ.get("REQUEST_METHOD") == "POST":
            self.injector.reset()
            for hook in ON_RESET:
                hook()
        return result


#: State the emulator keeps outside moto's backends (e.g. Cost Anomaly Detection, which moto
#: lacks): cleared with moto's own on ``POST /moto-api/reset``.
ON_RESET: list[Callable[[], None]] = []


def fetch_calls(url: str, timeout: float = 10.0) -> dict[str, Any]:
    """The call log of a running emulator (``GET /vend-emulator/calls``)."""
    import urllib.request

    with urllib.request.urlopen(f"{url}{FaultMiddleware.CALLS_PATH}", timeout=timeout) as response:
        data: dict[str, Any] = json.loads(response.read())
    return data


def calls_by_account(data: dict[str, Any]) -> Counter[str]:
    counts: Counter[str] = Counter()
    for row in data.get("calls", []):
        counts[row["account"]] += int(row["count"])
    return counts
