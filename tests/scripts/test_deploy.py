"""Deploying with change sets into moto, with AWS failure modes injected through botocore hooks.

moto completes change sets synchronously and cannot produce stack failures,
rollbacks or throttling, so those are injected with event hooks on the very
clients the driver creates (``HookedAccess``) and the driver's reaction is
checked against live emulator state.
"""

from __future__ import annotations

import json
import threading
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from scripts.assembly import StackArtifact, read_assembly
from scripts.aws import AwsAccess
from scripts.deploy import Target, TargetResult, deploy_stack, deploy_targets

MSP = "123456789012"  # moto's account for the base (non-assumed) credentials
ACME = "111122223333"
GLOBEX = "444455556666"
REGION = "us-east-1"


def role(account: str) -> str:
    return f"arn:aws:iam::{account}:role/VendDeploy"


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One moto server per module, with fake credentials and no user AWS config."""
    from moto.server import ThreadedMotoServer

    nowhere = tmp_path_factory.mktemp("aws") / "none"
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "MOTO_ACCOUNT_ID"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", REGION)
        env.setenv("AWS_CONFIG_FILE", str(nowhere))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
        server.stop()


@pytest.fixture(autouse=True)
def fresh_state(endpoint: str) -> None:
    request = urllib.request.Request(f"{endpoint}/moto-api/reset", method="POST")
    urllib.request.urlopen(request).close()


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
    return {t["TopicArn"].rsplit(":", 1)[1] for t in sns.list_topics()["Topics"]}


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


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("ROLLBACK_COMPLETE", "must be deleted and recreated"),
        ("UPDATE_ROLLBACK_FAILED", "needs continue-update-rollback"),
    ],
)
def test_stuck_stack_fails_with_advice_and_is_left_alone(
    access: AwsAccess, tmp_path: Path, status: str, expected: str
) -> None:
    deploy_one(access, make_stack(tmp_path / "v1", "Stuck", {"Q": queue("stuck-q")}))
    v2 = make_stack(tmp_path / "v2", "Stuck", {"Q": queue("stuck-q"), "T": topic("stuck-t")})

    def stuck(parsed: dict[str, Any], **_: Any) -> None:
        parsed["Stacks"][0]["StackStatus"] = status

    calls = CallLog()
    hooked = HookedAccess(
        endpoint_url=access.endpoint_url,
        hooks=(
            ("after-call.cloudformation.DescribeStacks", stuck),
            ("before-call.cloudformation", calls),
        ),
    )
    result = deploy_one(hooked, v2)

    assert result.outcome == "FAILED"
    assert expected in result.detail
    assert set(calls.names) == {"DescribeStacks"}  # no change set, no delete, no rollback
    assert cfn_in(access, ACME).describe_stacks(StackName="vend-stuck")["Stacks"]
    assert "stuck-t" not in topic_names(access, ACME)


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


def test_failed_stack_skips_the_rest_of_its_target(access: AwsAccess, tmp_path: Path) -> None:
    too_big = {f"T{i}": topic(f"t-{i:04d}-" + "x" * 60) for i in range(600)}
    first = make_stack(tmp_path / "a", "First", too_big)
    second = make_stack(tmp_path / "b", "Second", {"Q": queue("second-q")}, depends_on=("First",))
    other = client_target(tmp_path, "globex", GLOBEX)

    results = deploy_targets(
        access,
        first=None,
        targets=[Target("acme", role(ACME), None, (second, first)), other],
        poll_s=0.01,
    )

    acme = results[0]
    assert acme.outcome == "FAILED" and acme.detail.startswith("vend-first (us-east-1):")
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
    hooked = HookedAccess(endpoint_url=access.endpoint_url, hooks=(("before-call.sts.GetCallerIdentity", boom),))
    (result,) = deploy_targets(hooked, first=None, targets=[client_target(tmp_path, "acme", ACME)], poll_s=0.01)
    assert result.outcome == "FAILED" and "RuntimeError: boom" in result.detail
