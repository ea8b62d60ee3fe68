"""The onboarding template: valid CloudFormation, trusting only the MSP's deployment
principals with the client's ExternalId, and unable to mint an unbounded role."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cfnlint.api import lint_file

from baseline.portfolio import Portfolio, load_portfolio
from scripts.cli import main
from scripts.onboarding import onboarding_template
from tests.iam_eval import Request, evaluate, resolve

REPO = Path(__file__).resolve().parents[2]
ACME = "111122223333"
AUTOMATION = "arn:aws:iam::123456789012:role/VendAutomation"
ROLE = f"arn:aws:iam::{ACME}:role/VendDeploy"


@pytest.fixture(scope="module")
def portfolio() -> Portfolio:
    p, problems = load_portfolio(REPO / "overrides")
    assert p is not None, problems
    return p


@pytest.fixture(scope="module")
def role(portfolio: Portfolio) -> dict:
    template = onboarding_template(portfolio.client("acme-health"), portfolio.defaults)
    refs = {"AWS::Partition": "aws", "AWS::AccountId": ACME, "AWS::Region": "us-east-1"}
    return resolve(template["Resources"]["DeployRole"]["Properties"], refs)  # type: ignore[no-any-return]


def test_cli_writes_a_template_cfn_lint_accepts(tmp_path: Path) -> None:
    out = tmp_path / "onboarding.json"
    assert main(["onboarding-template", "acme-health", "--output", str(out)]) == 0
    template = json.loads(out.read_text())
    assert template["Resources"]["DeployRole"]["Properties"]["RoleName"] == "VendDeploy"
    errors = [m for m in lint_file(out) if m.rule.id.startswith("E")]
    assert not errors, errors
    assert main(["onboarding-template", "no-such-client"]) == 2


def test_only_the_msp_deployment_principal_with_the_external_id(role: dict) -> None:
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


def test_deploy_role_creates_only_bounded_baseline_roles(role: dict) -> None:
    policies = [p["PolicyDocument"] for p in role["Policies"]]
    boundary = f"arn:aws:iam::{ACME}:policy/vend-permission-boundary"

    def can(action: str, resource: str, **ctx: str) -> bool:
        return evaluate(Request(action, resource, principal_arn=ROLE, context=ctx), identity=policies) == "Allow"

    assert can("iam:CreateRole", f"arn:aws:iam::{ACME}:role/VendMspAccess", **{"iam:PermissionsBoundary": boundary})
    assert not can("iam:CreateRole", f"arn:aws:iam::{ACME}:role/VendMspAccess")
    assert not can("iam:CreateRole", f"arn:aws:iam::{ACME}:role/Anything", **{"iam:PermissionsBoundary": boundary})
    assert not can("iam:AttachRolePolicy", f"arn:aws:iam::{ACME}:role/ClientAdmin")
    assert not can("iam:CreateUser", f"arn:aws:iam::{ACME}:user/x")
    assert can(
        "cloudformation:CreateChangeSet", f"arn:aws:cloudformation:us-east-1:{ACME}:stack/vend-acme-health-global/1"
    )
    assert not can("cloudformation:DeleteStack", f"arn:aws:cloudformation:us-east-1:{ACME}:stack/client-app/1")
    assert can("cloudtrail:StopLogging", f"arn:aws:cloudtrail:us-east-1:{ACME}:trail/vend-baseline")
    assert not can("cloudtrail:StopLogging", f"arn:aws:cloudtrail:us-east-1:{ACME}:trail/client-trail")
    assert not can("s3:GetObject", "arn:aws:s3:::client-data/x")
