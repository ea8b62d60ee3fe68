"""IMPORT change sets in the emulator (scripts/emulator/resource_import.py): the account's
existing recorder, channel and detector are attached to a stack, nothing is created, later
updates change them in place, and what CloudFormation refuses is refused.

Each test works in its own account; every assertion reads live state through the APIs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from scripts.emulator.server import Emulator

REGION = "us-east-1"
RECORDER_ROLE = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/vend-config-recorder"}


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator() as running:
        yield running


def _account(emulator: Emulator) -> tuple[str, boto3.Session]:
    account = f"5555{uuid.uuid4().int % 10**8:08d}"
    sts = boto3.client(
        "sts", endpoint_url=emulator.url, region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t"
    )
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/VendDeploy", RoleSessionName="import-test")[
        "Credentials"
    ]
    session = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=REGION,
    )
    return account, session


def _client(session: boto3.Session, emulator: Emulator, service: str) -> Any:
    return session.client(service, endpoint_url=emulator.url)  # type: ignore[call-overload]


def _detector(frequency: str = "SIX_HOURS", policy: str | None = "Retain") -> dict[str, Any]:
    res: dict[str, Any] = {
        "Type": "AWS::GuardDuty::Detector",
        "Properties": {"Enable": True, "FindingPublishingFrequency": frequency},
    }
    if policy:
        res["DeletionPolicy"] = res["UpdateReplacePolicy"] = policy
    return res


def _run(cfn: Any, stack: str, template: dict[str, Any], kind: str, **extra: Any) -> dict[str, Any]:
    created = cfn.create_change_set(
        StackName=stack,
        ChangeSetName=f"cs-{uuid.uuid4().hex[:8]}",
        ChangeSetType=kind,
        TemplateBody=json.dumps(template),
        **extra,
    )
    change_set = cfn.describe_change_set(ChangeSetName=created["Id"])
    cfn.execute_change_set(ChangeSetName=created["Id"])
    return dict(change_set)


def test_a_new_stack_is_created_from_the_existing_detector_which_updates_then_change_in_place(
    emulator: Emulator,
) -> None:
    _, session = _account(emulator)
    gd = _client(session, emulator, "guardduty")
    detector_id = gd.create_detector(Enable=False, FindingPublishingFrequency="SIX_HOURS")["DetectorId"]
    cfn = _client(session, emulator, "cloudformation")
    template = {"Resources": {"Detector": _detector()}}
    change_set = _run(
        cfn,
        "imported",
        template,
        "IMPORT",
        ResourcesToImport=[
            {
                "ResourceType": "AWS::GuardDuty::Detector",
                "LogicalResourceId": "Detector",
                "ResourceIdentifier": {"Id": detector_id},
            }
        ],
    )
    assert [c["ResourceChange"]["Action"] for c in change_set["Changes"]] == ["Import"]
    (stack,) = cfn.describe_stacks(StackName="imported")["Stacks"]
    assert stack["StackStatus"] == "IMPORT_COMPLETE"
    (resource,) = cfn.list_stack_resources(StackName="imported")["StackResourceSummaries"]
    assert resource["PhysicalResourceId"] == detector_id
    # Nothing was created or changed: the one detector, as it was.
    assert gd.list_detectors()["DetectorIds"] == [detector_id]
    assert gd.get_detector(DetectorId=detector_id)["Status"] == "DISABLED"
    events = cfn.describe_stack_events(StackName="imported")["StackEvents"]
    assert ("Detector", "IMPORT_COMPLETE") in {(e["LogicalResourceId"], e["ResourceStatus"]) for e in events}

    # From now on CloudFormation manages it: an update changes that detector, creates none.
    _run(cfn, "imported", {"Resources": {"Detector": _detector("FIFTEEN_MINUTES")}}, "UPDATE")
    assert gd.list_detectors()["DetectorIds"] == [detector_id]
    assert gd.get_detector(DetectorId=detector_id)["FindingPublishingFrequency"] == "FIFTEEN_MINUTES"

    # Retain: removing it from the stack keeps it.
    _run(cfn, "imported", {"Resources": {"Other": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}, "UPDATE")
    assert gd.list_detectors()["DetectorIds"] == [detector_id]


def test_an_existing_stack_takes_the_recorder_and_channel_by_name(emulator: Emulator) -> None:
    account, session = _account(emulator)
    iam = _client(session, emulator, "iam")
    trust = {
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "config.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    }
    role = iam.create_role(RoleName="theirs", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    _client(session, emulator, "s3").create_bucket(Bucket=f"their-config-{account}")
    cfg = _client(session, emulator, "config")
    cfg.put_configuration_recorder(ConfigurationRecorder={"name": "default", "roleARN": role})
    cfg.put_delivery_channel(DeliveryChannel={"name": "default", "s3BucketName": f"their-config-{account}"})
    cfn = _client(session, emulator, "cloudformation")
    base = {"Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}
    _run(cfn, "regional", base, "CREATE")
    recorder = {
        "Type": "AWS::Config::ConfigurationRecorder",
        "DeletionPolicy": "Retain",
        "Properties": {"RoleARN": RECORDER_ROLE, "RecordingGroup": {"AllSupported": True}},
    }
    channel = {
        "Type": "AWS::Config::DeliveryChannel",
        "DeletionPolicy": "Retain",
        "DependsOn": "Recorder",
        "Properties": {"S3BucketName": "central-logs"},
    }
    template = {"Resources": {**base["Resources"], "Recorder": recorder, "Channel": channel}}
    imports = [
        {
            "ResourceType": "AWS::Config::ConfigurationRecorder",
            "LogicalResourceId": "Recorder",
            "ResourceIdentifier": {"Name": "default"},
        },
        {
            "ResourceType": "AWS::Config::DeliveryChannel",
            "LogicalResourceId": "Channel",
            "ResourceIdentifier": {"Name": "default"},
        },
    ]
    _run(cfn, "regional", template, "IMPORT", ResourcesToImport=imports)
    physical = {
        r["LogicalResourceId"]: r["PhysicalResourceId"]
        for r in cfn.list_stack_resources(StackName="regional")["StackResourceSummaries"]
    }
    assert physical["Recorder"] == physical["Channel"] == "default"
    (rec,) = cfg.describe_configuration_recorders()["ConfigurationRecorders"]
    assert rec["roleARN"] == role  # imported as it was

    # The normal update applies the template to the account's recorder (same name, no second one).
    recorder["Properties"]["RecordingGroup"] = {"AllSupported": True, "IncludeGlobalResourceTypes": True}
    _run(cfn, "regional", template, "UPDATE")
    (rec,) = cfg.describe_configuration_recorders()["ConfigurationRecorders"]
    assert rec["name"] == "default" and rec["roleARN"].endswith(":role/vend-config-recorder")
    assert rec["recordingGroup"]["includeGlobalResourceTypes"] is True


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no deletion policy", "must have DeletionPolicy"),
        ("not there", "was not found"),
        ("other changes", "you cannot modify or add [Handle]"),
        ("held by a stack", "already belongs to stack"),
        ("not importable", "not supported for import"),
    ],
)
def test_what_cloudformation_refuses_is_refused(emulator: Emulator, case: str, message: str) -> None:
    _, session = _account(emulator)
    gd = _client(session, emulator, "guardduty")
    cfn = _client(session, emulator, "cloudformation")
    detector_id = gd.create_detector(Enable=True)["DetectorId"]
    resources: dict[str, Any] = {"Detector": _detector(policy=None if case == "no deletion policy" else "Retain")}
    rtype, identifier = "AWS::GuardDuty::Detector", {"Id": "0" * 32 if case == "not there" else detector_id}
    if case == "other changes":
        _run(cfn, "s", {"Resources": {"Handle": {"Type": "AWS::CloudFormation::WaitConditionHandle"}}}, "CREATE")
        resources["Handle"] = {"Type": "AWS::CloudFormation::WaitConditionHandle", "Metadata": {"changed": True}}
    if case == "held by a stack":
        _run(cfn, "holder", {"Resources": {"Detector": _detector()}}, "IMPORT", ResourcesToImport=[
            {"ResourceType": rtype, "LogicalResourceId": "Detector", "ResourceIdentifier": identifier}
        ])  # fmt: skip
    if case == "not importable":
        resources = {"Topic": {"Type": "AWS::SNS::Topic", "DeletionPolicy": "Retain", "Properties": {}}}
        rtype, identifier = "AWS::SNS::Topic", {"TopicArn": "arn:aws:sns:us-east-1:1:t"}
    logical = next(iter(k for k in resources if k != "Handle"))
    with pytest.raises(ClientError) as err:
        cfn.create_change_set(
            StackName="s",
            ChangeSetName="import",
            ChangeSetType="IMPORT",
            TemplateBody=json.dumps({"Resources": resources}),
            ResourcesToImport=[{"ResourceType": rtype, "LogicalResourceId": logical, "ResourceIdentifier": identifier}],
        )
    assert message in err.value.response["Error"]["Message"]
    assert gd.list_detectors()["DetectorIds"] == [detector_id]
