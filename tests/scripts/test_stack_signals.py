"""The template (OUTDATED) and CloudFormation drift-detection signals, without AWS.

CloudFormation drift detection does not exist in the emulator, so its real-AWS path is
tested here against botocore's Stubber with the API's documented response shapes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from baseline.portfolio import load_portfolio
from baseline.spec import ClientBaseline, client_baseline
from scripts.aws import AwsAccess
from scripts.drift import CONTROLS_GLOBAL, Finding
from scripts.remediate import _Manual, resolve
from scripts.stack_signals import (
    CFN_DRIFT,
    TEMPLATE,
    StackSignals,
    apply,
    cfn_drift_signal,
    drift_detection_unsupported,
    really_differs,
    template_signal,
)

REPO = Path(__file__).resolve().parents[2]
STACK = "vend-brightmart-global"


@pytest.fixture(scope="module")
def baseline() -> ClientBaseline:
    portfolio, problems = load_portfolio(REPO / "overrides")
    assert portfolio is not None, problems
    return client_baseline(portfolio.client("brightmart"), portfolio.defaults)


def _template(baseline: ClientBaseline, limit: float = 800) -> dict[str, Any]:
    return {
        "Description": "vend baseline (global) for Brightmart Retail",
        "Resources": {
            "Trail": {
                "Type": "AWS::CloudTrail::Trail",
                "Properties": {"TrailName": "vend-baseline", "IsLogging": True},
            },
            "MspRole": {"Type": "AWS::IAM::Role", "Properties": {"RoleName": baseline.msp_role.role_name}},
            "Budget": {
                "Type": "AWS::Budgets::Budget",
                "Properties": {"Budget": {"BudgetLimit": {"Amount": limit, "Unit": "USD"}}},
            },
            "Boundary": {
                "Type": "AWS::IAM::ManagedPolicy",
                "Properties": {"ManagedPolicyName": baseline.boundary.name},
            },
        },
    }


def _cfn() -> Any:
    return boto3.client("cloudformation", region_name="eu-west-1", aws_access_key_id="x", aws_secret_access_key="x")


# --- normalization of CloudFormation's false positives --------------------------------------


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        ({"PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}},
         {"PolicyDocument": '{"Statement":[{"Sid":"1","Effect":"Allow","Action":["s3:GetObject"],"Resource":"*"}]}'}),
        ({"Enable": True, "Limit": 5000}, {"Enable": "true", "Limit": "5000.0"}),
        ({"Actions": ["b", "a", "c"]}, {"Actions": ["c", "b", "a"]}),
        ({"Name": "x"}, {"Name": "x", "Arn": "arn:aws:...:x"}),  # undeclared properties are not compared
    ],
)  # fmt: skip
def test_known_false_positives_are_normalized(expected: Any, actual: Any) -> None:
    assert not really_differs(expected, actual)


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        ({"IsLogging": True}, {"IsLogging": False}),
        ({"PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "s3:GetObject"}]}},
         {"PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "s3:*"}]}}),
        ({"Actions": ["a", "b"]}, {"Actions": ["a"]}),
    ],
)  # fmt: skip
def test_real_differences_stay(expected: Any, actual: Any) -> None:
    assert really_differs(expected, actual)


# --- CloudFormation drift detection (real-AWS path) ------------------------------------------


def _drift(lid: str, rtype: str, status: str, expected: Any = None, actual: Any = None) -> dict[str, Any]:
    d: dict[str, Any] = {
        "StackId": f"arn:aws:cloudformation:eu-west-1:444455556666:stack/{STACK}/1",
        "LogicalResourceId": lid,
        "ResourceType": rtype,
        "StackResourceDriftStatus": status,
        "Timestamp": "2026-01-01T00:00:00Z",
    }
    if expected is not None:
        d["ExpectedProperties"] = json.dumps(expected)
        d["ActualProperties"] = json.dumps(actual)
        d["PropertyDifferences"] = [
            {
                "PropertyPath": f"/{k}",
                "ExpectedValue": str(v),
                "ActualValue": str(actual.get(k)),
                "DifferenceType": "NOT_EQUAL",
            }
            for k, v in expected.items()
            if actual.get(k) != v
        ]
    return d


def test_cloudformation_drift_detection_maps_results_onto_controls(baseline: ClientBaseline) -> None:
    cfn = _cfn()
    stub = Stubber(cfn)
    stub.add_response("detect_stack_drift", {"StackDriftDetectionId": "d-1"}, {"StackName": STACK})
    stub.add_response(
        "describe_stack_drift_detection_status",
        {
            "StackId": "s",
            "StackDriftDetectionId": "d-1",
            "DetectionStatus": "DETECTION_COMPLETE",
            "Timestamp": "2026-01-01T00:00:00Z",
        },
        {"StackDriftDetectionId": "d-1"},
    )
    drifts = [
        _drift("Trail", "AWS::CloudTrail::Trail", "MODIFIED", {"IsLogging": True}, {"IsLogging": False}),
        # The role's trust policy comes back as text with an AWS-assigned Sid: not drift.
        _drift(
            "MspRole",
            "AWS::IAM::Role",
            "MODIFIED",
            {"AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole"}]}},
            {"AssumeRolePolicyDocument": '{"Statement":[{"Sid":"1","Effect":"Allow","Action":["sts:AssumeRole"]}]}'},
        ),
        _drift("Boundary", "AWS::IAM::ManagedPolicy", "DELETED"),
        _drift("Budget", "AWS::Budgets::Budget", "NOT_CHECKED"),
    ]
    stub.add_response("describe_stack_resource_drifts", {"StackResourceDrifts": drifts}, {"StackName": STACK})
    stub.add_response(
        "get_template",
        {"TemplateBody": json.dumps(_template(baseline))},
        {"StackName": STACK, "TemplateStage": "Original"},
    )
    sig = StackSignals(STACK, "global")
    with stub:
        cfn_drift_signal(cfn, STACK, baseline, sig)
    assert sig.cfn["cloudtrail"].startswith("DRIFTED: CloudFormation drift detection: Trail modified (/IsLogging)")
    assert sig.cfn["permission-boundary"] == "DRIFTED: CloudFormation drift detection: Boundary deleted"
    assert sig.cfn["budget"].startswith("NOT_CHECKED: CloudFormation cannot detect drift of Budget")
    assert "msp-role" not in sig.cfn  # the false positive was normalized away
    assert sig.cfn_default == "IN_SYNC (1 false positive(s) normalized)"
    assert sig.cfn_evidence["cloudtrail"] == ({"IsLogging": True}, {"IsLogging": False})


def test_an_unsupported_endpoint_is_not_checked_with_the_reason(baseline: ClientBaseline) -> None:
    cfn = _cfn()
    stub = Stubber(cfn)
    stub.add_client_error("detect_stack_drift", "AccessDenied", "not authorized to perform DetectStackDrift")
    sig = StackSignals(STACK, "global")
    with stub:
        cfn_drift_signal(cfn, STACK, baseline, sig)
    assert sig.cfn_default == "NOT_CHECKED: AccessDenied: not authorized to perform DetectStackDrift"


def test_real_aws_is_not_mistaken_for_the_emulator(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    assert drift_detection_unsupported(AwsAccess()) is None


# --- the template signal ------------------------------------------------------------------------


def test_template_differences_make_only_the_changed_controls_outdated(baseline: ClientBaseline) -> None:
    cfn = _cfn()
    stub = Stubber(cfn)
    deployed = _template(baseline, limit=800)
    stub.add_response(
        "get_template", {"TemplateBody": json.dumps(deployed)}, {"StackName": STACK, "TemplateStage": "Original"}
    )
    synthesized = _template(baseline, limit=950)
    synthesized["Resources"]["PasswordPolicy"] = {"Type": "AWS::IAM::AccountPasswordPolicy", "Properties": {}}
    sig = StackSignals(STACK, "global")
    with stub:
        template_signal(cfn, STACK, synthesized, baseline, sig)
    assert sig.template["budget"] == f"OUTDATED: deployed template of {STACK} differs: Budget changed"
    assert sig.template["stack"].endswith("PasswordPolicy added")  # no control knows this type: the stack's
    assert set(sig.template) == {"budget", "stack"}
    assert sig.for_control("cloudtrail")[TEMPLATE] == "IN_SYNC"


def test_a_stack_that_is_not_deployed_is_not_checked(baseline: ClientBaseline) -> None:
    cfn = _cfn()
    stub = Stubber(cfn)
    stub.add_client_error("get_template", "ValidationError", f"Stack with id {STACK} does not exist")
    # Nor through StackSets: no stack set instance of this client in the region.
    other = {"StackName": "StackSet-vend-global-0123456789abcdef-1", "StackStatus": "CREATE_COMPLETE"}
    other |= {"Parameters": [{"ParameterKey": "Client", "ParameterValue": "someone-else"}]}
    stub.add_response("describe_stacks", {"Stacks": [{**other, "CreationTime": "2026-01-01T00:00:00Z"}]})
    sig = StackSignals(STACK, "global")
    with stub:
        template_signal(cfn, STACK, _template(baseline), baseline, sig)
    assert sig.template_default == f"NOT_CHECKED: stack {STACK} is not deployed"


def test_signals_decide_the_status_and_nothing_unchecked_looks_in_sync() -> None:
    sig = StackSignals(STACK, "global")
    sig.template["budget"] = "OUTDATED: deployed template of vend-brightmart-global differs: Budget changed"
    sig.cfn["cloudtrail"] = "DRIFTED: CloudFormation drift detection: Trail modified (/IsLogging)"
    sig.cfn_evidence["cloudtrail"] = ({"IsLogging": True}, {"IsLogging": False})
    sig.cfn_default = "NOT_CHECKED: AccessDenied"
    findings = [
        Finding(
            "brightmart",
            "444455556666",
            "global",
            "budget",
            "DRIFTED",
            {"limit_usd": 950.0},
            {"limit_usd": 800.0},
            "budget",
        ),
        Finding("brightmart", "444455556666", "global", "cloudtrail", "IN_SYNC", detail="trail"),
        Finding("brightmart", "444455556666", "global", "msp-role", "IN_SYNC", detail="role"),
    ]
    out, extra = apply(findings, {"global": sig}, CONTROLS_GLOBAL)
    by = {f.control: f for f in out}
    assert by["budget"].status == "OUTDATED" and "live check: DRIFTED" in by["budget"].detail
    assert by["budget"].fix.startswith("run `vend deploy brightmart`")
    assert by["cloudtrail"].status == "DRIFTED" and by["cloudtrail"].actual == {"IsLogging": False}
    assert by["msp-role"].status == "IN_SYNC"
    assert by["msp-role"].signals == {TEMPLATE: "IN_SYNC", CFN_DRIFT: "NOT_CHECKED: AccessDenied"}
    assert extra == []


# --- remediation reads template properties ---------------------------------------------------------


def test_resolve_pseudo_parameters_and_refuse_the_rest() -> None:
    doc = {"Arn": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/x"}, "R": {"Ref": "AWS::Region"}}
    assert resolve(doc, "111122223333", "eu-west-1") == {"Arn": "arn:aws:iam::111122223333:policy/x", "R": "eu-west-1"}
    assert resolve({"Fn::Join": ["-", ["a", {"Ref": "AWS::AccountId"}]]}, "1", "cn-north-1") == "a-1"
    with pytest.raises(_Manual):
        resolve({"Ref": "SomeBucket"}, "1", "us-east-1")
