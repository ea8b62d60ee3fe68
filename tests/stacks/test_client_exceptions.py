"""Client stacks honour exceptions: a waived control's resources are left out, the rest stay.

tag-rules waived in one region, cloudtrail waived (global), config-rules waived in the other
region: the CDK app builds (no crash on an empty rule list) and only those resources go.
"""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Template

from baseline.portfolio import Portfolio, load_portfolio
from baseline.tagging import RequiredTags
from stacks.portfolio import build_app

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
FLAGS = json.loads((REPO / "cdk.json").read_text())["context"]

EXCEPTIONS = """exceptions:
  - control: tag-rules
    regions: [us-west-2]
    reason: the client's SCPs enforce tags there (SEC-9)
    approver: security-lead@msp.example
    expires: 2026-12-31
  - control: cloudtrail
    reason: the client's organization trail covers this account (SEC-10)
    approver: security-lead@msp.example
    expires: 2026-12-31
"""


@pytest.fixture(scope="module")
def portfolio(tmp_path_factory: pytest.TempPathFactory) -> Portfolio:
    dest = tmp_path_factory.mktemp("overrides")
    shutil.copy(FIXTURES / "good" / "acme-health.yaml", dest)
    with (dest / "acme-health.yaml").open("a") as f:
        f.write(EXCEPTIONS)
    p, problems = load_portfolio(dest, today=date(2026, 6, 1))
    assert p is not None and problems == [], problems
    return p


@pytest.fixture(scope="module")
def templates(portfolio: Portfolio, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Template]:
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk")), context=FLAGS, analytics_reporting=False)
    build_app(app, portfolio)
    return {s.stack_name: Template.from_stack(s) for s in app.node.children if isinstance(s, cdk.Stack)}


def _rule_names(t: Template) -> set[str]:
    return {r["Properties"]["ConfigRuleName"] for r in t.find_resources("AWS::Config::ConfigRule").values()}


def test_waived_tag_rules_are_left_out_only_where_waived(templates: dict[str, Template]) -> None:
    west = _rule_names(templates["vend-acme-health-us-west-2"])
    east = _rule_names(templates["vend-acme-health-us-east-1"])
    assert not {n for n in west if n.startswith("vend-required-tags")}
    assert "vend-encrypted-volumes" in west  # the other Config rules stay
    assert "vend-required-tags" in east
    # the rest of the regional baseline is untouched
    templates["vend-acme-health-us-west-2"].resource_count_is("AWS::Config::ConfigurationRecorder", 1)
    templates["vend-acme-health-us-west-2"].resource_count_is("AWS::GuardDuty::Detector", 1)


def test_waived_cloudtrail_leaves_out_the_trail_and_its_log_group(templates: dict[str, Template]) -> None:
    t = templates["vend-acme-health-global"]
    t.resource_count_is("AWS::CloudTrail::Trail", 0)
    t.resource_count_is("AWS::Logs::LogGroup", 0)  # hipaa's CloudWatch Logs delivery goes with the trail
    t.resource_count_is("AWS::Budgets::Budget", 1)
    t.resource_count_is("AWS::IAM::ManagedPolicy", 1)  # the boundary is never waivable
    # the stack policy protects only resources the stack has (no trail it does not have)
    template = t.to_json()
    protected = [
        rid.removeprefix("LogicalResourceId/")
        for statement in template["Metadata"]["vend:StackPolicy"]["Statement"]
        if statement["Effect"] == "Deny"
        for rid in statement["Resource"]
    ]
    assert protected and set(protected) <= set(template["Resources"])


def test_required_tags_refuses_an_empty_rule_list() -> None:
    stack = cdk.Stack(cdk.App())
    with pytest.raises(ValueError, match="RequiredTags needs at least one rule spec"):
        RequiredTags(stack, "TagRule", specs=[], recorder=cdk.CfnResource(stack, "R", type="AWS::Test::R"))
