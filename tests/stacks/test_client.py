"""Client stacks: each control's resources, compliant and never non-compliant."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from baseline.portfolio import Portfolio, load_portfolio
from stacks.portfolio import build_app

REPO = Path(__file__).resolve().parents[2]
FLAGS = json.loads((REPO / "cdk.json").read_text())["context"]


@pytest.fixture(scope="module")
def portfolio() -> Portfolio:
    p, problems = load_portfolio(REPO / "overrides")
    assert p is not None, problems
    return p


@pytest.fixture(scope="module")
def stacks(portfolio: Portfolio, tmp_path_factory: pytest.TempPathFactory) -> dict[str, cdk.Stack]:
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk")), context=FLAGS, analytics_reporting=False)
    build_app(app, portfolio)
    return {s.stack_name: s for s in app.node.children if isinstance(s, cdk.Stack)}


@pytest.fixture(scope="module")
def templates(stacks: dict[str, cdk.Stack]) -> dict[str, Template]:
    return {name: Template.from_stack(s) for name, s in stacks.items()}


def test_every_client_and_region_gets_its_stacks(templates: dict[str, Template], portfolio: Portfolio) -> None:
    expected = {"vend-msp-log-archive", "vend-msp-stacksets-admin"}
    for c in portfolio.clients:
        expected |= {f"vend-{c.client}-global"} | {f"vend-{c.client}-{r}" for r in c.regions}
    assert set(templates) == expected


def test_trail_is_multi_region_validated_encrypted_and_central(templates: dict[str, Template]) -> None:
    t = templates["vend-acme-health-global"]
    t.resource_count_is("AWS::CloudTrail::Trail", 1)
    t.has_resource_properties(
        "AWS::CloudTrail::Trail",
        {
            "IsLogging": True,
            "IsMultiRegionTrail": True,
            "EnableLogFileValidation": True,
            "IncludeGlobalServiceEvents": True,
            "S3BucketName": "vend-logs-210987654321-us-east-1",
            "KMSKeyId": "arn:aws:kms:us-east-1:210987654321:alias/vend-central-logs",
            "EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": True}],
        },
    )
    # Regional stacks never carry a second trail.
    templates["vend-acme-health-us-west-2"].resource_count_is("AWS::CloudTrail::Trail", 0)


def test_recorder_records_global_types_only_in_home_region(templates: dict[str, Template]) -> None:
    home = templates["vend-ledgerly-us-east-2"]
    other = templates["vend-ledgerly-eu-central-1"]
    for t, global_types in ((home, True), (other, False)):
        t.resource_count_is("AWS::Config::ConfigurationRecorder", 1)
        t.has_resource_properties(
            "AWS::Config::ConfigurationRecorder",
            {"RecordingGroup": {"AllSupported": True, "IncludeGlobalResourceTypes": global_types}},
        )
        t.has_resource_properties("AWS::Config::DeliveryChannel", {"S3BucketName": "vend-logs-210987654321-us-east-1"})


def test_rules_standard_set_profiles_and_home_only_rules(templates: dict[str, Template]) -> None:
    def names(t: Template) -> set[str]:
        return {r["Properties"]["ConfigRuleName"] for r in t.find_resources("AWS::Config::ConfigRule").values()}

    acme_home = names(templates["vend-acme-health-us-east-1"])
    acme_other = names(templates["vend-acme-health-us-west-2"])
    brightmart = names(templates["vend-brightmart-eu-west-1"])
    assert {"vend-cloudtrail-enabled", "vend-guardduty-enabled-centralized", "vend-required-tags"} <= acme_home
    assert "vend-s3-bucket-ssl-requests-only" in acme_home  # hipaa pack
    assert "vend-s3-bucket-ssl-requests-only" not in brightmart  # no profile
    assert "vend-root-account-mfa-enabled" in acme_home and "vend-root-account-mfa-enabled" not in acme_other
    assert all(len(n) <= 128 for n in acme_home | acme_other | brightmart)


def test_required_tags_rule_carries_the_client_keys(templates: dict[str, Template]) -> None:
    templates["vend-acme-health-us-west-2"].has_resource_properties(
        "AWS::Config::ConfigRule",
        {
            "ConfigRuleName": "vend-required-tags",
            "Source": {"Owner": "AWS", "SourceIdentifier": "REQUIRED_TAGS"},
            "InputParameters": {
                "tag1Key": "Owner",
                "tag2Key": "CostCenter",
                "tag3Key": "Environment",
                "tag4Key": "DataClassification",
            },
        },
    )


def test_detector_enabled_in_every_region_with_client_frequency(templates: dict[str, Template]) -> None:
    for region in ("us-east-1", "us-west-2"):
        templates[f"vend-acme-health-{region}"].has_resource_properties(
            "AWS::GuardDuty::Detector", {"Enable": True, "FindingPublishingFrequency": "FIFTEEN_MINUTES"}
        )
    templates["vend-brightmart-eu-west-1"].has_resource_properties(
        "AWS::GuardDuty::Detector", {"Enable": True, "FindingPublishingFrequency": "SIX_HOURS"}
    )


def test_msp_role_trusts_only_msp_principals_with_external_id(templates: dict[str, Template]) -> None:
    t = templates["vend-brightmart-global"]
    t.has_resource_properties(
        "AWS::IAM::Role",
        {
            "RoleName": "VendMspAccess",
            "MaxSessionDuration": 3600,
            "PermissionsBoundary": Match.any_value(),
            "AssumeRolePolicyDocument": {
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"AWS": "arn:aws:iam::123456789012:root"},
                        "Action": ["sts:AssumeRole", "sts:SetSourceIdentity"],
                        "Condition": {
                            "StringEquals": {"sts:ExternalId": "brightmart-9c27aa"},
                            "ArnLike": {
                                "aws:PrincipalArn": Match.array_with(["arn:aws:iam::123456789012:role/VendAutomation"])
                            },
                            # Every session names the MSP engineer in the client's CloudTrail.
                            "StringLike": {"sts:SourceIdentity": "?*"},
                        },
                    }
                ]
            },
        },
    )


def _as_list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def test_engagement_sets_permissions_and_never_admin(templates: dict[str, Template]) -> None:
    monitoring = templates["vend-brightmart-global"].find_resources(
        "AWS::IAM::Role", {"Properties": {"RoleName": "VendMspAccess"}}
    )
    managed = templates["vend-ledgerly-global"].find_resources(
        "AWS::IAM::Role", {"Properties": {"RoleName": "VendMspAccess"}}
    )
    (mon,) = monitoring.values()
    (man,) = managed.values()
    assert set(mon["Properties"]["ManagedPolicyArns"]) == {
        "arn:aws:iam::aws:policy/SecurityAudit",
        "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess",
    }
    assert "Policies" not in mon["Properties"]  # monitoring: read-only, nothing else
    statements = man["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    actions = [a for st in statements if st["Effect"] == "Allow" for a in _as_list(st["Action"])]
    assert "ssm:SendCommand" in actions and "*" not in actions
    assert "ssm:StartSession" not in actions  # a shell on a host escapes the boundary (baseline/policies.py)
    for role in (mon, man):
        assert not any("AdministratorAccess" in arn for arn in role["Properties"]["ManagedPolicyArns"])
        assert not any(a.endswith(":*") for a in actions)


def test_every_baseline_role_has_the_boundary(templates: dict[str, Template]) -> None:
    for name, t in templates.items():
        if name.startswith("vend-msp-"):
            continue  # the MSP's own accounts: see test_stacksets_admin_role_can_only_reach_execution_roles
        for logical_id, role in t.find_resources("AWS::IAM::Role").items():
            assert "PermissionsBoundary" in role["Properties"], f"{name}/{logical_id} has no boundary"


def test_boundary_denies_escalation_and_tampering(templates: dict[str, Template]) -> None:
    (policy,) = templates["vend-acme-health-global"].find_resources("AWS::IAM::ManagedPolicy").values()
    statements = {s["Sid"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    denied = {a for s in statements.values() if s["Effect"] == "Deny" for a in s["Action"]}
    assert {"iam:CreateUser", "iam:CreateAccessKey", "iam:DeleteRolePermissionsBoundary"} <= denied
    assert {"cloudtrail:StopLogging", "config:StopConfigurationRecorder", "guardduty:DeleteDetector"} <= denied
    assert "iam:PermissionsBoundary" in json.dumps(statements["DenyRoleChangesWithoutThisBoundary"]["Condition"])


def test_budget_actual_and_forecast_thresholds_go_to_the_encrypted_topic(templates: dict[str, Template]) -> None:
    t = templates["vend-acme-health-global"]
    (budget,) = t.find_resources("AWS::Budgets::Budget").values()
    props = budget["Properties"]
    assert props["Budget"]["BudgetLimit"] == {"Amount": 5000, "Unit": "USD"}
    assert props["Budget"]["TimeUnit"] == "MONTHLY"
    assert props["Budget"]["BudgetName"].startswith("vend-acme-health-monthly-")
    notes = sorted(
        (n["Notification"]["NotificationType"], n["Notification"]["Threshold"])
        for n in props["NotificationsWithSubscribers"]
    )
    assert notes == [("ACTUAL", 50), ("ACTUAL", 80), ("ACTUAL", 100), ("FORECASTED", 100)]
    (topic_id,) = t.find_resources("AWS::SNS::Topic")
    for n in props["NotificationsWithSubscribers"]:
        assert n["Subscribers"] == [{"SubscriptionType": "SNS", "Address": {"Ref": topic_id}}]
    # Recipients are the topic's subscriptions: changing them never replaces the budget.
    t.has_resource_properties(
        "AWS::SNS::Topic",
        {
            "TopicName": "vend-alerts",
            "KmsMasterKeyId": {"Fn::GetAtt": [Match.any_value(), "Arn"]},
            "Subscription": [
                {"Protocol": "email", "Endpoint": "cloud-ops@acme.example"},
                {"Protocol": "email", "Endpoint": "finops@msp.example"},
            ],
        },
    )
    (policy,) = t.find_resources("AWS::SNS::TopicPolicy").values()
    publish = policy["Properties"]["PolicyDocument"]["Statement"][0]
    assert publish["Principal"] == {"Service": ["budgets.amazonaws.com", "costalerts.amazonaws.com"]}
    assert publish["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}


def test_budget_name_ignores_recipients(portfolio: Portfolio) -> None:
    from baseline.spec import budget_name

    c = portfolio.client("acme-health")
    assert budget_name(c) == budget_name(c.model_copy(update={"budget_notify": ("someone@else.example",)}))
    assert budget_name(c) != budget_name(c.model_copy(update={"budget_thresholds_pct": (90,)}))


def test_cost_anomaly_detection_alerts_at_the_client_threshold(templates: dict[str, Template]) -> None:
    t = templates["vend-ledgerly-global"]
    t.has_resource_properties("AWS::CE::AnomalyMonitor", {"MonitorType": "DIMENSIONAL", "MonitorDimension": "SERVICE"})
    (sub,) = t.find_resources("AWS::CE::AnomalySubscription").values()
    props = sub["Properties"]
    assert props["Frequency"] == "IMMEDIATE"
    assert props["Subscribers"][0]["Type"] == "SNS"
    assert json.loads(props["ThresholdExpression"]) == {
        "Dimensions": {
            "Key": "ANOMALY_TOTAL_IMPACT_ABSOLUTE",
            "MatchOptions": ["GREATER_THAN_OR_EQUAL"],
            "Values": ["100"],
        }
    }


def test_trail_data_events_and_cloudwatch_logs_follow_the_profile(templates: dict[str, Template]) -> None:
    hipaa = templates["vend-acme-health-global"]
    hipaa.has_resource_properties(
        "AWS::CloudTrail::Trail",
        {
            "S3KeyPrefix": "retain-2190d",
            "EventSelectors": [
                {
                    "ReadWriteType": "All",
                    "IncludeManagementEvents": True,
                    "DataResources": [{"Type": "AWS::S3::Object", "Values": ["arn:aws:s3"]}],
                }
            ],
            "CloudWatchLogsLogGroupArn": {"Fn::GetAtt": [Match.any_value(), "Arn"]},
            "CloudWatchLogsRoleArn": {"Fn::GetAtt": [Match.any_value(), "Arn"]},
        },
    )
    hipaa.has_resource_properties(
        "AWS::Logs::LogGroup",
        {"LogGroupName": "vend-cloudtrail", "RetentionInDays": 365, "KmsKeyId": Match.any_value()},
    )
    plain = templates["vend-brightmart-global"]
    plain.resource_count_is("AWS::Logs::LogGroup", 0)
    (trail,) = plain.find_resources("AWS::CloudTrail::Trail").values()
    assert trail["Properties"]["S3KeyPrefix"] == "retain-400d"
    assert "DataResources" not in trail["Properties"]["EventSelectors"][0]
    assert "CloudWatchLogsLogGroupArn" not in trail["Properties"]


def test_detector_features_from_defaults_and_overrides(templates: dict[str, Template]) -> None:
    (det,) = templates["vend-brightmart-eu-west-1"].find_resources("AWS::GuardDuty::Detector").values()
    features = {f["Name"]: f["Status"] for f in det["Properties"]["Features"]}
    assert features == {
        "S3_DATA_EVENTS": "ENABLED",
        "EKS_AUDIT_LOGS": "ENABLED",
        "EBS_MALWARE_PROTECTION": "ENABLED",
        "RDS_LOGIN_EVENTS": "ENABLED",
        "RUNTIME_MONITORING": "DISABLED",
    }


def test_more_than_six_tag_keys_become_several_rules(portfolio: Portfolio) -> None:
    from baseline.spec import tag_rules

    keys = tuple(f"K{i}" for i in range(1, 14))
    rules = tag_rules(portfolio.client("brightmart").model_copy(update={"required_tags": keys}))
    assert [r.name for r in rules] == ["vend-required-tags", "vend-required-tags-2", "vend-required-tags-3"]
    assert [len(r.parameters) for r in rules] == [6, 6, 1]
    assert rules[2].parameters == (("tag1Key", "K13"),)


def test_client_stacks_have_termination_protection_and_a_stack_policy(
    templates: dict[str, Template], stacks: dict[str, cdk.Stack]
) -> None:
    for name, t in templates.items():
        if name.startswith("vend-msp-"):
            continue
        assert stacks[name].termination_protection, name
        policy = t.to_json()["Metadata"]["vend:StackPolicy"]
        deny = [s for s in policy["Statement"] if s["Effect"] == "Deny"]
        (d,) = deny
        assert d["Action"] == ["Update:Replace", "Update:Delete"]
        protected = {r.removeprefix("LogicalResourceId/") for r in d["Resource"]}
        types = {t.to_json()["Resources"][i]["Type"] for i in protected}
        if name.endswith("-global"):
            assert {"AWS::CloudTrail::Trail", "AWS::IAM::Role", "AWS::IAM::ManagedPolicy"} <= types, name
            roles = {t.to_json()["Resources"][i]["Properties"].get("RoleName") for i in protected}
            assert "VendMspAccess" in roles
        else:
            assert {"AWS::Config::ConfigurationRecorder", "AWS::GuardDuty::Detector"} <= types, name


def test_client_stacks_need_no_bootstrap_and_have_no_custom_resources(templates: dict[str, Template]) -> None:
    for name, t in templates.items():
        raw = json.dumps(t.to_json())
        assert "BootstrapVersion" not in raw, name
        assert "Custom::" not in raw and "AWS::CloudFormation::CustomResource" not in raw, name
        assert "AWS::Lambda::Function" not in raw, name


def test_stacksets_admin_role_can_only_reach_execution_roles(templates: dict[str, Template]) -> None:
    """The StackSets administration role (MSP account): only CloudFormation, for vend's stack
    sets of the MSP account, may assume it; it may only assume vend's execution roles."""
    (role,) = templates["vend-msp-stacksets-admin"].find_resources("AWS::IAM::Role").values()
    props = role["Properties"]
    (trust,) = props["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "cloudformation.amazonaws.com"}
    assert trust["Condition"]["StringEquals"] == {"aws:SourceAccount": "123456789012"}
    assert trust["Condition"]["ArnLike"]["aws:SourceArn"].endswith(":123456789012:stackset/vend-*")
    (policy,) = props["Policies"]
    assert policy["PolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "arn:aws:iam::*:role/vend-stacksets-execution"}
    ]
    assert "ManagedPolicyArns" not in props
