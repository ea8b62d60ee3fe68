"""``vend drift --remediate``: bring drifted controls back to the baseline, and say how.

Without ``--remediate`` drift never changes anything. With it, every finding that is
``DRIFTED``, ``MISSING`` or ``OUTDATED`` gets one :class:`Action`, chosen so that
CloudFormation stays the owner of what it created:

* **OUTDATED** (the deployed template is older than the code): deploy the stack's
  current template with a change set (CloudFormation).
* **A resource deleted out of band** (a detector, a trail, a rule, a role, the budget):
  re-create it through CloudFormation in two updates of its stack, first without the
  resource (CloudFormation forgets it; deleting what is already gone succeeds), then with
  it (CloudFormation creates it again). A stack that does not exist is deployed.
* **A property changed out of band**: CloudFormation does not re-apply a template that
  did not change, so the service API sets the baseline value again, from the same spec
  or template the stack uses: start logging, re-attach the boundary, restore the trust
  policy, start the recorder, point the delivery channel back, restore rule parameters,
  re-enable the detector. A budget (its notifications are create-only) is re-created.
* Anything else is a ``manual`` action with the reason: an adopted trail's bucket (the
  central bucket accepts only the baseline trail), a resource to adopt that does not
  exist, a difference only CloudFormation drift detection saw.

``NOT_CHECKED``, ``ERROR``, ``EXCEPTED`` and ``IN_SYNC`` findings are left alone.
"""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from baseline.portfolio import Portfolio
from baseline.spec import ClientBaseline, RegionalBaseline, client_baseline
from scripts.assembly import AssemblyError, StackArtifact, read_assembly
from scripts.aws import AssumeRoleError, AwsAccess
from scripts.deploy import deploy_stack
from scripts.drift import (
    BOUNDARY_DOCUMENT,
    BOUNDARY_DOCUMENT_FIX,
    CONTROLS_GLOBAL,
    GLOBAL,
    TRAIL_LOGS_KEYS,
    TRUST_KEYS,
    DriftReport,
    Finding,
    adopted_trail,
)
from scripts.resource_import import Importer, ImportFailed, adopts, import_adopted
from scripts.stack_protection import ProtectionOptions
from scripts.stack_signals import STACK_CONTROL, control_of, stack_region, stacks_of

How = Literal["cloudformation", "api", "manual"]
#: PARTIAL: something was fixed, something is left (the action's detail says what to do).
Outcome = Literal["DONE", "PARTIAL", "FAILED", "SKIPPED"]
FIXABLE = ("DRIFTED", "MISSING", "OUTDATED")
_PLACEHOLDER = "VendPlaceholder"  # keeps a stack valid while its only resources are re-created


@dataclass(frozen=True)
class Action:
    """One thing remediation did (or could not do) for one finding."""

    client: str
    account_id: str
    region: str
    control: str
    how: How
    what: str
    outcome: Outcome
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return asdict(self)


class _Manual(Exception):
    """The finding needs a person; the message says what to do."""


class _Partial(Exception):
    """Part was fixed (``done``); the rest needs a person (``todo`` says what to do)."""

    def __init__(self, done: str, todo: str) -> None:
        super().__init__(todo)
        self.done = done
        self.todo = todo


# --- intrinsic functions in the few properties remediation reads from a template -----------


def resolve(value: Any, account_id: str, region: str, getatt: Callable[[str, str], str] | None = None) -> Any:
    """Resolve the pseudo parameters the baseline's templates use (``Fn::Sub``, ``Ref``, ``Fn::Join``),
    and ``Fn::GetAtt`` when ``getatt`` (logical id, attribute -> value) is given."""
    partition = partition_of(region)
    pseudo = {
        "AWS::AccountId": account_id,
        "AWS::Region": region,
        "AWS::Partition": partition,
        "AWS::URLSuffix": "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com",
    }
    if isinstance(value, list):
        return [resolve(v, account_id, region, getatt) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Fn::GetAtt"} and getatt is not None:
        target = value["Fn::GetAtt"]
        logical_id, attribute = target if isinstance(target, list) else str(target).split(".", 1)
        return getatt(str(logical_id), str(attribute))
    if set(value) == {"Ref"}:
        if value["Ref"] in pseudo:
            return pseudo[value["Ref"]]
        raise _Manual(f"the template refers to {value['Ref']}, which remediation cannot resolve")
    if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):

        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in pseudo:
                raise _Manual(f"the template refers to ${{{m.group(1)}}}, which remediation cannot resolve")
            return pseudo[m.group(1)]

        return re.sub(r"\$\{([^}!]+)\}", sub, value["Fn::Sub"])
    if set(value) == {"Fn::Join"}:
        sep, items = value["Fn::Join"]
        return str(sep).join(str(resolve(i, account_id, region, getatt)) for i in items)
    if any(k.startswith("Fn::") for k in value):
        raise _Manual(f"the template uses {', '.join(value)}, which remediation cannot resolve")
    return {k: resolve(v, account_id, region, getatt) for k, v in value.items()}


def partition_of(region: str) -> str:
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


# --- one client --------------------------------------------------------------------------


class _ClientFix:
    def __init__(
        self,
        access: AwsAccess,
        session: Any,
        baseline: ClientBaseline,
        artifacts: Mapping[str, StackArtifact],
        workdir: Path,
    ) -> None:
        self.access = access
        self.session = session
        self.baseline = baseline
        self.artifacts = artifacts
        self.workdir = workdir
        self.actions: list[Action] = []
        self._clients: dict[tuple[str, str], Any] = {}
        self._deployed: dict[str, dict[str, Any] | None] = {}
        self.stack_by_region = {region: name for name, region in stacks_of(baseline)}

    # helpers
    def client(self, service: str, region: str) -> Any:
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = self.access.client(self.session, service, region)
        return self._clients[key]

    def home(self) -> str:
        return self.baseline.client.home_region

    def account(self) -> str:
        return self.baseline.client.account_id

    def record(self, f: Finding, how: How, what: str, outcome: Outcome, detail: str = "") -> None:
        self.actions.append(Action(f.client, f.account_id, f.region, f.control, how, what, outcome, detail))

    def stack_of(self, f: Finding) -> str:
        region = GLOBAL if f.control in CONTROLS_GLOBAL else f.region
        return self.stack_by_region[region]

    def deployed(self, stack_name: str) -> dict[str, Any] | None:
        if stack_name not in self._deployed:
            cfn = self.client("cloudformation", self._region_of_stack(stack_name))
            try:
                body = cfn.get_template(StackName=stack_name, TemplateStage="Original")["TemplateBody"]
                self._deployed[stack_name] = json.loads(body) if isinstance(body, str) else dict(body)
            except ClientError as exc:
                if "does not exist" not in str(exc):
                    raise
                self._deployed[stack_name] = None
        return self._deployed[stack_name]

    def _region_of_stack(self, stack_name: str) -> str:
        region = next(r for r, n in self.stack_by_region.items() if n == stack_name)
        return stack_region(self.baseline, region)

    def template_resource(
        self, stack_name: str, rtype: str, name_key: str, name: str, only: Sequence[str] | None = None
    ) -> dict[str, Any]:
        """A resource's properties from the current synthesis (else the deployed template),
        resolved (``Fn::GetAtt`` through the stack's resources); ``only``: just these properties."""
        art = self.artifacts.get(stack_name)
        template = json.loads(art.template_body()) if art else self.deployed(stack_name)
        for res in ((template or {}).get("Resources") or {}).values():
            props = res.get("Properties") or {}
            if res.get("Type") == rtype and props.get(name_key) == name:
                if only is not None:
                    props = {k: v for k, v in props.items() if k in only}
                region = self._region_of_stack(stack_name)

                def getatt(logical_id: str, attribute: str) -> str:
                    return self.attribute(stack_name, logical_id, attribute)

                return dict(resolve(props, self.account(), region, getatt))
        raise _Manual(f"no {rtype} named {name} in the template of {stack_name}")

    def attribute(self, stack_name: str, logical_id: str, attribute: str) -> str:
        """``Fn::GetAtt`` of a resource of the deployed stack, from its physical id
        (``DescribeStackResource``): the ARNs the baseline's templates refer to."""
        region = self._region_of_stack(stack_name)
        cfn = self.client("cloudformation", region)
        detail = cfn.describe_stack_resource(StackName=stack_name, LogicalResourceId=logical_id)
        resource = detail["StackResourceDetail"]
        physical, rtype = str(resource.get("PhysicalResourceId") or ""), resource.get("ResourceType")
        if not physical:
            raise _Manual(f"{logical_id} of {stack_name} has no physical id: deploy the stack again")
        if attribute == "Arn" and physical.startswith("arn:"):
            return physical
        partition, account = partition_of(region), self.account()
        arns = {
            "AWS::Logs::LogGroup": f"arn:{partition}:logs:{region}:{account}:log-group:{physical}:*",
            "AWS::IAM::Role": f"arn:{partition}:iam::{account}:role/{physical}",
            "AWS::KMS::Key": f"arn:{partition}:kms:{region}:{account}:key/{physical}",
        }
        if attribute != "Arn" or rtype not in arns:
            raise _Manual(
                f"the template uses Fn::GetAtt {logical_id}.{attribute} ({rtype}), which remediation cannot resolve"
            )
        return arns[str(rtype)]

    # CloudFormation paths
    def deploy(
        self, stack_name: str, template: Mapping[str, Any] | None = None, step: str = "", allow: Sequence[str] = ()
    ) -> str:
        """Deploy ``template`` (default: the current synthesis) to the stack; returns the outcome.
        ``allow``: logical ids this update may delete although the stack policy protects them."""
        art = self.artifacts.get(stack_name)
        if template is None and art is None:
            raise _Manual(f"{stack_name} is not in the cloud assembly: run `vend deploy {self.baseline.client.client}`")
        region = self._region_of_stack(stack_name)
        if template is not None:
            path = self.workdir / f"{stack_name}{step}.template.json"
            path.write_text(json.dumps(template), encoding="utf-8")
            tags = dict(art.tags) if art else self._stack_tags(stack_name)
            art = StackArtifact(stack_name, stack_name, self.account(), region, path, (), tags)
        assert art is not None
        if template is None and adopts(self.baseline):
            # The current template may hold adopted resources the stack does not yet: imported first.
            try:
                import_adopted(
                    Importer(self.baseline), self.access, self.session, self.client("cloudformation", region), art
                )
            except ImportFailed as exc:
                raise RuntimeError(f"{stack_name}: import of adopted resources: {exc}") from exc
        protection = ProtectionOptions(allow=tuple(allow))
        result = deploy_stack(self.client("cloudformation", region), art, poll_s=1.0, protection=protection)
        self._deployed.pop(stack_name, None)
        if result.outcome == "FAILED":
            raise RuntimeError(f"{stack_name}: {result.detail}")
        return result.outcome

    def _stack_tags(self, stack_name: str) -> dict[str, str]:
        cfn = self.client("cloudformation", self._region_of_stack(stack_name))
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
        return {t["Key"]: t["Value"] for t in stacks[0].get("Tags") or []}

    def recreate(self, stack_name: str, logical_ids: set[str]) -> None:
        """Re-create resources deleted out of band: update without them, then with them."""
        deployed = self.deployed(stack_name)
        if deployed is None:
            raise _Manual(f"{stack_name} is not deployed")
        without = json.loads(json.dumps(deployed))
        resources = without["Resources"]
        for lid in logical_ids:
            resources.pop(lid, None)
        for res in resources.values():
            deps = res.get("DependsOn")
            if isinstance(deps, str) and deps in logical_ids:
                res.pop("DependsOn")
            elif isinstance(deps, list):
                kept = [d for d in deps if d not in logical_ids]
                res["DependsOn"] = kept if kept else None
                if not kept:
                    res.pop("DependsOn")
        text = json.dumps(resources)
        for lid in logical_ids:
            if f'"Ref": "{lid}"' in text or f'"Fn::GetAtt": ["{lid}"' in text:
                raise _Manual(f"other resources of {stack_name} refer to {lid}: re-create it by hand")
        for name in [
            o for o, v in (without.get("Outputs") or {}).items() if any(lid in json.dumps(v) for lid in logical_ids)
        ]:
            without["Outputs"].pop(name)
        if not resources:
            resources[_PLACEHOLDER] = {"Type": "AWS::CloudFormation::WaitConditionHandle"}
        # The stack policy forbids deleting protected resources (trail, detector, roles, ...);
        # these are already gone, which is what is being fixed: this one update may drop them.
        self.deploy(stack_name, without, step="-without", allow=sorted(logical_ids))
        self.deploy(stack_name, None if stack_name in self.artifacts else deployed, step="-with")

    def logical_ids(self, stack_name: str, control: str, names: Sequence[str] | None = None) -> set[str]:
        """Logical ids of a control's resources in the deployed template (optionally: with these
        names) that remediation re-creates (the budget: the budget alone, not its alert topic)."""
        deployed = self.deployed(stack_name) or {}
        out = set()
        types = _RECREATE_TYPES.get(control)
        for lid, res in (deployed.get("Resources") or {}).items():
            if control_of(res, self.baseline) != control or (types and res.get("Type") not in types):
                continue
            props = res.get("Properties") or {}
            if names is not None and not ({props.get("ConfigRuleName"), props.get("RoleName")} & set(names)):
                continue
            out.add(lid)
        return out


# --- the fixes, per control ----------------------------------------------------------------


def _regional(fix: _ClientFix, f: Finding) -> RegionalBaseline:
    return fix.baseline.region(f.region)


_EVENTS = ("ManagementEvents", "S3DataEvents", "OtherDataEvents")


def _fix_trail(fix: _ClientFix, f: Finding) -> str:
    spec = fix.baseline.trail
    ct = fix.client("cloudtrail", fix.home())
    if spec.adopt:
        trail = adopted_trail(ct, spec.name)
        if trail is None:
            raise _Manual("no trail to adopt: remove `inherited.cloudtrail: adopt` so vend deploys its own")
        name, label = trail["TrailARN"], trail.get("Name", trail["TrailARN"])
    else:
        name = label = spec.name
    diff = set(f.expected or {})
    done: list[str] = []
    todo: list[str] = []
    updates: dict[str, tuple[str, Any]] = {
        "IsMultiRegionTrail": ("IsMultiRegionTrail", spec.is_multi_region),
        "LogFileValidationEnabled": ("EnableLogFileValidation", spec.log_file_validation),
        "IncludeGlobalServiceEvents": ("IncludeGlobalServiceEvents", spec.include_global_service_events),
    }
    if not spec.adopt:
        updates.update(
            {
                "S3BucketName": ("S3BucketName", spec.bucket_name),
                "S3KeyPrefix": ("S3KeyPrefix", getattr(spec, "s3_key_prefix", None) or ""),
                "KmsKeyId": ("KmsKeyId", spec.kms_key_arn),
            }
        )
    params = {api: value for key, (api, value) in updates.items() if key in diff}
    if params:
        ct.update_trail(Name=name, **params)
        done.append(f"cloudtrail:UpdateTrail {', '.join(sorted(params))}")
    if diff & set(_EVENTS):
        try:
            step = _trail_selectors(fix, f, ct, name) if not spec.adopt else _adopted_selectors(fix, ct, name, diff)
        except _Manual as exc:
            step = str(exc)
        (done if step.startswith("cloudtrail:") else todo).append(step)
    if diff & set(TRAIL_LOGS_KEYS) and not spec.adopt:
        done.append(_trail_logs(fix, f, ct, name, diff))
    if "IsLogging" in diff:
        ct.start_logging(Name=name)
        done.append("cloudtrail:StartLogging")
    elsewhere = sorted(diff - set(updates) - set(_EVENTS) - set(TRAIL_LOGS_KEYS) - {"IsLogging"})
    if elsewhere:
        todo.append(
            f"{', '.join(elsewhere)} still differ: the central bucket accepts only the baseline trail, so vend "
            f"cannot point {label} there; set "
            f"`inherited.cloudtrail: replace` in overrides/{f.client}.yaml and run `vend deploy {f.client}` "
            "(vend deletes it and deploys its own), or waive the control with an exception"
        )
    if todo and done:
        raise _Partial("; ".join(done), "; ".join(todo))
    if todo:
        raise _Manual("; ".join(todo))
    return "; ".join(done)


def _trail_logs(fix: _ClientFix, f: Finding, ct: Any, name: str, diff: set[str]) -> str:
    """The trail's CloudWatch Logs delivery and its log group's retention, as the template sets
    them: the group and role ARNs are the template's ``Fn::GetAtt``, resolved from the stack."""
    spec = fix.baseline.trail
    stack = fix.stack_of(f)
    steps: list[str] = []
    if spec.cloudwatch_logs_retention_days and "LogGroupRetentionDays" in diff:
        group = fix.template_resource(stack, "AWS::Logs::LogGroup", "LogGroupName", spec.log_group_name)
        logs = fix.client("logs", fix.home())
        found = logs.describe_log_groups(logGroupNamePrefix=spec.log_group_name).get("logGroups", [])
        if not any(g.get("logGroupName") == spec.log_group_name for g in found):
            extra = {"kmsKeyId": group["KmsKeyId"]} if group.get("KmsKeyId") else {}
            logs.create_log_group(logGroupName=spec.log_group_name, **extra)
            steps.append(f"logs:CreateLogGroup {spec.log_group_name} (with the client key)")
        logs.put_retention_policy(logGroupName=spec.log_group_name, retentionInDays=int(group["RetentionInDays"]))
        steps.append(f"logs:PutRetentionPolicy {group['RetentionInDays']} days")
    if diff & {"CloudWatchLogsLogGroup", "CloudWatchLogsRole"}:
        props = fix.template_resource(
            stack,
            "AWS::CloudTrail::Trail",
            "TrailName",
            name,
            only=("CloudWatchLogsLogGroupArn", "CloudWatchLogsRoleArn"),
        )
        # Empty strings take the delivery off (a trail the baseline does not deliver to a group).
        ct.update_trail(
            Name=name,
            CloudWatchLogsLogGroupArn=props.get("CloudWatchLogsLogGroupArn") or "",
            CloudWatchLogsRoleArn=props.get("CloudWatchLogsRoleArn") or "",
        )
        steps.append(
            "cloudtrail:UpdateTrail CloudWatch Logs group and role (the template's, from the stack's resources)"
        )
    return "; ".join(steps)


def _trail_selectors(fix: _ClientFix, f: Finding, ct: Any, name: str) -> str:
    """The baseline trail's event selectors, exactly as its template sets them (data events included)."""
    props = fix.template_resource(
        fix.stack_of(f), "AWS::CloudTrail::Trail", "TrailName", name, only=("EventSelectors", "AdvancedEventSelectors")
    )
    put: dict[str, Any] = {"TrailName": name}
    if props.get("AdvancedEventSelectors"):
        put["AdvancedEventSelectors"] = props["AdvancedEventSelectors"]
    else:
        put["EventSelectors"] = props.get("EventSelectors") or [
            {"ReadWriteType": "All", "IncludeManagementEvents": True}
        ]
    ct.put_event_selectors(**put)
    return "cloudtrail:PutEventSelectors (the template's selectors: management and data events)"


def _adopted_selectors(fix: _ClientFix, ct: Any, name: str, diff: set[str]) -> str:
    """Add what the baseline needs to an adopted trail's selectors, keeping the account's own."""
    selectors = ct.get_event_selectors(TrailName=name)
    if selectors.get("AdvancedEventSelectors"):
        return f"the trail uses advanced event selectors: add {', '.join(sorted(diff & set(_EVENTS)))} by hand"
    basic = [dict(s) for s in selectors.get("EventSelectors") or []] or [{}]
    if "ManagementEvents" in diff:
        basic[0].update(ReadWriteType="All", IncludeManagementEvents=True)
    if "S3DataEvents" in diff:
        if len(basic) >= 5:
            return "the trail has 5 event selectors (the most CloudTrail takes): add S3 object events by hand"
        every = f"arn:{partition_of(fix.home())}:s3"
        basic.append(
            {
                "ReadWriteType": "All",
                "IncludeManagementEvents": False,
                "DataResources": [{"Type": "AWS::S3::Object", "Values": [every]}],
            }
        )
    ct.put_event_selectors(TrailName=name, EventSelectors=basic)
    return f"cloudtrail:PutEventSelectors ({', '.join(sorted(diff & set(_EVENTS)))})"


def _fix_msp_role(fix: _ClientFix, f: Finding) -> str:
    spec = fix.baseline.msp_role
    stack = fix.stack_of(f)
    props = fix.template_resource(stack, "AWS::IAM::Role", "RoleName", spec.role_name)
    iam = fix.client("iam", fix.home())
    diff = set(f.expected or {})
    done = []
    if diff & TRUST_KEYS:
        # The whole document: statements someone added are dropped, changed ones restored.
        iam.update_assume_role_policy(
            RoleName=spec.role_name, PolicyDocument=json.dumps(props["AssumeRolePolicyDocument"])
        )
        done.append("iam:UpdateAssumeRolePolicy (trust policy from the template)")
    if "permissions_boundary" in diff:
        iam.put_role_permissions_boundary(RoleName=spec.role_name, PermissionsBoundary=props["PermissionsBoundary"])
        done.append("iam:PutRolePermissionsBoundary")
    if "managed_policies" in diff:
        want = set(props.get("ManagedPolicyArns") or [])
        have = {p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=spec.role_name)["AttachedPolicies"]}
        for arn in sorted(want - have):
            iam.attach_role_policy(RoleName=spec.role_name, PolicyArn=arn)
        for arn in sorted(have - want):
            iam.detach_role_policy(RoleName=spec.role_name, PolicyArn=arn)
        done.append(f"attached {len(want - have)}, detached {len(have - want)} managed policies")
    if diff & {"inline_policies", "inline_policy_documents"}:
        want_inline = {p["PolicyName"]: p["PolicyDocument"] for p in props.get("Policies") or []}
        have_inline = set(iam.list_role_policies(RoleName=spec.role_name)["PolicyNames"])
        for name, doc in want_inline.items():
            iam.put_role_policy(RoleName=spec.role_name, PolicyName=name, PolicyDocument=json.dumps(doc))
        for name in sorted(have_inline - set(want_inline)):
            iam.delete_role_policy(RoleName=spec.role_name, PolicyName=name)
        done.append(f"restored {len(want_inline)}, removed {len(have_inline - set(want_inline))} inline policies")
    if "max_session_seconds" in diff:
        iam.update_role(RoleName=spec.role_name, MaxSessionDuration=int(props["MaxSessionDuration"]))
        done.append("iam:UpdateRole MaxSessionDuration")
    if not done:
        raise _Manual(f"no API fix for {', '.join(sorted(diff))}")
    return "; ".join(done)


def _fix_boundary(fix: _ClientFix, f: Finding) -> str:
    spec = fix.baseline.boundary
    iam = fix.client("iam", fix.home())
    arn = f"arn:{partition_of(fix.home())}:iam::{fix.account()}:policy/{spec.name}"
    # The other keys are roles; the content is not fixed here (the deploy role may change the
    # boundary only through CloudFormation): it stays for a person, with what to do.
    roles = {role: got for role, got in (f.actual or {}).items() if role != BOUNDARY_DOCUMENT}
    content_drifted = isinstance(f.expected, dict) and BOUNDARY_DOCUMENT in f.expected
    attached = []
    for role, got in roles.items():
        if got == "role missing" or got == spec.name:
            continue
        iam.put_role_permissions_boundary(RoleName=role, PermissionsBoundary=arn)
        attached.append(role)
    missing = [role for role, got in roles.items() if got == "role missing"]
    done = [f"iam:PutRolePermissionsBoundary on {', '.join(attached)}"] if attached else []
    if missing:
        stack = fix.stack_of(f)
        fix.recreate(stack, {lid for role in missing for lid in _role_ids(fix, stack, role)})
        done.append(f"re-created {', '.join(missing)} through CloudFormation")
    if content_drifted:
        if done:
            raise _Partial("; ".join(done), BOUNDARY_DOCUMENT_FIX)
        raise _Manual(BOUNDARY_DOCUMENT_FIX)
    return "; ".join(done)


def _role_ids(fix: _ClientFix, stack: str, role: str) -> set[str]:
    deployed = fix.deployed(stack) or {}
    return {
        lid
        for lid, res in (deployed.get("Resources") or {}).items()
        if res.get("Type") == "AWS::IAM::Role" and (res.get("Properties") or {}).get("RoleName") == role
    }


def _fix_recorder(fix: _ClientFix, f: Finding) -> str:
    reg = _regional(fix, f)
    cfg = fix.client("config", reg.region)
    recorders = cfg.describe_configuration_recorders().get("ConfigurationRecorders", [])
    rec = recorders[0] if reg.recorder.adopt else next(r for r in recorders if r["name"] == reg.recorder.name)
    diff = set(f.expected or {})
    done = []
    if diff & {"allSupported", "includeGlobalResourceTypes", "role"}:
        cfg.put_configuration_recorder(
            ConfigurationRecorder={
                "name": rec["name"],
                "roleARN": f"arn:{partition_of(reg.region)}:iam::{fix.account()}:role/{reg.recorder.role_name}",
                "recordingGroup": {
                    "allSupported": reg.recorder.all_supported,
                    "includeGlobalResourceTypes": reg.recorder.include_global_resource_types,
                },
            }
        )
        done.append("config:PutConfigurationRecorder")
    if "recording" in diff or done:
        cfg.start_configuration_recorder(ConfigurationRecorderName=rec["name"])
        done.append("config:StartConfigurationRecorder")
    return "; ".join(done)


def _fix_delivery(fix: _ClientFix, f: Finding) -> str:
    reg = _regional(fix, f)
    cfg = fix.client("config", reg.region)
    channels = cfg.describe_delivery_channels().get("DeliveryChannels", [])
    spec = reg.delivery_channel
    channel = channels[0] if spec.adopt else next(c for c in channels if c["name"] == spec.name)
    wanted: dict[str, Any] = {
        "name": channel["name"],
        "s3BucketName": spec.bucket_name,
        "configSnapshotDeliveryProperties": {"deliveryFrequency": spec.frequency},
    }
    prefix = getattr(spec, "s3_key_prefix", None)
    if prefix:
        wanted["s3KeyPrefix"] = prefix
    cfg.put_delivery_channel(DeliveryChannel=wanted)
    return f"config:PutDeliveryChannel (central bucket {spec.bucket_name}{'/' + prefix if prefix else ''})"


def _fix_rules(fix: _ClientFix, f: Finding) -> str:
    expected = f.expected if isinstance(f.expected, dict) else {}
    actual = f.actual if isinstance(f.actual, dict) else {}
    missing = sorted(n for n in expected if actual.get(n) is None)
    changed = sorted(n for n in expected if actual.get(n) is not None)
    stack = fix.stack_of(f)
    cfg = fix.client("config", f.region)
    done = []
    for name in changed:
        props = fix.template_resource(stack, "AWS::Config::ConfigRule", "ConfigRuleName", name)
        rule: dict[str, Any] = {
            "ConfigRuleName": name,
            "Source": {k: v for k, v in props["Source"].items() if k in ("Owner", "SourceIdentifier", "SourceDetails")},
        }
        for key in ("Description", "Scope", "MaximumExecutionFrequency"):
            if key in props:
                rule[key] = props[key]
        if props.get("InputParameters") is not None:
            params = props["InputParameters"]
            rule["InputParameters"] = params if isinstance(params, str) else json.dumps(params)
        cfg.put_config_rule(ConfigRule=rule)
        done.append(f"config:PutConfigRule {name}")
    if missing:
        fix.recreate(stack, fix.logical_ids(stack, f.control, missing))
        done.append(f"re-created {', '.join(missing)} through CloudFormation")
    return "; ".join(done)


def _fix_budget(fix: _ClientFix, f: Finding) -> str:
    """Limit or thresholds: the budget is re-created (its notifications are create-only);
    recipients: the alert topic's e-mail subscriptions are restored (the budget is not touched)."""
    diff = set(f.expected or {})
    done: list[str] = []
    rest = sorted(diff - {"notify"})
    if rest:
        stack = fix.stack_of(f)
        ids = fix.logical_ids(stack, "budget")
        if not ids:
            raise _Manual(f"no budget in the deployed {stack}: run `vend deploy {f.client}`")
        fix.recreate(stack, ids)
        done.append(f"re-created {', '.join(sorted(ids))} through CloudFormation ({', '.join(rest)} differed)")
    if "notify" in diff:
        steps, pending = _resubscribe(fix)
        done.append(steps)
        if pending:
            todo = f"{', '.join(pending)} still pending confirmation (it cannot be removed; it lapses after three days)"
            raise _Partial("; ".join(done), todo)
    return "; ".join(done)


def _resubscribe(fix: _ClientFix) -> tuple[str, list[str]]:
    """The alert topic's e-mail subscriptions back to the client's recipients."""
    spec = fix.baseline.budget
    topic_arn = spec.topic_arn(fix.account(), fix.home())
    sns = fix.client("sns", fix.home())
    subscriptions: list[dict[str, Any]] = []
    for page in sns.get_paginator("list_subscriptions_by_topic").paginate(TopicArn=topic_arn):
        subscriptions.extend(page.get("Subscriptions", []))
    emails = {s["Endpoint"]: s for s in subscriptions if s.get("Protocol") == "email"}
    steps = []
    for email in sorted(set(spec.emails) - set(emails)):
        sns.subscribe(TopicArn=topic_arn, Protocol="email", Endpoint=email)
        steps.append(f"sns:Subscribe {email} (AWS e-mails the recipient a confirmation link)")
    pending = []
    for email in sorted(set(emails) - set(spec.emails)):
        arn = str(emails[email].get("SubscriptionArn", ""))
        if arn.startswith("arn:"):
            sns.unsubscribe(SubscriptionArn=arn)
            steps.append(f"sns:Unsubscribe {email}")
        else:  # a pending confirmation cannot be removed; it lapses after three days
            pending.append(email)
    return "; ".join(steps) or "the topic's subscriptions already match", pending


def _fix_detector(fix: _ClientFix, f: Finding) -> str:
    reg = _regional(fix, f)
    gd = fix.client("guardduty", reg.region)
    detector_id = gd.list_detectors()["DetectorIds"][0]
    params: dict[str, Any] = {"Enable": True, "FindingPublishingFrequency": reg.detector.finding_publishing_frequency}
    features = (f.expected or {}).get("Features") if isinstance(f.expected, dict) else None
    if features:
        params["Features"] = [{"Name": n, "Status": s} for n, s in features.items()]
    gd.update_detector(DetectorId=detector_id, **params)
    return f"guardduty:UpdateDetector {detector_id} (enabled, {reg.detector.finding_publishing_frequency})"


_API_FIXES: dict[str, Callable[[_ClientFix, Finding], str]] = {
    "cloudtrail": _fix_trail,
    "msp-role": _fix_msp_role,
    "permission-boundary": _fix_boundary,
    "config-recorder": _fix_recorder,
    "config-delivery": _fix_delivery,
    "config-rules": _fix_rules,
    "tag-rules": _fix_rules,
    "guardduty": _fix_detector,
    "budget": _fix_budget,
}
#: The resource types remediation re-creates for a control, where not all of its resources.
_RECREATE_TYPES = {"budget": ("AWS::Budgets::Budget",), "cloudtrail": ("AWS::CloudTrail::Trail",)}
_ADOPT_SETTING = {
    "cloudtrail": ("trail", "cloudtrail"),
    "config-recorder": ("recorder", "config_recorder"),
    "config-delivery": ("delivery_channel", "config_delivery_channel"),
    "guardduty": ("detector", "guardduty_detector"),
}


def _adopted(fix: _ClientFix, f: Finding) -> str | None:
    """The override setting that adopts this finding's resource, if it is adopted."""
    if f.control not in _ADOPT_SETTING:
        return None
    attr, setting = _ADOPT_SETTING[f.control]
    owner: Any = fix.baseline if f.control == "cloudtrail" else _regional(fix, f)
    return setting if getattr(getattr(owner, attr), "adopt", False) else None


def _remediate_client(fix: _ClientFix, findings: Sequence[Finding]) -> None:
    # 1. CloudFormation: stacks that are outdated or not deployed get the current template.
    redeploy: dict[str, list[Finding]] = {}
    rest: list[Finding] = []
    for f in findings:
        stack = fix.stack_of(f) if f.control != STACK_CONTROL else fix.stack_by_region[f.region]
        if f.status == "OUTDATED" or fix.deployed(stack) is None:
            redeploy.setdefault(stack, []).append(f)
        else:
            rest.append(f)
    for stack, items in redeploy.items():
        try:
            outcome = fix.deploy(stack)
            for f in items:
                fix.record(f, "cloudformation", f"deployed the current template of {stack} ({outcome})", "DONE")
        except _Manual as exc:
            for f in items:
                fix.record(f, "manual", str(exc), "SKIPPED")
        except (RuntimeError, ClientError, BotoCoreError) as exc:
            for f in items:
                fix.record(f, "cloudformation", f"deploy {stack}", "FAILED", str(exc))

    # 2. Resources deleted out of band: re-create through CloudFormation, one stack at a time.
    gone: dict[str, list[Finding]] = {}
    api: list[Finding] = []
    for f in rest:
        setting = _adopted(fix, f)
        if "exception expired" in f.detail:
            fix.record(
                f,
                "manual",
                "the exception for this control expired: renew it (new expiry and approval), "
                f"or remove it from the override and run `vend deploy {f.client}`",
                "SKIPPED",
            )
        elif f.status == "MISSING" and setting and not fix.logical_ids(fix.stack_of(f), f.control):
            # An adopted resource the stack holds (imported) is re-created like vend's own, below.
            fix.record(
                f,
                "manual",
                f"nothing to adopt: remove `inherited.{setting}: adopt` from the override so vend deploys its own",
                "SKIPPED",
            )
        elif f.status == "MISSING":
            gone.setdefault(fix.stack_of(f), []).append(f)
        elif f.detail.startswith("CloudFormation drift detection"):
            fix.record(f, "manual", f"only CloudFormation drift detection saw this: {f.detail}", "SKIPPED")
        else:
            api.append(f)
    for stack, items in gone.items():
        ids = set().union(*(fix.logical_ids(stack, f.control) for f in items))
        what = f"re-created {', '.join(sorted(ids))} through CloudFormation ({stack} updated without, then with them)"
        try:
            if not ids:
                raise _Manual(f"no resources of {', '.join(f.control for f in items)} in the deployed {stack}")
            fix.recreate(stack, ids)
            for f in items:
                fix.record(f, "cloudformation", what, "DONE")
        except _Manual as exc:
            for f in items:
                fix.record(f, "manual", str(exc), "SKIPPED")
        except (RuntimeError, ClientError, BotoCoreError) as exc:
            for f in items:
                fix.record(f, "cloudformation", what, "FAILED", str(exc))

    # 3. Properties changed out of band: the service API sets the baseline value again.
    for f in api:
        fn = _API_FIXES.get(f.control)
        if fn is None:
            fix.record(f, "manual", f"no automatic fix for {f.control}: {f.fix}", "SKIPPED")
            continue
        try:
            what = fn(fix, f)
            how: How = "cloudformation" if what.startswith("re-created") else "api"
            fix.record(f, how, what, "DONE")
        except _Partial as exc:
            fix.record(f, "api", exc.done, "PARTIAL", exc.todo)
        except _Manual as exc:
            fix.record(f, "manual", str(exc), "SKIPPED")
        except (ClientError, BotoCoreError, RuntimeError, KeyError, StopIteration, IndexError) as exc:
            fix.record(f, "api", f"fix {f.control}", "FAILED", f"{type(exc).__name__}: {exc}")


def remediate_portfolio(
    access: AwsAccess,
    portfolio: Portfolio,
    report: DriftReport,
    *,
    assembly: Path | None = None,
    concurrency: int = 8,
) -> list[Action]:
    """Fix every DRIFTED, MISSING or OUTDATED finding of ``report``; one action per finding."""
    by_client: dict[str, list[Finding]] = {}
    for f in report.findings:
        if f.status in FIXABLE:
            by_client.setdefault(f.client, []).append(f)
    try:
        artifacts = {s.stack_name: s for s in read_assembly(assembly)} if assembly else {}
    except AssemblyError:
        artifacts = {}

    def one(name: str) -> list[Action]:
        c = portfolio.client(name)
        baseline = client_baseline(c, portfolio.defaults)
        findings = by_client[name]
        try:
            session = access.assume_role(
                c.deploy_role_arn,
                external_id=c.external_id,
                session_name=f"vend-remediate-{name}",
                region=c.home_region,
            )
        except AssumeRoleError as exc:
            return [
                Action(
                    f.client, f.account_id, f.region, f.control, "manual", "assume the deploy role", "FAILED", str(exc)
                )
                for f in findings
            ]
        with tempfile.TemporaryDirectory(prefix=f"vend-remediate-{name}-") as tmp:
            fix = _ClientFix(access, session, baseline, artifacts, Path(tmp))
            try:
                _remediate_client(fix, findings)
            except (ClientError, BotoCoreError) as exc:
                done = {(a.region, a.control) for a in fix.actions}
                fix.actions += [
                    Action(f.client, f.account_id, f.region, f.control, "manual", "remediate", "FAILED", str(exc))
                    for f in findings
                    if (f.region, f.control) not in done
                ]
            return fix.actions

    actions: list[Action] = []
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for result in pool.map(one, sorted(by_client)):
            actions.extend(result)
    return actions


def confirm(actions: Sequence[Action], recheck: DriftReport) -> list[Action]:
    """Hold each DONE against the re-check that follows remediation: an action whose control is
    still not in sync there did not do what it said, so it is FAILED, with what the re-check found."""
    after = {(f.client, f.region, f.control): f for f in recheck.findings}
    out = []
    for a in actions:
        f = after.get((a.client, a.region, a.control))
        if a.outcome == "DONE" and f is not None and f.status not in ("IN_SYNC", "EXCEPTED"):
            detail = f"the re-check still says {f.status}: {f.detail}" if f.detail else f"the re-check says {f.status}"
            a = replace(a, outcome="FAILED", detail=detail)
        out.append(a)
    return out


def actions_table(actions: Sequence[Action]) -> str:
    if not actions:
        return "remediate: nothing to fix"
    lines = [
        f"remediate: {a.client:<14} {a.region:<14} {a.control:<20} {a.outcome:<7} {a.how:<14} {a.what}"
        + (f" - {a.detail}" if a.detail else "")
        for a in actions
    ]
    counts: dict[str, int] = {}
    for a in actions:
        counts[a.outcome] = counts.get(a.outcome, 0) + 1
    lines.append("remediate: " + ", ".join(f"{n} {o}" for o, n in sorted(counts.items())))
    return "\n".join(lines)
