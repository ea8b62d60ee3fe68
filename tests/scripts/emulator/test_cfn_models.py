"""The emulator's CloudFormation really creates, updates and deletes the baseline's resources.

Every assertion reads live state through the ordinary service APIs, in the account a
stack was deployed to, as drift checks will. Each lifecycle phase runs in its own
account, so the tests do not depend on the order they run in.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from scripts.emulator.server import Emulator, register_models
from tests.scripts.kit import Account, assume

REGION = "us-east-1"
CLIENT_ACCOUNT = "111122223333"
CENTRAL_KEY = "arn:aws:kms:us-east-1:210987654321:key/1234abcd-12ab-34cd-56ef-1234567890ab"
AWS_POLICY = "arn:aws:iam::aws:policy/"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator() as running:
        yield running


# --- the template under test -------------------------------------------------------------


def policy_doc(*actions: str) -> dict[str, Any]:
    return {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": list(actions), "Resource": "*"}],
    }


def log_bucket(account_id: str) -> str:
    """Bucket names are global, also in the emulator: one per test account."""
    return f"vend-test-logs-{account_id}"


def template(
    account_id: str,
    *,
    is_logging: bool = True,
    frequency: str = "FIFTEEN_MINUTES",
    limit: int = 5000,
    thresholds: tuple[int, ...] = (50, 80),
    boundary: bool = True,
    managed: tuple[str, ...] = ("SecurityAudit", "job-function/ViewOnlyAccess"),
    boundary_actions: tuple[str, ...] = ("s3:Get*", "ec2:Describe*"),
    key_writers: tuple[str, ...] = ("111122223333",),
    msp_account: str = "999988887777",
    inline_policy: str = "tickets",
    session_hours: int = 2,
) -> str:
    """A baseline-shaped stack with one of every emulated type.

    Values come in the shapes CloudFormation delivers: booleans as strings, numbers as
    strings, Fn::If on a region condition, the delivery channel listed before the
    recorder it DependsOn.
    """
    bucket = log_bucket(account_id)
    bucket_policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "AWSCloudTrailWrite",
                "Effect": "Allow",
                "Principal": {"Service": "cloudtrail.amazonaws.com"},
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/AWSLogs/{account_id}/*",
                "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
            }
        ],
    }
    role: dict[str, Any] = {
        "RoleName": "vend-msp-access",
        "Description": f"MSP access from {msp_account}",
        "MaxSessionDuration": str(session_hours * 3600),
        "AssumeRolePolicyDocument": {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"AWS": f"arn:aws:iam::{msp_account}:root"},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"sts:ExternalId": "x-1234"}},
                }
            ],
        },
        "ManagedPolicyArns": [AWS_POLICY + name for name in managed],
        "Policies": [{"PolicyName": inline_policy, "PolicyDocument": policy_doc("support:*")}],
    }
    if boundary:
        role["PermissionsBoundary"] = {"Ref": "Boundary"}
    resources: dict[str, Any] = {
        "LogBucket": {"Type": "AWS::S3::Bucket", "Properties": {"BucketName": bucket}},
        "LogBucketPolicy": {
            "Type": "AWS::S3::BucketPolicy",
            "Properties": {"Bucket": {"Ref": "LogBucket"}, "PolicyDocument": bucket_policy},
        },
        "CentralKey": {
            "Type": "AWS::KMS::Key",
            "Properties": {
                "Description": "central log key",
                "EnableKeyRotation": "true",
                "KeyPolicy": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Sid": "ClientsEncrypt",
                            "Effect": "Allow",
                            "Principal": {"AWS": [f"arn:aws:iam::{a}:root" for a in key_writers]},
                            "Action": "kms:GenerateDataKey*",
                            "Resource": "*",
                        }
                    ],
                },
                "Tags": [{"Key": "vend:managed-by", "Value": "vend"}],
            },
        },
        "Boundary": {
            "Type": "AWS::IAM::ManagedPolicy",
            "Properties": {
                "ManagedPolicyName": "vend-boundary",
                "PolicyDocument": policy_doc(*boundary_actions),
            },
        },
        "MspRole": {"Type": "AWS::IAM::Role", "Properties": role},
        "ConfigRole": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "RoleName": "vend-config-recorder",
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "config.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                "ManagedPolicyArns": [AWS_POLICY + "service-role/AWS_ConfigRole"],
            },
        },
        "Trail": {
            "Type": "AWS::CloudTrail::Trail",
            "DependsOn": "LogBucketPolicy",
            "Properties": {
                "TrailName": "vend-baseline",
                "S3BucketName": {"Ref": "LogBucket"},
                "KMSKeyId": CENTRAL_KEY,
                "IsLogging": "true" if is_logging else "false",
                "IsMultiRegionTrail": "true",
                "IncludeGlobalServiceEvents": True,
                "EnableLogFileValidation": True,
                "EventSelectors": [{"ReadWriteType": "All", "IncludeManagementEvents": True}],
            },
        },
        # Listed before the recorder on purpose: creation must follow DependsOn.
        "DeliveryChannel": {
            "Type": "AWS::Config::DeliveryChannel",
            "DependsOn": "Recorder",
            "Properties": {
                "Name": "vend-channel",
                "S3BucketName": {"Ref": "LogBucket"},
                "ConfigSnapshotDeliveryProperties": {"DeliveryFrequency": "TwentyFour_Hours"},
            },
        },
        "Recorder": {
            "Type": "AWS::Config::ConfigurationRecorder",
            "Properties": {
                "Name": "vend-recorder",
                "RoleARN": {"Fn::GetAtt": ["ConfigRole", "Arn"]},
                "RecordingGroup": {
                    "AllSupported": "true",
                    "IncludeGlobalResourceTypes": {"Fn::If": ["IsHomeRegion", True, False]},
                },
            },
        },
        "RequiredTags": {
            "Type": "AWS::Config::ConfigRule",
            "DependsOn": "Recorder",
            "Properties": {
                "ConfigRuleName": "vend-required-tags",
                "Source": {"Owner": "AWS", "SourceIdentifier": "REQUIRED_TAGS"},
                "Scope": {"ComplianceResourceTypes": ["AWS::S3::Bucket"]},
                "InputParameters": {"tag1Key": "Owner", "tag2Key": "CostCenter"},
            },
        },
        "OutOfHomeRule": {
            "Type": "AWS::Config::ConfigRule",
            "Condition": "IsNotHomeRegion",
            "Properties": {
                "ConfigRuleName": "vend-only-elsewhere",
                "Source": {"Owner": "AWS", "SourceIdentifier": "S3_BUCKET_VERSIONING_ENABLED"},
            },
        },
        "Detector": {
            "Type": "AWS::GuardDuty::Detector",
            "Properties": {
                "Enable": "true",
                "FindingPublishingFrequency": frequency,
                "Features": [{"Name": "S3_DATA_EVENTS", "Status": "ENABLED"}],
            },
        },
        "Budget": {
            "Type": "AWS::Budgets::Budget",
            "Properties": {
                "Budget": {
                    "BudgetName": "vend-monthly",
                    "BudgetType": "COST",
                    "TimeUnit": "MONTHLY",
                    "BudgetLimit": {"Amount": str(limit), "Unit": "USD"},
                },
                "NotificationsWithSubscribers": [
                    {
                        "Notification": {
                            "NotificationType": "ACTUAL",
                            "ComparisonOperator": "GREATER_THAN",
                            "Threshold": pct,
                            "ThresholdType": "PERCENTAGE",
                        },
                        "Subscribers": [{"SubscriptionType": "EMAIL", "Address": "ops@acme.example"}],
                    }
                    for pct in thresholds
                ],
            },
        },
    }
    return json.dumps(
        {
            "AWSTemplateFormatVersion": "2010-09-09",
            "Conditions": {
                "IsHomeRegion": {"Fn::Equals": [{"Ref": "AWS::Region"}, "us-east-1"]},
                "IsNotHomeRegion": {"Fn::Not": [{"Condition": "IsHomeRegion"}]},
            },
            "Resources": resources,
            "Outputs": {
                "RoleArn": {"Value": {"Fn::GetAtt": ["MspRole", "Arn"]}},
                "TrailArn": {"Value": {"Fn::GetAtt": ["Trail", "Arn"]}},
                "DetectorId": {"Value": {"Fn::GetAtt": ["Detector", "Id"]}},
                "RuleArn": {"Value": {"Fn::GetAtt": ["RequiredTags", "Arn"]}},
                "BoundaryArn": {"Value": {"Ref": "Boundary"}},
                "BoundaryVersion": {"Value": {"Fn::GetAtt": ["Boundary", "DefaultVersionId"]}},
                "BudgetName": {"Value": {"Ref": "Budget"}},
                "KeyArn": {"Value": {"Fn::GetAtt": ["CentralKey", "Arn"]}},
            },
        }
    )


STACK = "vend-baseline-test"


def deploy(account: Account, body: str, stack: str = STACK) -> dict[str, Any]:
    """Create or update through a change set, as the driver does; returns the stack."""
    cfn = account.client("cloudformation")
    try:
        cfn.describe_stacks(StackName=stack)
        change_set_type = "UPDATE"
    except ClientError:
        change_set_type = "CREATE"
    name = f"vend-{uuid.uuid4().hex[:8]}"
    cfn.create_change_set(
        StackName=stack,
        ChangeSetName=name,
        ChangeSetType=change_set_type,
        TemplateBody=body,
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    assert cfn.describe_change_set(StackName=stack, ChangeSetName=name)["Status"] == ("CREATE_COMPLETE")
    cfn.execute_change_set(StackName=stack, ChangeSetName=name)
    stack_description: dict[str, Any] = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    return stack_description


def outputs(stack: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}


def attached(account: Account, role_name: str) -> set[str]:
    iam = account.client("iam")
    return {p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]}


# --- phases, each in its own account -----------------------------------------------------


@pytest.fixture(scope="module")
def created(emulator: Emulator) -> tuple[Account, dict[str, Any]]:
    account = assume(emulator, CLIENT_ACCOUNT)
    return account, deploy(account, template(account.account_id))


UPDATED_TEMPLATE = {
    "is_logging": False,
    "frequency": "ONE_HOUR",
    "limit": 6000,
    "boundary": False,
    "managed": ("SecurityAudit", "ReadOnlyAccess"),
    "boundary_actions": ("s3:Get*",),
    "key_writers": ("111122223333", "444455556666"),
    "msp_account": "999988886666",
    "inline_policy": "tickets-v2",
    "session_hours": 4,
}


@pytest.fixture(scope="module")
def updated(emulator: Emulator) -> tuple[Account, dict[str, Any]]:
    account = assume(emulator, "111122224444")
    deploy(account, template(account.account_id))
    return account, deploy(account, template(account.account_id, **UPDATED_TEMPLATE))  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def deleted(emulator: Emulator) -> Account:
    account = assume(emulator, "111122225555")
    deploy(account, template(account.account_id))
    deploy(account, template(account.account_id, **UPDATED_TEMPLATE))  # type: ignore[arg-type]
    cfn = account.client("cloudformation")
    cfn.delete_stack(StackName=STACK)
    return account


# --- create ------------------------------------------------------------------------------


def test_stack_completes_with_outputs_and_real_physical_ids(
    created: tuple[Account, dict[str, Any]],
) -> None:
    account, stack = created
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    out = outputs(stack)
    assert out["RoleArn"] == f"arn:aws:iam::{CLIENT_ACCOUNT}:role/vend-msp-access"
    assert out["TrailArn"] == f"arn:aws:cloudtrail:{REGION}:{CLIENT_ACCOUNT}:trail/vend-baseline"
    assert out["BudgetName"] == "vend-monthly"
    assert out["BoundaryVersion"] == "v1"
    resources = account.client("cloudformation").list_stack_resources(StackName=STACK)
    physical = {r["ResourceType"]: r["PhysicalResourceId"] for r in resources["StackResourceSummaries"]}
    assert physical["AWS::CloudTrail::Trail"] == "vend-baseline"
    assert physical["AWS::GuardDuty::Detector"] == out["DetectorId"]
    assert physical["AWS::S3::BucketPolicy"] == log_bucket(account.account_id)
    # The rule whose Condition is false is neither created nor listed.
    assert all(r["LogicalResourceId"] for r in resources["StackResourceSummaries"])
    assert "OutOfHomeRule" not in {r["LogicalResourceId"] for r in resources["StackResourceSummaries"]}


def test_trail_is_logging_with_the_baseline_settings(
    created: tuple[Account, dict[str, Any]],
) -> None:
    account, _ = created
    cloudtrail = account.client("cloudtrail")
    trail = cloudtrail.get_trail(Name="vend-baseline")["Trail"]
    assert trail["S3BucketName"] == log_bucket(account.account_id)
    assert trail["KmsKeyId"] == CENTRAL_KEY
    assert trail["IsMultiRegionTrail"] is True
    assert trail["LogFileValidationEnabled"] is True
    assert trail["IncludeGlobalServiceEvents"] is True
    assert cloudtrail.get_trail_status(Name="vend-baseline")["IsLogging"] is True
    selectors = cloudtrail.get_event_selectors(TrailName="vend-baseline")["EventSelectors"]
    assert selectors[0]["ReadWriteType"] == "All"


def test_bucket_policy_is_readable(created: tuple[Account, dict[str, Any]]) -> None:
    account, _ = created
    bucket = log_bucket(account.account_id)
    policy = json.loads(account.client("s3").get_bucket_policy(Bucket=bucket)["Policy"])
    assert policy["Statement"][0]["Sid"] == "AWSCloudTrailWrite"
    assert policy["Statement"][0]["Condition"] == {"StringEquals": {"aws:SourceAccount": CLIENT_ACCOUNT}}


def test_config_recorder_records_into_the_delivery_channel(
    created: tuple[Account, dict[str, Any]],
) -> None:
    account, _ = created
    config = account.client("config")
    (recorder,) = config.describe_configuration_recorders()["ConfigurationRecorders"]
    assert recorder["name"] == "vend-recorder"
    assert recorder["roleARN"] == f"arn:aws:iam::{CLIENT_ACCOUNT}:role/vend-config-recorder"
    assert recorder["recordingGroup"]["allSupported"] is True
    assert recorder["recordingGroup"]["includeGlobalResourceTypes"] is True  # home region
    (status,) = config.describe_configuration_recorder_status()["ConfigurationRecordersStatus"]
    assert status["recording"] is True
    (channel,) = config.describe_delivery_channels()["DeliveryChannels"]
    assert channel["name"] == "vend-channel"
    assert channel["s3BucketName"] == log_bucket(account.account_id)
    assert channel["configSnapshotDeliveryProperties"]["deliveryFrequency"] == "TwentyFour_Hours"


def test_config_rule_carries_its_parameters(created: tuple[Account, dict[str, Any]]) -> None:
    account, stack = created
    rules = account.client("config").describe_config_rules()["ConfigRules"]
    assert [r["ConfigRuleName"] for r in rules] == ["vend-required-tags"]
    (rule,) = rules
    assert json.loads(rule["InputParameters"]) == {"tag1Key": "Owner", "tag2Key": "CostCenter"}
    assert rule["Source"]["SourceIdentifier"] == "REQUIRED_TAGS"
    assert rule["Scope"]["ComplianceResourceTypes"] == ["AWS::S3::Bucket"]
    assert rule["ConfigRuleArn"] == outputs(stack)["RuleArn"]


def test_guardduty_detector_is_enabled(created: tuple[Account, dict[str, Any]]) -> None:
    account, stack = created
    guardduty = account.client("guardduty")
    assert guardduty.list_detectors()["DetectorIds"] == [outputs(stack)["DetectorId"]]
    detector = guardduty.get_detector(DetectorId=outputs(stack)["DetectorId"])
    assert detector["Status"] == "ENABLED"
    assert detector["FindingPublishingFrequency"] == "FIFTEEN_MINUTES"
    assert detector["Features"][0]["Name"] == "S3_DATA_EVENTS"
    assert detector["Features"][0]["Status"] == "ENABLED"


def test_budget_has_limit_thresholds_and_subscribers(
    created: tuple[Account, dict[str, Any]],
) -> None:
    account, _ = created
    budgets = account.client("budgets")
    budget = budgets.describe_budget(AccountId=CLIENT_ACCOUNT, BudgetName="vend-monthly")["Budget"]
    assert float(budget["BudgetLimit"]["Amount"]) == 5000
    assert budget["BudgetLimit"]["Unit"] == "USD"
    assert budget["TimeUnit"] == "MONTHLY"
    notifications = budgets.describe_notifications_for_budget(AccountId=CLIENT_ACCOUNT, BudgetName="vend-monthly")[
        "Notifications"
    ]
    assert sorted(n["Threshold"] for n in notifications) == [50.0, 80.0]
    subscribers = budgets.describe_subscribers_for_notification(
        AccountId=CLIENT_ACCOUNT, BudgetName="vend-monthly", Notification=notifications[0]
    )["Subscribers"]
    assert subscribers == [{"SubscriptionType": "EMAIL", "Address": "ops@acme.example"}]


def test_msp_role_has_boundary_managed_and_inline_policies(
    created: tuple[Account, dict[str, Any]],
) -> None:
    account, stack = created
    iam = account.client("iam")
    role = iam.get_role(RoleName="vend-msp-access")["Role"]
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == outputs(stack)["BoundaryArn"]
    assert role["MaxSessionDuration"] == 7200
    assert attached(account, "vend-msp-access") == {
        AWS_POLICY + "SecurityAudit",
        AWS_POLICY + "job-function/ViewOnlyAccess",
    }
    assert iam.list_role_policies(RoleName="vend-msp-access")["PolicyNames"] == ["tickets"]
    assert attached(account, "vend-config-recorder") == {AWS_POLICY + "service-role/AWS_ConfigRole"}


def test_kms_key_has_policy_rotation_and_tags(created: tuple[Account, dict[str, Any]]) -> None:
    account, stack = created
    kms = account.client("kms")
    key_arn = outputs(stack)["KeyArn"]
    policy = json.loads(kms.get_key_policy(KeyId=key_arn, PolicyName="default")["Policy"])
    assert policy["Statement"][0]["Principal"]["AWS"] == [f"arn:aws:iam::{CLIENT_ACCOUNT}:root"]
    assert kms.get_key_rotation_status(KeyId=key_arn)["KeyRotationEnabled"] is True
    assert kms.list_resource_tags(KeyId=key_arn)["Tags"] == [{"TagKey": "vend:managed-by", "TagValue": "vend"}]


def test_resources_are_invisible_in_another_account(
    created: tuple[Account, dict[str, Any]], emulator: Emulator
) -> None:
    other = assume(emulator, "444455556666")
    assert other.client("cloudtrail").describe_trails()["trailList"] == []
    assert other.client("config").describe_configuration_recorders()["ConfigurationRecorders"] == []
    assert other.client("config").describe_config_rules()["ConfigRules"] == []
    assert other.client("guardduty").list_detectors()["DetectorIds"] == []
    assert other.client("budgets").describe_budgets(AccountId="444455556666").get("Budgets") in (
        None,
        [],
    )
    with pytest.raises(ClientError, match="NoSuchEntity"):
        other.client("iam").get_role(RoleName="vend-msp-access")


def test_region_conditions_pick_the_other_branch_outside_home(emulator: Emulator) -> None:
    """Same template with plain create_stack in a non-home region: Fn::If and Condition flip."""
    account = assume(emulator, "111122229999", region="us-west-2")
    account.client("cloudformation").create_stack(StackName=STACK, TemplateBody=template(account.account_id))
    config = account.client("config")
    (recorder,) = config.describe_configuration_recorders()["ConfigurationRecorders"]
    assert recorder["recordingGroup"]["includeGlobalResourceTypes"] is False
    names = {r["ConfigRuleName"] for r in config.describe_config_rules()["ConfigRules"]}
    assert names == {"vend-required-tags", "vend-only-elsewhere"}
    (status,) = config.describe_configuration_recorder_status()["ConfigurationRecordersStatus"]
    assert status["recording"] is True


# --- update ------------------------------------------------------------------------------


def test_update_stops_logging_and_keeps_the_trail(updated: tuple[Account, dict[str, Any]]) -> None:
    account, stack = updated
    assert stack["StackStatus"] == "UPDATE_COMPLETE"
    cloudtrail = account.client("cloudtrail")
    assert cloudtrail.get_trail_status(Name="vend-baseline")["IsLogging"] is False
    assert cloudtrail.get_trail(Name="vend-baseline")["Trail"]["KmsKeyId"] == CENTRAL_KEY


def test_update_changes_detector_frequency_in_place(
    updated: tuple[Account, dict[str, Any]],
) -> None:
    account, stack = updated
    guardduty = account.client("guardduty")
    (detector_id,) = guardduty.list_detectors()["DetectorIds"]
    assert detector_id == outputs(stack)["DetectorId"]
    assert guardduty.get_detector(DetectorId=detector_id)["FindingPublishingFrequency"] == "ONE_HOUR"


def test_update_changes_budget_limit_and_keeps_notifications(
    updated: tuple[Account, dict[str, Any]],
) -> None:
    account, _ = updated
    budgets = account.client("budgets")
    budget = budgets.describe_budget(AccountId=account.account_id, BudgetName="vend-monthly")
    assert float(budget["Budget"]["BudgetLimit"]["Amount"]) == 6000
    notifications = budgets.describe_notifications_for_budget(AccountId=account.account_id, BudgetName="vend-monthly")[
        "Notifications"
    ]
    assert len(notifications) == 2


def test_update_removes_boundary_and_swaps_managed_policies(
    updated: tuple[Account, dict[str, Any]],
) -> None:
    account, _ = updated
    role = account.client("iam").get_role(RoleName="vend-msp-access")["Role"]
    assert "PermissionsBoundary" not in role
    assert attached(account, "vend-msp-access") == {
        AWS_POLICY + "SecurityAudit",
        AWS_POLICY + "ReadOnlyAccess",
    }


def test_update_rewrites_trust_inline_policies_and_session(
    updated: tuple[Account, dict[str, Any]],
) -> None:
    account, _ = updated
    iam = account.client("iam")
    role = iam.get_role(RoleName="vend-msp-access")["Role"]
    trust = role["AssumeRolePolicyDocument"]
    assert trust["Statement"][0]["Principal"]["AWS"] == "arn:aws:iam::999988886666:root"
    assert role["Description"] == "MSP access from 999988886666"
    assert role["MaxSessionDuration"] == 14400
    assert iam.list_role_policies(RoleName="vend-msp-access")["PolicyNames"] == ["tickets-v2"]


def test_update_publishes_a_new_managed_policy_version(
    updated: tuple[Account, dict[str, Any]],
) -> None:
    account, stack = updated
    iam = account.client("iam")
    arn = outputs(stack)["BoundaryArn"]
    version_id = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    document = iam.get_policy_version(PolicyArn=arn, VersionId=version_id)["PolicyVersion"]
    assert version_id == "v2"
    assert document["Document"]["Statement"][0]["Action"] == ["s3:Get*"]


def test_update_rewrites_the_key_policy_in_place(updated: tuple[Account, dict[str, Any]]) -> None:
    account, stack = updated
    kms = account.client("kms")
    (key,) = kms.list_keys()["Keys"]
    assert key["KeyArn"] == outputs(stack)["KeyArn"]
    policy = json.loads(kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"])
    assert len(policy["Statement"][0]["Principal"]["AWS"]) == 2


def test_replacing_a_custom_named_budget_fails_like_cloudformation(emulator: Emulator) -> None:
    account = assume(emulator, "111122226666")
    deploy(account, template(account.account_id))
    with pytest.raises(ClientError, match="custom-named resource requires replacing"):
        deploy(account, template(account.account_id, thresholds=(50, 80, 100)))
    cfn = account.client("cloudformation")
    assert cfn.describe_stacks(StackName=STACK)["Stacks"][0]["StackStatus"] == "UPDATE_FAILED"
    reasons = [e.get("ResourceStatusReason", "") for e in cfn.describe_stack_events(StackName=STACK)["StackEvents"]]
    assert any("Rename vend-monthly" in reason for reason in reasons)


# --- delete ------------------------------------------------------------------------------


def test_delete_removes_every_resource(deleted: Account) -> None:
    account = deleted
    assert account.client("cloudtrail").describe_trails()["trailList"] == []
    config = account.client("config")
    assert config.describe_configuration_recorders()["ConfigurationRecorders"] == []
    assert config.describe_delivery_channels()["DeliveryChannels"] == []
    assert config.describe_config_rules()["ConfigRules"] == []
    assert account.client("guardduty").list_detectors()["DetectorIds"] == []
    with pytest.raises(ClientError, match="NotFound"):
        account.client("budgets").describe_budget(AccountId=account.account_id, BudgetName="vend-monthly")
    iam = account.client("iam")
    for role_name in ("vend-msp-access", "vend-config-recorder"):
        with pytest.raises(ClientError, match="NoSuchEntity"):
            iam.get_role(RoleName=role_name)
    assert iam.list_policies(Scope="Local")["Policies"] == []
    with pytest.raises(ClientError, match="NoSuchBucket"):
        account.client("s3").get_bucket_policy(Bucket=log_bucket(account.account_id))


# --- known real-world failures and registration -----------------------------------------


def test_second_guardduty_detector_fails_clearly(emulator: Emulator) -> None:
    """An inherited account already has a detector: the stack must not pretend."""
    account = assume(emulator, "111122227777")
    account.client("guardduty").create_detector(Enable=True)
    body = json.dumps({"Resources": {"Detector": {"Type": "AWS::GuardDuty::Detector", "Properties": {"Enable": True}}}})
    with pytest.raises(ClientError, match="a detector already exists"):
        account.client("cloudformation").create_stack(StackName="gd", TemplateBody=body)


def test_register_models_is_idempotent(emulator: Emulator) -> None:
    register_models()
    register_models()
    account = assume(emulator, "111122228888")
    body = json.dumps(
        {
            "Resources": {
                "Detector": {
                    "Type": "AWS::GuardDuty::Detector",
                    "Properties": {"Enable": "false", "FindingPublishingFrequency": "ONE_HOUR"},
                }
            }
        }
    )
    account.client("cloudformation").create_stack(StackName="gd", TemplateBody=body)
    guardduty = account.client("guardduty")
    (detector_id,) = guardduty.list_detectors()["DetectorIds"]
    assert guardduty.get_detector(DetectorId=detector_id)["Status"] == "DISABLED"
