"""Deploying one stack and one target with change sets into the emulator.

moto completes change sets synchronously and cannot produce stack failures, rollbacks
or throttling. Stuck stacks come from the emulator's fault layer (preset stack states,
``scripts/emulator/faults.py``); single odd answers are injected with botocore event hooks
on the very clients the driver creates (``HookedAccess``). The driver's reaction is
checked against live emulator state.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

from scripts.assembly import StackArtifact, read_assembly
from scripts.aws import AwsAccess
from scripts.deploy import Cancel, Target, TargetResult, TemplateStager, deploy_stack, deploy_targets
from scripts.emulator.faults import FaultPlan, parse_fault_text
from scripts.emulator.server import Emulator

MSP = "123456789012"  # moto's account for the base (non-assumed) credentials
ACME = "111122223333"
GLOBEX = "444455556666"
REGION = "us-east-1"


def role(account: str) -> str:
    return f"arn:aws:iam::{account}:role/VendDeploy"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One emulator per module, with fake credentials and no user AWS config."""
    nowhere = tmp_path_factory.mktemp("aws") / "none"
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "MOTO_ACCOUNT_ID"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", REGION)
        env.setenv("AWS_CONFIG_FILE", str(nowhere))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
        with Emulator().start() as emu:
            yield emu


@pytest.fixture(scope="module")
def endpoint(emulator: Emulator) -> str:
    return emulator.url


@pytest.fixture(autouse=True)
def fresh_state(emulator: Emulator) -> Iterator[None]:
    emulator.injector.load(None)
    request = urllib.request.Request(f"{emulator.url}/moto-api/reset", method="POST")
    urllib.request.urlopen(request).close()
    yield
    emulator.injector.load(None)


def faults(emulator: Emulator, text: str) -> FaultPlan:
    plan, problems = parse_fault_text(text)
    assert plan is not None, problems
    emulator.injector.load(plan)
    return plan


@pytest.fixture
def access(endpoint: str) -> AwsAccess:
    return AwsAccess(endpoint_url=endpoint)


@dataclass(frozen=True)
class HookedAccess(AwsAccess):
    """AwsAccess whose clients carry botocore event hooks, to inject faults and observe calls."""

    hooks: tuple[tuple[str, Any], ...] = ()

    def client(self, session: boto3.Session, service: str, region: str) -> Any:
        client = super().client(session, service, region)
        for event, handler in self.hooks:
            client.meta.events.register(event, handler)
        return client


class CallLog:
    """Records CloudFormation operation names (thread-safe: targets run concurrently)."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, model: Any, **_: Any) -> None:
        with self._lock:
            self.names.append(model.name)


class _Body:
    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


def error_response(code: str, message: str, status: int = 400) -> Any:
    """A before-call hook result that makes botocore raise ClientError(code, message)."""
    return AWSResponse("http://injected", status, {}, _Body(b"")), {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }


# --------------------------------------------------------------------------- helpers


def queue(name: str, **properties: Any) -> dict[str, Any]:
    return {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": name, **properties}}


def topic(name: str) -> dict[str, Any]:
    return {"Type": "AWS::SNS::Topic", "Properties": {"TopicName": name}}


def make_stack(
    outdir: Path,
    artifact_id: str,
    resources: dict[str, Any],
    *,
    account: str = ACME,
    region: str = REGION,
    tags: dict[str, str] | None = None,
    depends_on: tuple[str, ...] = (),
) -> StackArtifact:
    """Write a one-stack manifest.json (plus a non-stack artifact) and read it back."""
    outdir = outdir / artifact_id
    outdir.mkdir(parents=True, exist_ok=True)
    template = outdir / f"{artifact_id}.template.json"
    template.write_text(json.dumps({"Resources": resources}, indent=1))
    manifest = {
        "version": "55.0.0",
        "artifacts": {
            artifact_id: {
                "type": "aws:cloudformation:stack",
                "environment": f"aws://{account}/{region}",
                "properties": {
                    "templateFile": template.name,
                    "stackName": f"vend-{artifact_id.lower()}",
                    "tags": tags or {},
                },
                "dependencies": list(depends_on),
            },
            "Tree": {"type": "cdk:tree", "properties": {"file": "tree.json"}},
        },
    }
    (outdir / "manifest.json").write_text(json.dumps(manifest))
    (artifact,) = read_assembly(outdir)
    # read_assembly drops dependencies on stacks outside its manifest; restore them
    return replace(artifact, depends_on=depends_on)


def session_in(access: AwsAccess, account: str) -> boto3.Session:
    if account == MSP:
        return access.base_session()
    return access.assume_role(role(account), external_id=None, session_name="check", region=REGION)


def cfn_in(access: AwsAccess, account: str, region: str = REGION) -> Any:
    return access.client(session_in(access, account), "cloudformation", region)


def queue_names(access: AwsAccess, account: str, region: str = REGION) -> set[str]:
    sqs = access.client(session_in(access, account), "sqs", region)
    return {url.rsplit("/", 1)[1] for url in sqs.list_queues().get("QueueUrls", [])}


def topic_names(access: AwsAccess, account: str, region: str = REGION) -> set[str]:
    sns = access.client(session_in(access, account), "sns", region)
    pages = sns.get_paginator("list_topics").paginate()
    return {t["TopicArn"].rsplit(":", 1)[1] for page in pages for t in page["Topics"]}


def change_set_statuses(cfn: Any, stack_name: str) -> list[str]:
    return [s["Status"] for s in cfn.list_change_sets(StackName=stack_name)["Summaries"]]


def deploy_one(access: AwsAccess, stack: StackArtifact, **kwargs: Any) -> Any:
    return deploy_stack(cfn_in(access, stack.account, stack.region), stack, poll_s=0.01, **kwargs)


# --------------------------------------------------------------------------- deploy_stack


def test_create_then_unchanged_then_updated(access: AwsAccess, tmp_path: Path) -> None:
    v1 = make_stack(tmp_path / "v1", "Acme", {"Q": queue("acme-q")}, tags={"Owner": "ops"})
    v2 = make_stack(tmp_path / "v2", "Acme", {"Q": queue("acme-q"), "T": topic("acme-t")})

    created = deploy_one(access, v1)
    assert (created.outcome, created.account, created.region) == ("CREATED", ACME, REGION)
    assert "acme-q" in queue_names(access, ACME)
    assert "acme-q" not in queue_names(access, MSP)  # landed in the assumed account only

    calls = CallLog()
    hooked = HookedAccess(endpoint_url=access.endpoint_url, hooks=(("before-call.cloudformation", calls),))
    unchanged = deploy_one(hooked, v1)
    assert unchanged.outcome == "UNCHANGED"
    assert "CreateChangeSet" not in calls.names

    updated = deploy_one(access, v2)
    assert updated.outcome == "UPDATED", updated.detail
    assert "acme-t" in topic_names(access, ACME)


def test_tag_change_alone_is_not_taken_for_unchanged(access: AwsAccess, tmp_path: Path) -> None:
    resources = {"Q": queue("tagged-q")}
    deploy_one(access, make_stack(tmp_path / "a", "Tagged", resources, tags={"Owner": "a"}))
    calls = CallLog()
    hooked = HookedAccess(endpoint_url=access.endpoint_url, hooks=(("before-call.cloudformation", calls),))

    deploy_one(hooked, make_stack(tmp_path / "b", "Tagged", resources, tags={"Owner": "b"}))

    # Real CloudFormation then updates the tags; moto 5.2.5 calls a tags-only
    # change set empty, so only the driver's side of this is checked here.
    assert "CreateChangeSet" in calls.names


@pytest.mark.parametrize("reason", ["didn't contain changes", "No updates are to be performed."])
def test_empty_change_set_is_unchanged_and_deleted(access: AwsAccess, tmp_path: Path, reason: str) -> None:
    stack = make_stack(tmp_path, "Empty", {"Q": queue("empty-q")})
    assert deploy_one(access, stack).outcome == "CREATED"

    def template_looks_different(parsed: dict[str, Any], **_: Any) -> None:
        # e.g. a formatting-only difference CloudFormation itself ignores
        parsed["TemplateBody"] = {"Resources": {}}

    def say_no_updates(parsed: dict[str, Any], **_: Any) -> None:
        parsed.update(Status="FAILED", StatusReason=reason, ExecutionStatus="UNAVAILABLE")

    hooks: list[tuple[str, Any]] = [("after-call.cloudformation.GetTemplate", template_looks_different)]
    if "didn't" not in reason:  # moto's own wording is the first one; inject the other
        hooks.append(("after-call.cloudformation.DescribeChangeSet", say_no_updates))
    calls = CallLog()
    hooks.append(("before-call.cloudformation", calls))
    hooked = HookedAccess(endpoint_url=access.endpoint_url, hooks=tuple(hooks))

    result = deploy_one(hooked, stack)

    assert result.outcome == "UNCHANGED", result.detail
    assert "ExecuteChangeSet" not in calls.names
    assert "DeleteChangeSet" in calls.names
    cfn = cfn_in(access, ACME)
    assert change_set_statuses(cfn, "vend-empty") == ["CREATE_COMPLETE"]  # only the original one


WRITES = {"CreateChangeSet", "ExecuteChangeSet", "DeleteStack", "ContinueUpdateRollback", "DeleteChangeSet"}


def preset(emulator: Emulator, stack: str, status: str, **extra: Any) -> None:
    fields = "".join(f", {k}: {json.dumps(v)}" for k, v in extra.items())
    faults(
        emulator, f'stacks:\n  - {{account: "{ACME}", region: {REGION}, stack: {stack}, status: {status}{fields}}}\n'
    )


def cfn_calls(emulator: Emulator, account: str = ACME) -> list[str]:
    return [
        c.operation
        for c, n in emulator.injector.calls.items()
        for _ in range(n)
        if c.service == "cloudformation" and c.account == account
    ]


def test_rollback_complete_is_reported_with_its_reason_and_left_alone(
    access: AwsAccess, emulator: Emulator, tmp_path: Path
) -> None:
    preset(emulator, "vend-stuck", "ROLLBACK_COMPLETE", reason="Trail: InsufficientS3BucketPolicyException")

    result = deploy_one(access, make_stack(tmp_path, "Stuck", {"Q": queue("stuck-q")}))

    assert (result.outcome, result.status) == ("FAILED", "ROLLBACK_COMPLETE")
    assert "InsufficientS3BucketPolicyException" in result.detail
    assert "--recreate-failed" in result.detail
    assert not WRITES & set(cfn_calls(emulator))  # nothing deleted, nothing changed
    assert cfn_in(access, ACME).describe_stacks(StackName="vend-stuck")["Stacks"][0]["StackStatus"] == (
        "ROLLBACK_COMPLETE"
    )
    assert "stuck-q" not in queue_names(access, ACME)


def test_rollback_complete_is_recreated_only_when_asked(access: AwsAccess, emulator: Emulator, tmp_path: Path) -> None:
    preset(emulator, "vend-stuck", "ROLLBACK_COMPLETE", reason="Trail: InsufficientS3BucketPolicyException")

    result = deploy_one(access, make_stack(tmp_path, "Stuck", {"Q": queue("stuck-q")}), recreate_failed=True)

    assert result.outcome == "CREATED", result.detail
    assert result.detail.startswith("recreated (was ROLLBACK_COMPLETE: ")
    assert any(a.startswith("deleted the ROLLBACK_COMPLETE stack") for a in result.actions)
    assert "DeleteStack" in cfn_calls(emulator)
    stack = cfn_in(access, ACME).describe_stacks(StackName="vend-stuck")["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert "stuck-q" in queue_names(access, ACME)


def test_update_rollback_failed_is_continued_then_updated_never_deleted(
    access: AwsAccess, emulator: Emulator, tmp_path: Path
) -> None:
    preset(emulator, "vend-stuck", "UPDATE_ROLLBACK_FAILED", reason="Detector: a detector already exists")

    result = deploy_one(access, make_stack(tmp_path, "Stuck", {"Q": queue("stuck-q")}))

    assert result.outcome == "UPDATED", result.detail
    assert "continued the rollback" in result.detail and "a detector already exists" in result.detail
    calls = cfn_calls(emulator)
    assert "ContinueUpdateRollback" in calls and "DeleteStack" not in calls
    assert calls.index("ContinueUpdateRollback") < calls.index("CreateChangeSet")
    assert "stuck-q" in queue_names(access, ACME)


def test_refused_continue_rollback_fails_with_advice(access: AwsAccess, emulator: Emulator, tmp_path: Path) -> None:
    preset(emulator, "vend-stuck", "UPDATE_ROLLBACK_FAILED")
    emulator.injector.load(
        replace(
            emulator.injector.plan,
            rules=parse_fault_text(
                "faults:\n  - {service: cloudformation, operation: ContinueUpdateRollback, error: ValidationError,"
                " message: resource Trail cannot be rolled back}\n"
            )[0].rules,  # type: ignore[union-attr]
        )
    )

    result = deploy_one(access, make_stack(tmp_path, "Stuck", {"Q": queue("stuck-q")}))

    assert (result.outcome, result.status) == ("FAILED", "UPDATE_ROLLBACK_FAILED")
    assert "continue-update-rollback was refused" in result.detail and "cannot be rolled back" in result.detail
    assert "--resources-to-skip" in result.detail
    assert not {"DeleteStack", "CreateChangeSet"} & set(cfn_calls(emulator))


def test_continue_rollback_that_fails_again_is_reported(access: AwsAccess, emulator: Emulator, tmp_path: Path) -> None:
    preset(emulator, "vend-stuck", "UPDATE_ROLLBACK_FAILED", reason="first failure")

    def still_failed(parsed: dict[str, Any], **_: Any) -> None:
        parsed["Stacks"][0]["StackStatus"] = "UPDATE_ROLLBACK_FAILED"

    hooked = HookedAccess(
        endpoint_url=access.endpoint_url, hooks=(("after-call.cloudformation.DescribeStacks", still_failed),)
    )
    result = deploy_one(hooked, make_stack(tmp_path, "Stuck", {"Q": queue("stuck-q")}))

    assert result.outcome == "FAILED"
    assert result.detail.startswith("continue-update-rollback ended in UPDATE_ROLLBACK_FAILED")
    assert "DeleteStack" not in cfn_calls(emulator)


def test_busy_stack_is_waited_for_then_deployed(access: AwsAccess, emulator: Emulator, tmp_path: Path) -> None:
    deploy_one(access, make_stack(tmp_path / "v1", "Busy", {"Q": queue("busy-q")}))
    preset(emulator, "vend-busy", "UPDATE_IN_PROGRESS", settle_after_s=0.3)
    v2 = make_stack(tmp_path / "v2", "Busy", {"Q": queue("busy-q"), "T": topic("busy-t")})

    result = deploy_one(access, v2)

    assert result.outcome == "UPDATED", result.detail
    assert cfn_calls(emulator).count("DescribeStacks") >= 3  # polled while it was busy
    assert "busy-t" in topic_names(access, ACME)


def test_busy_stack_that_stays_busy_is_reported_after_the_timeout(
    access: AwsAccess, emulator: Emulator, tmp_path: Path
) -> None:
    preset(emulator, "vend-busy", "UPDATE_IN_PROGRESS")

    result = deploy_one(access, make_stack(tmp_path, "Busy", {"Q": queue("busy-q")}), timeout_s=0.3)

    assert (result.outcome, result.status) == ("FAILED", "UPDATE_IN_PROGRESS")
    assert "busy (UPDATE_IN_PROGRESS)" in result.detail
    assert "CreateChangeSet" not in cfn_calls(emulator)


def test_cancelled_before_start_touches_nothing(access: AwsAccess, emulator: Emulator, tmp_path: Path) -> None:
    cancel = Cancel()
    cancel.set("interrupted by SIGINT")

    result = deploy_one(access, make_stack(tmp_path, "Never", {"Q": queue("never-q")}), cancel=cancel)

    assert (result.outcome, result.detail) == ("SKIPPED", "not started: interrupted by SIGINT")
    assert cfn_calls(emulator) == []


def test_cancelled_between_change_set_and_execution_deletes_the_change_set(
    access: AwsAccess, emulator: Emulator, tmp_path: Path
) -> None:
    cancel = Cancel()

    def interrupt(**_: Any) -> None:
        cancel.set("interrupted by SIGTERM")

    hooked = HookedAccess(
        endpoint_url=access.endpoint_url, hooks=(("after-call.cloudformation.DescribeChangeSet", interrupt),)
    )
    result = deploy_one(hooked, make_stack(tmp_path, "Half", {"Q": queue("half-q")}), cancel=cancel)

    assert result.outcome == "SKIPPED"
    assert result.detail == "not executed: interrupted by SIGTERM (its change set was deleted)"
    calls = cfn_calls(emulator)
    assert "DeleteChangeSet" in calls and "ExecuteChangeSet" not in calls
    assert "half-q" not in queue_names(access, ACME)


def test_cancelled_while_cloudformation_works_is_in_flight(
    access: AwsAccess, emulator: Emulator, tmp_path: Path
) -> None:
    cancel = Cancel()
    executed: list[bool] = []

    def note_execute(**_: Any) -> None:
        executed.append(True)
        cancel.set("interrupted by SIGINT")

    def still_running(parsed: dict[str, Any], **_: Any) -> None:
        if executed:
            parsed["Stacks"][0]["StackStatus"] = "CREATE_IN_PROGRESS"

    hooked = HookedAccess(
        endpoint_url=access.endpoint_url,
        hooks=(
            ("before-call.cloudformation.ExecuteChangeSet", note_execute),
            ("after-call.cloudformation.DescribeStacks", still_running),
        ),
    )
    result = deploy_one(hooked, make_stack(tmp_path, "Flying", {"Q": queue("flying-q")}), cancel=cancel)

    assert (result.outcome, result.status) == ("IN_FLIGHT", "CREATE_IN_PROGRESS")
    assert "CloudFormation finishes it" in result.detail and "SIGINT" in result.detail


def test_without_only_changed_an_unchanged_stack_gets_an_empty_change_set(
    access: AwsAccess, emulator: Emulator, tmp_path: Path
) -> None:
    stack = make_stack(tmp_path, "Same", {"Q": queue("same-q")})
    deploy_one(access, stack)
    emulator.injector.reset()

    result = deploy_one(access, stack, only_changed=False)

    assert result.outcome == "UNCHANGED", result.detail
    calls = cfn_calls(emulator)
    assert "CreateChangeSet" in calls and "DeleteChangeSet" in calls and "ExecuteChangeSet" not in calls
    assert "GetTemplate" not in calls


def test_parameters_that_differ_from_the_defaults_are_a_change(access: AwsAccess, tmp_path: Path) -> None:
    from scripts.deploy import _same_parameters

    template = {"Parameters": {"Env": {"Type": "String", "Default": "prod"}}, "Resources": {}}
    assert _same_parameters({"Parameters": [{"ParameterKey": "Env", "ParameterValue": "prod"}]}, template)
    assert not _same_parameters({"Parameters": [{"ParameterKey": "Env", "ParameterValue": "dev"}]}, template)
    assert not _same_parameters({"Parameters": []}, template)
    assert not _same_parameters({"Parameters": [{"ParameterKey": "Old", "ParameterValue": "x"}]}, {"Resources": {}})
    assert _same_parameters({}, {"Resources": {}})


def test_failed_execution_reports_the_first_failed_resource(access: AwsAccess, tmp_path: Path) -> None:
    deploy_one(access, make_stack(tmp_path / "v1", "Broken", {"Q": queue("broken-q")}))
    v2 = make_stack(tmp_path / "v2", "Broken", {"Q": queue("broken-q"), "T": topic("broken-t")})
    executed: list[bool] = []

    def note_execute(**_: Any) -> None:
        executed.append(True)

    def rolled_back(parsed: dict[str, Any], **_: Any) -> None:
        if executed:
            parsed["Stacks"][0]["StackStatus"] = "UPDATE_ROLLBACK_COMPLETE"

    def events(**_: Any) -> Any:
        def event(logical: str, kind: str, status: str, reason: str = "") -> dict[str, Any]:
            return {
                "StackId": "s",
                "EventId": f"{logical}-{status}",
                "StackName": "vend-broken",
                "LogicalResourceId": logical,
                "ResourceType": kind,
                "ResourceStatus": status,
                "ResourceStatusReason": reason,
                "Timestamp": "2026-01-01T00:00:00Z",
            }

        stack_type, topic_type = "AWS::CloudFormation::Stack", "AWS::SNS::Topic"
        newest_first = [
            event("vend-broken", stack_type, "UPDATE_ROLLBACK_COMPLETE"),
            event("Other", topic_type, "CREATE_FAILED", "Resource creation cancelled"),
            event("T", topic_type, "CREATE_FAILED", "Topic limit exceeded"),
            event("vend-broken", stack_type, "UPDATE_IN_PROGRESS", "User Initiated"),
            event("Q", "AWS::SQS::Queue", "CREATE_FAILED", "an older, unrelated failure"),
        ]
        http = AWSResponse("http://injected", 200, {}, _Body(b""))
        return http, {"StackEvents": newest_first, "ResponseMetadata": {"HTTPStatusCode": 200}}

    hooked = HookedAccess(
        endpoint_url=access.endpoint_url,
        hooks=(
            ("before-call.cloudformation.ExecuteChangeSet", note_execute),
            ("after-call.cloudformation.DescribeStacks", rolled_back),
            ("before-call.cloudformation.DescribeStackEvents", events),
        ),
    )
    result = deploy_one(hooked, v2)

    assert result.outcome == "FAILED"
    assert result.detail.startswith("UPDATE_ROLLBACK_COMPLETE: T (AWS::SNS::Topic)")
    assert "Topic limit exceeded" in result.detail
    assert "older" not in result.detail


def test_oversized_template_fails_without_touching_cloudformation(access: AwsAccess, tmp_path: Path) -> None:
    resources = {f"Topic{i}": topic(f"topic-{i:04d}-" + "x" * 60) for i in range(600)}
    stack = make_stack(tmp_path, "Big", resources)
    calls = CallLog()
    hooked = HookedAccess(endpoint_url=access.endpoint_url, hooks=(("before-call.cloudformation", calls),))

    result = deploy_one(hooked, stack)

    assert result.outcome == "FAILED"
    assert "51,200" in result.detail and "S3" in result.detail
    assert not [name for name in calls.names if name != "AssumeRole"]


def test_oversized_template_goes_through_s3(access: AwsAccess, tmp_path: Path) -> None:
    resources = {f"Topic{i}": topic(f"topic-{i:04d}-" + "x" * 60) for i in range(600)}
    stack = make_stack(tmp_path, "Big", resources)
    session = session_in(access, ACME)
    stager = TemplateStager(access, session, ACME)

    result = deploy_stack(access.client(session, "cloudformation", REGION), stack, poll_s=0.01, stager=stager)

    assert result.outcome == "CREATED", result.detail
    assert any("staged in S3" in a for a in result.actions)
    assert len(topic_names(access, ACME)) == 600
    s3 = access.client(session, "s3", REGION)
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=stager.bucket(REGION))["Contents"]]
    assert len(keys) == 1 and keys[0].startswith("templates/vend-big/")
    assert s3.get_public_access_block(Bucket=stager.bucket(REGION))["PublicAccessBlockConfiguration"][
        "BlockPublicPolicy"
    ]


def test_aws_errors_become_failed_results(access: AwsAccess, tmp_path: Path) -> None:
    def reject(**_: Any) -> Any:
        return error_response("ValidationError", "Template format error: bad resource")

    hooked = HookedAccess(
        endpoint_url=access.endpoint_url,
        hooks=(("before-call.cloudformation.CreateChangeSet", reject),),
    )
    result = deploy_one(hooked, make_stack(tmp_path, "Bad", {"Q": queue("bad-q")}))

    assert result.outcome == "FAILED"
    assert result.detail == "CreateChangeSet: ValidationError: Template format error: bad resource"


def test_throttled_calls_are_retried_not_failed(access: AwsAccess, tmp_path: Path) -> None:
    sent: dict[str, int] = {}

    def throttle_first(request: Any, event_name: str, **_: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[1]
        sent[operation] = sent.get(operation, 0) + 1
        if sent[operation] > 1:
            return None
        body = (
            b"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code>"
            b"<Message>Rate exceeded</Message></Error><RequestId>r</RequestId></ErrorResponse>"
        )
        return AWSResponse(request.url, 400, {}, _Body(body))

    hooked = HookedAccess(
        endpoint_url=access.endpoint_url,
        hooks=(("before-send.cloudformation.DescribeChangeSet", throttle_first),),
    )
    result = deploy_one(hooked, make_stack(tmp_path, "Busy", {"Q": queue("busy-q")}))

    assert result.outcome == "CREATED", result.detail
    assert sent == {"DescribeChangeSet": 2}  # throttled once, retried once
    assert "busy-q" in queue_names(access, ACME)


def test_polls_outlast_throttling_beyond_botocore_retries(access: AwsAccess, tmp_path: Path) -> None:
    """Even once botocore gives up, a throttled poll is polled again, not a failed deploy."""
    answered: list[str] = []

    def throttled_thrice(**_: Any) -> Any:
        answered.append("poll")
        if len(answered) <= 3:
            return error_response("Throttling", "Rate exceeded")
        return None

    hooked = HookedAccess(
        endpoint_url=access.endpoint_url,
        hooks=(("before-call.cloudformation.DescribeChangeSet", throttled_thrice),),
    )
    result = deploy_one(hooked, make_stack(tmp_path, "Polled", {"Q": queue("polled-q")}))

    assert result.outcome == "CREATED", result.detail
    assert len(answered) == 4


def test_execution_that_never_settles_times_out(access: AwsAccess, tmp_path: Path) -> None:
    executed: list[bool] = []

    def note_execute(**_: Any) -> None:
        executed.append(True)

    def still_running(parsed: dict[str, Any], **_: Any) -> None:
        if executed:
            parsed["Stacks"][0]["StackStatus"] = "CREATE_IN_PROGRESS"

    hooked = HookedAccess(
        endpoint_url=access.endpoint_url,
        hooks=(
            ("before-call.cloudformation.ExecuteChangeSet", note_execute),
            ("after-call.cloudformation.DescribeStacks", still_running),
        ),
    )
    stack = make_stack(tmp_path, "Slow", {"Q": queue("slow-q")})
    result = deploy_one(hooked, stack, timeout_s=0.3)

    assert result.outcome == "FAILED"
    assert "timed out" in result.detail and "CREATE_IN_PROGRESS" in result.detail


class ThrottlingCfn:
    """A fake CloudFormation client for a new stack: the operations in ``throttled`` answer
    Throttling forever, the others act as CloudFormation would. ``on_execute`` runs when the
    change set is executed; ``after_execute`` is the stack's status from then on."""

    def __init__(
        self,
        throttled: set[str],
        *,
        on_execute: Callable[[], None] = lambda: None,
        after_execute: str = "CREATE_IN_PROGRESS",
    ) -> None:
        self.throttled = throttled
        self.on_execute = on_execute
        self.after_execute = after_execute
        self.calls: list[str] = []
        self.executed = False

    def _answer(self, operation: str) -> None:
        self.calls.append(operation)
        if operation in self.throttled:
            raise ClientError({"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, operation)

    def describe_stacks(self, StackName: str) -> dict[str, Any]:  # noqa: N803 (botocore's names)
        self._answer("DescribeStacks")
        if not self.executed:
            raise ClientError(
                {"Error": {"Code": "ValidationError", "Message": f"Stack with id {StackName} does not exist"}},
                "DescribeStacks",
            )
        reason = "Q: Resource handler returned message: queue limit"
        return {"Stacks": [{"StackName": StackName, "StackStatus": self.after_execute, "StackStatusReason": reason}]}

    def create_change_set(self, **_: Any) -> dict[str, str]:
        self._answer("CreateChangeSet")
        return {"Id": "arn:change-set/vend-1", "StackId": "arn:stack/vend-throttled/1"}

    def describe_change_set(self, ChangeSetName: str) -> dict[str, str]:  # noqa: N803
        self._answer("DescribeChangeSet")
        return {"Status": "CREATE_COMPLETE", "ExecutionStatus": "AVAILABLE"}

    def delete_change_set(self, ChangeSetName: str) -> None:  # noqa: N803
        self._answer("DeleteChangeSet")

    def execute_change_set(self, ChangeSetName: str) -> None:  # noqa: N803
        self._answer("ExecuteChangeSet")
        self.executed = True
        self.on_execute()

    def describe_stack_events(self, **_: Any) -> dict[str, Any]:
        self._answer("DescribeStackEvents")
        return {"StackEvents": []}


def deploy_throttled(cfn: ThrottlingCfn, tmp_path: Path, cancel: Cancel) -> tuple[Any, float]:
    """Deploy with a poll interval and stack timeout far beyond what the test waits."""
    stack = make_stack(tmp_path, "Throttled", {"Q": queue("throttled-q")})
    start = time.monotonic()
    result = deploy_stack(cfn, stack, timeout_s=600, poll_s=60, cancel=cancel)
    return result, time.monotonic() - start


def interrupt_soon(cancel: Cancel, reason: str = "interrupted by SIGINT") -> threading.Timer:
    timer = threading.Timer(0.3, cancel.set, args=(reason,))
    timer.start()
    return timer


def test_an_interrupt_wakes_a_throttled_poll_before_anything_started(tmp_path: Path) -> None:
    cfn, cancel = ThrottlingCfn({"DescribeStacks"}), Cancel()
    interrupt_soon(cancel)

    result, seconds = deploy_throttled(cfn, tmp_path, cancel)

    assert seconds < 5  # not the 60 s poll, not the 600 s stack timeout
    assert result.outcome == "SKIPPED"
    assert result.detail.startswith("not started: interrupted by SIGINT")
    assert "throttling" in result.detail
    assert set(cfn.calls) == {"DescribeStacks"}


def test_an_interrupt_while_throttled_waiting_for_a_change_set_deletes_it_unexecuted(tmp_path: Path) -> None:
    cfn, cancel = ThrottlingCfn({"DescribeChangeSet"}), Cancel()
    interrupt_soon(cancel, "interrupted by SIGTERM")

    result, seconds = deploy_throttled(cfn, tmp_path, cancel)

    assert seconds < 5
    assert result.outcome == "SKIPPED"
    assert result.detail.startswith("not executed: interrupted by SIGTERM")
    assert "DeleteChangeSet" in cfn.calls and "ExecuteChangeSet" not in cfn.calls


def test_an_interrupt_while_throttled_polls_follow_an_execution_is_in_flight(tmp_path: Path) -> None:
    cancel = Cancel()
    cfn = ThrottlingCfn(set(), on_execute=lambda: (cfn.throttled.add("DescribeStacks"), interrupt_soon(cancel)))

    result, seconds = deploy_throttled(cfn, tmp_path, cancel)

    assert seconds < 5
    assert (result.outcome, result.status) == ("IN_FLIGHT", "CREATE_IN_PROGRESS")
    assert "interrupted by SIGINT" in result.detail and "CloudFormation finishes it" in result.detail


def test_an_interrupt_during_throttled_failure_events_keeps_the_failure(tmp_path: Path) -> None:
    """The stack failed on its own; only reading why is throttled: still FAILED, with the
    stack's own reason, not taken for an interrupted deploy."""
    cancel = Cancel()
    interrupt = lambda: cancel.set("interrupted by SIGINT")  # noqa: E731
    cfn = ThrottlingCfn({"DescribeStackEvents"}, on_execute=interrupt, after_execute="ROLLBACK_COMPLETE")

    result, seconds = deploy_throttled(cfn, tmp_path, cancel)

    assert seconds < 5
    assert (result.outcome, result.status) == ("FAILED", "ROLLBACK_COMPLETE")
    assert "queue limit" in result.detail


# --------------------------------------------------------------------------- deploy_targets


def client_target(tmp_path: Path, name: str, account: str, *, with_west: bool = False) -> Target:
    stacks = [make_stack(tmp_path / name, f"{name}Base", {"Q": queue(f"{name}-q")}, account=account)]
    if with_west:
        stacks.insert(
            0,  # listed first, but depends on the base stack: must deploy second
            make_stack(
                tmp_path / f"{name}-west",
                f"{name}West",
                {"T": topic(f"{name}-west-t")},
                account=account,
                region="us-west-2",
                depends_on=(f"{name}Base",),
            ),
        )
    return Target(name, role(account), f"{name}-ext", tuple(stacks))


def msp_target(tmp_path: Path) -> Target:
    stack = make_stack(tmp_path / "msp", "Msp", {"Logs": topic("msp-logs")}, account=MSP)
    return Target("msp", None, None, (stack,))


def test_msp_first_then_clients_concurrently_in_their_own_accounts(access: AwsAccess, tmp_path: Path) -> None:
    acme = client_target(tmp_path, "acme", ACME, with_west=True)
    globex = client_target(tmp_path, "globex", GLOBEX)
    reported: list[str] = []

    results = deploy_targets(
        access,
        first=msp_target(tmp_path),
        targets=[acme, globex],
        concurrency=2,
        on_result=lambda r: reported.append(r.name),
        poll_s=0.01,
    )

    assert [(r.name, r.account, r.outcome) for r in results] == [
        ("msp", MSP, "OK"),
        ("acme", ACME, "OK"),
        ("globex", GLOBEX, "OK"),
    ]
    assert reported[0] == "msp" and sorted(reported[1:]) == ["acme", "globex"]
    acme_result = results[1]
    assert [(s.stack_name, s.region, s.outcome) for s in acme_result.stacks] == [
        ("vend-acmebase", REGION, "CREATED"),
        ("vend-acmewest", "us-west-2", "CREATED"),
    ]
    assert "msp-logs" in topic_names(access, MSP)
    assert queue_names(access, ACME) == {"acme-q"}
    assert topic_names(access, ACME, "us-west-2") == {"acme-west-t"}
    assert queue_names(access, GLOBEX) == {"globex-q"}

    again = deploy_targets(access, first=None, targets=[acme, globex], poll_s=0.01)
    assert {s.outcome for r in again for s in r.stacks} == {"UNCHANGED"}
    assert again[0].detail == "2 stacks: 2 unchanged"


def test_unassumable_role_fails_that_client_only(access: AwsAccess, tmp_path: Path) -> None:
    def deny_globex(params: dict[str, Any], **_: Any) -> Any:
        if params["body"].get("RoleArn") == role(GLOBEX):
            return error_response("AccessDenied", "not authorized to perform sts:AssumeRole", 403)
        return None

    hooked = HookedAccess(endpoint_url=access.endpoint_url, hooks=(("before-call.sts.AssumeRole", deny_globex),))
    results = deploy_targets(
        hooked,
        first=None,
        targets=[client_target(tmp_path, "globex", GLOBEX), client_target(tmp_path, "acme", ACME)],
        poll_s=0.01,
    )

    globex, acme = results
    assert globex.outcome == "FAILED"
    assert role(GLOBEX) in globex.detail and "AccessDenied" in globex.detail
    assert "ExternalId" in globex.detail and "offboarded" in globex.detail
    assert [s.outcome for s in globex.stacks] == ["SKIPPED"]
    assert acme.outcome == "OK"
    assert queue_names(access, ACME) == {"acme-q"}


def test_msp_side_failure_skips_every_client(access: AwsAccess, tmp_path: Path) -> None:
    def reject_msp(params: dict[str, Any], **_: Any) -> Any:
        if params["body"].get("StackName") == "vend-msp":
            return error_response("InsufficientCapabilitiesException", "needs CAPABILITY_X")
        return None

    hooked = HookedAccess(
        endpoint_url=access.endpoint_url,
        hooks=(("before-call.cloudformation.CreateChangeSet", reject_msp),),
    )
    seen: list[TargetResult] = []
    results = deploy_targets(
        hooked,
        first=msp_target(tmp_path),
        targets=[client_target(tmp_path, "acme", ACME), client_target(tmp_path, "globex", GLOBEX)],
        on_result=seen.append,
        poll_s=0.01,
    )

    assert results == seen
    msp, *clients = results
    assert msp.outcome == "FAILED" and "InsufficientCapabilitiesException" in msp.detail
    for client in clients:
        assert client.outcome == "SKIPPED"
        assert client.detail.startswith("MSP-side stacks failed: vend-msp")
        assert [s.outcome for s in client.stacks] == ["SKIPPED"]
    assert queue_names(access, ACME) == set()
    assert queue_names(access, GLOBEX) == set()


def test_failed_stack_skips_the_rest_of_its_target(access: AwsAccess, emulator: Emulator, tmp_path: Path) -> None:
    first = make_stack(tmp_path / "a", "First", {"T": topic("first-t")})
    second = make_stack(tmp_path / "b", "Second", {"Q": queue("second-q")}, depends_on=("First",))
    other = client_target(tmp_path, "globex", GLOBEX)
    faults(
        emulator,
        f'faults:\n  - {{service: cloudformation, operation: CreateChangeSet, account: "{ACME}", '
        "error: ValidationError, message: Template format error}\n",
    )

    results = deploy_targets(
        access,
        first=None,
        targets=[Target("acme", role(ACME), None, (second, first)), other],
        poll_s=0.01,
    )

    acme = results[0]
    assert acme.outcome == "FAILED" and acme.detail.startswith("vend-first (us-east-1): CreateChangeSet")
    assert [(s.stack_name, s.outcome) for s in acme.stacks] == [
        ("vend-first", "FAILED"),
        ("vend-second", "SKIPPED"),
    ]
    assert queue_names(access, ACME) == set()
    assert results[1].outcome == "OK"


def test_stack_for_another_account_is_refused(access: AwsAccess, tmp_path: Path) -> None:
    """Base credentials act in the MSP account; a client stack must not land there."""
    stray = make_stack(tmp_path, "Stray", {"Q": queue("stray-q")}, account=ACME)

    (result,) = deploy_targets(access, first=None, targets=[Target("no-role", None, None, (stray,))], poll_s=0.01)

    assert result.outcome == "FAILED"
    assert f"credentials act in account {MSP}" in result.detail
    assert queue_names(access, MSP) == set()


def test_unexpected_errors_stay_inside_the_target(access: AwsAccess, tmp_path: Path) -> None:
    def explode(**_: Any) -> None:
        raise RuntimeError("boom")

    boom: Callable[..., None] = explode
    hooked = HookedAccess(endpoint_url=access.endpoint_url, hooks=(("before-call.sts.AssumeRole", boom),))
    (result,) = deploy_targets(hooked, first=None, targets=[client_target(tmp_path, "acme", ACME)], poll_s=0.01)
    assert result.outcome == "FAILED" and "RuntimeError: boom" in result.detail


def test_regional_stacks_of_a_client_run_in_parallel_after_its_global_stack(access: AwsAccess, tmp_path: Path) -> None:
    base = make_stack(tmp_path / "g", "AcmeGlobal", {"Q": queue("acme-global-q")})
    regional = [
        make_stack(
            tmp_path / region,
            f"Acme{region.replace('-', '')}",
            {"T": topic(f"acme-{region}-t")},
            region=region,
            depends_on=("AcmeGlobal",),
        )
        for region in ("us-east-1", "us-west-2", "eu-west-1")
    ]
    lock = threading.Lock()
    active: list[str] = []
    peak: list[int] = [0]
    order: list[str] = []

    def slow_create(params: dict[str, Any], **_: Any) -> None:
        with lock:
            active.append(params["body"]["StackName"])
            order.append(params["body"]["StackName"])
            peak[0] = max(peak[0], len(active))
        threading.Event().wait(0.3)
        with lock:
            active.remove(params["body"]["StackName"])

    hooked = HookedAccess(
        endpoint_url=access.endpoint_url, hooks=(("before-call.cloudformation.CreateChangeSet", slow_create),)
    )
    (result,) = deploy_targets(
        hooked, first=None, targets=[Target("acme", role(ACME), None, (*regional, base))], poll_s=0.01
    )

    assert result.outcome == "OK", result.detail
    assert order[0] == "vend-acmeglobal"  # the global stack alone, first
    assert peak[0] == 3  # then the three regions at once
    assert [s.stack_name for s in result.stacks] == [
        "vend-acmeglobal",
        "vend-acmeuseast1",
        "vend-acmeuswest2",
        "vend-acmeeuwest1",
    ]
