"""Each guardrail, evaluated: the permission boundary, the MSP role's trust, and the
central bucket and key policies decide real requests (see tests/iam_eval.py), not strings.

The role under test gets its deployed policies (SecurityAudit and ViewOnlyAccess from
moto's copy of the AWS managed policies, the operations policy from the template) and, to
show the boundary holds on its own, also an ``Allow *`` as if someone had attached
AdministratorAccess.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template
from moto.iam.aws_managed_policies import aws_managed_policies_data

from baseline.portfolio import Portfolio, load_portfolio
from stacks.portfolio import build_app
from tests.iam_eval import Request, evaluate, resolve

REPO = Path(__file__).resolve().parents[2]
FLAGS = json.loads((REPO / "cdk.json").read_text())["context"]
MSP = "123456789012"
ACME = "111122223333"  # managed, hipaa, us-east-1
BRIGHT = "444455556666"  # monitoring, eu-west-1
ADMIN = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
MANAGED = json.loads(aws_managed_policies_data)


@pytest.fixture(scope="module")
def portfolio() -> Portfolio:
    p, problems = load_portfolio(REPO / "overrides")
    assert p is not None, problems
    return p


@pytest.fixture(scope="module")
def templates(portfolio: Portfolio, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk")), context=FLAGS, analytics_reporting=False)
    build_app(app, portfolio, only_client=["acme-health", "brightmart"])
    return {s.stack_name: Template.from_stack(s).to_json() for s in app.node.children if isinstance(s, cdk.Stack)}


def _resolved(template: dict[str, Any], account: str, region: str) -> dict[str, Any]:
    refs = {"AWS::Partition": "aws", "AWS::AccountId": account, "AWS::Region": region}
    refs |= {logical_id: logical_id for logical_id in template["Resources"]}
    return resolve(template["Resources"], refs, _Attrs())  # type: ignore[no-any-return]


class _Attrs(dict):  # type: ignore[type-arg]
    """Any Fn::GetAtt resolves to a placeholder: the guardrails never depend on one."""

    def __getitem__(self, key: tuple[str, str]) -> str:
        return f"<{key[0]}.{key[1]}>"


def _role(resources: dict[str, Any], name: str) -> dict[str, Any]:
    (role,) = [r for r in resources.values() if r["Type"] == "AWS::IAM::Role" and r["Properties"]["RoleName"] == name]
    return role["Properties"]  # type: ignore[no-any-return]


def _boundary(resources: dict[str, Any]) -> dict[str, Any]:
    (policy,) = [r for r in resources.values() if r["Type"] == "AWS::IAM::ManagedPolicy"]
    return policy["Properties"]["PolicyDocument"]  # type: ignore[no-any-return]


def _identity(role: dict[str, Any]) -> list[dict[str, Any]]:
    docs = [MANAGED[arn.rsplit("/", 1)[-1]]["Document"] for arn in role.get("ManagedPolicyArns", [])]
    return docs + [p["PolicyDocument"] for p in role.get("Policies", [])]


@pytest.fixture(scope="module")
def acme(templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return _resolved(templates["vend-acme-health-global"], ACME, "us-east-1")


@pytest.fixture(scope="module")
def bright(templates: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return _resolved(templates["vend-brightmart-global"], BRIGHT, "eu-west-1")


MSP_ROLE = f"arn:aws:iam::{ACME}:role/VendMspAccess"
BOUNDARY_ARN = f"arn:aws:iam::{ACME}:policy/vend-permission-boundary"

# (action, resource, context): what the boundary must deny even to an administrator.
DENIED = [
    ("iam:CreateUser", f"arn:aws:iam::{ACME}:user/backdoor", {}),
    ("iam:CreateAccessKey", f"arn:aws:iam::{ACME}:user/someone", {}),
    ("iam:CreateLoginProfile", f"arn:aws:iam::{ACME}:user/someone", {}),
    ("iam:CreateRole", f"arn:aws:iam::{ACME}:role/NoBoundary", {}),
    (
        "iam:CreateRole",
        f"arn:aws:iam::{ACME}:role/Other",
        {"iam:PermissionsBoundary": f"arn:aws:iam::{ACME}:policy/lax"},
    ),
    ("iam:AttachRolePolicy", f"arn:aws:iam::{ACME}:role/ClientAdmin", {}),
    ("iam:PutRolePolicy", f"arn:aws:iam::{ACME}:role/ClientAdmin", {}),
    ("iam:PutRolePermissionsBoundary", MSP_ROLE, {"iam:PermissionsBoundary": f"arn:aws:iam::{ACME}:policy/lax"}),
    ("iam:DeleteRolePermissionsBoundary", MSP_ROLE, {}),
    ("iam:CreatePolicyVersion", BOUNDARY_ARN, {}),
    ("iam:SetDefaultPolicyVersion", BOUNDARY_ARN, {}),
    ("iam:DeletePolicy", BOUNDARY_ARN, {}),
    ("iam:UpdateAssumeRolePolicy", MSP_ROLE, {}),
    ("iam:UpdateAssumeRolePolicy", f"arn:aws:iam::{ACME}:role/ClientAdmin", {}),
    ("iam:AttachRolePolicy", MSP_ROLE, {"iam:PermissionsBoundary": BOUNDARY_ARN}),
    ("iam:DeleteRole", f"arn:aws:iam::{ACME}:role/vend-config-recorder", {}),
    ("iam:PassRole", f"arn:aws:iam::{ACME}:role/ClientAdmin", {}),
    ("cloudtrail:StopLogging", f"arn:aws:cloudtrail:us-east-1:{ACME}:trail/vend-baseline", {}),
    ("cloudtrail:DeleteTrail", f"arn:aws:cloudtrail:us-east-1:{ACME}:trail/vend-baseline", {}),
    ("cloudtrail:PutEventSelectors", f"arn:aws:cloudtrail:us-east-1:{ACME}:trail/vend-baseline", {}),
    ("config:StopConfigurationRecorder", "*", {}),
    ("config:DeleteConfigurationRecorder", "*", {}),
    ("config:DeleteDeliveryChannel", "*", {}),
    ("config:DeleteConfigRule", "*", {}),
    ("guardduty:DeleteDetector", f"arn:aws:guardduty:us-west-2:{ACME}:detector/abc", {}),
    ("guardduty:UpdateDetector", f"arn:aws:guardduty:us-west-2:{ACME}:detector/abc", {}),
    ("guardduty:CreateFilter", f"arn:aws:guardduty:us-west-2:{ACME}:detector/abc", {}),
    ("logs:DeleteLogGroup", f"arn:aws:logs:us-east-1:{ACME}:log-group:vend-cloudtrail:*", {}),
    ("sns:DeleteTopic", f"arn:aws:sns:us-east-1:{ACME}:vend-alerts", {}),
    ("ce:DeleteAnomalyMonitor", f"arn:aws:ce::{ACME}:anomalymonitor/abc", {}),
    ("cloudformation:DeleteStack", f"arn:aws:cloudformation:us-east-1:{ACME}:stack/vend-acme-health-global/1", {}),
    (
        "cloudformation:SetStackPolicy",
        f"arn:aws:cloudformation:us-west-2:{ACME}:stack/vend-acme-health-us-west-2/1",
        {},
    ),
]


@pytest.mark.parametrize(
    ("action", "resource", "context"), DENIED, ids=[f"{a} {r.rsplit(':', 1)[-1]}" for a, r, _ in DENIED]
)
def test_boundary_denies_even_an_administrator(
    acme: dict[str, Any], action: str, resource: str, context: dict[str, str]
) -> None:
    req = Request(action, resource, principal_arn=MSP_ROLE, context=context)
    role = _role(acme, "VendMspAccess")
    assert evaluate(req, identity=[ADMIN, *_identity(role)], boundary=_boundary(acme)) == "ExplicitDeny"


ALLOWED_FOR_ADMIN = [
    # The boundary is a ceiling on the baseline, not on the client's own resources.
    ("iam:CreateRole", f"arn:aws:iam::{ACME}:role/Bounded", {"iam:PermissionsBoundary": BOUNDARY_ARN}),
    ("cloudtrail:StopLogging", f"arn:aws:cloudtrail:us-east-1:{ACME}:trail/client-own-trail", {}),
    ("sns:DeleteTopic", f"arn:aws:sns:us-east-1:{ACME}:client-topic", {}),
    ("cloudformation:DeleteStack", f"arn:aws:cloudformation:us-east-1:{ACME}:stack/client-app/1", {}),
]


@pytest.mark.parametrize(("action", "resource", "context"), ALLOWED_FOR_ADMIN, ids=[a for a, _, _ in ALLOWED_FOR_ADMIN])
def test_boundary_leaves_the_clients_own_resources_alone(
    acme: dict[str, Any], action: str, resource: str, context: dict[str, str]
) -> None:
    req = Request(action, resource, principal_arn=MSP_ROLE, context=context)
    assert evaluate(req, identity=[ADMIN], boundary=_boundary(acme)) == "Allow"


def test_engagements_grant_what_they_say(acme: dict[str, Any], bright: dict[str, Any]) -> None:
    managed, monitoring = _role(acme, "VendMspAccess"), _role(bright, "VendMspAccess")
    start = Request("ec2:StartInstances", f"arn:aws:ec2:us-east-1:{ACME}:instance/i-1", principal_arn=MSP_ROLE)
    describe = Request("ec2:DescribeInstances", "*", principal_arn=MSP_ROLE)
    terminate = Request("ec2:TerminateInstances", f"arn:aws:ec2:us-east-1:{ACME}:instance/i-1", principal_arn=MSP_ROLE)
    create_user = Request("iam:CreateUser", f"arn:aws:iam::{ACME}:user/x", principal_arn=MSP_ROLE)
    for role, resources, can_start in ((managed, acme, True), (monitoring, bright, False)):
        kwargs = {"identity": _identity(role), "boundary": _boundary(resources)}
        assert evaluate(describe, **kwargs) == "Allow"  # type: ignore[arg-type]
        assert (evaluate(start, **kwargs) == "Allow") is can_start  # type: ignore[arg-type]
        assert evaluate(terminate, **kwargs) != "Allow"  # type: ignore[arg-type]
        assert evaluate(create_user, **kwargs) != "Allow"  # type: ignore[arg-type]


INSTANCE = f"arn:aws:ec2:us-east-1:{ACME}:instance/i-0abc"
PATCH_DOC = "arn:aws:ssm:us-east-1::document/AWS-RunPatchBaseline"
SHELL_DOC = "arn:aws:ssm:us-east-1::document/AWS-RunShellScript"
TAGGED = {"aws:ResourceTag/vend:managed": "true", "ssm:resourceTag/vend:managed": "true"}


def test_managed_operations_reach_hosts_only_to_patch_tagged_instances(acme: dict[str, Any]) -> None:
    """A command or a shell on an instance acts with the instance profile's credentials, which
    no boundary of the MSP role limits: only the AWS patch document, only on instances the
    client tagged vend:managed=true, and no Session Manager shell at all."""
    kwargs = {"identity": _identity(_role(acme, "VendMspAccess")), "boundary": _boundary(acme)}

    def decide(action: str, resource: str, **context: Any) -> str:
        return evaluate(Request(action, resource, principal_arn=MSP_ROLE, context=context), **kwargs)  # type: ignore[arg-type]

    # SendCommand is authorized per resource: the document and every target instance.
    assert decide("ssm:SendCommand", PATCH_DOC) == "Allow"
    assert decide("ssm:SendCommand", INSTANCE, **TAGGED) == "Allow"
    assert decide("ssm:SendCommand", INSTANCE, **{"aws:ResourceTag/vend:managed": "true"}) == "Allow"
    assert decide("ssm:SendCommand", INSTANCE) != "Allow"  # untagged
    assert decide("ssm:SendCommand", INSTANCE, **{"aws:ResourceTag/vend:managed": "false"}) != "Allow"
    assert decide("ssm:SendCommand", SHELL_DOC) != "Allow"  # arbitrary commands as root
    assert decide("ssm:SendCommand", f"arn:aws:ssm:us-east-1:{ACME}:document/client-doc") != "Allow"
    assert decide("ssm:StartSession", INSTANCE, **TAGGED) != "Allow"
    assert decide("ssm:StartSession", f"arn:aws:ssm:us-east-1:{ACME}:document/SSM-SessionManagerRunShell") != "Allow"
    # The tag is the client's consent: the MSP role cannot set or remove it.
    for action in ("ec2:CreateTags", "ec2:DeleteTags"):
        assert decide(action, INSTANCE, **{"aws:TagKeys": ["vend:managed"]}) == "ExplicitDeny"
    assert decide("ec2:CreateTags", INSTANCE, **{"aws:TagKeys": ["Owner"]}) == "Allow"  # other tags: operations
    assert decide("ec2:CreateTags", INSTANCE, **{"aws:TagKeys": ["Owner", "vend:managed"]}) == "ExplicitDeny"


def test_monitoring_engagement_reaches_no_host(bright: dict[str, Any]) -> None:
    kwargs = {"identity": _identity(_role(bright, "VendMspAccess")), "boundary": _boundary(bright)}
    for action, resource in (("ssm:SendCommand", PATCH_DOC), ("ssm:StartSession", INSTANCE)):
        req = Request(action, resource, principal_arn=MSP_ROLE, context=TAGGED)
        assert evaluate(req, **kwargs) != "Allow"  # type: ignore[arg-type]


def test_config_role_cannot_escalate_either(acme: dict[str, Any]) -> None:
    role = _role(acme, "vend-config-recorder")
    boundary = _boundary(acme)
    req = Request("iam:CreateAccessKey", "*", principal_arn=f"arn:aws:iam::{ACME}:role/vend-config-recorder")
    assert evaluate(req, identity=[ADMIN, *_identity(role)], boundary=boundary) == "ExplicitDeny"
    assert role["PermissionsBoundary"] == BOUNDARY_ARN


# --- the MSP role's trust ----------------------------------------------------------------

ENGINEER = f"arn:aws:iam::{MSP}:role/aws-reserved/sso.amazonaws.com/eu-west-1/AWSReservedSSO_MSPEngineer_0a1b2c"
AUTOMATION = f"arn:aws:iam::{MSP}:role/VendAutomation"


def _assume(trust: dict[str, Any], caller: str, **context: str) -> str:
    req = Request("sts:AssumeRole", MSP_ROLE, principal_arn=caller, context=context)
    return evaluate(req, identity=[ADMIN], resource_policy=trust, resource_account=ACME)


def test_trust_needs_an_msp_principal_the_external_id_and_a_source_identity(acme: dict[str, Any]) -> None:
    trust = _role(acme, "VendMspAccess")["AssumeRolePolicyDocument"]
    ok = {"sts:ExternalId": "acme-health-4b1d9e", "sts:SourceIdentity": "alice@msp.example"}
    for caller in (ENGINEER, AUTOMATION):
        assert _assume(trust, caller, **{"aws:PrincipalArn": caller, **ok}) == "Allow"
        # sts:SetSourceIdentity is allowed too: the engineer's name passes through the hop.
        set_si = Request(
            "sts:SetSourceIdentity", MSP_ROLE, principal_arn=caller, context={"aws:PrincipalArn": caller, **ok}
        )
        assert evaluate(set_si, identity=[ADMIN], resource_policy=trust, resource_account=ACME) == "Allow"
    no_name = {"sts:ExternalId": "acme-health-4b1d9e"}
    assert _assume(trust, ENGINEER, **{"aws:PrincipalArn": ENGINEER, **no_name}) == "ImplicitDeny"
    wrong_id = {**ok, "sts:ExternalId": "brightmart-9c27aa"}
    assert _assume(trust, ENGINEER, **{"aws:PrincipalArn": ENGINEER, **wrong_id}) == "ImplicitDeny"
    intern = f"arn:aws:iam::{MSP}:role/SomeOtherRole"
    assert _assume(trust, intern, **{"aws:PrincipalArn": intern, **ok}) == "ImplicitDeny"
    stranger = "arn:aws:iam::999999999999:role/VendAutomation"
    assert _assume(trust, stranger, **{"aws:PrincipalArn": stranger, **ok}) == "ImplicitDeny"


def test_session_is_bounded(acme: dict[str, Any]) -> None:
    assert _role(acme, "VendMspAccess")["MaxSessionDuration"] == 3600
