"""The emulator's fault layer: the fault file's validation, and what it does to requests."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from scripts.cli import main
from scripts.emulator.faults import FaultPlan, fetch_calls, load_fault_file, parse_fault_text
from scripts.emulator.server import Emulator

ACME = "111122223333"
GLOBEX = "444455556666"
ISSUE_EXAMPLE = """\
faults:
  - service: cloudformation        # botocore service name
    operation: CreateChangeSet     # API operation, or "*"
    account: "111122223333"        # optional: only this account
    region: us-east-1              # optional
    error: Throttling              # error code to return
    message: Rate exceeded
    http_status: 400
    probability: 0.3               # or count: N (the first N matching calls)
  - service: sts
    operation: AssumeRole
    account: "444455556666"        # the account of the role being assumed
    error: AccessDenied
    message: not authorized to perform sts:AssumeRole
    http_status: 403
    latency_ms: 0                  # optional: delay before answering
stacks:                            # preset states of existing stacks
  - account: "777788889999"
    region: us-east-1
    stack: vend-ledgerly-global
    status: UPDATE_ROLLBACK_FAILED # or ROLLBACK_COMPLETE, UPDATE_IN_PROGRESS
"""


# --------------------------------------------------------------------------- the file


def test_the_documented_example_is_valid() -> None:
    plan, problems = parse_fault_text(ISSUE_EXAMPLE, "faults.yaml")
    assert problems == [] and plan is not None
    throttle, deny = plan.rules
    assert (throttle.service, throttle.operation, throttle.account, throttle.region) == (
        "cloudformation",
        "CreateChangeSet",
        ACME,
        "us-east-1",
    )
    assert (throttle.error, throttle.message, throttle.http_status, throttle.probability) == (
        "Throttling",
        "Rate exceeded",
        400,
        0.3,
    )
    assert (deny.account, deny.error, deny.http_status, deny.count, deny.line) == (
        GLOBEX,
        "AccessDenied",
        403,
        None,
        10,
    )
    (stack,) = plan.stacks
    assert (stack.account, stack.stack, stack.status) == (
        "777788889999",
        "vend-ledgerly-global",
        "UPDATE_ROLLBACK_FAILED",
    )


def test_defaults_operation_any_and_status_by_error_code() -> None:
    plan, _ = parse_fault_text("faults:\n  - {service: sts, error: AccessDenied}\n  - {service: '*', latency_ms: 50}\n")
    assert plan is not None
    deny, slow = plan.rules
    assert (deny.operation, deny.http_status, deny.message) == (
        "*",
        403,
        "AccessDenied (injected by the vend emulator)",
    )
    assert (slow.service, slow.error, slow.latency_ms) == ("*", None, 50.0)


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            "faults:\n  - service: sts\n    account: 111122223333\n    error: AccessDenied\n",
            "3:14: faults[0].account",
            "in quotes; YAML read an unquoted number",
        ),
        (
            "faults:\n  - service: cloudformaton\n    error: Throttling\n",
            "2:14: faults[0].service",
            'did you mean "cloudformation"',
        ),
        (
            "faults:\n  - service: cloudformation\n    operation: create_change_set\n    error: Throttling\n",
            "3:16: faults[0].operation",
            'did you mean "CreateChangeSet"',
        ),
        (
            "faults:\n  - service: cloudformation\n    error: Throttling\n    probability: 0.5\n    count: 2\n",
            "5:12: faults[0].count",
            "probability or count, not both",
        ),
        ("faults:\n  - {service: sts, error: X, probability: 1.5}\n", "faults[0].probability", "at most 1"),
        ("faults:\n  - {service: sts, error: X, count: 0}\n", "faults[0].count", "at least 1"),
        ("faults:\n  - {service: sts, error: X, http_status: 200}\n", "faults[0].http_status", "at least 400"),
        ("faults:\n  - {service: sts}\n", "2:5: faults[0]", "needs an error to answer with, a latency_ms, or both"),
        ("faults:\n  - {service: sts, message: hi, latency_ms: 5}\n", "faults[0].message", "message needs an error"),
        ("faults:\n  - {service: sts, eror: X}\n", "faults[0].eror", "unknown key 'eror' (did you mean \"error\"?)"),
        ("faults:\n  - {error: X}\n", "faults[0]", 'missing "service"'),
        ("faults:\n  - {service: sts, region: us-east-9, error: X}\n", "faults[0].region", "unknown region"),
        ("faults:\n  - {service: sts, region: no, error: X}\n", "faults[0].region", "YAML read False as a boolean"),
        ("faults:\n  - {service: '*', operation: AssumeRole, error: X}\n", "faults[0].operation", 'with service "*"'),
        (
            "faults:\n  - {service: s3, operation: PutObject, error: X}\n",
            "faults[0].operation",
            "S3 requests by service",
        ),
        (
            'stacks:\n  - {account: "111122223333", region: us-east-1, stack: s, status: BROKEN}\n',
            "stacks[0].status",
            "cannot preset status 'BROKEN'",
        ),
        (
            'stacks:\n  - {account: "111122223333", region: us-east-1, stack: s, status: ROLLBACK_COMPLETE,'
            " settle_after_s: 3}\n",
            "stacks[0].settle_after_s",
            "only an *_IN_PROGRESS status settles",
        ),
        (
            'stacks:\n  - {account: "111122223333", stack: s, status: ROLLBACK_COMPLETE}\n',
            "stacks[0]",
            'missing "region"',
        ),
        (
            'stacks:\n  - {account: "111122223333", region: us-east-1, stack: s, status: ROLLBACK_COMPLETE}\n'
            '  - {account: "111122223333", region: us-east-1, stack: s, status: UPDATE_ROLLBACK_FAILED}\n',
            "3:5: stacks[1]",
            "preset twice",
        ),
        ("faults:\n  - {service: sts, error: X}\nfaults: []\n", "3:1: faults", "duplicate key 'faults'"),
        ("fault:\n  - {service: sts, error: X}\n", "1:1: fault", 'did you mean "faults"'),
        ("faults: {service: sts}\n", "faults", "must be a list"),
        ("", "1:1: (document)", "file is empty"),
        ("faults: [\n", "(document)", "not valid YAML"),
    ],
)
def test_every_problem_has_file_line_and_path(text: str, where: str, message: str) -> None:
    plan, problems = parse_fault_text(text, "faults.yaml")
    assert plan is None
    rendered = [str(p) for p in problems]
    assert any(where in r and message in r and r.startswith("faults.yaml:") for r in rendered), rendered


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "faults.yaml"
    path.write_text("faults:\n  - {service: stss, error: X}\n  - {service: sts, count: 0, error: Y}\nstacks: 3\n")
    plan, problems = load_fault_file(path)
    assert plan is None
    assert [p.line for p in problems] == [2, 3, 4]
    assert all(str(p).startswith(f"{path}:") for p in problems)


@pytest.mark.parametrize("command", ["emulator", "demo"])
def test_an_invalid_fault_file_stops_the_command_before_anything_runs(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "faults.yaml"
    bad.write_text("faults:\n  - service: cloudformation\n    operation: CreateChangeSett\n    error: Throttling\n")
    started: list[bool] = []
    monkeypatch.setattr(Emulator, "start", lambda *a, **k: started.append(True))
    monkeypatch.setattr("scripts.cli.synthesize", lambda *a, **k: started.append(True))

    code = main([command, "--faults", str(bad)])

    err = capsys.readouterr().err
    assert code == 2
    assert f"{bad}:3:16: faults[0].operation: cloudformation has no operation 'CreateChangeSett'" in err
    assert "nothing was started" in err
    assert started == []


# --------------------------------------------------------------------------- at runtime


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        with Emulator().start() as emu:
            yield emu


@pytest.fixture(autouse=True)
def clean(emulator: Emulator) -> Iterator[None]:
    emulator.injector.load(None)
    urllib.request.urlopen(urllib.request.Request(f"{emulator.url}/moto-api/reset", method="POST")).close()
    yield
    emulator.injector.load(None)


def use(emulator: Emulator, text: str) -> FaultPlan:
    plan, problems = parse_fault_text(text)
    assert plan is not None, problems
    emulator.injector.load(plan)
    return plan


NO_RETRIES = Config(retries={"mode": "standard", "total_max_attempts": 1})


def client(emulator: Emulator, service: str, account: str | None = None, region: str = "us-east-1") -> Any:
    session = boto3.Session(region_name=region)
    if account is not None:
        sts = session.client("sts", endpoint_url=emulator.url)
        creds = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/VendDeploy", RoleSessionName="tt")["Credentials"]
        session = boto3.Session(
            aws_access_key_id=creds["AccessKeyId"],
            aws_secret_access_key=creds["SecretAccessKey"],
            aws_session_token=creds["SessionToken"],
            region_name=region,
        )
    return session.client(service, endpoint_url=emulator.url, config=NO_RETRIES)


def error_of(call: Any) -> tuple[str, str, int]:
    with pytest.raises(ClientError) as caught:
        call()
    response = caught.value.response
    return response["Error"]["Code"], response["Error"]["Message"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_rules_match_by_service_operation_account_and_region(emulator: Emulator) -> None:
    use(
        emulator,
        f'faults:\n  - {{service: cloudformation, operation: ListStacks, account: "{ACME}", region: us-west-2,'
        " error: Throttling, message: Rate exceeded}\n",
    )
    west = client(emulator, "cloudformation", ACME, "us-west-2")
    assert error_of(west.list_stacks) == ("Throttling", "Rate exceeded", 400)
    west.describe_stacks()  # another operation
    client(emulator, "cloudformation", ACME, "us-east-1").list_stacks()  # another region
    client(emulator, "cloudformation", GLOBEX, "us-west-2").list_stacks()  # another account


def test_assume_role_matches_the_account_of_the_role(emulator: Emulator) -> None:
    use(emulator, f'faults:\n  - {{service: sts, operation: AssumeRole, account: "{GLOBEX}", error: AccessDenied}}\n')
    sts = client(emulator, "sts")
    code, _, status = error_of(
        lambda: sts.assume_role(RoleArn=f"arn:aws:iam::{GLOBEX}:role/VendDeploy", RoleSessionName="tt")
    )
    assert (code, status) == ("AccessDenied", 403)
    sts.assume_role(RoleArn=f"arn:aws:iam::{ACME}:role/VendDeploy", RoleSessionName="tt")


def test_json_and_rest_protocols_get_errors_botocore_understands(emulator: Emulator) -> None:
    use(
        emulator,
        "faults:\n  - {service: config, error: ThrottlingException, message: slow down}\n"
        "  - {service: guardduty, error: TooManyRequestsException}\n",
    )
    assert error_of(client(emulator, "config").describe_configuration_recorders) == (
        "ThrottlingException",
        "slow down",
        400,
    )
    code, _, status = error_of(client(emulator, "guardduty").list_detectors)
    assert (code, status) == ("TooManyRequestsException", 429)


def test_count_fires_for_the_first_matches_only(emulator: Emulator) -> None:
    use(emulator, "faults:\n  - {service: cloudformation, operation: ListStacks, error: Throttling, count: 2}\n")
    cfn = client(emulator, "cloudformation")
    outcomes = []
    for _ in range(4):
        try:
            cfn.list_stacks()
            outcomes.append("ok")
        except ClientError:
            outcomes.append("throttled")
    assert outcomes == ["throttled", "throttled", "ok", "ok"]


def test_probability_is_reproducible_with_a_seed(emulator: Emulator) -> None:
    text = (
        "seed: 11\nfaults:\n  - {service: cloudformation, operation: ListStacks, error: Throttling, probability: 0.3}\n"
    )

    def draw() -> list[bool]:
        use(emulator, text)
        cfn = client(emulator, "cloudformation")
        hits = []
        for _ in range(40):
            try:
                cfn.list_stacks()
                hits.append(False)
            except ClientError:
                hits.append(True)
        return hits

    first, second = draw(), draw()
    assert first == second
    assert 4 <= sum(first) <= 20  # about 30% of 40


def test_latency_delays_matching_calls_and_stacks_up(emulator: Emulator) -> None:
    use(emulator, "faults:\n  - {service: '*', latency_ms: 150}\n  - {service: sts, latency_ms: 100}\n")
    sts = client(emulator, "sts")
    cfn = client(emulator, "cloudformation")
    start = time.monotonic()
    sts.get_caller_identity()
    sts_s = time.monotonic() - start
    start = time.monotonic()
    cfn.list_stacks()
    cfn_s = time.monotonic() - start
    assert sts_s >= 0.25 and cfn_s >= 0.15
    assert cfn_s < sts_s


def test_s3_is_matched_by_service(emulator: Emulator) -> None:
    use(
        emulator,
        "faults:\n  - {service: s3, error: SlowDown, message: Please reduce your request rate, http_status: 503}\n",
    )
    code, message, status = error_of(client(emulator, "s3").list_buckets)
    assert (code, status) == ("SlowDown", 503) and "reduce" in message


def test_the_call_log_counts_every_request(emulator: Emulator) -> None:
    client(emulator, "cloudformation", ACME).list_stacks()
    client(emulator, "s3", GLOBEX).list_buckets()
    calls = fetch_calls(emulator.url)
    rows = {(r["service"], r["operation"], r["account"]): r["count"] for r in calls["calls"]}
    assert rows[("cloudformation", "ListStacks", ACME)] == 1
    assert rows[("sts", "AssumeRole", ACME)] == 1
    assert rows[("s3", "*", GLOBEX)] == 1
    assert calls["total"] == sum(rows.values())


def test_preset_rollback_complete_tells_its_story_in_events(emulator: Emulator) -> None:
    use(
        emulator,
        f'stacks:\n  - {{account: "{ACME}", region: us-east-1, stack: vend-acme-global, status: ROLLBACK_COMPLETE,'
        ' reason: "Trail: InsufficientS3BucketPolicyException"}\n',
    )
    cfn = client(emulator, "cloudformation", ACME)
    (stack,) = cfn.describe_stacks(StackName="vend-acme-global")["Stacks"]
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    events = cfn.describe_stack_events(StackName="vend-acme-global")["StackEvents"]
    statuses = [(e["ResourceType"].rsplit("::", 1)[1], e["ResourceStatus"]) for e in events]
    assert statuses[0] == ("Stack", "ROLLBACK_COMPLETE") and statuses[-1] == ("Stack", "CREATE_IN_PROGRESS")
    failed = [e for e in events if e["ResourceStatus"] == "CREATE_FAILED"]
    assert failed and "InsufficientS3BucketPolicyException" in failed[0]["ResourceStatusReason"]
    assert client(emulator, "cloudformation", GLOBEX).describe_stacks()["Stacks"] == []  # only that account


def test_preset_in_progress_settles_and_presets_come_back_after_a_reset(emulator: Emulator) -> None:
    use(
        emulator,
        f'stacks:\n  - {{account: "{ACME}", region: us-east-1, stack: busy, status: UPDATE_IN_PROGRESS,'
        " settle_after_s: 0.2}\n",
    )
    cfn = client(emulator, "cloudformation", ACME)
    assert cfn.describe_stacks(StackName="busy")["Stacks"][0]["StackStatus"] == "UPDATE_IN_PROGRESS"
    time.sleep(0.25)
    assert cfn.describe_stacks(StackName="busy")["Stacks"][0]["StackStatus"] == "UPDATE_COMPLETE"
    urllib.request.urlopen(urllib.request.Request(f"{emulator.url}/moto-api/reset", method="POST")).close()
    cfn = client(emulator, "cloudformation", ACME)
    assert cfn.describe_stacks(StackName="busy")["Stacks"][0]["StackStatus"] == "UPDATE_IN_PROGRESS"


def test_continue_update_rollback_is_answered(emulator: Emulator) -> None:
    use(emulator, f'stacks:\n  - {{account: "{ACME}", region: us-east-1, stack: s, status: UPDATE_ROLLBACK_FAILED}}\n')
    cfn = client(emulator, "cloudformation", ACME)
    cfn.continue_update_rollback(StackName="s")
    assert cfn.describe_stacks(StackName="s")["Stacks"][0]["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    code, message, _ = error_of(lambda: cfn.continue_update_rollback(StackName="s"))
    assert code == "ValidationError" and "can not be continued" in message


def test_emulator_command_loads_faults_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "faults.yaml"
    good.write_text(ISSUE_EXAMPLE)
    plan, problems = load_fault_file(good)
    assert plan is not None and not problems
    emulator = Emulator(plan)
    assert emulator.injector.plan.rules == plan.rules
