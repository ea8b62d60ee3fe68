"""Two signals besides the live checks, per client stack, mapped onto the controls.

* **template**: is the deployed template the one the current code and overrides produce?
  The stack's deployed template (``GetTemplate``) is compared resource by resource with the
  synthesized one from the cloud assembly. A control whose resources differ is
  ``OUTDATED``: the fix is a deploy, not a hunt for who changed what.
* **cloudformation-drift**: CloudFormation's own drift detection (``DetectStackDrift``,
  ``DescribeStackResourceDrifts``), on real AWS. Its known false positives (policy
  documents as text vs JSON, reordered lists, ``"true"`` vs ``true``, numbers as text,
  AWS-assigned numeric ``Sid``\\ s, one-element lists vs scalars) are normalized away
  before a difference counts. A resource it reports modified or deleted makes an
  otherwise in-sync control ``DRIFTED``. The emulator does not implement drift detection:
  there the signal is ``NOT_CHECKED`` with that reason, never silently in sync.

Every finding carries both signals in ``Finding.signals`` (``"IN_SYNC"``, or
``"<STATUS>: <reason>"``), so a report can show why a signal did not run.
"""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from baseline.adoption import without_imported
from baseline.spec import TAG_RULE_NAME, ClientBaseline, global_stack_name, regional_stack_name
from scripts.assembly import TEMPLATE_HASH_OUTPUT, AssemblyError, StackArtifact, read_assembly
from scripts.aws import AwsAccess
from scripts.stackset_layout import resolve

TEMPLATE = "template"
CFN_DRIFT = "cloudformation-drift"
GLOBAL = "global"
#: The control a template difference outside any known control is reported under.
STACK_CONTROL = "stack"

_CLIENT_TAG = "vend:client"
_DETECTION_POLL_S = 3.0
_DETECTION_TIMEOUT_S = 600.0


# --- which control a template resource belongs to ----------------------------------------

#: The budget control's resources: the budget, its alert topic (whose e-mail subscriptions are
#: the recipients) and policy, and Cost Anomaly Detection, which alerts through the same topic.
_BUDGET_TYPES = frozenset(
    {
        "AWS::Budgets::Budget",
        "AWS::SNS::Topic",
        "AWS::SNS::TopicPolicy",
        "AWS::SNS::Subscription",
        "AWS::CE::AnomalyMonitor",
        "AWS::CE::AnomalySubscription",
    }
)


def control_of(resource: Mapping[str, Any], baseline: ClientBaseline) -> str | None:
    """The drift control a template resource implements, or None (reported as ``stack``)."""
    rtype = resource.get("Type", "")
    props = resource.get("Properties") or {}
    if rtype == "AWS::CloudTrail::Trail":
        return "cloudtrail"
    if rtype == "AWS::Logs::LogGroup" and props.get("LogGroupName") == baseline.trail.log_group_name:
        return "cloudtrail"  # the trail's CloudWatch Logs delivery (HIPAA/PCI)
    if rtype in _BUDGET_TYPES:
        # The budget alerts through the topic; its e-mail subscriptions are the recipients.
        return "budget"
    if rtype == "AWS::Config::ConfigurationRecorder":
        return "config-recorder"
    if rtype == "AWS::Config::DeliveryChannel":
        return "config-delivery"
    if rtype == "AWS::Config::ConfigRule":
        name = str(props.get("ConfigRuleName", ""))
        return "tag-rules" if name.startswith(TAG_RULE_NAME) else "config-rules"
    if rtype == "AWS::GuardDuty::Detector":
        return "guardduty"
    if rtype == "AWS::IAM::Role":
        role = props.get("RoleName")
        if role == baseline.msp_role.role_name:
            return "msp-role"
        if role == baseline.config_role.role_name:
            return "config-recorder"
        if role == baseline.trail.logs_role_name:
            return "cloudtrail"
    if rtype == "AWS::IAM::ManagedPolicy" and props.get("ManagedPolicyName") == baseline.boundary.name:
        return "permission-boundary"
    return None


# --- the signal per stack ----------------------------------------------------------------


@dataclass
class StackSignals:
    """Both signals for one stack: per control, ``"IN_SYNC"`` or ``"<STATUS>: <reason>"``."""

    stack_name: str
    region: str  # "global" for the client's global stack
    template: dict[str, str] = field(default_factory=dict)
    template_default: str = "IN_SYNC"
    cfn: dict[str, str] = field(default_factory=dict)
    cfn_default: str = "IN_SYNC"
    #: Per control, CloudFormation's (normalized) expected/actual for a drifted resource.
    cfn_evidence: dict[str, tuple[Any, Any]] = field(default_factory=dict)

    def for_control(self, control: str) -> dict[str, str]:
        return {
            TEMPLATE: self.template.get(control, self.template_default),
            CFN_DRIFT: self.cfn.get(control, self.cfn_default),
        }


def stacks_of(baseline: ClientBaseline) -> list[tuple[str, str]]:
    """(stack name, finding region) of every stack the client's baseline deploys."""
    c = baseline.client
    return [(global_stack_name(c.client), GLOBAL)] + [
        (regional_stack_name(c.client, r.region), r.region) for r in baseline.regional
    ]


def stack_region(baseline: ClientBaseline, region: str) -> str:
    return baseline.client.home_region if region == GLOBAL else region


def _deployed_template(cfn: Any, stack_name: str) -> dict[str, Any] | None:
    try:
        body = cfn.get_template(StackName=stack_name, TemplateStage="Original")["TemplateBody"]
    except ClientError as exc:
        err = exc.response.get("Error", {})
        if err.get("Code") == "ValidationError" and "does not exist" in str(err.get("Message", "")):
            return None
        raise
    return json.loads(body) if isinstance(body, str) else dict(body)


def _without_hash(template: Mapping[str, Any], section: str) -> Any:
    """A template section, the hash output left out: it changes with every resource change,
    which the resource comparison already attributes to a control."""
    value = template.get(section)
    if section == "Outputs" and isinstance(value, dict):
        value = {k: v for k, v in value.items() if k != TEMPLATE_HASH_OUTPUT} or None
    return value


def stackset_stacks(cfn: Any, client: str, kind: str = "") -> list[dict[str, Any]]:
    """The stacks StackSets made for ``client`` in ``cfn``'s region (``vend deploy --engine
    stacksets``: named ``StackSet-vend-<kind>-...``, with the client's slug as ``Client``)."""
    prefix = f"StackSet-vend-{kind}-" if kind else "StackSet-vend-"
    found: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        page = cfn.describe_stacks(**({"NextToken": token} if token else {}))
        for stack in page.get("Stacks") or []:
            if not str(stack.get("StackName", "")).startswith(prefix) or stack.get("StackStatus") == "DELETE_COMPLETE":
                continue
            params = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters") or []}
            if params.get("Client") == client:
                found.append(dict(stack))
        token = page.get("NextToken")
        if not token:
            return found


def stackset_instance(cfn: Any, baseline: ClientBaseline, stack_name: str) -> tuple[str, dict[str, Any]] | None:
    """The stack a StackSets deploy made for ``stack_name`` (``vend deploy --engine stacksets``):
    its name and its template with its parameters and pseudo parameters resolved."""
    kind = "global" if stack_name == global_stack_name(baseline.client.client) else "regional"
    for stack in stackset_stacks(cfn, baseline.client.client, kind):
        params = {p["ParameterKey"]: p.get("ParameterValue") for p in stack.get("Parameters") or []}
        template = _deployed_template(cfn, stack["StackId"])
        if template is None:
            return None
        values: dict[str, Any] = {"AWS::Region": cfn.meta.region_name, "AWS::AccountId": baseline.client.account_id}
        for key, value in params.items():
            declared = (template.get("Parameters") or {}).get(key) or {}
            values[key] = _number(value) if declared.get("Type") == "Number" else value
        body = {k: v for k, v in resolve(template, values).items() if k not in ("Parameters", "Description")}
        return str(stack["StackName"]), body
    return None


def _number(text: Any) -> Any:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return text
    return int(value) if value.is_integer() else value


def template_signal(
    cfn: Any, stack_name: str, synthesized: Mapping[str, Any] | None, baseline: ClientBaseline, sig: StackSignals
) -> None:
    """Fill ``sig.template``: which controls' resources differ from the current synthesis."""
    if synthesized is None:
        sig.template_default = "NOT_CHECKED: no cloud assembly to compare with (pass --assembly DIR)"
        return
    try:
        deployed = _deployed_template(cfn, stack_name)
    except (ClientError, BotoCoreError) as exc:
        sig.template_default = f"ERROR: cannot read the deployed template: {_error_text(exc)}"
        return
    if deployed is None:
        try:
            instance = stackset_instance(cfn, baseline, stack_name)
        except (ClientError, BotoCoreError) as exc:
            sig.template_default = f"ERROR: cannot look for a stack set instance: {_error_text(exc)}"
            return
        if instance is None:
            sig.template_default = f"NOT_CHECKED: stack {stack_name} is not deployed"
            return
        # Deployed through StackSets: the stack set template with this client's parameter
        # values filled in is what runs; compared like a stack of its own.
        stack_name, deployed = instance
        sig.stack_name = stack_name  # CloudFormation drift detection looks at this stack
        pseudo = {"AWS::Region": cfn.meta.region_name, "AWS::AccountId": baseline.client.account_id}
        # A stack set template leaves adopted resources out (StackSets cannot import them).
        synthesized = resolve(without_imported(synthesized), pseudo)
        sections: tuple[str, ...] = ("Conditions", "Mappings", "Metadata")  # the rest is the stack set's
    else:
        sections = ("Description", "Parameters", "Conditions", "Mappings", "Outputs", "Metadata")
    changes: dict[str, list[str]] = {}
    old = deployed.get("Resources") or {}
    new = synthesized.get("Resources") or {}
    for lid in sorted(set(old) | set(new)):
        if old.get(lid) == new.get(lid):
            continue
        resource = new.get(lid) or old[lid]
        what = "added" if lid not in old else ("removed" if lid not in new else "changed")
        control = control_of(resource, baseline) or STACK_CONTROL
        changes.setdefault(control, []).append(f"{lid} {what}")
    for section in sections:
        if _without_hash(deployed, section) != _without_hash(synthesized, section):
            changes.setdefault(STACK_CONTROL, []).append(f"{section} changed")
    for control, items in changes.items():
        sig.template[control] = f"OUTDATED: deployed template of {stack_name} differs: {', '.join(items)}"


# --- CloudFormation drift detection --------------------------------------------------------


def drift_detection_unsupported(access: AwsAccess) -> str | None:
    """Why CloudFormation drift detection cannot run at this endpoint, or None to try it.

    The emulator (moto) does not implement ``DetectStackDrift`` and answers it with an
    HTTP 500 page; it is recognised up front by its ``/moto-api`` endpoint.
    """
    endpoint = access.endpoint_url or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint:
        return None
    try:
        with urllib.request.urlopen(f"{endpoint.rstrip('/')}/moto-api/config", timeout=3) as resp:  # noqa: S310
            if resp.status < 300 and b"lambda" in resp.read():  # moto's config: {"batch": ..., "lambda": ...}
                return "the endpoint is the local emulator (moto), which does not implement DetectStackDrift"
    except (OSError, ValueError):
        pass
    return None


def _normalize(value: Any) -> Any:
    """Undo the representation differences behind CloudFormation drift false positives."""
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "{[":
            try:
                return _normalize(json.loads(text))
            except json.JSONDecodeError:
                return value
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        try:
            return float(text)
        except ValueError:
            return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Mapping):
        return {
            k: _normalize(v)
            for k, v in value.items()
            # IAM numbers statements without a Sid ("1", "2"): not a change anyone made.
            if not (k == "Sid" and isinstance(v, str) and v.isdigit())
        }
    if isinstance(value, list | tuple):
        items = [_normalize(v) for v in value]
        if len(items) == 1:
            return items[0]
        return sorted(items, key=lambda v: json.dumps(v, sort_keys=True, default=str))
    return value


def really_differs(expected: Any, actual: Any) -> bool:
    """False when CloudFormation's expected and actual properties only differ in form.

    Only properties the template declares are compared (CloudFormation checks no others)."""
    exp = _normalize(expected)
    act = _normalize(actual)
    if isinstance(exp, dict) and isinstance(act, dict):
        return any(exp[k] != act.get(k) for k in exp)
    return bool(exp != act)


def cfn_drift_signal(cfn: Any, stack_name: str, baseline: ClientBaseline, sig: StackSignals) -> None:
    """Fill ``sig.cfn`` from CloudFormation drift detection of one stack."""
    try:
        detection = cfn.detect_stack_drift(StackName=stack_name)["StackDriftDetectionId"]
        deadline = time.monotonic() + _DETECTION_TIMEOUT_S
        while True:
            status = cfn.describe_stack_drift_detection_status(StackDriftDetectionId=detection)
            if status.get("DetectionStatus") != "DETECTION_IN_PROGRESS":
                break
            if time.monotonic() > deadline:
                sig.cfn_default = "NOT_CHECKED: drift detection did not finish in time"
                return
            time.sleep(_DETECTION_POLL_S)
        drifts: list[dict[str, Any]] = []
        token = None
        while True:
            kwargs: dict[str, Any] = {"StackName": stack_name}
            if token:
                kwargs["NextToken"] = token
            page = cfn.describe_stack_resource_drifts(**kwargs)
            drifts.extend(page.get("StackResourceDrifts", []))
            token = page.get("NextToken")
            if not token:
                break
        template = _deployed_template(cfn, stack_name) or {}
    except ClientError as exc:
        err = exc.response.get("Error", {})
        if err.get("Code") == "ValidationError" and "does not exist" in str(err.get("Message", "")):
            sig.cfn_default = f"NOT_CHECKED: stack {stack_name} is not deployed"
        else:
            sig.cfn_default = f"NOT_CHECKED: {_error_text(exc)}"
        return
    except BotoCoreError as exc:
        sig.cfn_default = f"NOT_CHECKED: {_error_text(exc)}"
        return
    apply_resource_drifts(drifts, template, baseline, sig)


def apply_resource_drifts(
    drifts: Sequence[Mapping[str, Any]], template: Mapping[str, Any], baseline: ClientBaseline, sig: StackSignals
) -> None:
    """Map ``DescribeStackResourceDrifts`` results onto controls, false positives removed."""
    resources = template.get("Resources") or {}
    unchecked: dict[str, list[str]] = {}
    drifted: dict[str, list[str]] = {}
    normalized = 0
    for d in drifts:
        lid = d.get("LogicalResourceId", "")
        control = control_of(resources.get(lid) or {"Type": d.get("ResourceType")}, baseline) or STACK_CONTROL
        state = d.get("StackResourceDriftStatus")
        if state == "NOT_CHECKED":
            unchecked.setdefault(control, []).append(f"{lid} ({d.get('ResourceType')})")
        elif state == "DELETED":
            drifted.setdefault(control, []).append(f"{lid} deleted")
            sig.cfn_evidence.setdefault(control, ({lid: "exists"}, {lid: "deleted"}))
        elif state == "MODIFIED":
            expected = _loads(d.get("ExpectedProperties"))
            actual = _loads(d.get("ActualProperties"))
            if not really_differs(expected, actual):
                normalized += 1
                continue
            paths = [p.get("PropertyPath", "") for p in d.get("PropertyDifferences") or []]
            drifted.setdefault(control, []).append(f"{lid} modified ({', '.join(paths) or 'properties'})")
            sig.cfn_evidence.setdefault(control, (expected, actual))
    for control, items in unchecked.items():
        sig.cfn[control] = f"NOT_CHECKED: CloudFormation cannot detect drift of {', '.join(items)}"
    for control, items in drifted.items():
        sig.cfn[control] = f"DRIFTED: CloudFormation drift detection: {', '.join(items)}"
    if normalized:
        sig.cfn_default = f"IN_SYNC ({normalized} false positive(s) normalized)"


def _loads(text: Any) -> Any:
    if isinstance(text, str):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return text
    return text


def _error_text(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        return f"{err.get('Code', 'Error')}: {err.get('Message', '')}"
    return f"{type(exc).__name__}: {exc}"


def detection_client(access: AwsAccess, session: Any, region: str) -> Any:
    """A CloudFormation client for drift detection: few retries, an unsupported call fails fast."""
    kwargs: dict[str, Any] = {"region_name": region, "config": Config(retries={"mode": "standard", "max_attempts": 3})}
    if access.endpoint_url:
        kwargs["endpoint_url"] = access.endpoint_url
    return session.client("cloudformation", **kwargs)


# --- putting it together -----------------------------------------------------------------


class _Templates(Mapping[str, Mapping[str, Any]]):
    """Stack name -> synthesized template, each read when asked for: a scan of 1,000 clients
    never holds 5,000 parsed templates at once."""

    def __init__(self, stacks: Sequence[StackArtifact]) -> None:
        self._stacks = {s.stack_name: s for s in stacks}

    def __getitem__(self, name: str) -> Mapping[str, Any]:
        parsed: dict[str, Any] = json.loads(self._stacks[name].template_body())
        return parsed

    def __iter__(self) -> Iterator[str]:
        return iter(self._stacks)

    def __len__(self) -> int:
        return len(self._stacks)


def synthesized_templates(assembly: Path | None) -> Mapping[str, Mapping[str, Any]] | None:
    """Stack name -> synthesized template, or None without an assembly."""
    if assembly is None:
        return None
    try:
        stacks: list[StackArtifact] = read_assembly(assembly)
    except AssemblyError:
        return None
    return _Templates(stacks)


def collect(
    access: AwsAccess,
    session: Any,
    baseline: ClientBaseline,
    templates: Mapping[str, Mapping[str, Any]] | None,
    cfn_unsupported: str | None,
    *,
    client: Callable[[str, str], Any] | None = None,
) -> dict[str, StackSignals]:
    """Both signals for every stack of one client, keyed by finding region. ``client``
    (service, region) -> a client in the account, if the caller has them."""
    out: dict[str, StackSignals] = {}
    for stack_name, region in stacks_of(baseline):
        sig = StackSignals(stack_name, region)
        where = stack_region(baseline, region)
        cfn = client("cloudformation", where) if client else access.thread_client(session, "cloudformation", where)
        synthesized = None if templates is None else templates.get(stack_name)
        if templates is not None and synthesized is None:
            sig.template_default = f"NOT_CHECKED: {stack_name} is not in the cloud assembly"
        else:
            template_signal(cfn, stack_name, synthesized, baseline, sig)
        if cfn_unsupported:
            sig.cfn_default = f"NOT_CHECKED: {cfn_unsupported}"
        else:
            cfn_drift_signal(
                detection_client(access, session, stack_region(baseline, region)), sig.stack_name, baseline, sig
            )
        out[region] = sig
    return out


def apply(
    findings: Sequence[Any], signals: Mapping[str, StackSignals], global_controls: Sequence[str]
) -> tuple[list[Any], list[tuple[str, str]]]:
    """Attach the signals to each finding and let them decide OUTDATED / DRIFTED.

    * template OUTDATED wins over the live result (IN_SYNC, DRIFTED or MISSING): the
      deployed template is old, so the fix is a deploy; the live result stays in ``detail``.
    * CloudFormation DRIFTED turns an IN_SYNC live result into DRIFTED.

    Returns the updated findings, and (region, reason) of every stack whose template
    differs outside all controls (the caller reports those as control ``stack``).
    """
    out = []
    for f in findings:
        region = GLOBAL if f.control in global_controls else f.region
        sig = signals.get(region)
        if sig is None:
            out.append(f)
            continue
        values = sig.for_control(f.control)
        status, detail, expected, actual, fix = f.status, f.detail, f.expected, f.actual, f.fix
        template = values[TEMPLATE]
        cfn = values[CFN_DRIFT]
        if template.startswith("OUTDATED") and status in ("IN_SYNC", "DRIFTED", "MISSING"):
            live = f"live check: {status}" + (f" ({detail})" if detail else "")
            status, detail = "OUTDATED", f"{template.split(': ', 1)[1]}; {live}"
            fix = f"run `vend deploy {f.client}`: the deployed template is older than the code and overrides"
        elif cfn.startswith("DRIFTED") and status == "IN_SYNC":
            status, detail = "DRIFTED", cfn.split(": ", 1)[1]
            expected, actual = sig.cfn_evidence.get(f.control, (None, None))
        out.append(replace(f, status=status, detail=detail, expected=expected, actual=actual, fix=fix, signals=values))
    extra = [(region, sig.template[STACK_CONTROL]) for region, sig in signals.items() if STACK_CONTROL in sig.template]
    return out, extra
