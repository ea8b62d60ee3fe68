"""The emulator's StackSets behave like AWS's, SELF_MANAGED: driven with boto3 as the
stacksets engine drives them, the stack set in an MSP account, its instances in client
accounts reached with sts assume_role. Every test uses accounts of its own, so tests do
not depend on each other or on moto's state from other modules.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.cloudformation.models import StackSet, cloudformation_backends

from scripts.emulator import stacksets
from scripts.emulator.faults import parse_fault_text
from scripts.emulator.server import Emulator
from tests.scripts.kit import assume

REGION = "us-east-1"
OTHER_REGION = "eu-west-1"
NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})
_ids = itertools.count(1)

TEMPLATE: dict[str, Any] = {
    "Parameters": {
        "Env": {"Type": "String"},
        "Owner": {"Type": "String", "Default": "ops"},
    },
    "Resources": {
        # No name: named after the stack, which must then be a legal stack name.
        "Alerts": {"Type": "AWS::SNS::Topic"},
        "Named": {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": {"Fn::Sub": "vend-${Env}-${Owner}"}}},
        "Detector": {
            "Type": "AWS::GuardDuty::Detector",
            "Properties": {"Enable": True, "FindingPublishingFrequency": "SIX_HOURS"},
        },
    },
    "Outputs": {"NamedArn": {"Value": {"Ref": "Named"}}},
}


def template_v2() -> dict[str, Any]:
    """One property changed (the detector's frequency), one resource removed (Alerts)."""
    v2 = copy.deepcopy(TEMPLATE)
    v2["Resources"]["Detector"]["Properties"]["FindingPublishingFrequency"] = "FIFTEEN_MINUTES"
    del v2["Resources"]["Alerts"]
    return v2


def fresh_account() -> str:
    return f"5300{next(_ids):08d}"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator() as running:
        yield running


@pytest.fixture(autouse=True)
def no_faults(emulator: Emulator) -> Iterator[None]:
    emulator.injector.load(None)
    yield
    emulator.injector.load(None)


def client(emulator: Emulator, service: str, account: str, region: str = REGION) -> Any:
    """A client acting in ``account`` (assumed role; moto keeps each account apart)."""
    return assume(emulator, account, region).session.client(service, endpoint_url=emulator.url, config=NO_RETRIES)


def error_code(call: Any, **kwargs: Any) -> str:
    with pytest.raises(ClientError) as caught:
        call(**kwargs)
    return str(caught.value.response["Error"]["Code"])


def new_stack_set(emulator: Emulator, name: str = "vend-baseline", **extra: Any) -> tuple[Any, str]:
    """A stack set as the engine makes one; returns the MSP account's CloudFormation client."""
    msp = fresh_account()
    cfn = client(emulator, "cloudformation", msp)
    cfn.create_stack_set(
        StackSetName=name,
        TemplateBody=json.dumps(TEMPLATE),
        Parameters=[{"ParameterKey": "Env", "ParameterValue": "base"}],
        Capabilities=["CAPABILITY_NAMED_IAM"],
        PermissionModel="SELF_MANAGED",
        AdministrationRoleARN=f"arn:aws:iam::{msp}:role/VendStackSetAdmin",
        ExecutionRoleName="VendStackSetExecution",
        ManagedExecution={"Active": True},
        Tags=[{"Key": "vend:managed", "Value": "true"}],
        **extra,
    )
    return cfn, msp


def stack_of(emulator: Emulator, cfn: Any, account: str, region: str = REGION, name: str = "vend-baseline") -> Any:
    """The target stack a stack instance points at, read in the target account."""
    instance = cfn.describe_stack_instance(StackSetName=name, StackInstanceAccount=account, StackInstanceRegion=region)
    target = client(emulator, "cloudformation", account, region)
    return target.describe_stacks(StackName=instance["StackInstance"]["StackId"])["Stacks"][0]


def topics(emulator: Emulator, account: str, region: str = REGION) -> list[str]:
    return [t["TopicArn"].rsplit(":", 1)[1] for t in client(emulator, "sns", account, region).list_topics()["Topics"]]


def results(cfn: Any, operation_id: str, name: str = "vend-baseline") -> dict[tuple[str, str], dict[str, Any]]:
    summaries = cfn.list_stack_set_operation_results(StackSetName=name, OperationId=operation_id)["Summaries"]
    return {(r["Account"], r["Region"]): r for r in summaries}


def instances(cfn: Any, name: str = "vend-baseline", **filters: Any) -> dict[tuple[str, str], dict[str, Any]]:
    summaries = cfn.list_stack_instances(StackSetName=name, **filters)["Summaries"]
    return {(s["Account"], s["Region"]): s for s in summaries}


def operation(cfn: Any, operation_id: str, name: str = "vend-baseline") -> dict[str, Any]:
    found: dict[str, Any] = cfn.describe_stack_set_operation(StackSetName=name, OperationId=operation_id)[
        "StackSetOperation"
    ]
    return found


def overrides(**values: str) -> list[dict[str, str]]:
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def with_detector(emulator: Emulator, account: str, region: str = REGION) -> str:
    """An inherited GuardDuty detector: the baseline's detector cannot be created there."""
    detector_id: str = client(emulator, "guardduty", account, region).create_detector(Enable=True)["DetectorId"]
    return detector_id


# --------------------------------------------------------------------------- stack sets


def test_a_stack_set_keeps_what_it_was_created_with_and_its_name_is_unique(emulator: Emulator) -> None:
    cfn, msp = new_stack_set(emulator)
    stack_set = cfn.describe_stack_set(StackSetName="vend-baseline")["StackSet"]
    assert stack_set["ManagedExecution"] == {"Active": True}
    assert stack_set["Capabilities"] == ["CAPABILITY_NAMED_IAM"]
    assert stack_set["AdministrationRoleARN"] == f"arn:aws:iam::{msp}:role/VendStackSetAdmin"
    assert stack_set["ExecutionRoleName"] == "VendStackSetExecution"
    assert error_code(cfn.create_stack_set, StackSetName="vend-baseline", TemplateBody="{}") == (
        "NameAlreadyExistsException"
    )
    assert [s["StackSetName"] for s in cfn.list_stack_sets()["Summaries"]] == ["vend-baseline"]
    cfn.delete_stack_set(StackSetName="vend-baseline")
    cfn.create_stack_set(StackSetName="vend-baseline", TemplateBody=json.dumps(TEMPLATE))  # a deleted name is free
    assert cfn.describe_stack_set(StackSetName="vend-baseline")["StackSet"]["ManagedExecution"] == {"Active": False}


# --------------------------------------------------------------------------- creating instances


def test_instances_get_legal_stacks_with_merged_parameters_and_the_set_tags(emulator: Emulator) -> None:
    cfn, _ = new_stack_set(emulator)
    acme, globex = fresh_account(), fresh_account()
    before = datetime.now(UTC)
    cfn.create_stack_instances(
        StackSetName="vend-baseline",
        Accounts=[acme],
        Regions=[REGION, OTHER_REGION],
        ParameterOverrides=overrides(Env="acme"),
        OperationPreferences={"RegionConcurrencyType": "PARALLEL", "MaxConcurrentPercentage": 100},
        OperationId="deploy-acme-1",
    )
    cfn.create_stack_instances(
        StackSetName="vend-baseline", Accounts=[globex], Regions=[REGION], ParameterOverrides=overrides(Owner="sec")
    )

    stack = stack_of(emulator, cfn, acme)
    assert re.fullmatch(r"StackSet-vend-baseline-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}", stack["StackName"])
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]} == {"Env": "acme", "Owner": "ops"}
    assert {"Key": "vend:managed", "Value": "true"} in stack["Tags"]
    assert "vend-acme-ops" in topics(emulator, acme) and "vend-acme-ops" in topics(emulator, acme, OTHER_REGION)
    assert any(t.startswith(stack["StackName"]) for t in topics(emulator, acme))  # the auto-named topic
    globex_stack = stack_of(emulator, cfn, globex)
    assert {p["ParameterKey"]: p["ParameterValue"] for p in globex_stack["Parameters"]} == {
        "Env": "base",
        "Owner": "sec",
    }
    assert client(emulator, "guardduty", globex).list_detectors()["DetectorIds"]

    described = cfn.describe_stack_instance(
        StackSetName="vend-baseline", StackInstanceAccount=acme, StackInstanceRegion=REGION
    )["StackInstance"]
    assert described["StackId"] == stack["StackId"]  # the real one, the same on every call
    assert described["Status"] == "CURRENT"
    assert described["StackInstanceStatus"] == {"DetailedStatus": "SUCCEEDED"}
    assert described["LastOperationId"] == "deploy-acme-1"
    assert described["DriftStatus"] == "NOT_CHECKED"
    assert described["ParameterOverrides"] == overrides(Env="acme")

    done = operation(cfn, "deploy-acme-1")
    assert (done["Action"], done["Status"]) == ("CREATE", "SUCCEEDED")
    assert done["OperationPreferences"]["MaxConcurrentPercentage"] == 100
    assert done["OperationPreferences"]["RegionConcurrencyType"] == "PARALLEL"
    assert before <= done["CreationTimestamp"] <= done["EndTimestamp"] <= datetime.now(UTC)
    assert {k: r["Status"] for k, r in results(cfn, "deploy-acme-1").items()} == {
        (acme, REGION): "SUCCEEDED",
        (acme, OTHER_REGION): "SUCCEEDED",
    }
    assert [s["StackName"] for s in cfn.describe_stacks()["Stacks"]] == []  # nothing in the MSP account


def test_an_operation_id_is_used_once(emulator: Emulator) -> None:
    cfn, _ = new_stack_set(emulator)
    acme = fresh_account()
    kwargs = {"StackSetName": "vend-baseline", "Regions": [REGION], "OperationId": "op-1"}
    cfn.create_stack_instances(Accounts=[acme], ParameterOverrides=overrides(Env="acme"), **kwargs)
    assert error_code(cfn.create_stack_instances, Accounts=[fresh_account()], **kwargs) == (
        "OperationIdAlreadyExistsException"
    )
    reused = {"StackSetName": "vend-baseline", "OperationId": "op-1", "UsePreviousTemplate": True}
    assert error_code(cfn.update_stack_set, **reused) == "OperationIdAlreadyExistsException"
    assert len(instances(cfn)) == 1


def test_creating_an_existing_instance_again_leaves_it_as_it_is(emulator: Emulator) -> None:
    cfn, _ = new_stack_set(emulator)
    acme = fresh_account()
    cfn.create_stack_instances(
        StackSetName="vend-baseline", Accounts=[acme], Regions=[REGION], ParameterOverrides=overrides(Env="acme")
    )
    stack_id = stack_of(emulator, cfn, acme)["StackId"]
    again = cfn.create_stack_instances(StackSetName="vend-baseline", Accounts=[acme], Regions=[REGION])
    assert operation(cfn, again["OperationId"])["Status"] == "SUCCEEDED"
    assert results(cfn, again["OperationId"])[(acme, REGION)]["Status"] == "SUCCEEDED"
    assert stack_of(emulator, cfn, acme)["StackId"] == stack_id
    assert instances(cfn)[(acme, REGION)]["Status"] == "CURRENT"


def test_a_failing_target_rolls_back_alone_and_the_operation_fails_past_the_tolerance(emulator: Emulator) -> None:
    cfn, _ = new_stack_set(emulator)
    good, inherited = fresh_account(), fresh_account()
    with_detector(emulator, inherited)
    op = cfn.create_stack_instances(
        StackSetName="vend-baseline",
        Accounts=[good, inherited],
        Regions=[REGION],
        ParameterOverrides=overrides(Env="x"),
        OperationPreferences={"FailureToleranceCount": 0, "MaxConcurrentCount": 1},
    )["OperationId"]  # the call itself succeeds

    assert operation(cfn, op)["Status"] == "FAILED"
    assert operation(cfn, op)["StatusDetails"] == {"FailedStackInstancesCount": 1}
    by_target = results(cfn, op)
    assert by_target[(good, REGION)]["Status"] == "SUCCEEDED"
    failed = by_target[(inherited, REGION)]
    assert failed["Status"] == "FAILED"
    assert "ResourceLogicalId:Detector" in failed["StatusReason"]
    assert "detector already exists" in failed["StatusReason"]

    listed = instances(cfn)
    assert (listed[(good, REGION)]["Status"], listed[(good, REGION)]["StackInstanceStatus"]["DetailedStatus"]) == (
        "CURRENT",
        "SUCCEEDED",
    )
    bad = listed[(inherited, REGION)]
    assert (bad["Status"], bad["StackInstanceStatus"]["DetailedStatus"]) == ("OUTDATED", "FAILED")
    assert "ResourceLogicalId:Detector" in bad["StatusReason"]
    rolled_back = stack_of(emulator, cfn, inherited)
    assert rolled_back["StackStatus"] == "ROLLBACK_COMPLETE"
    assert topics(emulator, inherited) == []  # what was created before the failure is gone
    target = client(emulator, "cloudformation", inherited)
    assert target.list_stack_resources(StackName=rolled_back["StackId"])["StackResourceSummaries"] == []
    events = target.describe_stack_events(StackName=rolled_back["StackId"])["StackEvents"]
    assert any(e["LogicalResourceId"] == "Detector" and e["ResourceStatus"] == "CREATE_FAILED" for e in events)
    assert topics(emulator, good)  # the successful target keeps its stack


def test_within_the_tolerance_the_operation_succeeds(emulator: Emulator) -> None:
    cfn, _ = new_stack_set(emulator)
    accounts = [fresh_account() for _ in range(4)]
    with_detector(emulator, accounts[1])
    op = cfn.create_stack_instances(
        StackSetName="vend-baseline",
        Accounts=accounts,
        Regions=[REGION],
        ParameterOverrides=overrides(Env="x"),
        OperationPreferences={"FailureTolerancePercentage": 25, "MaxConcurrentPercentage": 100},
    )["OperationId"]
    assert operation(cfn, op)["Status"] == "SUCCEEDED"
    statuses = [results(cfn, op)[(a, REGION)]["Status"] for a in accounts]
    assert statuses == ["SUCCEEDED", "FAILED", "SUCCEEDED", "SUCCEEDED"]


def test_past_the_tolerance_the_rest_is_cancelled_and_a_retry_finishes_it(emulator: Emulator) -> None:
    cfn, _ = new_stack_set(emulator)
    inherited, later = fresh_account(), fresh_account()
    detector = with_detector(emulator, inherited)
    first = cfn.create_stack_instances(
        StackSetName="vend-baseline",
        Accounts=[inherited, later],
        Regions=[REGION, OTHER_REGION],
        ParameterOverrides=overrides(Env="x"),
        OperationPreferences={"RegionOrder": [REGION, OTHER_REGION]},  # sequential, one account at a time
    )["OperationId"]
    by_target = results(cfn, first)
    assert by_target[(inherited, REGION)]["Status"] == "FAILED"
    for target in [(later, REGION), (inherited, OTHER_REGION), (later, OTHER_REGION)]:
        assert by_target[target]["Status"] == "CANCELLED"
        listed = instances(cfn)[target]
        assert (listed["Status"], listed["StackInstanceStatus"]["DetailedStatus"]) == ("OUTDATED", "CANCELLED")
        assert "StackId" not in listed
    assert topics(emulator, later) == []

    client(emulator, "guardduty", inherited).delete_detector(DetectorId=detector)  # the fix
    retry = cfn.create_stack_instances(
        StackSetName="vend-baseline", Accounts=[inherited, later], Regions=[REGION, OTHER_REGION]
    )["OperationId"]
    assert operation(cfn, retry)["Status"] == "SUCCEEDED"
    assert {i["Status"] for i in instances(cfn).values()} == {"CURRENT"}
    target = client(emulator, "cloudformation", inherited)
    live = [s["StackStatus"] for s in target.list_stacks()["StackSummaries"]]
    assert sorted(live) == ["CREATE_COMPLETE", "DELETE_COMPLETE"]  # the rolled-back stack was replaced


def test_parallel_regions_go_on_when_one_region_fails(emulator: Emulator) -> None:
    cfn, _ = new_stack_set(emulator)
    acme = fresh_account()
    with_detector(emulator, acme, REGION)
    op = cfn.create_stack_instances(
        StackSetName="vend-baseline",
        Accounts=[acme],
        Regions=[REGION, OTHER_REGION],
        ParameterOverrides=overrides(Env="x"),
        OperationPreferences={"RegionConcurrencyType": "PARALLEL"},
    )["OperationId"]
    assert operation(cfn, op)["Status"] == "FAILED"
    assert {k[1]: r["Status"] for k, r in results(cfn, op).items()} == {REGION: "FAILED", OTHER_REGION: "SUCCEEDED"}


def test_a_stack_the_template_refuses_fails_without_a_stack(emulator: Emulator) -> None:
    msp = fresh_account()
    cfn = client(emulator, "cloudformation", msp)
    cfn.create_stack_set(StackSetName="vend-baseline", TemplateBody=json.dumps(TEMPLATE))  # Env has no value
    acme = fresh_account()
    op = cfn.create_stack_instances(StackSetName="vend-baseline", Accounts=[acme], Regions=[REGION])["OperationId"]
    assert results(cfn, op)[(acme, REGION)]["Status"] == "FAILED"
    assert "Env" in results(cfn, op)[(acme, REGION)]["StatusReason"]
    assert "StackId" not in instances(cfn)[(acme, REGION)]
    assert client(emulator, "cloudformation", acme).list_stacks()["StackSummaries"] == []


# --------------------------------------------------------------------------- updates


def test_update_stack_set_updates_and_deletes_resources_of_every_instance(emulator: Emulator) -> None:
    cfn, _ = new_stack_set(emulator)
    acme, globex = fresh_account(), fresh_account()
    for account in (acme, globex):
        where = {"StackSetName": "vend-baseline", "Accounts": [account], "Regions": [REGION]}
        cfn.create_stack_instances(ParameterOverrides=overrides(Env=account), **where)
    stack_ids = {a: stack_of(emulator, cfn, a)["StackId"] for a in (acme, globex)}

    op = cfn.update_stack_set(
        StackSetName="vend-baseline",
        TemplateBody=json.dumps(template_v2()),
        Parameters=[{"ParameterKey": "Env", "ParameterValue": "base2"}],
        Capabilities=["CAPABILITY_NAMED_IAM"],
        OperationPreferences={"MaxConcurrentPercentage": 100, "FailureTolerancePercentage": 100},
        OperationId="v2",
    )["OperationId"]
    assert op == "v2" and operation(cfn, "v2")["Status"] == "SUCCEEDED"
    for account in (acme, globex):
        stack = stack_of(emulator, cfn, account)
        assert (stack["StackId"], stack["StackStatus"]) == (stack_ids[account], "UPDATE_COMPLETE")
        assert {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}["Env"] == account  # kept
        guardduty = client(emulator, "guardduty", account)
        (detector_id,) = guardduty.list_detectors()["DetectorIds"]
        assert guardduty.get_detector(DetectorId=detector_id)["FindingPublishingFrequency"] == "FIFTEEN_MINUTES"
        assert topics(emulator, account) == [f"vend-{account}-ops"]  # the removed topic is deleted
        assert instances(cfn)[(account, REGION)]["Status"] == "CURRENT"

    later = fresh_account()
    cfn.create_stack_instances(StackSetName="vend-baseline", Accounts=[later], Regions=[REGION])
    assert topics(emulator, later) == ["vend-base2-ops"]  # a new instance gets the new template


def test_an_update_of_some_instances_leaves_the_others_outdated(emulator: Emulator) -> None:
    cfn, _ = new_stack_set(emulator)
    acme, globex = fresh_account(), fresh_account()
    cfn.create_stack_instances(
        StackSetName="vend-baseline", Accounts=[acme, globex], Regions=[REGION], ParameterOverrides=overrides(Env="e")
    )
    op = cfn.update_stack_set(
        StackSetName="vend-baseline", TemplateBody=json.dumps(template_v2()), Accounts=[acme], Regions=[REGION]
    )["OperationId"]
    assert list(results(cfn, op)) == [(acme, REGION)]
    listed = instances(cfn)
    assert listed[(acme, REGION)]["Status"] == "CURRENT"
    assert listed[(globex, REGION)]["Status"] == "OUTDATED"
    assert stack_of(emulator, cfn, globex)["StackStatus"] == "CREATE_COMPLETE"  # not touched
    missing = {"Accounts": [fresh_account()], "Regions": [REGION]}
    assert error_code(cfn.update_stack_set, StackSetName="vend-baseline", UsePreviousTemplate=True, **missing) == (
        "StackInstanceNotFoundException"
    )


def test_a_failed_update_rolls_that_stack_back(emulator: Emulator) -> None:
    msp = fresh_account()
    cfn = client(emulator, "cloudformation", msp)
    without_detector = copy.deepcopy(TEMPLATE)
    del without_detector["Resources"]["Detector"]
    cfn.create_stack_set(
        StackSetName="vend-baseline",
        TemplateBody=json.dumps(without_detector),
        Parameters=[{"ParameterKey": "Env", "ParameterValue": "base"}],
    )
    good, inherited = fresh_account(), fresh_account()
    cfn.create_stack_instances(StackSetName="vend-baseline", Accounts=[good, inherited], Regions=[REGION])
    with_detector(emulator, inherited)  # after the first deploy

    op = cfn.update_stack_set(
        StackSetName="vend-baseline",
        TemplateBody=json.dumps(template_v2()),  # adds the detector, removes the Alerts topic
        OperationPreferences={"FailureToleranceCount": 1, "MaxConcurrentCount": 2},
    )["OperationId"]
    assert operation(cfn, op)["Status"] == "SUCCEEDED"  # one failure is tolerated
    assert results(cfn, op)[(good, REGION)]["Status"] == "SUCCEEDED"
    assert results(cfn, op)[(inherited, REGION)]["Status"] == "FAILED"
    stack = stack_of(emulator, cfn, inherited)
    assert stack["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert len(topics(emulator, inherited)) == 2  # the Alerts topic is back
    listed = instances(cfn)[(inherited, REGION)]
    assert (listed["Status"], listed["StackInstanceStatus"]["DetailedStatus"]) == ("OUTDATED", "FAILED")
    assert len(topics(emulator, good)) == 1


def test_update_stack_instances_applies_overrides_to_the_stacks(emulator: Emulator) -> None:
    cfn, _ = new_stack_set(emulator)
    acme = fresh_account()
    where = {"StackSetName": "vend-baseline", "Accounts": [acme], "Regions": [REGION]}
    cfn.create_stack_instances(ParameterOverrides=overrides(Env="acme", Owner="dev"), **where)
    assert topics(emulator, acme).count("vend-acme-dev") == 1

    def parameters() -> dict[str, str]:
        return {p["ParameterKey"]: p["ParameterValue"] for p in stack_of(emulator, cfn, acme)["Parameters"]}

    op = cfn.update_stack_instances(ParameterOverrides=overrides(Env="prod", Owner="dev"), **where)["OperationId"]
    assert operation(cfn, op)["Status"] == "SUCCEEDED"
    assert parameters() == {"Env": "prod", "Owner": "dev"}
    assert "vend-prod-dev" in topics(emulator, acme) and "vend-acme-dev" not in topics(emulator, acme)

    cfn.update_stack_instances(  # UsePreviousValue keeps Env; Owner, left out, goes back to the set's value
        ParameterOverrides=[{"ParameterKey": "Env", "UsePreviousValue": True}], **where
    )
    assert parameters() == {"Env": "prod", "Owner": "ops"}
    cfn.update_stack_instances(**where)  # no ParameterOverrides at all: they stay
    assert parameters() == {"Env": "prod", "Owner": "ops"}
    cfn.update_stack_instances(ParameterOverrides=[], **where)  # an empty list: the set's values
    assert parameters() == {"Env": "base", "Owner": "ops"}
    described = cfn.describe_stack_instance(
        StackSetName="vend-baseline", StackInstanceAccount=acme, StackInstanceRegion=REGION
    )["StackInstance"]
    assert described["ParameterOverrides"] == []
    assert error_code(
        cfn.update_stack_instances, StackSetName="vend-baseline", Accounts=[fresh_account()], Regions=[REGION]
    ) == ("StackInstanceNotFoundException")


# --------------------------------------------------------------------------- reading and deleting


def test_instances_are_listed_by_account_region_and_status_and_unknown_ones_are_errors(emulator: Emulator) -> None:
    cfn, _ = new_stack_set(emulator)
    acme, inherited = fresh_account(), fresh_account()
    with_detector(emulator, inherited)
    op = cfn.create_stack_instances(
        StackSetName="vend-baseline",
        Accounts=[acme, inherited],
        Regions=[REGION, OTHER_REGION],
        ParameterOverrides=overrides(Env="x"),
        OperationPreferences={"FailureTolerancePercentage": 100, "RegionConcurrencyType": "PARALLEL"},
    )["OperationId"]
    assert set(instances(cfn, StackInstanceAccount=acme)) == {(acme, REGION), (acme, OTHER_REGION)}
    assert set(instances(cfn, StackInstanceRegion=OTHER_REGION)) == {(acme, OTHER_REGION), (inherited, OTHER_REGION)}
    assert set(instances(cfn, StackInstanceAccount=acme, StackInstanceRegion=REGION)) == {(acme, REGION)}
    failed = instances(cfn, Filters=[{"Name": "DETAILED_STATUS", "Values": "FAILED"}])
    assert set(failed) == {(inherited, REGION)}
    assert len(instances(cfn, Filters=[{"Name": "LAST_OPERATION_ID", "Values": op}])) == 4
    assert error_code(
        cfn.describe_stack_instance,
        StackSetName="vend-baseline",
        StackInstanceAccount=fresh_account(),
        StackInstanceRegion=REGION,
    ) == ("StackInstanceNotFoundException")
    assert error_code(cfn.describe_stack_set_operation, StackSetName="vend-baseline", OperationId="nope") == (
        "OperationNotFoundException"
    )
    assert error_code(cfn.stop_stack_set_operation, StackSetName="vend-baseline", OperationId=op) == (
        "InvalidOperationException"
    )


def test_delete_stack_instances_honours_retain_stacks_and_reports_what_existed(emulator: Emulator) -> None:
    cfn, _ = new_stack_set(emulator)
    kept, removed = fresh_account(), fresh_account()
    cfn.create_stack_instances(
        StackSetName="vend-baseline", Accounts=[kept, removed], Regions=[REGION], ParameterOverrides=overrides(Env="x")
    )
    kept_stack = stack_of(emulator, cfn, kept)["StackId"]
    removed_stack = stack_of(emulator, cfn, removed)["StackId"]

    retain = cfn.delete_stack_instances(
        StackSetName="vend-baseline", Accounts=[kept], Regions=[REGION], RetainStacks=True, OperationId="retain"
    )
    assert retain["OperationId"] == "retain"
    assert operation(cfn, "retain")["RetainStacks"] is True
    target = client(emulator, "cloudformation", kept)
    assert target.describe_stacks(StackName=kept_stack)["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"
    assert topics(emulator, kept)

    delete = cfn.delete_stack_instances(
        StackSetName="vend-baseline", Accounts=[kept, removed], Regions=[REGION, OTHER_REGION], RetainStacks=False
    )["OperationId"]
    assert {k: r["Status"] for k, r in results(cfn, delete).items()} == {(removed, REGION): "SUCCEEDED"}
    target = client(emulator, "cloudformation", removed)
    assert target.describe_stacks(StackName=removed_stack)["Stacks"][0]["StackStatus"] == "DELETE_COMPLETE"
    assert topics(emulator, removed) == []
    assert client(emulator, "guardduty", removed).list_detectors()["DetectorIds"] == []
    assert instances(cfn) == {}
    cfn.delete_stack_set(StackSetName="vend-baseline")


def test_a_protected_stack_makes_its_instance_inoperable(emulator: Emulator) -> None:
    cfn, _ = new_stack_set(emulator)
    acme = fresh_account()
    cfn.create_stack_instances(
        StackSetName="vend-baseline", Accounts=[acme], Regions=[REGION], ParameterOverrides=overrides(Env="x")
    )
    stack = stack_of(emulator, cfn, acme)
    # What UpdateTerminationProtection sets (moto's server and the emulator share a process).
    cloudformation_backends[acme][REGION].stacks[stack["StackId"]].enable_termination_protection = True
    op = cfn.delete_stack_instances(
        StackSetName="vend-baseline", Accounts=[acme], Regions=[REGION], RetainStacks=False
    )["OperationId"]
    assert results(cfn, op)[(acme, REGION)]["Status"] == "FAILED"
    assert "TerminationProtection" in results(cfn, op)[(acme, REGION)]["StatusReason"]
    listed = instances(cfn)[(acme, REGION)]
    assert (listed["Status"], listed["StackInstanceStatus"]["DetailedStatus"]) == ("INOPERABLE", "INOPERABLE")
    target = client(emulator, "cloudformation", acme)
    assert target.describe_stacks(StackName=stack["StackId"])["Stacks"][0]["StackStatus"] == "CREATE_COMPLETE"


# --------------------------------------------------------------------------- injected faults

INSTANCE_FAULT = """\
faults:
  - service: cloudformation
    operation: StackInstance
    account: "{account}"
    region: {region}
    error: AccessDenied
    message: Account {account} should have 'VendStackSetExecution' role with trust relationship
  - service: cloudformation           # an API rule in a target account fails no instance
    account: "{account}"
    error: Throttling
"""


def test_a_fault_rule_fails_one_stack_instance(emulator: Emulator) -> None:
    cfn, _ = new_stack_set(emulator)
    acme, globex = fresh_account(), fresh_account()
    plan, problems = parse_fault_text(INSTANCE_FAULT.format(account=globex, region=OTHER_REGION))
    assert plan is not None, problems
    emulator.injector.load(plan)
    op = cfn.create_stack_instances(
        StackSetName="vend-baseline",
        Accounts=[acme, globex],
        Regions=[REGION, OTHER_REGION],
        ParameterOverrides=overrides(Env="x"),
        OperationPreferences={"FailureToleranceCount": 1, "MaxConcurrentCount": 2},
    )["OperationId"]
    by_target = results(cfn, op)
    assert [k for k, r in by_target.items() if r["Status"] != "SUCCEEDED"] == [(globex, OTHER_REGION)]
    reason = by_target[(globex, OTHER_REGION)]["StatusReason"]
    assert reason == f"Account {globex} should have 'VendStackSetExecution' role with trust relationship"
    assert operation(cfn, op)["Status"] == "SUCCEEDED"
    listed = instances(cfn)[(globex, OTHER_REGION)]
    assert (listed["Status"], listed["StatusReason"]) == ("OUTDATED", reason)
    assert "StackId" not in listed  # failed before its stack was touched
    assert "StackId" in instances(cfn)[(globex, REGION)]


def test_stack_instance_fault_rules_are_validated() -> None:
    plan, problems = parse_fault_text(INSTANCE_FAULT.format(account="222233334444", region="eu-west-1"))
    assert problems == [] and plan is not None
    assert plan.rules[0].operation == "StackInstance"
    _, problems = parse_fault_text("faults:\n  - {service: cloudformation, operation: StackInstance, latency_ms: 5}\n")
    assert [p.message for p in problems] == [
        "a StackInstance rule needs an error: it fails the instance with its message"
    ]


def test_the_patches_install_once_and_come_off(emulator: Emulator) -> None:
    patched = StackSet.update
    stacksets.install_stackset_patches()
    assert StackSet.update is patched
    stacksets.uninstall_stackset_patches()
    try:
        assert StackSet.update is not patched and StackSet.update.__module__ == "moto.cloudformation.models"
    finally:
        stacksets.install_stackset_patches()
    assert StackSet.update is patched
