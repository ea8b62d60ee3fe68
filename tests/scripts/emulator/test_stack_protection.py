"""The emulator's termination protection and stack policies behave as CloudFormation's.

Each test acts in its own assumed account, so the tests share one emulator without
seeing each other's stacks.
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
TEMPLATE = json.dumps({"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}})


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator() as running:
        yield running


@pytest.fixture
def cfn(emulator: Emulator) -> Any:
    """CloudFormation in a fresh assumed account."""
    account = str(uuid.uuid4().int)[:12].rjust(12, "1")
    sts = boto3.client(
        "sts", endpoint_url=emulator.url, region_name=REGION, aws_access_key_id="t", aws_secret_access_key="t"
    )
    role = f"arn:aws:iam::{account}:role/VendDeploy"
    creds = sts.assume_role(RoleArn=role, RoleSessionName="vend-test")["Credentials"]
    return boto3.client(
        "cloudformation",
        endpoint_url=emulator.url,
        region_name=REGION,
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )


def _protected(cfn: Any, name: str) -> bool:
    return bool(cfn.describe_stacks(StackName=name)["Stacks"][0]["EnableTerminationProtection"])


def test_update_termination_protection_turns_it_on_and_off(cfn: Any) -> None:
    stack_id = cfn.create_stack(StackName="vend-a", TemplateBody=TEMPLATE)["StackId"]
    assert _protected(cfn, "vend-a") is False

    answer = cfn.update_termination_protection(StackName="vend-a", EnableTerminationProtection=True)

    assert answer["StackId"] == stack_id
    assert _protected(cfn, "vend-a") is True
    cfn.update_termination_protection(StackName=stack_id, EnableTerminationProtection=False)
    assert _protected(cfn, "vend-a") is False


def test_delete_stack_refuses_a_protected_stack_and_leaves_it_alone(cfn: Any) -> None:
    cfn.create_stack(StackName="vend-b", TemplateBody=TEMPLATE, EnableTerminationProtection=True)

    with pytest.raises(ClientError) as caught:
        cfn.delete_stack(StackName="vend-b")

    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert caught.value.response["Error"]["Message"] == (
        "Stack [vend-b] cannot be deleted while TerminationProtection is enabled"
    )
    assert cfn.describe_stacks(StackName="vend-b")["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    cfn.update_termination_protection(StackName="vend-b", EnableTerminationProtection=False)
    cfn.delete_stack(StackName="vend-b")
    assert [s["StackStatus"] for s in cfn.list_stacks()["StackSummaries"]] == ["DELETE_COMPLETE"]


def test_delete_stack_by_id_is_refused_too(cfn: Any) -> None:
    stack_id = cfn.create_stack(StackName="vend-c", TemplateBody=TEMPLATE)["StackId"]
    cfn.update_termination_protection(StackName="vend-c", EnableTerminationProtection=True)
    with pytest.raises(ClientError, match="TerminationProtection is enabled"):
        cfn.delete_stack(StackName=stack_id)


def test_termination_protection_on_a_stack_under_review(cfn: Any) -> None:
    """`cdk deploy` turns it on between creating and executing the first change set."""
    cfn.create_change_set(StackName="vend-d", ChangeSetName="cs", ChangeSetType="CREATE", TemplateBody=TEMPLATE)
    cfn.update_termination_protection(StackName="vend-d", EnableTerminationProtection=True)
    cfn.execute_change_set(StackName="vend-d", ChangeSetName="cs")
    stack = cfn.describe_stacks(StackName="vend-d")["Stacks"][0]
    assert (stack["StackStatus"], stack["EnableTerminationProtection"]) == ("CREATE_COMPLETE", True)


def test_unknown_stack_is_a_validation_error(cfn: Any) -> None:
    with pytest.raises(ClientError) as caught:
        cfn.update_termination_protection(StackName="vend-nope", EnableTerminationProtection=True)
    assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert "vend-nope" in caught.value.response["Error"]["Message"]


def test_stack_policy_round_trip_and_validation(cfn: Any) -> None:
    cfn.create_stack(StackName="vend-e", TemplateBody=TEMPLATE)
    assert "StackPolicyBody" not in cfn.get_stack_policy(StackName="vend-e")
    policy = {"Statement": [{"Effect": "Deny", "Principal": "*", "Action": "Update:*", "Resource": "*"}]}

    cfn.set_stack_policy(StackName="vend-e", StackPolicyBody=json.dumps(policy))

    assert json.loads(cfn.get_stack_policy(StackName="vend-e")["StackPolicyBody"]) == policy
    for bad in ("not json", json.dumps({"Statement": "x"}), json.dumps([1])):
        with pytest.raises(ClientError) as caught:
            cfn.set_stack_policy(StackName="vend-e", StackPolicyBody=bad)
        assert caught.value.response["Error"]["Code"] == "ValidationError"
    assert json.loads(cfn.get_stack_policy(StackName="vend-e")["StackPolicyBody"]) == policy
