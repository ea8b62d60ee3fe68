"""Live drift checks: every control of every client, through the service APIs.

What each check expects comes from :mod:`baseline.spec` (and :mod:`baseline.policies`), built
from the same effective config the stacks were synthesized from. The live checks decide;
two signals per stack are added by :mod:`scripts.stack_signals`: the deployed template
against the current synthesis (OUTDATED), and CloudFormation drift detection, used on real
AWS where it supports the resource type, with its known false positives normalized (the
emulator has no DetectStackDrift: there that signal is NOT_CHECKED, with the reason). A check
that cannot run is reported as NOT_CHECKED or ERROR with the reason, never as IN_SYNC.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from baseline.exceptions import waived_rules, waiver
from baseline.model import MspDefaults
from baseline.policies import boundary_document, operations_policy, resolve_pseudo, statement_diff, trust_policy
from baseline.portfolio import Portfolio, current_date
from baseline.spec import (
    RULE_PREFIX,
    TAG_RULE_NAME,
    ClientBaseline,
    ConfigRuleSpec,
    RegionalBaseline,
    TrailSpec,
    client_baseline,
    log_shards,
)
from scripts import stack_signals
from scripts.aws import AssumeRoleError, AwsAccess, SessionOnDemand

Status = Literal["IN_SYNC", "DRIFTED", "MISSING", "OUTDATED", "EXCEPTED", "NOT_CHECKED", "ERROR"]
#: Every status, in the order reports list them (worst first).
STATUSES: tuple[Status, ...] = ("DRIFTED", "MISSING", "OUTDATED", "ERROR", "NOT_CHECKED", "EXCEPTED", "IN_SYNC")
GLOBAL = "global"
#: The key of the boundary's content in a permission-boundary finding (the other keys are roles).
BOUNDARY_DOCUMENT = "policy_document"

CONTROLS_GLOBAL = ("cloudtrail", "msp-role", "permission-boundary", "budget")
CONTROLS_REGIONAL = ("config-recorder", "config-delivery", "config-rules", "tag-rules", "guardduty")

#: The fix for live drift, per control. Not `vend deploy`: it skips a stack whose template did
#: not change, so it restores nothing that was changed or deleted out of band.
REMEDIATE = {
    "cloudtrail": "run `vend drift {client} --remediate` to restore the trail; "
    "find who changed it by hand in CloudTrail (StopLogging, UpdateTrail, PutEventSelectors)",
    "msp-role": "run `vend drift {client} --remediate` to restore the role's trust policy, policies and boundary",
    "permission-boundary": "run `vend drift {client} --remediate` to re-attach the boundary",
    "budget": "run `vend drift {client} --remediate` to re-create the budget or re-subscribe its recipients",
    "config-recorder": "run `vend drift {client} --remediate` to restore and restart the recorder",
    "config-delivery": "run `vend drift {client} --remediate` to point the delivery channel back to the central bucket",
    "config-rules": "run `vend drift {client} --remediate` to restore the rule set",
    "tag-rules": "run `vend drift {client} --remediate` to restore the required-tags rule",
    "guardduty": "run `vend drift {client} --remediate` to re-create or re-enable the detector",
}
#: The boundary's content changed: not remediated, vend's deploy role may change the boundary
#: only through CloudFormation (see scripts/onboarding.py).
BOUNDARY_DOCUMENT_FIX = (
    "the boundary's policy was changed outside CloudFormation: find who did it in CloudTrail "
    "(CreatePolicyVersion, SetDefaultPolicyVersion on vend-permission-boundary); a client administrator "
    "makes the code's version the default again (`aws iam set-default-policy-version`) and deletes the "
    "other versions; vend's deploy role may change the boundary only through CloudFormation"
)
DEPLOY = "run `vend deploy {client}`: the deployed template is older than the code and overrides"
#: Trail properties an adopted trail cannot take: the central bucket accepts only the baseline trail.
TRAIL_DESTINATION = ("KmsKeyId", "S3BucketName", "S3KeyPrefix")


@dataclass(frozen=True)
class Finding:
    client: str
    account_id: str
    region: str
    control: str
    status: Status
    expected: Any = None
    actual: Any = None
    detail: str = ""
    fix: str = ""
    #: Extra signals besides the live check, e.g. ``{"template": "IN_SYNC",
    #: "cloudformation-drift": "NOT_CHECKED: ..."}`` (see :mod:`scripts.stack_signals`).
    signals: Mapping[str, str] = field(default_factory=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["signals"] = dict(self.signals)
        return out


@dataclass
class DriftReport:
    findings: list[Finding] = field(default_factory=list)
    #: Report-wide remarks for people, e.g. which signal could not run and why.
    notes: list[str] = field(default_factory=list)
    #: What ``--remediate`` did before this (re-)check (``scripts.remediate.Action`` as dicts).
    remediation: list[dict[str, str]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.status] = out.get(f.status, 0) + 1
        return dict(sorted(out.items()))

    def exit_code(self) -> int:
        """0 in sync, 3 drift found, 1 could not check (DESIGN.md)."""
        statuses = {f.status for f in self.findings}
        if statuses & {"DRIFTED", "MISSING", "OUTDATED"}:
            return 3
        if statuses & {"NOT_CHECKED", "ERROR"} or not self.findings:
            return 1
        return 0

    def to_json(self) -> str:
        out: dict[str, Any] = {"summary": self.counts(), "notes": self.notes}
        if self.remediation:
            out["remediation"] = self.remediation
        out["findings"] = [f.to_dict() for f in self.findings]
        return json.dumps(out, indent=2, default=str)


class _Ctx:
    """One client's checks: a session in its account and helpers to record findings."""

    def __init__(
        self,
        access: AwsAccess,
        session: Any,
        baseline: ClientBaseline,
        key_arns: frozenset[str],
        credentials: Any = None,
    ) -> None:
        self.access = access
        self.session = session
        self.credentials = credentials
        self.baseline = baseline
        self.key_arns = key_arns
        self.findings: list[Finding] = []
        #: Exceptions of this client that expired: left out of ``baseline``, named in findings.
        self.expired: tuple[Any, ...] = ()
        self._clients: dict[tuple[str, str], Any] = {}
        self.rules: dict[str, dict[str, dict[str, Any]]] = {}  # region -> live Config rules

    def client(self, service: str, region: str) -> Any:
        """One client per service and region for all of this account's checks (a new one would
        cost ~3 ms of CPU and a new connection on each call)."""
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = (
                self.access.thread_client(self.session, service, region)
                if self.credentials is None
                else self.access.credentials_client(self.credentials, service, region)
            )
        return self._clients[key]

    def record(
        self, region: str, control: str, status: Status, expected: Any = None, actual: Any = None, detail: str = ""
    ) -> None:
        c = self.baseline.client
        # The fix is chosen once the stack signals are in (``fix_for``): they can change the status.
        self.findings.append(Finding(c.client, c.account_id, region, control, status, expected, actual, detail))

    def compare(self, region: str, control: str, expected: dict[str, Any], actual: dict[str, Any], what: str) -> None:
        diff = {k for k in expected if expected[k] != actual.get(k)}
        if diff:
            self.record(
                region,
                control,
                "DRIFTED",
                {k: expected[k] for k in sorted(diff)},
                {k: actual.get(k) for k in sorted(diff)},
                f"{what}: {', '.join(sorted(diff))} differ",
            )
        else:
            self.record(region, control, "IN_SYNC", expected, actual, what)

    def run(self, region: str, control: str, check: Callable[[], None]) -> None:
        # issue 4: a control waived by an exception is EXCEPTED (with reason and expiry), never checked
        exceptions = self.baseline.client.exceptions
        waived = waiver(exceptions, control, None if region == GLOBAL else region)
        if waived is not None:
            self.record(region, control, "EXCEPTED", detail=waived.label())
            return
        # issue 6: an expired exception waives nothing (the spec expects the control again); say so.
        lapsed = [
            e.expires.isoformat() for e in self.expired if e.covers(control, None if region == GLOBAL else region)
        ]
        if control == "config-rules":
            lapsed += [e.expires.isoformat() for e in waived_rules(self.expired, region).values()]
        if lapsed:
            before = len(self.findings)
            self._run_check(region, control, check)
            note = f"exception expired on {min(lapsed)}: renew it, or remove it and deploy"
            self.findings[before:] = [
                replace(f, detail=f"{f.detail} ({note})" if f.detail else note) for f in self.findings[before:]
            ]
            return
        if control == "config-rules" and (rules := waived_rules(exceptions, region)):
            for name, e in sorted(rules.items()):
                self.record(region, control, "EXCEPTED", {"rule": name}, None, f"rule {name} {e.label()}")
        self._run_check(region, control, check)

    def _run_check(self, region: str, control: str, check: Callable[[], None]) -> None:
        try:
            check()
        except ClientError as exc:
            err = exc.response.get("Error", {})
            code = err.get("Code", "")
            status: Status = (
                "NOT_CHECKED" if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation") else "ERROR"
            )
            self.record(region, control, status, detail=f"{code}: {err.get('Message', '')}")
        except (BotoCoreError, KeyError, ValueError, TypeError) as exc:
            self.record(region, control, "ERROR", detail=f"{type(exc).__name__}: {exc}")


# --- checks -----------------------------------------------------------------------------


def adopted_trail(ct: Any, own_name: str) -> dict[str, Any] | None:
    """The account's own trail kept as the baseline trail: a multi-region one that logs, if any."""
    trails = [t for t in ct.describe_trails(includeShadowTrails=True).get("trailList", []) if t.get("Name") != own_name]
    trails.sort(key=lambda t: (not t.get("IsMultiRegionTrail"), t.get("Name", "")))
    return trails[0] if trails else None


def _read_write(read_only: Any) -> str:
    """An advanced selector's ``readOnly`` field as a ReadWriteType."""
    values = (read_only or {}).get("Equals") or []
    return "All" if not values else ("ReadOnly" if values == ["true"] else "WriteOnly")


def _combined(kinds: set[str]) -> str:
    """ReadOnly plus WriteOnly is All; nothing is None."""
    if "All" in kinds or {"ReadOnly", "WriteOnly"} <= kinds:
        return "All"
    return next(iter(sorted(kinds)), "None")


def management_events(selectors: Mapping[str, Any]) -> str:
    """What management events the trail records: All, ReadOnly, WriteOnly or None."""
    basic = selectors.get("EventSelectors") or []
    kinds = {s.get("ReadWriteType", "All") for s in basic if s.get("IncludeManagementEvents", True)}
    for adv in selectors.get("AdvancedEventSelectors") or []:
        fields = {f.get("Field"): f for f in adv.get("FieldSelectors", [])}
        if "Management" in (fields.get("eventCategory", {}).get("Equals") or []):
            kinds.add(_read_write(fields.get("readOnly")))
    return _combined(kinds)


_ALL_S3 = re.compile(r"^arn:[a-z-]+:s3(:::)?$")  # CloudTrail's way of saying "every bucket"
_S3_OBJECT = "AWS::S3::Object"


def data_events(selectors: Mapping[str, Any]) -> tuple[str, list[str]]:
    """The trail's data events: S3 object events of every bucket (All, ReadOnly, WriteOnly or
    None), and every other data event selector, one compact line each (``type rw resources``).

    Basic and advanced selectors both count; an advanced selector filtered by anything but
    category, type, readOnly or an every-bucket ARN prefix is "other" (it logs only some events)."""
    s3: set[str] = set()
    other: list[str] = []
    for sel in selectors.get("EventSelectors") or []:
        rw = sel.get("ReadWriteType", "All")
        for res in sel.get("DataResources") or []:
            for value in res.get("Values") or []:
                if res.get("Type") == _S3_OBJECT and _ALL_S3.match(value):
                    s3.add(rw)
                else:
                    other.append(f"{res.get('Type')} {rw} {value}")
    for adv in selectors.get("AdvancedEventSelectors") or []:
        fields = {f.get("Field"): f for f in adv.get("FieldSelectors", [])}
        if "Data" not in (fields.get("eventCategory", {}).get("Equals") or []):
            continue
        rw = _read_write(fields.get("readOnly"))
        types = fields.get("resources.type", {}).get("Equals") or ["any type"]
        arn = fields.get("resources.ARN")
        every = arn is None or (
            set(arn) == {"Field", "StartsWith"} and all(_ALL_S3.match(v) for v in arn["StartsWith"])
        )
        filtered = set(fields) - {"eventCategory", "readOnly", "resources.type", "resources.ARN"}
        if types == [_S3_OBJECT] and every and not filtered:
            s3.add(rw)
        else:
            rest = {k: {o: v for o, v in f.items() if o != "Field"} for k, f in fields.items() if k != "eventCategory"}
            other.append(f"{'/'.join(types)} {rw} advanced {json.dumps(rest, sort_keys=True, separators=(',', ':'))}")
    return _combined(s3), sorted(other)


def check_trail(ctx: _Ctx) -> None:
    spec = ctx.baseline.trail
    region = ctx.baseline.client.home_region
    ct = ctx.client("cloudtrail", region)
    if spec.adopt:
        adopted = adopted_trail(ct, spec.name)
        trails = [adopted] if adopted else []
        what = "adopted trail"
    else:
        trails = ct.describe_trails(trailNameList=[spec.name], includeShadowTrails=True).get("trailList", [])
        what = "trail"
    if not trails:
        detail = "no trail to adopt (inherited.cloudtrail: adopt)" if spec.adopt else f"trail {spec.name} not found"
        ctx.record(GLOBAL, "cloudtrail", "MISSING", {"name": spec.name}, None, detail)
        return
    trail = trails[0]
    arn = trail.get("TrailARN", trail.get("Name", spec.name))
    status = ct.get_trail_status(Name=arn)
    key = trail.get("KmsKeyId")
    selectors = ct.get_event_selectors(TrailName=arn)
    s3_events, other_events = data_events(selectors)
    expected = {
        "IsLogging": True,
        "IsMultiRegionTrail": spec.is_multi_region,
        "LogFileValidationEnabled": spec.log_file_validation,
        "IncludeGlobalServiceEvents": spec.include_global_service_events,
        "S3BucketName": spec.bucket_name,
        "S3KeyPrefix": getattr(spec, "s3_key_prefix", None),
        "KmsKeyId": spec.kms_key_arn,
        "ManagementEvents": "All",
    }
    actual = {
        "IsLogging": status.get("IsLogging"),
        "IsMultiRegionTrail": trail.get("IsMultiRegionTrail"),
        "LogFileValidationEnabled": trail.get("LogFileValidationEnabled"),
        "IncludeGlobalServiceEvents": trail.get("IncludeGlobalServiceEvents"),
        "S3BucketName": trail.get("S3BucketName"),
        "S3KeyPrefix": trail.get("S3KeyPrefix") or None,
        # CloudTrail reports the key ARN the alias resolved to; both mean the central key.
        "KmsKeyId": spec.kms_key_arn if key in ctx.key_arns else key,
        "ManagementEvents": management_events(selectors),
    }
    # The baseline trail records exactly the template's data events; an adopted one must record
    # at least the S3 object events a profile (HIPAA, PCI) asks for, and may record more.
    if not spec.adopt or spec.s3_data_events:
        expected["S3DataEvents"] = "All" if spec.s3_data_events else "None"
        actual["S3DataEvents"] = s3_events
    if not spec.adopt:
        expected["OtherDataEvents"] = []
        actual["OtherDataEvents"] = other_events
        expected.update(cloudwatch_logs_expected(spec))
        actual.update(cloudwatch_logs_actual(ctx, spec, trail))
    ctx.compare(GLOBAL, "cloudtrail", expected, actual, f"{what} {trail.get('Name', spec.name)}")


#: Finding keys of the trail's CloudWatch Logs delivery (HIPAA/PCI: ``trail_cloudwatch_logs_days``).
TRAIL_LOGS_KEYS = ("CloudWatchLogsLogGroup", "CloudWatchLogsRole", "LogGroupRetentionDays")


def cloudwatch_logs_expected(spec: TrailSpec) -> dict[str, Any]:
    """The baseline trail delivers to its log group with its role exactly when a profile asks
    for it (and then the group keeps the profile's retention); otherwise to no log group."""
    days = spec.cloudwatch_logs_retention_days
    out: dict[str, Any] = {
        "CloudWatchLogsLogGroup": spec.log_group_name if days else None,
        "CloudWatchLogsRole": spec.logs_role_name if days else None,
    }
    if days:
        out["LogGroupRetentionDays"] = days
    return out


def cloudwatch_logs_actual(ctx: _Ctx, spec: TrailSpec, trail: Mapping[str, Any]) -> dict[str, Any]:
    group_arn = trail.get("CloudWatchLogsLogGroupArn") or ""
    role_arn = trail.get("CloudWatchLogsRoleArn") or ""
    out: dict[str, Any] = {
        # arn:<partition>:logs:<region>:<account>:log-group:<name>[:*]
        "CloudWatchLogsLogGroup": group_arn.split(":log-group:", 1)[1].split(":", 1)[0] if group_arn else None,
        "CloudWatchLogsRole": role_arn.rsplit("/", 1)[-1] if role_arn else None,
    }
    if spec.cloudwatch_logs_retention_days:
        logs = ctx.client("logs", ctx.baseline.client.home_region)
        groups = logs.describe_log_groups(logGroupNamePrefix=spec.log_group_name).get("logGroups", [])
        group = next((g for g in groups if g.get("logGroupName") == spec.log_group_name), None)
        out["LogGroupRetentionDays"] = (
            f"log group {spec.log_group_name} not found"
            if group is None
            else group.get("retentionInDays", "never expires")
        )
    return out


def partition_of(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def _document(raw: Any) -> dict[str, Any]:
    """A policy document as IAM returns it: boto3 decodes it to a dict; a string is JSON."""
    if isinstance(raw, str):
        from urllib.parse import unquote

        text = raw if raw.lstrip().startswith("{") else unquote(raw)
        return json.loads(text)  # type: ignore[no-any-return]
    return dict(raw or {})


def _sids(statements: Sequence[Mapping[str, Any]]) -> str:
    return ", ".join(str(st.get("Sid", "(no Sid)")) for st in statements)


def document_comparison(expected: Mapping[str, Any], live: Mapping[str, Any]) -> tuple[Any, Any, str | None]:
    """(expected view, actual view, difference) of a live policy document against the code's.

    In sync, both views are the statement count. Otherwise the expected view lists the
    statements only the code has and the actual view those only the live policy has (each in
    a canonical form), and the difference names them by Sid."""
    missing, extra = statement_diff(expected, live)
    if not missing and not extra:
        count = f"{len(expected.get('Statement', []))} statements as in the code"
        return count, count, None
    parts = ([f"missing or changed: {_sids(missing)}"] if missing else []) + (
        [f"not in the code: {_sids(extra)}"] if extra else []
    )
    return {"only in the code": missing}, {"only in the live policy": extra}, "; ".join(parts)


#: What each Allow statement of the MSP role's trust policy must carry, by finding key:
#: (condition operator, condition key); ``trusted_principals`` is the statement's AWS principal.
TRUST_CONDITIONS = {
    "external_id": ("StringEquals", "sts:ExternalId"),
    "principal_arn_patterns": ("ArnLike", "aws:PrincipalArn"),
    "source_identity": ("StringLike", "sts:SourceIdentity"),
}
#: The finding keys that only a restored trust policy fixes.
TRUST_KEYS = frozenset({"trusted_principals", "trust_policy", *TRUST_CONDITIONS})


def _values(value: Any) -> list[str]:
    """A principal or condition value as a sorted list ([] when absent)."""
    if value is None:
        return []
    return sorted(str(v) for v in (value if isinstance(value, list) else [value]))


def trust_conditions(document: Mapping[str, Any]) -> dict[str, list[list[str]]]:
    """Per Allow statement (in order), its AWS principals and the values of the conditions the
    baseline sets (ExternalId, principal ARN patterns, SourceIdentity): one list per statement,
    so a statement that lacks a condition shows as ``[]`` next to one that has it."""
    raw = document.get("Statement", [])
    statements = [s for s in (raw if isinstance(raw, list) else [raw]) if s.get("Effect") == "Allow"]
    out: dict[str, list[list[str]]] = {"trusted_principals": []}
    for key in TRUST_CONDITIONS:
        out[key] = []
    for st in statements:
        principal = st.get("Principal", {})
        out["trusted_principals"].append(_values(principal.get("AWS") if isinstance(principal, dict) else principal))
        cond = st.get("Condition") or {}
        for key, (op, name) in TRUST_CONDITIONS.items():
            out[key].append(_values((cond.get(op) or {}).get(name)))
    return out


def check_msp_role(ctx: _Ctx) -> None:
    spec = ctx.baseline.msp_role
    iam = ctx.client("iam", ctx.baseline.client.home_region)
    try:
        role = iam.get_role(RoleName=spec.role_name)["Role"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchEntity":
            ctx.record(
                GLOBAL, "msp-role", "MISSING", {"role": spec.role_name}, None, f"role {spec.role_name} not found"
            )
            return
        raise
    trust = _document(role.get("AssumeRolePolicyDocument"))
    code_trust = trust_policy(spec)
    # Statement by statement: every Allow statement must be one the code writes (conditions are
    # never pooled across statements: a second statement without the ExternalId is drift).
    trust_expected, trust_actual, trust_difference = document_comparison(code_trust, trust)
    attached = {p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=spec.role_name)["AttachedPolicies"]}
    inline = set(iam.list_role_policies(RoleName=spec.role_name)["PolicyNames"])
    boundary = role.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn", "")
    # The content of the inline policies the code writes (a renamed or extra one shows in the names).
    c = ctx.baseline.client
    expected_docs: dict[str, Any] = {}
    actual_docs: dict[str, Any] = {}
    differences: list[str] = []
    if spec.operations_policy_name and spec.operations_policy_name in inline:
        name = spec.operations_policy_name
        code = resolve_pseudo(
            operations_policy(), account=c.account_id, partition=partition_of(c.home_region), region=c.home_region
        )
        live = _document(iam.get_role_policy(RoleName=spec.role_name, PolicyName=name)["PolicyDocument"])
        expected_docs[name], actual_docs[name], difference = document_comparison(code, live)
        if difference:
            differences.append(f"inline policy {name}: {difference}")
    if trust_difference:
        differences.append(f"trust policy: {trust_difference}")
    expected = {
        **trust_conditions(code_trust),
        "trust_policy": trust_expected,
        "permissions_boundary": spec.boundary_name,
        "managed_policies": sorted(spec.managed_policy_arns),
        "inline_policies": sorted([spec.operations_policy_name] if spec.operations_policy_name else []),
        "max_session_seconds": spec.max_session_seconds,
        "inline_policy_documents": expected_docs,
    }
    actual = {
        **trust_conditions(trust),
        "trust_policy": trust_actual,
        "permissions_boundary": boundary.rsplit("/", 1)[-1] if boundary else None,
        "managed_policies": sorted(attached),
        "inline_policies": sorted(inline),
        "max_session_seconds": role.get("MaxSessionDuration"),
        "inline_policy_documents": actual_docs,
    }
    ctx.compare(GLOBAL, "msp-role", expected, actual, "; ".join([f"role {spec.role_name}", *differences]))


def check_boundary(ctx: _Ctx) -> None:
    spec = ctx.baseline.boundary
    c = ctx.baseline.client
    iam = ctx.client("iam", c.home_region)
    arn = f"arn:aws:iam::{c.account_id}:policy/{spec.name}"
    try:
        policy = iam.get_policy(PolicyArn=arn)["Policy"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NoSuchEntity":
            ctx.record(GLOBAL, "permission-boundary", "MISSING", {"policy": spec.name}, None, f"policy {arn} not found")
            return
        raise
    # The content: the default version (the one IAM enforces) against the code's document.
    version = iam.get_policy_version(PolicyArn=arn, VersionId=policy["DefaultVersionId"])["PolicyVersion"]
    code = resolve_pseudo(
        boundary_document(spec), account=c.account_id, partition=partition_of(c.home_region), region=c.home_region
    )
    expected_doc, actual_doc, difference = document_comparison(code, _document(version["Document"]))
    expected: dict[str, Any] = {name: spec.name for name in spec.protected_role_names}
    expected[BOUNDARY_DOCUMENT] = expected_doc
    actual: dict[str, Any] = {BOUNDARY_DOCUMENT: actual_doc}
    for name in spec.protected_role_names:
        try:
            role = iam.get_role(RoleName=name)["Role"]
            b = role.get("PermissionsBoundary", {}).get("PermissionsBoundaryArn", "")
            actual[name] = b.rsplit("/", 1)[-1] if b else None
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchEntity":
                raise
            actual[name] = "role missing"
    what = "boundary attached to baseline roles"
    if difference:
        what += f"; default version {policy['DefaultVersionId']} of {spec.name}: {difference}"
    ctx.compare(GLOBAL, "permission-boundary", expected, actual, what)


def check_budget(ctx: _Ctx) -> None:
    spec = ctx.baseline.budget
    c = ctx.baseline.client
    budgets = ctx.client("budgets", "us-east-1")  # Budgets is a global service homed in us-east-1
    try:
        budget = budgets.describe_budget(AccountId=c.account_id, BudgetName=spec.name)["Budget"]
    except ClientError as exc:
        if exc.response["Error"]["Code"] == "NotFoundException":
            ctx.record(GLOBAL, "budget", "MISSING", {"name": spec.name}, None, f"budget {spec.name} not found")
            return
        raise
    notes = budgets.describe_notifications_for_budget(AccountId=c.account_id, BudgetName=spec.name).get(
        "Notifications", []
    )
    subscribers: set[str] = set()
    for n in notes:
        subs = budgets.describe_subscribers_for_notification(
            AccountId=c.account_id, BudgetName=spec.name, Notification=n
        ).get("Subscribers", [])
        subscribers.update(f"{s.get('SubscriptionType')}:{s['Address']}" for s in subs)
    # Notifications go to the alert topic; the topic's e-mail subscriptions are the recipients.
    topic_arn = spec.topic_arn(c.account_id, c.home_region)
    try:
        topic_subs = ctx.client("sns", c.home_region).list_subscriptions_by_topic(TopicArn=topic_arn)
        emails = {s["Endpoint"] for s in topic_subs.get("Subscriptions", []) if s.get("Protocol") == "email"}
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NotFound":
            raise
        emails = set()
    expected = {
        "limit_usd": float(spec.limit_usd),
        "thresholds_pct": sorted(float(t) for t in spec.thresholds_pct),
        "forecast_thresholds_pct": sorted(float(t) for t in spec.forecast_thresholds_pct),
        "subscribers": [f"SNS:{topic_arn}"],
        "notify": sorted(spec.emails),
    }
    actual = {
        "limit_usd": float(budget["BudgetLimit"]["Amount"]),
        "thresholds_pct": sorted(float(n["Threshold"]) for n in notes if n.get("NotificationType") != "FORECASTED"),
        "forecast_thresholds_pct": sorted(
            float(n["Threshold"]) for n in notes if n.get("NotificationType") == "FORECASTED"
        ),
        "subscribers": sorted(subscribers),
        "notify": sorted(emails),
    }
    ctx.compare(GLOBAL, "budget", expected, actual, f"budget {spec.name}")


def check_recorder(ctx: _Ctx, reg: RegionalBaseline) -> None:
    cfg = ctx.client("config", reg.region)
    recorders = cfg.describe_configuration_recorders().get("ConfigurationRecorders", [])
    # Adopted (inherited.config_recorder: adopt): the account's one recorder, whatever its name.
    ours = recorders[:1] if reg.recorder.adopt else [r for r in recorders if r["name"] == reg.recorder.name]
    if not ours:
        others = ", ".join(r["name"] for r in recorders)
        detail = f"recorder {reg.recorder.name} not found" + (f"; the account has {others} instead" if others else "")
        if reg.recorder.adopt:
            detail = "no recorder to adopt (inherited.config_recorder: adopt)"
        ctx.record(reg.region, "config-recorder", "MISSING", {"name": reg.recorder.name}, None, detail)
        return
    rec = ours[0]
    statuses = cfg.describe_configuration_recorder_status(ConfigurationRecorderNames=[rec["name"]]).get(
        "ConfigurationRecordersStatus", []
    )
    group = rec.get("recordingGroup", {})
    expected = {
        "recording": True,
        "allSupported": reg.recorder.all_supported,
        "includeGlobalResourceTypes": reg.recorder.include_global_resource_types,
        "role": reg.recorder.role_name,
    }
    actual = {
        "recording": bool(statuses and statuses[0].get("recording")),
        "allSupported": group.get("allSupported"),
        "includeGlobalResourceTypes": group.get("includeGlobalResourceTypes"),
        "role": rec.get("roleARN", "").rsplit("/", 1)[-1],
    }
    what = "adopted recorder" if reg.recorder.adopt else "recorder"
    ctx.compare(reg.region, "config-recorder", expected, actual, f"{what} {rec['name']}")


def check_delivery(ctx: _Ctx, reg: RegionalBaseline) -> None:
    cfg = ctx.client("config", reg.region)
    channels = cfg.describe_delivery_channels().get("DeliveryChannels", [])
    spec = reg.delivery_channel
    ours = channels[:1] if spec.adopt else [c for c in channels if c["name"] == spec.name]
    if not ours:
        detail = "no delivery channel to adopt (inherited.config_delivery_channel: adopt)" if spec.adopt else ""
        ctx.record(
            reg.region,
            "config-delivery",
            "MISSING",
            {"name": spec.name},
            None,
            detail or f"delivery channel {spec.name} not found",
        )
        return
    channel = ours[0]
    expected = {
        "s3BucketName": spec.bucket_name,
        "s3KeyPrefix": spec.s3_key_prefix,
        "deliveryFrequency": spec.frequency,
    }
    actual = {
        "s3BucketName": channel.get("s3BucketName"),
        "s3KeyPrefix": channel.get("s3KeyPrefix") or None,
        # Config's default when the channel sets none.
        "deliveryFrequency": channel.get("configSnapshotDeliveryProperties", {}).get(
            "deliveryFrequency", "TwentyFour_Hours"
        ),
    }
    what = "adopted delivery channel" if spec.adopt else "delivery channel"
    ctx.compare(reg.region, "config-delivery", expected, actual, f"{what} {channel['name']}")


def _live_rules(ctx: _Ctx, region: str) -> dict[str, dict[str, Any]]:
    """Every Config rule of the region, read once for the rule set and the tag rules."""
    if region not in ctx.rules:
        ctx.rules[region] = _read_rules(ctx, region)
    return ctx.rules[region]


def _read_rules(ctx: _Ctx, region: str) -> dict[str, dict[str, Any]]:
    cfg = ctx.client("config", region)
    out: dict[str, dict[str, Any]] = {}
    token = None
    while True:
        resp = cfg.describe_config_rules(**({"NextToken": token} if token else {}))
        for rule in resp.get("ConfigRules", []):
            out[rule["ConfigRuleName"]] = rule
        token = resp.get("NextToken")
        if not token:
            return out


def _rule_view(rule: dict[str, Any] | None) -> dict[str, Any] | None:
    if rule is None:
        return None
    params = rule.get("InputParameters") or "{}"
    return {
        "identifier": rule.get("Source", {}).get("SourceIdentifier"),
        "parameters": json.loads(params) if isinstance(params, str) else params,
    }


def _compare_rules(
    ctx: _Ctx, region: str, control: str, specs: Sequence[ConfigRuleSpec], live: dict[str, dict[str, Any]]
) -> None:
    expected = {s.name: {"identifier": s.identifier, "parameters": s.parameters_dict} for s in specs}
    if not expected:
        # Nothing to compare is not "in sync with N rules": say that none are expected, and
        # that any of vend's rules of this kind still there is one too many.
        ours = sorted(n for n in live if _rule_control(n) == control)
        why = "every rule is waived or scoped to another region" if control == "config-rules" else "no tag keys"
        if ours:
            ctx.record(
                region,
                control,
                "DRIFTED",
                [],
                ours,
                f"the baseline expects no {control} here ({why}); found {', '.join(ours)}",
            )
        else:
            ctx.record(
                region, control, "IN_SYNC", [], [], f"the baseline expects no {control} here ({why}); none found"
            )
        return
    actual = {name: _rule_view(live.get(name)) for name in expected}
    missing = sorted(n for n in expected if actual[n] is None)
    changed = sorted(n for n in expected if actual[n] is not None and actual[n] != expected[n])
    if missing and len(missing) == len(expected):
        ctx.record(region, control, "MISSING", sorted(expected), [], f"none of the {len(expected)} rules found")
    elif missing or changed:
        parts = ([f"missing: {', '.join(missing)}"] if missing else []) + (
            [f"changed: {', '.join(changed)}"] if changed else []
        )
        ctx.record(
            region,
            control,
            "DRIFTED",
            {n: expected[n] for n in missing + changed},
            {n: actual[n] for n in missing + changed},
            "; ".join(parts),
        )
    else:
        ctx.record(region, control, "IN_SYNC", sorted(expected), sorted(expected), f"{len(expected)} rule(s)")


def _rule_control(name: str) -> str | None:
    """The control a live rule of vend's belongs to (by name), or None for the account's own."""
    if name.startswith(TAG_RULE_NAME):
        return "tag-rules"
    return "config-rules" if name.startswith(RULE_PREFIX) else None


def check_rules(ctx: _Ctx, reg: RegionalBaseline) -> None:
    _compare_rules(ctx, reg.region, "config-rules", reg.rules, _live_rules(ctx, reg.region))


def check_tag_rule(ctx: _Ctx, reg: RegionalBaseline) -> None:
    _compare_rules(ctx, reg.region, "tag-rules", reg.tag_rules, _live_rules(ctx, reg.region))


def check_detector(ctx: _Ctx, reg: RegionalBaseline) -> None:
    gd = ctx.client("guardduty", reg.region)
    ids = gd.list_detectors().get("DetectorIds", [])
    if not ids:
        ctx.record(reg.region, "guardduty", "MISSING", {"Status": "ENABLED"}, None, "no GuardDuty detector")
        return
    det = gd.get_detector(DetectorId=ids[0])
    expected: dict[str, Any] = {
        "Status": "ENABLED",
        "FindingPublishingFrequency": reg.detector.finding_publishing_frequency,
    }
    actual: dict[str, Any] = {
        "Status": det.get("Status"),
        "FindingPublishingFrequency": det.get("FindingPublishingFrequency"),
    }
    features = _expected_features(reg.detector)
    if features:
        live = {f.get("Name"): f.get("Status") for f in det.get("Features") or []}
        expected["Features"] = features
        actual["Features"] = {name: live.get(name, "DISABLED") for name in features}
    what = "adopted detector" if reg.detector.adopt else "detector"
    ctx.compare(reg.region, "guardduty", expected, actual, f"{what} {ids[0]}")


def _expected_features(spec: Any) -> dict[str, str]:
    """GuardDuty protection plans the spec sets, as {feature name: ENABLED|DISABLED}.

    Read defensively: a spec that sets no plans yields {} (nothing to compare)."""
    raw = getattr(spec, "features", None) or ()
    items = raw.items() if isinstance(raw, Mapping) else raw
    out: dict[str, str] = {}
    for item in items:
        name, on = (item[0], item[1]) if isinstance(item, tuple) else (getattr(item, "name", ""), item)
        status = getattr(on, "status", on)
        out[str(name)] = status if isinstance(status, str) else ("ENABLED" if status else "DISABLED")
    return out


def check_client(
    access: AwsAccess,
    baseline: ClientBaseline,
    key_arns: frozenset[str],
    templates: Mapping[str, Mapping[str, Any]] | None = None,
    cfn_unsupported: str | None = None,
    expired: Sequence[Any] = (),
) -> list[Finding]:
    """Every control of one client: live checks, then the template and CloudFormation signals.

    ``expired``: the client's exceptions that expired (``baseline`` was built without them)."""
    c = baseline.client
    try:
        credentials = access.assumed_credentials(
            c.deploy_role_arn, external_id=c.external_id, session_name=f"vend-drift-{c.client}", region=c.home_region
        )
    except AssumeRoleError as exc:
        return [
            Finding(
                c.client,
                c.account_id,
                region,
                control,
                "NOT_CHECKED",
                detail=f"could not assume the deploy role: {exc}",
                fix=(
                    f"check the deploy role {c.deploy_role_arn} and its ExternalId "
                    f"(`vend onboarding-template {c.client}`)"
                ),
            )
            for region, control in [(GLOBAL, k) for k in CONTROLS_GLOBAL]
            + [(r, k) for r in c.regions for k in CONTROLS_REGIONAL]
        ]
    # Clients are the thread's own, given this account's credentials; a session is made
    # only if a check needs one (it costs ~10 ms of CPU, per account).
    session = SessionOnDemand(lambda: access.session_with(credentials, c.home_region))
    ctx = _Ctx(access, session, baseline, key_arns, credentials)
    ctx.expired = tuple(expired)
    ctx.run(GLOBAL, "cloudtrail", lambda: check_trail(ctx))
    ctx.run(GLOBAL, "msp-role", lambda: check_msp_role(ctx))
    ctx.run(GLOBAL, "permission-boundary", lambda: check_boundary(ctx))
    ctx.run(GLOBAL, "budget", lambda: check_budget(ctx))
    for reg in baseline.regional:
        ctx.run(reg.region, "config-recorder", lambda reg=reg: check_recorder(ctx, reg))  # type: ignore[misc]
        ctx.run(reg.region, "config-delivery", lambda reg=reg: check_delivery(ctx, reg))  # type: ignore[misc]
        ctx.run(reg.region, "config-rules", lambda reg=reg: check_rules(ctx, reg))  # type: ignore[misc]
        ctx.run(reg.region, "tag-rules", lambda reg=reg: check_tag_rule(ctx, reg))  # type: ignore[misc]
        ctx.run(reg.region, "guardduty", lambda reg=reg: check_detector(ctx, reg))  # type: ignore[misc]
    return _with_signals(ctx, templates, cfn_unsupported)


def _with_signals(
    ctx: _Ctx, templates: Mapping[str, Mapping[str, Any]] | None, cfn_unsupported: str | None
) -> list[Finding]:
    """Attach the stack signals (:mod:`scripts.stack_signals`) to the live findings."""
    c = ctx.baseline.client
    try:
        signals = stack_signals.collect(
            ctx.access, ctx.session, ctx.baseline, templates, cfn_unsupported, client=ctx.client
        )
    except (ClientError, BotoCoreError, KeyError, ValueError, TypeError) as exc:
        reason = f"ERROR: stack signals failed: {type(exc).__name__}: {exc}"
        return [
            replace(f, signals={stack_signals.TEMPLATE: reason, stack_signals.CFN_DRIFT: reason}) for f in ctx.findings
        ]
    findings, extra = stack_signals.apply(ctx.findings, signals, CONTROLS_GLOBAL)
    for region, reason in extra:
        findings.append(
            Finding(
                c.client,
                c.account_id,
                region,
                stack_signals.STACK_CONTROL,
                "OUTDATED",
                detail=reason.split(": ", 1)[1],
                signals={stack_signals.TEMPLATE: reason},
            )
        )
    return [f if f.fix else replace(f, fix=fix_for(f)) for f in findings]


def fix_for(f: Finding) -> str:
    """What the on-call engineer runs for this finding: `vend deploy` only where the template
    changes something (an outdated or undeployed stack, an override to edit), else remediation."""
    c = f.client
    if f.status in ("IN_SYNC", "EXCEPTED"):
        return ""
    if f.status == "OUTDATED":
        return DEPLOY.format(client=c)
    if f.status == "NOT_CHECKED":
        return f"give vend's deploy role the access the detail names (`vend onboarding-template {c}`), then check again"
    if f.status == "ERROR":
        return f"run `vend drift {c}` again; if it fails the same way, the detail says what failed"
    if "exception expired" in f.detail:
        return (
            f"renew the exception (new expiry and approval), or remove it from overrides/{c}.yaml "
            f"and run `vend deploy {c}`"
        )
    if "is not deployed" in f.signals.get(stack_signals.TEMPLATE, ""):
        # --refresh: the deploy ledger may still record the stack (deleted out of band since).
        return f"run `vend deploy {c} --refresh`: the stack is not deployed"
    if f.status == "MISSING" and ": adopt)" in f.detail:
        setting = f.detail.rsplit("(", 1)[-1].rstrip(")")
        return (
            f"nothing to adopt: remove `{setting}` from overrides/{c}.yaml and run `vend deploy {c}`; "
            f"if the adopted one was imported into the stack and deleted since, `vend drift {c} --remediate` "
            "re-creates it through CloudFormation"
        )
    if f.detail.startswith("CloudFormation drift detection"):
        return "only CloudFormation drift detection saw this: compare the resource with its template and revert by hand"
    if f.control == "permission-boundary" and isinstance(f.expected, dict) and BOUNDARY_DOCUMENT in f.expected:
        also = set(f.expected) - {BOUNDARY_DOCUMENT}
        return BOUNDARY_DOCUMENT_FIX + (
            f"; `vend drift {c} --remediate` re-attaches the boundary to {', '.join(sorted(also))}" if also else ""
        )
    remediate = REMEDIATE.get(f.control, "run `vend drift {client} --remediate`").format(client=c)
    elsewhere = sorted(set(TRAIL_DESTINATION) & set(f.expected or {})) if isinstance(f.expected, dict) else []
    if f.control == "cloudtrail" and f.detail.startswith("adopted trail") and elsewhere:
        rest = set(f.expected) - set(TRAIL_DESTINATION)
        return (
            f"the adopted trail does not deliver to the central bucket ({', '.join(elsewhere)} differ), which "
            f"accepts only the baseline trail: set `inherited.cloudtrail: replace` in overrides/{c}.yaml and "
            f"run `vend deploy {c}` (vend replaces it with its own trail)"
            + (f"; `vend drift {c} --remediate` fixes {', '.join(sorted(rest))}" if rest else "")
        )
    return remediate


def central_key_arns(access: AwsAccess, defaults: MspDefaults) -> frozenset[str]:
    """Each central key's alias ARN plus the key ARN it resolves to (when the MSP side is reachable)."""
    shards = log_shards(defaults)
    arns = {logs.kms_alias_arn for logs in shards}
    la = defaults.log_archive
    try:
        session = (
            access.assume_role(
                la.deploy_role_arn, external_id=la.external_id, session_name="vend-drift", region=la.region
            )
            if la.deploy_role_arn
            else access.base_session()
        )
        kms = access.client(session, "kms", la.region)
        for logs in shards:
            arns.add(kms.describe_key(KeyId=logs.kms_alias_arn)["KeyMetadata"]["Arn"])
    except (AssumeRoleError, ClientError, BotoCoreError):
        pass  # the alias ARN alone still matches trails configured with it
    return frozenset(arns)


def drift_portfolio(
    access: AwsAccess,
    portfolio: Portfolio,
    clients: Sequence[str] | None = None,
    *,
    concurrency: int = 8,
    assembly: Path | None = None,
) -> DriftReport:
    """Check every control of the selected clients.

    ``assembly``: the cloud assembly of the current code and overrides; with it, a stack
    whose deployed template differs makes its controls OUTDATED. Without it, that signal
    is NOT_CHECKED (said in every finding's ``signals`` and in the report's notes).
    """
    selected = [c for c in portfolio.clients if not clients or c.client in clients]
    key_arns = central_key_arns(access, portfolio.defaults)
    # An expired exception waives nothing: the control is expected again (and named in the finding).
    expired = {c.client: tuple(e for e in c.exceptions if e.expires < current_date()) for c in selected}
    baselines = [
        client_baseline(
            c.model_copy(update={"exceptions": tuple(e for e in c.exceptions if e not in expired[c.client])}),
            portfolio.defaults,
        )
        for c in selected
    ]
    templates = stack_signals.synthesized_templates(assembly)
    cfn_unsupported = stack_signals.drift_detection_unsupported(access)
    report = DriftReport()
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for findings in pool.map(
            lambda b: check_client(access, b, key_arns, templates, cfn_unsupported, expired[b.client.client]),
            baselines,
        ):
            report.findings.extend(findings)
    if templates is None:
        report.notes.append(
            "deployed templates were not compared with the code (no cloud assembly): OUTDATED not checked"
        )
    if cfn_unsupported:
        report.notes.append(f"CloudFormation drift detection not checked: {cfn_unsupported}")
    return report
