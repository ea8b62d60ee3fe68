"""The onboarding template: valid CloudFormation, trusting only the MSP's deployment
principals with the client's ExternalId, least privilege for deploying the baseline.

Both directions are evaluated (tests/iam_eval.py), not string-matched:

* every action CloudFormation's resource handlers may call for each resource of the
  synthesized client templates (the handler permissions of the CloudFormation resource
  schemas that cfn-lint ships) is allowed on that very resource, unless the deploy role
  documents why not (``NOT_GRANTED``), and then it is denied; a resource type the table
  below does not know fails the test;
* every escalation path of the audit (rewrite the boundary, attach AdministratorAccess,
  change any KMS key policy, long-lived credentials, ...) is denied.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from functools import cache
from pathlib import Path
from typing import Any

import cfnlint
import pytest
from cfnlint.api import lint_file

from baseline.portfolio import Portfolio, load_portfolio
from baseline.spec import BASELINE_MANAGED_POLICY_ARNS, CLIENT_TAG, LOG_ARCHIVE_STACK_NAME
from scripts.assembly import read_assembly
from scripts.cli import main
from scripts.onboarding import NOT_GRANTED, STACKSETS_EXECUTION_ROLE, onboarding_template
from scripts.stacksets import EXECUTION_ROLE_NAME
from scripts.synth import synthesize
from tests.iam_eval import Request, evaluate, resolve

REPO = Path(__file__).resolve().parents[2]
ACME = "111122223333"
AUTOMATION = "arn:aws:iam::123456789012:role/VendAutomation"
ROLE = f"arn:aws:iam::{ACME}:role/VendDeploy"
BOUNDARY = f"arn:aws:iam::{ACME}:policy/vend-permission-boundary"
VIA_CFN = {"aws:CalledVia": ["cloudformation.amazonaws.com"]}
ADMIN = "arn:aws:iam::aws:policy/AdministratorAccess"


@pytest.fixture(scope="module")
def portfolio() -> Portfolio:
    p, problems = load_portfolio(REPO / "overrides")
    assert p is not None, problems
    return p


def _role_of(portfolio: Portfolio, client: str) -> dict[str, Any]:
    c = portfolio.client(client)
    template = onboarding_template(c, portfolio.defaults)
    refs = {"AWS::Partition": "aws", "AWS::AccountId": c.account_id, "AWS::Region": c.home_region}
    return resolve(template["Resources"]["DeployRole"]["Properties"], refs)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def role(portfolio: Portfolio) -> dict[str, Any]:
    return _role_of(portfolio, "acme-health")


@pytest.fixture(scope="module")
def policies(role: dict[str, Any]) -> list[dict[str, Any]]:
    return [p["PolicyDocument"] for p in role["Policies"]]


def _decide(policies: list[dict[str, Any]], action: str, resource: str, role_arn: str = ROLE, **ctx: Any) -> str:
    return evaluate(Request(action, resource, principal_arn=role_arn, context=ctx), identity=policies)


def test_cli_writes_a_template_cfn_lint_accepts(tmp_path: Path) -> None:
    out = tmp_path / "onboarding.json"
    assert main(["onboarding-template", "acme-health", "--output", str(out)]) == 0
    template = json.loads(out.read_text())
    assert template["Resources"]["DeployRole"]["Properties"]["RoleName"] == "VendDeploy"
    errors = [m for m in lint_file(out) if m.rule.id.startswith("E")]
    assert not errors, errors
    assert main(["onboarding-template", "no-such-client"]) == 2


def test_the_stacksets_execution_role_is_the_engines() -> None:
    assert STACKSETS_EXECUTION_ROLE == EXECUTION_ROLE_NAME


def test_inline_policy_fits_iam_limit(policies: list[dict[str, Any]]) -> None:
    """IAM allows 10,240 characters of inline policy per role (whitespace not counted)."""
    assert len(json.dumps(policies, separators=(",", ":"))) < 10_240


def test_only_the_msp_deployment_principal_with_the_external_id(role: dict[str, Any]) -> None:
    trust = role["AssumeRolePolicyDocument"]

    def assume(caller: str, external_id: str) -> str:
        ctx = {"aws:PrincipalArn": caller, "sts:ExternalId": external_id}
        req = Request("sts:AssumeRole", ROLE, principal_arn=caller, context=ctx)
        admin = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        return evaluate(req, identity=[admin], resource_policy=trust, resource_account=ACME)

    assert assume(AUTOMATION, "acme-health-4b1d9e") == "Allow"
    assert assume(AUTOMATION, "brightmart-9c27aa") == "ImplicitDeny"
    engineer = "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/x/AWSReservedSSO_MSPEngineer_1"
    assert assume(engineer, "acme-health-4b1d9e") == "ImplicitDeny"  # people use the MSP role, not this one
    assert assume("arn:aws:iam::999999999999:role/VendAutomation", "acme-health-4b1d9e") == "ImplicitDeny"


def test_deploy_role_creates_only_bounded_baseline_roles(policies: list[dict[str, Any]]) -> None:
    def can(action: str, resource: str, **ctx: Any) -> bool:
        return _decide(policies, action, resource, **ctx) == "Allow"

    assert can("iam:CreateRole", f"arn:aws:iam::{ACME}:role/VendMspAccess", **{"iam:PermissionsBoundary": BOUNDARY})
    assert not can("iam:CreateRole", f"arn:aws:iam::{ACME}:role/VendMspAccess")
    assert not can("iam:CreateRole", f"arn:aws:iam::{ACME}:role/Anything", **{"iam:PermissionsBoundary": BOUNDARY})
    assert not can("iam:AttachRolePolicy", f"arn:aws:iam::{ACME}:role/ClientAdmin")
    assert not can("iam:CreateUser", f"arn:aws:iam::{ACME}:user/x")
    assert can(
        "cloudformation:CreateChangeSet", f"arn:aws:cloudformation:us-east-1:{ACME}:stack/vend-acme-health-global/1"
    )
    assert not can("cloudformation:DeleteStack", f"arn:aws:cloudformation:us-east-1:{ACME}:stack/client-app/1")
    assert can("cloudtrail:UpdateTrail", f"arn:aws:cloudtrail:us-east-1:{ACME}:trail/vend-baseline")
    assert not can("cloudtrail:StopLogging", f"arn:aws:cloudtrail:us-east-1:{ACME}:trail/vend-baseline")
    assert not can("cloudtrail:DeleteTrail", f"arn:aws:cloudtrail:us-east-1:{ACME}:trail/client-trail")
    assert not can("s3:GetObject", "arn:aws:s3:::client-data/x")


# --- escalation paths: each must be denied ---------------------------------------------------

VEND_ROLE = f"arn:aws:iam::{ACME}:role/vend-anything"
MSP_ROLE = f"arn:aws:iam::{ACME}:role/VendMspAccess"
FOREIGN_KEY = f"arn:aws:kms:us-east-1:{ACME}:key/11111111-2222-3333-4444-555555555555"
BOUNDED = {"iam:PermissionsBoundary": BOUNDARY}
OURS = {f"aws:RequestTag/{CLIENT_TAG}": "acme-health"}
GLOBAL_STACK = f"arn:aws:cloudformation:us-east-1:{ACME}:stack/vend-acme-health-global/1"
EXECUTION_ROLE = f"arn:aws:iam::{ACME}:role/{STACKSETS_EXECUTION_ROLE}"

# (why, action, resource, context): the audit's escalation paths and their neighbours.
ESCALATIONS: list[tuple[str, str, str, dict[str, Any]]] = [
    ("rewrite the boundary directly", "iam:CreatePolicyVersion", BOUNDARY, {}),
    ("roll the boundary back to an old version", "iam:SetDefaultPolicyVersion", BOUNDARY, {}),
    ("roll the boundary back, even through CloudFormation", "iam:SetDefaultPolicyVersion", BOUNDARY, VIA_CFN),
    ("delete the boundary directly", "iam:DeletePolicy", BOUNDARY, {}),
    ("delete a boundary version directly", "iam:DeletePolicyVersion", BOUNDARY, {}),
    ("tag the boundary", "iam:TagPolicy", BOUNDARY, VIA_CFN),
    (
        "create the boundary elsewhere (other path)",
        "iam:CreatePolicy",
        f"arn:aws:iam::{ACME}:policy/x/vend-permission-boundary",
        VIA_CFN,
    ),
    ("create another vend policy", "iam:CreatePolicy", f"arn:aws:iam::{ACME}:policy/vend-admin", VIA_CFN),
    (
        "attach AdministratorAccess to a bounded vend role",
        "iam:AttachRolePolicy",
        VEND_ROLE,
        {**BOUNDED, "iam:PolicyARN": ADMIN},
    ),
    (
        "attach AdministratorAccess to the MSP role",
        "iam:AttachRolePolicy",
        MSP_ROLE,
        {**BOUNDED, "iam:PolicyARN": ADMIN},
    ),
    (
        "attach IAMFullAccess",
        "iam:AttachRolePolicy",
        VEND_ROLE,
        {**BOUNDED, "iam:PolicyARN": "arn:aws:iam::aws:policy/IAMFullAccess"},
    ),
    (
        "attach a customer policy",
        "iam:AttachRolePolicy",
        VEND_ROLE,
        {**BOUNDED, "iam:PolicyARN": f"arn:aws:iam::{ACME}:policy/vend-admin"},
    ),
    (
        "attach the boundary (Allow *) as a permission policy",
        "iam:AttachRolePolicy",
        VEND_ROLE,
        {**BOUNDED, "iam:PolicyARN": BOUNDARY},
    ),
    (
        "attach the boundary to a user",
        "iam:AttachUserPolicy",
        f"arn:aws:iam::{ACME}:user/u",
        {"iam:PolicyARN": BOUNDARY},
    ),
    ("create an unbounded vend role", "iam:CreateRole", VEND_ROLE, {}),
    (
        "create a vend role under another boundary",
        "iam:CreateRole",
        VEND_ROLE,
        {"iam:PermissionsBoundary": f"arn:aws:iam::{ACME}:policy/lax"},
    ),
    ("remove a vend role's boundary", "iam:DeleteRolePermissionsBoundary", MSP_ROLE, {}),
    ("give itself a policy", "iam:PutRolePolicy", ROLE, BOUNDED),
    ("give itself the boundary, then policies", "iam:PutRolePermissionsBoundary", ROLE, BOUNDED),
    ("change its own trust", "iam:UpdateAssumeRolePolicy", ROLE, {}),
    ("take over the StackSets execution role", "iam:UpdateAssumeRolePolicy", EXECUTION_ROLE, {}),
    ("widen the StackSets execution role", "iam:PutRolePolicy", EXECUTION_ROLE, BOUNDED),
    ("pass a vend role to EC2", "iam:PassRole", VEND_ROLE, {"iam:PassedToService": "ec2.amazonaws.com"}),
    ("pass the MSP role to Lambda", "iam:PassRole", MSP_ROLE, {"iam:PassedToService": "lambda.amazonaws.com"}),
    (
        "pass the Config role to Lambda",
        "iam:PassRole",
        f"arn:aws:iam::{ACME}:role/vend-config-recorder",
        {"iam:PassedToService": "lambda.amazonaws.com"},
    ),
    ("change a client role", "iam:PutRolePolicy", f"arn:aws:iam::{ACME}:role/ClientAdmin", BOUNDED),
    ("change any key's policy", "kms:PutKeyPolicy", FOREIGN_KEY, {}),
    ("change another client's key", "kms:PutKeyPolicy", FOREIGN_KEY, {f"aws:ResourceTag/{CLIENT_TAG}": "brightmart"}),
    ("tag any key as vend's, then own it", "kms:TagResource", FOREIGN_KEY, OURS),
    ("schedule any key's deletion", "kms:ScheduleKeyDeletion", FOREIGN_KEY, {}),
    ("disable any key", "kms:DisableKey", FOREIGN_KEY, {f"aws:ResourceTag/{CLIENT_TAG}": "acme-health"}),
    ("repoint vend's alias to any key", "kms:UpdateAlias", FOREIGN_KEY, {}),
    ("create a key without vend's tag", "kms:CreateKey", "*", {}),
    (
        "create a key that locks the account out",
        "kms:CreateKey",
        "*",
        {**OURS, "kms:BypassPolicyLockoutSafetyCheck": "true"},
    ),
    ("decrypt with any key", "kms:Decrypt", FOREIGN_KEY, {}),
    ("create an IAM user", "iam:CreateUser", f"arn:aws:iam::{ACME}:user/backdoor", {}),
    ("create an access key", "iam:CreateAccessKey", f"arn:aws:iam::{ACME}:user/someone", {}),
    ("create a login profile", "iam:CreateLoginProfile", f"arn:aws:iam::{ACME}:user/someone", {}),
    ("give a user a policy", "iam:PutUserPolicy", f"arn:aws:iam::{ACME}:user/someone", {}),
    (
        "import a client resource into a vend stack",
        "cloudformation:CreateChangeSet",
        GLOBAL_STACK,
        {"cloudformation:ImportResourceTypes": ["AWS::KMS::Key"]},
    ),
    (
        "import a key along with an adopted detector",
        "cloudformation:CreateChangeSet",
        GLOBAL_STACK,
        {"cloudformation:ImportResourceTypes": ["AWS::GuardDuty::Detector", "AWS::KMS::Key"]},
    ),
    (
        "delete the client's own anomaly monitor",
        "ce:DeleteAnomalyMonitor",
        f"arn:aws:ce::{ACME}:anomalymonitor/default",
        {},
    ),
    ("tag the client's monitor as vend's", "ce:TagResource", f"arn:aws:ce::{ACME}:anomalymonitor/default", OURS),
    ("hide findings with a filter", "guardduty:CreateFilter", f"arn:aws:guardduty:us-east-1:{ACME}:detector/d", {}),
    ("trust an IP list", "guardduty:CreateIPSet", f"arn:aws:guardduty:us-east-1:{ACME}:detector/d", {}),
    ("run remediation automation", "config:PutRemediationConfigurations", "*", {}),
    ("open every log group to a service", "logs:PutResourcePolicy", "*", {}),
    ("budget actions apply IAM policies", "budgets:CreateBudgetAction", f"arn:aws:budgets::{ACME}:budget/vend-x", {}),
    ("read client data", "s3:GetObject", "arn:aws:s3:::client-data/x", {}),
    ("publish through the alert topic", "sns:Publish", f"arn:aws:sns:us-east-1:{ACME}:vend-alerts", {}),
]


@pytest.mark.parametrize(("why", "action", "resource", "context"), ESCALATIONS, ids=[e[0] for e in ESCALATIONS])
def test_escalation_paths_are_denied(
    policies: list[dict[str, Any]], why: str, action: str, resource: str, context: dict[str, Any]
) -> None:
    assert _decide(policies, action, resource, **context) != "Allow", why


def test_the_boundary_changes_only_through_cloudformation(policies: list[dict[str, Any]]) -> None:
    """CloudFormation acts with the deploy role's credentials: the global stack must be able to
    create and update the boundary. Directly (no aws:CalledVia), the same call is denied."""
    for action in ("iam:CreatePolicy", "iam:CreatePolicyVersion", "iam:DeletePolicyVersion", "iam:DeletePolicy"):
        assert _decide(policies, action, BOUNDARY, **VIA_CFN) == "Allow", action
        assert _decide(policies, action, BOUNDARY) != "Allow", action
    via_other = {"aws:CalledVia": ["athena.amazonaws.com"]}
    assert _decide(policies, "iam:CreatePolicyVersion", BOUNDARY, **via_other) == "ExplicitDeny"


def test_bounded_roles_get_only_the_baselines_managed_policies(policies: list[dict[str, Any]]) -> None:
    for arn in BASELINE_MANAGED_POLICY_ARNS:
        assert _decide(policies, "iam:AttachRolePolicy", MSP_ROLE, **BOUNDED, **{"iam:PolicyARN": arn}) == "Allow"
    # without the boundary on the role, not even those
    assert (
        _decide(policies, "iam:AttachRolePolicy", MSP_ROLE, **{"iam:PolicyARN": BASELINE_MANAGED_POLICY_ARNS[0]})
        != "Allow"
    )


def test_each_client_owns_only_its_own_keys(portfolio: Portfolio) -> None:
    bright = [p["PolicyDocument"] for p in _role_of(portfolio, "brightmart")["Policies"]]
    bright_role = "arn:aws:iam::444455556666:role/VendDeploy"
    key = "arn:aws:kms:eu-west-1:444455556666:key/k"
    own = {f"aws:ResourceTag/{CLIENT_TAG}": "brightmart"}
    assert _decide(bright, "kms:PutKeyPolicy", key, bright_role, **own) == "Allow"
    assert (
        _decide(bright, "kms:PutKeyPolicy", key, bright_role, **{f"aws:ResourceTag/{CLIENT_TAG}": "acme-health"})
        != "Allow"
    )


# --- the other direction: everything the baseline's resources need is allowed ---------------------


@cache
def _handler_permissions() -> dict[str, dict[str, list[str]]]:
    """Resource type -> handler (create/read/update/delete) -> IAM actions, from the us-east-1
    CloudFormation resource schemas cfn-lint ships (the same source as scripts/cfnspec.py)."""
    schemas = Path(os.path.dirname(cfnlint.__file__)) / "data" / "schemas"
    index = json.loads((schemas / "providers" / "us-east-1.json").read_text())
    out: dict[str, dict[str, list[str]]] = {}
    for rtype, digest in index.items():
        if not rtype.startswith(("AWS::IAM::", "AWS::KMS::", "AWS::CloudTrail::", "AWS::Logs::", "AWS::SNS::",
                                 "AWS::Budgets::", "AWS::CE::", "AWS::Config::", "AWS::GuardDuty::")):  # fmt: skip
            continue
        schema = json.loads((schemas / "resources" / f"{digest}.json").read_text())
        handlers = schema.get("handlers", {})
        out[rtype] = {
            h: handlers[h].get("permissions", []) for h in ("create", "read", "update", "delete") if h in handlers
        }
    return out


@pytest.fixture(scope="module")
def client_templates(
    portfolio: Portfolio, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[dict[str, Any], str, str]]:
    """Stack name -> (template, account, region) of every client stack `vend synth` writes."""
    out = tmp_path_factory.mktemp("cdk.out")
    assert synthesize(REPO / "overrides", out, validation=False, quiet=True) == 0
    clients = {c.account_id for c in portfolio.clients}
    stacks = {
        s.stack_name: (json.loads(s.template_body()), s.account, s.region)
        for s in read_assembly(out)
        # The MSP side is deployed into the MSP's own accounts by their roles, not this one.
        if s.account in clients
    }
    assert LOG_ARCHIVE_STACK_NAME not in stacks and len(stacks) >= len(portfolio.clients) * 2
    return stacks


class _Resolver:
    """Physical names and ARNs of a template's resources, as CloudFormation would return them."""

    def __init__(self, template: dict[str, Any], account: str, region: str) -> None:
        self.resources = template["Resources"]
        self.account, self.region = account, region
        self.pseudo = {"AWS::Partition": "aws", "AWS::AccountId": account, "AWS::Region": region}

    def value(self, value: Any) -> Any:
        refs = {**self.pseudo, **{lid: self.ref(lid) for lid in self.resources}}
        return resolve(value, refs, _Attrs(self))

    def props(self, logical_id: str) -> dict[str, Any]:
        return self.value(self.resources[logical_id].get("Properties", {}))  # type: ignore[no-any-return]

    def ref(self, lid: str) -> str:
        r = self.resources[lid]
        p = r.get("Properties", {})
        a, g = self.account, self.region
        return {
            "AWS::SNS::Topic": lambda: f"arn:aws:sns:{g}:{a}:{p.get('TopicName')}",
            "AWS::KMS::Key": lambda: "11111111-0000-0000-0000-" + lid[-12:].lower().rjust(12, "0"),
            "AWS::CE::AnomalyMonitor": lambda: f"arn:aws:ce::{a}:anomalymonitor/{lid.lower()}",
            "AWS::CE::AnomalySubscription": lambda: f"arn:aws:ce::{a}:anomalysubscription/{lid.lower()}",
        }.get(r["Type"], lambda: str(p.get("RoleName") or p.get("LogGroupName") or p.get("Name") or lid))()

    def arn(self, lid: str) -> str:
        r = self.resources[lid]
        p = r.get("Properties", {})
        a, g = self.account, self.region
        rtype = r["Type"]
        if rtype == "AWS::IAM::Role":
            return f"arn:aws:iam::{a}:role/{p['RoleName']}"
        if rtype == "AWS::KMS::Key":
            return f"arn:aws:kms:{g}:{a}:key/{self.ref(lid)}"
        if rtype == "AWS::Logs::LogGroup":
            return f"arn:aws:logs:{g}:{a}:log-group:{p['LogGroupName']}:*"
        return self.ref(lid)

    def tags(self, lid: str) -> dict[str, str]:
        p = self.resources[lid].get("Properties", {})
        return {t["Key"]: t["Value"] for t in p.get("Tags") or p.get("ResourceTags") or []}


class _Attrs(dict):  # type: ignore[type-arg]
    def __init__(self, resolver: _Resolver) -> None:
        super().__init__()
        self.resolver = resolver

    def __getitem__(self, key: tuple[str, str]) -> str:
        return self.resolver.arn(key[0])


def _tag_context(tags: dict[str, str], kind: str) -> dict[str, Any]:
    ctx: dict[str, Any] = {f"aws:{kind}Tag/{k}": v for k, v in tags.items()}
    if kind == "Request":
        ctx["aws:TagKeys"] = sorted(tags)
    return ctx


Requests = list[tuple[str, dict[str, Any]]]  # (resource, context)


def _iam_role(r: _Resolver, lid: str, action: str, phase: str) -> Requests:
    p = r.props(lid)
    arn = r.arn(lid)
    bounded = {"iam:PermissionsBoundary": p["PermissionsBoundary"]}
    if action in ("iam:AttachRolePolicy", "iam:DetachRolePolicy"):
        return [(arn, {**bounded, "iam:PolicyARN": m}) for m in p.get("ManagedPolicyArns", [])]
    return [(arn, bounded)]


def _managed_policy(r: _Resolver, lid: str, action: str, phase: str) -> Requests:
    arn = f"arn:aws:iam::{r.account}:policy/{r.props(lid)['ManagedPolicyName']}"
    a = r.account
    if action.endswith("RolePolicy"):
        return [(f"arn:aws:iam::{a}:role/vend-config-recorder", {"iam:PolicyARN": arn, "iam:PermissionsBoundary": arn})]
    if action.endswith("UserPolicy"):
        return [(f"arn:aws:iam::{a}:user/u", {"iam:PolicyARN": arn})]
    if action.endswith("GroupPolicy"):
        return [(f"arn:aws:iam::{a}:group/g", {"iam:PolicyARN": arn})]
    return [(arn, {})]


def _trail(r: _Resolver, lid: str, action: str, phase: str) -> Requests:
    p = r.props(lid)
    logs_role = p.get("CloudWatchLogsRoleArn")
    if action == "iam:PassRole":
        return [(logs_role, {"iam:PassedToService": "cloudtrail.amazonaws.com"})] if logs_role else []
    if action == "iam:GetRole":
        return [(logs_role, {})] if logs_role else []
    if action == "iam:CreateServiceLinkedRole":
        return [("*", {"iam:AWSServiceName": "cloudtrail.amazonaws.com"})]
    if action.startswith("organizations:"):
        return [("*", {})]
    return [(f"arn:aws:cloudtrail:{r.region}:{r.account}:trail/{p['TrailName']}", {})]


def _kms_key(r: _Resolver, lid: str, action: str, phase: str) -> Requests:
    arn, tags = r.arn(lid), r.tags(lid)
    if action == "kms:CreateKey":
        return [("*", _tag_context(tags, "Request"))]
    if action == "kms:TagResource":
        return [
            ("*", _tag_context(tags, "Request")),  # CreateKey with tags asks for it on all keys
            (arn, {**_tag_context(tags, "Resource"), **_tag_context(tags, "Request")}),
        ]
    return [(arn, _tag_context(tags, "Resource"))]


def _kms_alias(r: _Resolver, lid: str, action: str, phase: str) -> Requests:
    p = r.props(lid)
    alias = f"arn:aws:kms:{r.region}:{r.account}:{p['AliasName']}"
    if action == "kms:ListAliases":
        return [("*", {})]
    key_lid = r.resources[lid]["Properties"]["TargetKeyId"]["Fn::GetAtt"][0]
    return [(alias, {}), (r.arn(key_lid), _tag_context(r.tags(key_lid), "Resource"))]


def _log_group(r: _Resolver, lid: str, action: str, phase: str) -> Requests:
    name = r.props(lid)["LogGroupName"]
    base = f"arn:aws:logs:{r.region}:{r.account}:log-group:{name}"
    if not action.startswith("logs:"):
        return [("*", {})]
    return [(base, {}), (f"{base}:*", {})]


def _topic(r: _Resolver, lid: str, action: str, phase: str) -> Requests:
    if action in ("iam:PassRole", "iam:GetRole"):  # delivery status logging roles
        return [(f"arn:aws:iam::{r.account}:role/SNSDeliveryStatus", {"iam:PassedToService": "sns.amazonaws.com"})]
    return [(r.ref(lid), {})]


def _topic_policy(r: _Resolver, lid: str, action: str, phase: str) -> Requests:
    return [(topic, {}) for topic in r.props(lid)["Topics"]]


def _budget(r: _Resolver, lid: str, action: str, phase: str) -> Requests:
    if action.startswith("billing:"):
        return [("*", {})]
    return [(f"arn:aws:budgets::{r.account}:budget/{r.props(lid)['Budget']['BudgetName']}", {})]


def _anomaly(r: _Resolver, lid: str, action: str, phase: str) -> Requests:
    tags = r.tags(lid)
    if action.startswith("ce:Create"):
        return [("*", _tag_context(tags, "Request"))]
    if action.startswith("ce:Get"):
        return [("*", {})]
    if action == "ce:TagResource" and phase == "create":  # tagging what is being created
        return [(r.ref(lid), _tag_context(tags, "Request"))]
    return [(r.ref(lid), {**_tag_context(tags, "Resource"), **_tag_context(tags, "Request")})]


def _config(kind: str) -> Callable[[_Resolver, str, str, str], Requests]:
    def requests(r: _Resolver, lid: str, action: str, phase: str) -> Requests:
        p = r.props(lid)
        if action == "iam:PassRole":
            return [(p["RoleARN"], {"iam:PassedToService": "config.amazonaws.com"})]
        return [(f"arn:aws:config:{r.region}:{r.account}:{kind}/{p.get('Name') or p.get('ConfigRuleName')}", {})]

    return requests


def _detector(r: _Resolver, lid: str, action: str, phase: str) -> Requests:
    if action == "iam:CreateServiceLinkedRole":
        features = {f["Name"] for f in r.props(lid).get("Features", []) if f.get("Status") == "ENABLED"}
        services = ["guardduty.amazonaws.com"] + (
            ["malware-protection.guardduty.amazonaws.com"] if "EBS_MALWARE_PROTECTION" in features else []
        )
        return [("*", {"iam:AWSServiceName": s}) for s in services]
    if action == "iam:GetRole":
        return [(f"arn:aws:iam::{r.account}:role/aws-service-role/guardduty.amazonaws.com/x", {})]
    return [(f"arn:aws:guardduty:{r.region}:{r.account}:detector/d", {})]


#: How each resource type's handler calls look to IAM. A type missing here fails the test.
REQUESTS: dict[str, Callable[[_Resolver, str, str, str], Requests]] = {
    "AWS::IAM::Role": _iam_role,
    "AWS::IAM::ManagedPolicy": _managed_policy,
    "AWS::CloudTrail::Trail": _trail,
    "AWS::KMS::Key": _kms_key,
    "AWS::KMS::Alias": _kms_alias,
    "AWS::Logs::LogGroup": _log_group,
    "AWS::SNS::Topic": _topic,
    "AWS::SNS::TopicPolicy": _topic_policy,
    "AWS::Budgets::Budget": _budget,
    "AWS::CE::AnomalyMonitor": _anomaly,
    "AWS::CE::AnomalySubscription": _anomaly,
    "AWS::Config::ConfigRule": _config("config-rule"),
    "AWS::Config::ConfigurationRecorder": _config("configuration-recorder"),
    "AWS::Config::DeliveryChannel": _config("delivery-channel"),
    "AWS::GuardDuty::Detector": _detector,
}


def _handler_calls(
    templates: dict[str, tuple[dict[str, Any], str, str]],
) -> Iterator[tuple[str, str, str, str, str, dict[str, Any], str]]:
    """(stack, logical id, type, action, resource, context, account) of every handler call."""
    permissions = _handler_permissions()
    for stack, (template, account, region) in sorted(templates.items()):
        r = _Resolver(template, account, region)
        for lid, res in template["Resources"].items():
            rtype = res["Type"]
            assert rtype in REQUESTS, f"{stack}/{lid}: no request table for {rtype}; add it (and what it needs)"
            for phase, actions in permissions[rtype].items():
                for action in actions:
                    for resource, ctx in REQUESTS[rtype](r, lid, action, phase):
                        yield stack, lid, rtype, action, resource, {**VIA_CFN, **ctx}, account


def test_every_action_the_baselines_resources_need_is_allowed(
    portfolio: Portfolio, client_templates: dict[str, tuple[dict[str, Any], str, str]]
) -> None:
    policies_by_account = {
        c.account_id: ([p["PolicyDocument"] for p in _role_of(portfolio, c.client)["Policies"]], c.deploy_role_arn)
        for c in portfolio.clients
    }
    missing, wrongly_granted = [], []
    checked: set[tuple[str, str]] = set()
    for stack, lid, rtype, action, resource, ctx, account in _handler_calls(client_templates):
        policies, role_arn = policies_by_account[account]
        decision = evaluate(Request(action, resource, principal_arn=role_arn, context=ctx), identity=policies)
        checked.add((rtype, action))
        if (rtype, action) in NOT_GRANTED:
            if decision == "Allow":
                wrongly_granted.append(f"{stack}/{lid} {action} on {resource}")
        elif decision != "Allow":
            missing.append(f"{stack}/{lid} ({rtype}) {action} on {resource}: {decision}")
    assert not missing, "the deploy role lacks what CloudFormation needs:\n" + "\n".join(missing)
    assert not wrongly_granted, "NOT_GRANTED says denied, the policy allows:\n" + "\n".join(wrongly_granted)
    # every handler action of every type in the templates was evaluated at least once ...
    types = {res["Type"] for t, _, _ in client_templates.values() for res in t["Resources"].values()}
    never = {(t, a) for t in types for acts in _handler_permissions()[t].values() for a in acts} - checked
    assert not {n for n in never if n not in NOT_GRANTED}, sorted(never)
    # ... and no documented exclusion is stale
    stale = set(NOT_GRANTED) - {(t, a) for t in types for acts in _handler_permissions()[t].values() for a in acts}
    assert not stale, stale


def test_client_resources_carry_the_tag_the_deploy_role_relies_on(
    client_templates: dict[str, tuple[dict[str, Any], str, str]],
) -> None:
    """KMS keys and anomaly detection resources are owned by tag: without it the deploy role
    could not update them (and the test above would fail for that reason, so say it plainly)."""
    for stack, (template, _, _) in client_templates.items():
        client = stack.removeprefix("vend-").rsplit("-global", 1)[0]
        for lid, res in template["Resources"].items():
            if res["Type"] in ("AWS::KMS::Key", "AWS::CE::AnomalyMonitor", "AWS::CE::AnomalySubscription"):
                props = res["Properties"]
                tags = {t["Key"]: t["Value"] for t in props.get("Tags") or props.get("ResourceTags") or []}
                assert tags.get(CLIENT_TAG) == client, (stack, lid, tags)


# What the driver itself calls with the deploy role: deploy, drift, remediation, preflight, assess.
STACK = f"arn:aws:cloudformation:us-east-1:{ACME}:stack/vend-acme-health-global/1"
DRIVER_CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("cloudformation:DescribeStacks", STACK, {}),
    ("cloudformation:CreateChangeSet", STACK, {}),
    ("cloudformation:DescribeChangeSet", STACK, {}),
    ("cloudformation:ExecuteChangeSet", STACK, {}),
    ("cloudformation:DeleteChangeSet", STACK, {}),
    ("cloudformation:GetTemplate", STACK, {}),
    ("cloudformation:ListStackResources", STACK, {}),
    ("cloudformation:DescribeStackEvents", STACK, {}),
    ("cloudformation:SetStackPolicy", STACK, {}),
    ("cloudformation:UpdateTerminationProtection", STACK, {}),
    ("cloudformation:ContinueUpdateRollback", STACK, {}),
    ("cloudformation:DeleteStack", STACK, {}),
    ("cloudformation:DetectStackDrift", STACK, {}),
    ("cloudformation:DescribeStackResourceDrifts", STACK, {}),
    ("cloudformation:DescribeStackDriftDetectionStatus", "*", {}),
    ("cloudformation:DescribeStackResource", STACK, {}),  # remediation resolves Fn::GetAtt
    (  # deploy: the import of an adopted recorder, channel and detector (scripts/resource_import.py)
        "cloudformation:CreateChangeSet",
        STACK,
        {
            "cloudformation:ImportResourceTypes": [
                "AWS::Config::ConfigurationRecorder",
                "AWS::Config::DeliveryChannel",
                "AWS::GuardDuty::Detector",
            ]
        },
    ),
    ("iam:GetRole", MSP_ROLE, {}),
    ("iam:ListAttachedRolePolicies", MSP_ROLE, {}),
    ("iam:ListRolePolicies", MSP_ROLE, {}),
    ("iam:GetRolePolicy", MSP_ROLE, {}),
    ("iam:GetPolicy", BOUNDARY, {}),
    ("iam:GetPolicyVersion", BOUNDARY, {}),
    ("iam:UpdateAssumeRolePolicy", MSP_ROLE, {}),  # remediation restores the trust policy
    ("iam:PutRolePermissionsBoundary", MSP_ROLE, BOUNDED),
    ("iam:PutRolePolicy", MSP_ROLE, BOUNDED),
    ("iam:UpdateRole", MSP_ROLE, {}),
    ("cloudtrail:DescribeTrails", "*", {}),
    ("cloudtrail:GetTrailStatus", f"arn:aws:cloudtrail:us-east-1:{ACME}:trail/their-trail", {}),
    ("cloudtrail:GetEventSelectors", f"arn:aws:cloudtrail:us-east-1:{ACME}:trail/vend-baseline", {}),
    ("cloudtrail:StartLogging", f"arn:aws:cloudtrail:us-east-1:{ACME}:trail/vend-baseline", {}),
    ("cloudtrail:PutEventSelectors", f"arn:aws:cloudtrail:us-east-1:{ACME}:trail/vend-baseline", {}),
    ("cloudtrail:UpdateTrail", f"arn:aws:cloudtrail:us-east-1:{ACME}:trail/vend-baseline", {}),  # CloudWatch Logs
    (
        "iam:PassRole",
        f"arn:aws:iam::{ACME}:role/vend-cloudtrail-logs",
        {"iam:PassedToService": "cloudtrail.amazonaws.com"},
    ),
    ("logs:DescribeLogGroups", "*", {}),
    ("logs:CreateLogGroup", f"arn:aws:logs:us-east-1:{ACME}:log-group:vend-cloudtrail", {}),
    ("logs:PutRetentionPolicy", f"arn:aws:logs:us-east-1:{ACME}:log-group:vend-cloudtrail", {}),
    ("config:DescribeConfigurationRecorders", "*", {}),
    ("config:DescribeConfigurationRecorderStatus", "*", {}),
    ("config:DescribeDeliveryChannels", "*", {}),
    ("config:DescribeConfigRules", "*", {}),
    ("config:StartConfigurationRecorder", "*", {}),
    ("config:StopConfigurationRecorder", "*", {}),  # preflight: inherited recorder, replace
    ("config:DeleteConfigurationRecorder", "*", {}),
    ("config:DeleteDeliveryChannel", "*", {}),
    ("guardduty:ListDetectors", "*", {}),
    ("guardduty:GetDetector", f"arn:aws:guardduty:us-east-1:{ACME}:detector/d", {}),
    ("guardduty:DeleteDetector", f"arn:aws:guardduty:us-east-1:{ACME}:detector/d", {}),
    ("budgets:ViewBudget", f"arn:aws:budgets::{ACME}:budget/vend-acme-health-monthly-1", {}),
    ("sns:ListSubscriptionsByTopic", f"arn:aws:sns:us-east-1:{ACME}:vend-alerts", {}),
    ("sns:Subscribe", f"arn:aws:sns:us-east-1:{ACME}:vend-alerts", {}),  # remediation: the recipients
    ("sns:Unsubscribe", f"arn:aws:sns:us-east-1:{ACME}:vend-alerts", {}),
    ("iam:ListUsers", "*", {}),
    ("iam:ListAccessKeys", f"arn:aws:iam::{ACME}:user/u", {}),
    ("iam:GetAccountSummary", "*", {}),
    ("s3:ListAllMyBuckets", "*", {}),
    ("s3:GetAccountPublicAccessBlock", "*", {}),
    ("s3:GetBucketPolicyStatus", "arn:aws:s3:::client-bucket", {}),
    ("tag:GetResources", "*", {}),
]


@pytest.mark.parametrize(("action", "resource", "context"), DRIVER_CALLS, ids=[c[0] for c in DRIVER_CALLS])
def test_the_driver_can_do_its_job(
    policies: list[dict[str, Any]], action: str, resource: str, context: dict[str, Any]
) -> None:
    assert _decide(policies, action, resource, **context) == "Allow"


def test_stacksets_execution_role_only_on_request_and_only_for_the_admin_role(tmp_path: Path) -> None:
    out = tmp_path / "onboarding.json"
    assert main(["onboarding-template", "acme-health", "--output", str(out)]) == 0
    assert set(json.loads(out.read_text())["Resources"]) == {"DeployRole"}  # no role nobody uses

    assert main(["onboarding-template", "acme-health", "--stacksets", "--output", str(out)]) == 0
    template = json.loads(out.read_text())
    assert not [m for m in lint_file(out) if m.rule.id.startswith("E")]
    execution = template["Resources"]["StackSetsExecutionRole"]["Properties"]
    assert execution["RoleName"] == EXECUTION_ROLE_NAME
    # The deploy role's permissions, nothing more.
    deploy = template["Resources"]["DeployRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    assert execution["Policies"][0]["PolicyDocument"]["Statement"] == deploy["Statement"]
    trust = execution["AssumeRolePolicyDocument"]
    target = f"arn:aws:iam::{ACME}:role/{EXECUTION_ROLE_NAME}"

    def assume(caller: str) -> str:
        req = Request("sts:AssumeRole", target, principal_arn=caller, context={"aws:PrincipalArn": caller})
        admin = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        return evaluate(req, identity=[admin], resource_policy=trust, resource_account=ACME)

    assert assume("arn:aws:iam::123456789012:role/vend-stacksets-admin") == "Allow"
    assert assume(AUTOMATION) == "ImplicitDeny"
    assert assume("arn:aws:iam::999999999999:role/vend-stacksets-admin") == "ImplicitDeny"
    # Neither role can change the other (or itself).
    refs = {"AWS::Partition": "aws", "AWS::AccountId": ACME, "AWS::Region": "us-east-1"}
    policies = [resolve(execution["Policies"][0]["PolicyDocument"], refs)]
    for name in (EXECUTION_ROLE_NAME, "VendDeploy"):
        arn = f"arn:aws:iam::{ACME}:role/{name}"
        assert _decide(policies, "iam:PutRolePolicy", arn, role_arn=target) != "Allow", name
        assert _decide(policies, "iam:UpdateAssumeRolePolicy", arn, role_arn=target) != "Allow", name
