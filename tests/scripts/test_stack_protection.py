"""Stack protection: what the driver applies, when it calls AWS for it, and how it keeps a
change set from replacing or deleting what the stack policy protects.

The policy logic is checked offline and with botocore's Stubber (exact calls, in order);
the deploy hooks run against the emulator, with change-set replacements injected by
botocore hooks (moto reports none).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from baseline.stack_policy import STACK_POLICY_METADATA_KEY, stack_policy
from scripts.assembly import StackArtifact, read_assembly
from scripts.aws import AwsAccess
from scripts.deploy import deploy_stack
from scripts.emulator.server import Emulator
from scripts.stack_protection import (
    ProtectedChange,
    Protection,
    ProtectionError,
    ProtectionOptions,
    apply_protection,
    governed_changes,
    override_policy,
    policy_denies,
    protect_stack,
    review_change_set,
    wanted_protection,
)
from tests.scripts.kit import fake_aws_env, role

ACCOUNT = "777700001111"
REGION = "us-east-1"
POLICY = stack_policy(["Trail", "Detector"])


# --------------------------------------------------------------------------- policy, offline


def change(lid: str, action: str, rtype: str = "AWS::CloudTrail::Trail") -> ProtectedChange:
    return ProtectedChange(lid, rtype, action)


def test_vend_policy_denies_replacing_and_deleting_protected_resources_only() -> None:
    assert policy_denies(POLICY, change("Trail", "Update:Replace"))
    assert policy_denies(POLICY, change("Detector", "Update:Delete"))
    assert not policy_denies(POLICY, change("Trail", "Update:Modify"))
    assert not policy_denies(POLICY, change("Budget", "Update:Replace"))
    assert not policy_denies(None, change("Trail", "Update:Delete"))  # no policy: everything goes


def test_policy_evaluation_follows_cloudformation() -> None:
    allow_all = {"Effect": "Allow", "Principal": "*", "Action": "Update:*", "Resource": "*"}
    by_type = {
        "Statement": [
            allow_all,
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "Update:*",
                "Resource": "*",
                "Condition": {"StringEquals": {"ResourceType": ["AWS::RDS::DBInstance"]}},
            },
        ]
    }
    assert policy_denies(by_type, change("Db", "Update:Modify", "AWS::RDS::DBInstance"))
    assert not policy_denies(by_type, change("Q", "Update:Modify", "AWS::SQS::Queue"))
    wildcard = {
        "Statement": [allow_all, {"Effect": "Deny", "Action": "Update:Replace", "Resource": "LogicalResourceId/Prod*"}]
    }
    assert policy_denies(wildcard, change("ProdDb", "Update:Replace"))
    assert not policy_denies(wildcard, change("TestDb", "Update:Replace"))
    not_resource = {
        "Statement": [allow_all, {"Effect": "Deny", "Action": "Update:*", "NotResource": "LogicalResourceId/Ok"}]
    }
    assert policy_denies(not_resource, change("Other", "Update:Modify"))
    assert not policy_denies(not_resource, change("Ok", "Update:Modify"))
    only_modify = {"Statement": [{"Effect": "Allow", "Action": "Update:Modify", "Resource": "*"}]}
    assert policy_denies(only_modify, change("X", "Update:Delete"))  # not allowed = denied
    odd_condition = {
        "Statement": [
            allow_all,
            {"Effect": "Deny", "Action": "Update:*", "Resource": "*", "Condition": {"IpAddress": {"x": "y"}}},
        ]
    }
    assert policy_denies(odd_condition, change("X", "Update:Modify"))  # cannot judge: counts against


def test_governed_changes_are_removals_and_possible_replacements() -> None:
    changes = [
        {"ResourceChange": {"Action": "Modify", "LogicalResourceId": "A", "ResourceType": "T", "Replacement": "True"}},
        {
            "ResourceChange": {
                "Action": "Modify",
                "LogicalResourceId": "B",
                "ResourceType": "T",
                "Replacement": "Conditional",
            }
        },
        {"ResourceChange": {"Action": "Modify", "LogicalResourceId": "C", "ResourceType": "T", "Replacement": "False"}},
        {"ResourceChange": {"Action": "Remove", "LogicalResourceId": "D", "ResourceType": "T"}},
        {"ResourceChange": {"Action": "Add", "LogicalResourceId": "E", "ResourceType": "T"}},
    ]
    assert [(c.logical_id, c.action) for c in governed_changes(changes)] == [
        ("A", "Update:Replace"),
        ("B", "Update:Replace"),
        ("D", "Update:Delete"),
    ]


def test_override_lets_through_exactly_the_allowed_changes() -> None:
    allowed = [change("Trail", "Update:Replace")]
    override = override_policy(POLICY, allowed)
    assert not policy_denies(override, allowed[0])
    assert policy_denies(override, change("Detector", "Update:Delete"))
    assert policy_denies(override, change("Trail", "Update:Delete"))  # only the replacement was allowed
    assert stack_policy(["Trail", "Detector"]) == POLICY  # the input is not changed
    everything = {
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "Update:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": "*", "Action": "Update:*", "Resource": ["LogicalResourceId/Trail"]},
        ]
    }
    narrow = override_policy(everything, allowed)
    assert not policy_denies(narrow, allowed[0])
    assert policy_denies(narrow, change("Trail", "Update:Modify"))
    assert policy_denies(narrow, change("Trail", "Update:Delete"))


def test_wanted_protection_reads_the_template_metadata() -> None:
    template = {"Metadata": {STACK_POLICY_METADATA_KEY: POLICY}, "Resources": {}}
    assert wanted_protection(True, template) == Protection(True, POLICY)
    assert wanted_protection(False, {"Resources": {}}) == Protection(False, None)
    with pytest.raises(ProtectionError, match="not a stack policy"):
        wanted_protection(True, {"Metadata": {STACK_POLICY_METADATA_KEY: {"Statement": "x"}}})


# --------------------------------------------------------------------------- exact calls (Stubber)


@pytest.fixture
def stubbed() -> Iterator[tuple[Any, Stubber]]:
    cfn = boto3.client(
        "cloudformation", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )  # never reaches the network: every call is stubbed
    with Stubber(cfn) as stubber:
        yield cfn, stubber
        stubber.assert_no_pending_responses()


BODY = json.dumps(POLICY, separators=(",", ":"), sort_keys=True)


def expect_set_policy(stubber: Stubber, name: str = "vend-x") -> None:
    stubber.add_response("set_stack_policy", {}, {"StackName": name, "StackPolicyBody": BODY})


def expect_protection_on(stubber: Stubber, name: str = "vend-x") -> None:
    stubber.add_response(
        "update_termination_protection", {"StackId": "id"}, {"StackName": name, "EnableTerminationProtection": True}
    )


def test_apply_protection_sets_the_policy_before_termination_protection(stubbed: tuple[Any, Stubber]) -> None:
    cfn, stubber = stubbed
    expect_set_policy(stubber)
    expect_protection_on(stubber)
    changed = apply_protection(cfn, "vend-x", termination_protection=True, stack_policy=POLICY)
    assert changed == ("stack policy set", "termination protection enabled")


def test_apply_protection_leaves_termination_protection_that_is_on(stubbed: tuple[Any, Stubber]) -> None:
    cfn, stubber = stubbed
    expect_set_policy(stubber)
    current = {"EnableTerminationProtection": True}
    assert apply_protection(cfn, "vend-x", stack_policy=POLICY, current=current) == ("stack policy set",)


def test_apply_protection_with_check_sets_only_a_different_policy(stubbed: tuple[Any, Stubber]) -> None:
    cfn, stubber = stubbed
    stubber.add_response("get_stack_policy", {"StackPolicyBody": json.dumps(POLICY, indent=2)}, {"StackName": "vend-x"})
    current = {"EnableTerminationProtection": True}
    assert apply_protection(cfn, "vend-x", stack_policy=POLICY, current=current, check_policy=True) == ()
    stubber.add_response("get_stack_policy", {}, {"StackName": "vend-x"})  # no policy at all
    expect_set_policy(stubber)
    assert apply_protection(cfn, "vend-x", stack_policy=POLICY, current=current, check_policy=True) == (
        "stack policy set",
    )


def test_apply_protection_never_turns_protection_off(stubbed: tuple[Any, Stubber]) -> None:
    cfn, _ = stubbed
    assert apply_protection(cfn, "vend-x", termination_protection=False, current={}) == ()


WANTED = Protection(True, POLICY)


def test_unchanged_protected_stack_costs_no_call(stubbed: tuple[Any, Stubber]) -> None:
    cfn, _ = stubbed  # any call would fail: nothing is stubbed
    current = {"StackStatus": "UPDATE_COMPLETE", "EnableTerminationProtection": True}
    assert protect_stack(cfn, "vend-x", WANTED, current, deployed=False) == ()
    assert protect_stack(cfn, "vend-x", Protection(), {}, deployed=True) == ()  # nothing wanted


def test_unchanged_stack_without_termination_protection_is_repaired(stubbed: tuple[Any, Stubber]) -> None:
    cfn, stubber = stubbed
    stubber.add_response("get_stack_policy", {}, {"StackName": "vend-x"})
    expect_set_policy(stubber)
    expect_protection_on(stubber)
    current = {"StackStatus": "CREATE_COMPLETE", "EnableTerminationProtection": False}
    notes = protect_stack(cfn, "vend-x", WANTED, current, deployed=False)
    assert notes == ("protection restored (stack policy set, termination protection enabled)",)


def test_verify_reads_the_policy_of_a_protected_unchanged_stack(stubbed: tuple[Any, Stubber]) -> None:
    """After `cdk deploy`: termination protection on, no stack policy."""
    cfn, stubber = stubbed
    stubber.add_response("get_stack_policy", {}, {"StackName": "vend-x"})
    expect_set_policy(stubber)
    current = {"StackStatus": "CREATE_COMPLETE", "EnableTerminationProtection": True}
    notes = protect_stack(cfn, "vend-x", WANTED, current, deployed=False, options=ProtectionOptions(verify=True))
    assert notes == ("protection restored (stack policy set)",)


def test_after_a_deploy_protection_is_applied_without_reading_first(stubbed: tuple[Any, Stubber]) -> None:
    cfn, stubber = stubbed
    expect_set_policy(stubber)
    expect_protection_on(stubber)
    assert protect_stack(cfn, "vend-x", WANTED, {"StackStatus": "CREATE_COMPLETE"}, deployed=True) == ()


def described(*changes: dict[str, Any], token: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ChangeSetId": "cs-1",
        "Changes": [{"Type": "Resource", "ResourceChange": c} for c in changes],
    }
    if token:
        out["NextToken"] = token
    return out


REPLACE_TRAIL = {
    "Action": "Modify",
    "LogicalResourceId": "Trail",
    "ResourceType": "AWS::CloudTrail::Trail",
    "Replacement": "True",
}


def test_review_reads_no_policy_when_nothing_is_replaced_or_removed(stubbed: tuple[Any, Stubber]) -> None:
    cfn, _ = stubbed
    modify = {"Action": "Modify", "LogicalResourceId": "Trail", "ResourceType": "T", "Replacement": "False"}
    add = {"Action": "Add", "LogicalResourceId": "New", "ResourceType": "T"}
    assert review_change_set(cfn, "vend-x", described(modify, add)) is None


def test_review_refuses_a_protected_replacement(stubbed: tuple[Any, Stubber]) -> None:
    cfn, stubber = stubbed
    stubber.add_response("get_stack_policy", {"StackPolicyBody": BODY}, {"StackName": "vend-x"})
    with pytest.raises(ProtectionError) as caught:
        review_change_set(cfn, "vend-x", described(REPLACE_TRAIL))
    message = str(caught.value)
    assert "replace Trail (AWS::CloudTrail::Trail)" in message
    assert "--allow-protected-change Trail" in message


def test_review_follows_pages_and_allows_by_resource_type(stubbed: tuple[Any, Stubber]) -> None:
    cfn, stubber = stubbed
    remove_detector = {"Action": "Remove", "LogicalResourceId": "Detector", "ResourceType": "AWS::GuardDuty::Detector"}
    stubber.add_response(
        "describe_change_set", described(remove_detector), {"ChangeSetName": "cs-1", "NextToken": "page-2"}
    )
    stubber.add_response("get_stack_policy", {"StackPolicyBody": BODY}, {"StackName": "vend-x"})
    options = ProtectionOptions(allow=("AWS::CloudTrail::*", "Detector"))

    override = review_change_set(cfn, "vend-x", described(REPLACE_TRAIL, token="page-2"), options=options)

    assert override is not None
    assert [c.logical_id for c in override.changes] == ["Trail", "Detector"]
    body = json.loads(override.body)
    assert not policy_denies(body, change("Trail", "Update:Replace"))
    assert not policy_denies(body, change("Detector", "Update:Delete"))
    assert "replace Trail" in override.describe() and "delete Detector" in override.describe()


def test_review_refuses_what_it_cannot_override_precisely(stubbed: tuple[Any, Stubber]) -> None:
    cfn, stubber = stubbed
    by_wildcard = {
        "Statement": [
            {"Effect": "Allow", "Principal": "*", "Action": "Update:*", "Resource": "*"},
            {"Effect": "Deny", "Principal": "*", "Action": "Update:Replace", "Resource": "LogicalResourceId/Tr*"},
        ]
    }
    stubber.add_response("get_stack_policy", {"StackPolicyBody": json.dumps(by_wildcard)}, {"StackName": "vend-x"})
    with pytest.raises(ProtectionError, match="wildcard"):
        review_change_set(cfn, "vend-x", described(REPLACE_TRAIL), options=ProtectionOptions(allow=("Trail",)))


# --------------------------------------------------------------------------- deploy hooks (emulator)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with fake_aws_env(tmp_path_factory.mktemp("aws")), Emulator().start() as emu:
        yield emu


@pytest.fixture
def access(emulator: Emulator) -> AwsAccess:
    urllib.request.urlopen(urllib.request.Request(f"{emulator.url}/moto-api/reset", method="POST")).close()
    return AwsAccess(endpoint_url=emulator.url)


@dataclass(frozen=True)
class HookedAccess(AwsAccess):
    hooks: tuple[tuple[str, Any], ...] = ()

    def client(self, session: boto3.Session, service: str, region: str) -> Any:
        client = super().client(session, service, region)
        for event, handler in self.hooks:
            client.meta.events.register(event, handler)
        return client


class Calls:
    def __init__(self) -> None:
        self.names: list[str] = []
        self.params: dict[str, dict[str, Any]] = {}

    def __call__(self, model: Any, params: Any = None, **_: Any) -> None:
        self.names.append(model.name)

    def record(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.params[model.name] = dict(params)


def queue(name: str) -> dict[str, Any]:
    return {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": name}}


def protected_stack(outdir: Path, queue_name: str, *, protect: bool = True) -> StackArtifact:
    """A one-queue stack asking for what vend's client stacks ask for (manifest + Metadata)."""
    outdir.mkdir(parents=True, exist_ok=True)
    template = {"Resources": {"Q": queue(queue_name), "Other": queue(f"{queue_name}-other")}}
    if protect:
        template["Metadata"] = {STACK_POLICY_METADATA_KEY: stack_policy(["Q"])}
    (outdir / "P.template.json").write_text(json.dumps(template))
    manifest = {
        "version": "55.0.0",
        "artifacts": {
            "P": {
                "type": "aws:cloudformation:stack",
                "environment": f"aws://{ACCOUNT}/{REGION}",
                "properties": {
                    "templateFile": "P.template.json",
                    "stackName": "vend-protected",
                    "terminationProtection": protect,
                },
            }
        },
    }
    (outdir / "manifest.json").write_text(json.dumps(manifest))
    (artifact,) = read_assembly(outdir)
    return artifact


def cfn_for(access: AwsAccess) -> Any:
    session = access.assume_role(role(ACCOUNT), external_id=None, session_name="t", region=REGION)
    return access.client(session, "cloudformation", REGION)


def live(access: AwsAccess) -> tuple[bool, Any]:
    cfn = cfn_for(AwsAccess(endpoint_url=access.endpoint_url))
    stack = cfn.describe_stacks(StackName="vend-protected")["Stacks"][0]
    body = cfn.get_stack_policy(StackName="vend-protected").get("StackPolicyBody")
    return bool(stack["EnableTerminationProtection"]), json.loads(body) if body else None


def deploy(access: AwsAccess, stack: StackArtifact, **kwargs: Any) -> Any:
    return deploy_stack(cfn_for(access), stack, poll_s=0.01, **kwargs)


def test_deploy_protects_a_new_stack_and_an_unchanged_one_costs_nothing_more(access: AwsAccess, tmp_path: Path) -> None:
    stack = protected_stack(tmp_path / "v1", "keep-q")
    assert stack.termination_protection

    created = deploy(access, stack)

    assert created.outcome == "CREATED", created.detail
    assert live(access) == (True, stack_policy(["Q"]))
    calls = Calls()
    again = deploy(
        HookedAccess(endpoint_url=access.endpoint_url, hooks=(("before-call.cloudformation", calls),)), stack
    )
    assert again.outcome == "UNCHANGED", again.detail
    assert calls.names == ["DescribeStacks", "GetTemplate"]  # what an unprotected stack costs

    unprotected = protected_stack(tmp_path / "plain", "keep-q", protect=False)
    assert unprotected.termination_protection is False  # the MSP side: nothing asked, nothing done


def test_deploy_restores_protection_removed_out_of_band(access: AwsAccess, tmp_path: Path) -> None:
    stack = protected_stack(tmp_path / "v1", "restore-q")
    deploy(access, stack)
    cfn = cfn_for(access)
    cfn.update_termination_protection(StackName="vend-protected", EnableTerminationProtection=False)
    cfn.set_stack_policy(StackName="vend-protected", StackPolicyBody=json.dumps({"Statement": []}))

    result = deploy(access, stack)

    assert result.outcome == "UNCHANGED"
    assert "protection restored (stack policy set, termination protection enabled)" in result.detail
    assert result.actions == ("protection restored (stack policy set, termination protection enabled)",)
    assert live(access) == (True, stack_policy(["Q"]))


def test_a_protected_stack_cannot_be_deleted(access: AwsAccess, tmp_path: Path) -> None:
    deploy(access, protected_stack(tmp_path, "nodelete-q"))
    with pytest.raises(ClientError, match="cannot be deleted while TerminationProtection is enabled"):
        cfn_for(access).delete_stack(StackName="vend-protected")


def replaces_q(parsed: dict[str, Any], **_: Any) -> None:
    """moto reports no replacements: say what CloudFormation would for a renamed queue."""
    for entry in parsed.get("Changes") or []:
        rc = entry.get("ResourceChange") or {}
        if rc.get("LogicalResourceId") == "Q":
            rc["Replacement"] = "True"


def test_update_that_replaces_a_protected_resource_fails_unless_allowed(access: AwsAccess, tmp_path: Path) -> None:
    deploy(access, protected_stack(tmp_path / "v1", "old-q"))
    renamed = protected_stack(tmp_path / "v2", "new-q")
    calls = Calls()
    hooks = (
        ("after-call.cloudformation.DescribeChangeSet", replaces_q),
        ("before-call.cloudformation", calls),
        ("provide-client-params.cloudformation.UpdateStack", calls.record),
    )
    hooked = HookedAccess(endpoint_url=access.endpoint_url, hooks=hooks)

    refused = deploy(hooked, renamed)

    assert refused.outcome == "FAILED"
    assert "replace Q (AWS::SQS::Queue)" in refused.detail and "--allow-protected-change Q" in refused.detail
    assert {"ExecuteChangeSet", "UpdateStack"}.isdisjoint(calls.names)
    assert "DeleteChangeSet" in calls.names
    cfn = cfn_for(access)
    template = cfn.get_template(StackName="vend-protected")["TemplateBody"]
    assert template["Resources"]["Q"]["Properties"]["QueueName"] == "old-q"  # nothing changed

    allowed = deploy(hooked, renamed, protection=ProtectionOptions(allow=("Q",)))

    assert allowed.outcome == "UPDATED", allowed.detail
    assert allowed.actions == ("stack policy overridden for this update to replace Q (AWS::SQS::Queue)",)
    during = json.loads(calls.params["UpdateStack"]["StackPolicyDuringUpdateBody"])
    assert not policy_denies(during, change("Q", "Update:Replace", "AWS::SQS::Queue"))
    assert "StackPolicyBody" not in calls.params["UpdateStack"]  # the stack's own policy stays
    assert live(access) == (True, stack_policy(["Q"]))
    template = cfn.get_template(StackName="vend-protected")["TemplateBody"]
    assert template["Resources"]["Q"]["Properties"]["QueueName"] == "new-q"


def test_protection_that_cannot_be_applied_fails_the_stack(access: AwsAccess, tmp_path: Path) -> None:
    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not allowed"}}, "SetStackPolicy")

    hooked = HookedAccess(
        endpoint_url=access.endpoint_url, hooks=(("before-call.cloudformation.SetStackPolicy", refuse),)
    )

    result = deploy(hooked, protected_stack(tmp_path, "denied-q"))

    assert result.outcome == "FAILED"
    assert result.detail.startswith("deployed, but its protection could not be applied: SetStackPolicy: AccessDenied")
    assert result.status == "CREATE_COMPLETE"
    assert live(access) == (False, None)  # policy first: no termination protection without it
    repaired = deploy(access, protected_stack(tmp_path, "denied-q"))
    assert repaired.outcome == "UNCHANGED" and live(access) == (True, stack_policy(["Q"]))
