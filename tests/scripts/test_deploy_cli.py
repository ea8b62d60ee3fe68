"""``vend deploy`` on the real baseline of the three example clients, against the emulator
with fault plans: report files, stuck stacks, canary and failure limits, the lock, the plan.

The portfolio is synthesized once; each test starts from an empty emulator.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from baseline.portfolio import load_portfolio
from scripts import deploy_cmd, lock
from scripts.aws import vend_bucket_name
from scripts.cli import main, parser
from scripts.emulator.server import Emulator
from scripts.synth import synthesize
from tests.scripts.kit import WRITES, access_for, calls, fake_aws_env, reset, role, stack_status

REPO = Path(__file__).resolve().parents[2]
LOG_ARCHIVE = "210987654321"
ACME, BRIGHTMART, LEDGERLY = "111122223333", "444455556666", "777788889999"
LOCK_BUCKET = f"vend-deploy-{LOG_ARCHIVE}-us-east-1"
LOCK_KEY = "locks/deploy.lock"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with fake_aws_env(tmp_path_factory.mktemp("aws")), Emulator().start() as emu:
        yield emu


@pytest.fixture(scope="module")
def assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("assembly")
    assert synthesize(REPO / "overrides", out, validation=False, quiet=True) == 0
    return out


@pytest.fixture(autouse=True)
def clean(emulator: Emulator) -> Iterator[None]:
    reset(emulator)
    yield
    reset(emulator)


class Run:
    def __init__(self, code: int, out: str, err: str, report_dir: Path) -> None:
        self.code, self.out, self.err, self.dir = code, out, err, report_dir

    @property
    def report(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.dir / "deploy-report.json").read_text())
        return data

    def target(self, name: str) -> dict[str, Any]:
        return next(t for t in self.report["targets"] if t["name"] == name)

    def outcomes(self) -> dict[str, str]:
        return {t["name"]: t["outcome"] for t in self.report["targets"]}


def deploy(emulator: Emulator, assembly: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    report_dir = tmp_path / f"report-{time.monotonic_ns()}"
    code = main(
        [
            "deploy",
            "--all",
            "--overrides",
            str(REPO / "overrides"),
            "--assembly",
            str(assembly),
            "--endpoint-url",
            emulator.url,
            "--report",
            str(report_dir),
            "--progress",
            "plain",
            "--poll",
            "0.01",
            *args,
        ]
    )
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err, report_dir)


def deny(account: str) -> str:
    return (
        f'faults:\n  - {{service: sts, operation: AssumeRole, account: "{account}", error: AccessDenied,'
        " message: not authorized to perform sts:AssumeRole}\n"
    )


def s3_in_log_archive(emulator: Emulator) -> Any:
    access = access_for(emulator)
    session = access.assume_role(role(LOG_ARCHIVE), external_id=None, session_name="test", region="us-east-1")
    return access.client(session, "s3", "us-east-1")


def test_one_denied_client_fails_the_rest_deploy_and_every_report_says_so(
    emulator: Emulator, assembly: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reset(emulator, deny(BRIGHTMART))

    run = deploy(emulator, assembly, tmp_path, capsys)

    assert run.code == 1
    assert run.outcomes() == {"msp-log-archive": "OK", "acme-health": "OK", "brightmart": "FAILED", "ledgerly": "OK"}
    bright = run.target("brightmart")
    assert "AccessDenied" in bright["detail"] and "ExternalId" in bright["detail"]
    assert run.report["summary"]["stacks"] == {"CREATED": 8, "SKIPPED": 2}
    assert run.report["run"]["exit_code"] == 1 and run.report["run"]["lock"]["state"] == "taken"
    # live progress: one plain line per target, then the table
    assert "[1/4] msp-log-archive" in run.out and "brightmart" in run.out and "FAILED" in run.out
    assert "not OK:" in run.out and "finished in" in run.out

    markdown = (run.dir / "deploy-report.md").read_text()
    assert "### Not OK" in markdown and "| brightmart | 444455556666 | **FAILED** |" in markdown

    junit = ET.parse(run.dir / "deploy-junit.xml").getroot()
    assert (junit.get("tests"), junit.get("failures"), junit.get("errors")) == ("10", "2", "0")
    cases = junit.findall(".//testcase")
    failing = {c.get("classname") for c in cases if c.find("failure") is not None}
    assert failing == {"vend.deploy.brightmart"}
    names = {c.get("name") for c in cases if c.get("classname") == "vend.deploy.ledgerly"}
    assert names == {
        "vend-ledgerly-global (us-east-2)",
        "vend-ledgerly-us-east-2 (us-east-2)",
        "vend-ledgerly-us-west-2 (us-west-2)",
        "vend-ledgerly-eu-central-1 (eu-central-1)",
    }

    s3 = s3_in_log_archive(emulator)
    assert "Contents" not in s3.list_objects_v2(Bucket=LOCK_BUCKET, Prefix="locks/")  # released


def test_update_rollback_failed_is_continued_and_reported(
    emulator: Emulator, assembly: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reset(
        emulator,
        f'stacks:\n  - {{account: "{LEDGERLY}", region: us-east-2, stack: vend-ledgerly-global,'
        ' status: UPDATE_ROLLBACK_FAILED, reason: "MonthlyBudget: budget name already exists"}\n',
    )

    run = deploy(emulator, assembly, tmp_path, capsys)

    assert run.code == 0, run.out
    global_stack = run.target("ledgerly")["stacks"][0]
    assert global_stack["outcome"] == "UPDATED"
    assert any("continued the rollback" in a and "budget name already exists" in a for a in global_stack["actions"])
    ledgerly_calls = calls(emulator, LEDGERLY)
    assert "ContinueUpdateRollback" in ledgerly_calls and "DeleteStack" not in ledgerly_calls


def test_rollback_complete_is_left_alone_unless_recreate_failed_is_given(
    emulator: Emulator, assembly: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reset(
        emulator,
        f'stacks:\n  - {{account: "{ACME}", region: us-east-1, stack: vend-acme-health-global,'
        ' status: ROLLBACK_COMPLETE, reason: "BaselineTrail: InsufficientS3BucketPolicyException"}\n',
    )

    first = deploy(emulator, assembly, tmp_path, capsys)

    assert first.code == 1
    acme = first.target("acme-health")
    assert acme["outcome"] == "FAILED"
    assert "InsufficientS3BucketPolicyException" in acme["detail"] and "--recreate-failed" in acme["detail"]
    assert [s["outcome"] for s in acme["stacks"]] == ["FAILED", "SKIPPED", "SKIPPED"]
    assert "DeleteStack" not in calls(emulator, ACME)
    assert first.outcomes()["ledgerly"] == "OK"

    emulator.injector.load(None)  # keep the stacks, drop the plan
    second = deploy(emulator, assembly, tmp_path, capsys, "--recreate-failed")

    assert second.code == 0, second.out + second.err
    acme = second.target("acme-health")
    assert acme["stacks"][0]["outcome"] == "CREATED"
    assert acme["stacks"][0]["detail"].startswith("recreated (was ROLLBACK_COMPLETE: ")
    assert "BaselineTrail: InsufficientS3BucketPolicyException" in acme["stacks"][0]["detail"]
    assert {s["outcome"] for s in second.target("ledgerly")["stacks"]} == {"UNCHANGED"}
    assert stack_status(access_for(emulator), ACME, "vend-acme-health-global") == "CREATE_COMPLETE"


def test_canary_failure_stops_the_rollout(
    emulator: Emulator, assembly: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reset(emulator, deny(ACME))

    run = deploy(emulator, assembly, tmp_path, capsys, "--canary", "1")

    assert run.code == 1
    assert run.outcomes() == {
        "msp-log-archive": "OK",
        "acme-health": "FAILED",
        "brightmart": "SKIPPED",
        "ledgerly": "SKIPPED",
    }
    assert run.report["run"]["stop_reason"] == "canary failed (acme-health); the other clients were not started"
    assert "2 target(s) not started: canary failed" in run.out
    assert calls(emulator, BRIGHTMART, "sts") == [] and calls(emulator, LEDGERLY, "sts") == []


def test_max_failures_stops_scheduling(
    emulator: Emulator, assembly: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reset(emulator, deny(ACME))

    run = deploy(emulator, assembly, tmp_path, capsys, "--max-failures", "1", "--concurrency", "1")

    assert run.code == 1
    assert run.outcomes()["acme-health"] == "FAILED"
    assert run.outcomes()["brightmart"] == run.outcomes()["ledgerly"] == "SKIPPED"
    assert run.target("ledgerly")["detail"] == "not started: --max-failures 1 reached (1 client(s) failed)"


def test_a_held_lock_refuses_the_run_and_deploys_nothing(
    emulator: Emulator, assembly: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = {"run_id": "other-run", "owner": "ci", "host": "runner-7", "pid": 42, "command": "vend deploy --all"}
    s3 = s3_in_log_archive(emulator)
    s3.create_bucket(Bucket=LOCK_BUCKET)
    s3.put_object(Bucket=LOCK_BUCKET, Key=LOCK_KEY, Body=json.dumps(holder).encode())

    run = deploy(emulator, assembly, tmp_path, capsys)

    assert run.code == 1
    assert "another vend deploy of this portfolio is running: run other-run by ci@runner-7 (pid 42)" in run.err
    assert "Nothing was deployed" in run.err
    assert set(run.outcomes().values()) == {"SKIPPED"}
    assert run.report["run"]["lock"]["state"] == "held by another run"
    assert not WRITES & set(calls(emulator, LOG_ARCHIVE))
    assert all(calls(emulator, a, "sts") == [] for a in (ACME, BRIGHTMART, LEDGERLY))
    assert json.loads(s3.get_object(Bucket=LOCK_BUCKET, Key=LOCK_KEY)["Body"].read())["run_id"] == "other-run"


def test_a_stale_lock_is_taken_over(
    emulator: Emulator, assembly: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s3 = s3_in_log_archive(emulator)
    s3.create_bucket(Bucket=LOCK_BUCKET)
    s3.put_object(Bucket=LOCK_BUCKET, Key=LOCK_KEY, Body=json.dumps({"run_id": "dead-run"}).encode())
    time.sleep(2.1)  # S3 times are whole seconds

    run = deploy(emulator, assembly, tmp_path, capsys, "--lock-stale-after", "1")

    assert run.code == 0, run.err
    assert run.report["run"]["lock"]["took_over"]["run_id"] == "dead-run"
    assert "took over a stale lock of run dead-run" in run.out


def test_the_plan_lists_every_stack_in_order_and_touches_nothing(
    emulator: Emulator, assembly: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = deploy(emulator, assembly, tmp_path, capsys, "--plan")

    assert run.code == 0, run.err
    assert run.out.startswith("order:\n  1. MSP side")
    assert "step 1: vend-ledgerly-global [us-east-2] CREATE: new stack" in run.out
    assert "step 2: vend-ledgerly-eu-central-1 [eu-central-1] CREATE (after vend-ledgerly-global)" in run.out
    assert "plan: 4 target(s), 4 with changes, 0 could not be planned; stacks: 10 create" in run.out
    plan = json.loads((run.dir / "deploy-plan.json").read_text())
    assert [t["name"] for t in plan["targets"]] == ["msp-log-archive", "acme-health", "brightmart", "ledgerly"]
    for account in (LOG_ARCHIVE, ACME, BRIGHTMART, LEDGERLY):
        assert not WRITES & set(calls(emulator, account))
    assert calls(emulator, LOG_ARCHIVE, "s3") == []  # not even the lock

    deploy(emulator, assembly, tmp_path, capsys)
    again = deploy(emulator, assembly, tmp_path, capsys, "--plan", "--format", "json")
    data = json.loads(again.out)
    assert data["summary"] == {
        "targets": 4,
        "targets_with_changes": 0,
        "targets_not_planned": 0,
        "stacks": {"unchanged": 10},
    }


def test_the_plan_exits_1_when_a_stack_is_blocked_and_says_so_last(
    emulator: Emulator, assembly: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reset(
        emulator,
        f'stacks:\n  - {{account: "{ACME}", region: us-east-1, stack: vend-acme-health-global,'
        ' status: ROLLBACK_COMPLETE, reason: "BaselineTrail: InsufficientS3BucketPolicyException"}\n'
        f'  - {{account: "{LEDGERLY}", region: us-east-2, stack: vend-ledgerly-global,'
        " status: UPDATE_ROLLBACK_FAILED}\n",
    )

    blocked = deploy(emulator, assembly, tmp_path, capsys, "--plan")

    assert blocked.code == 1, blocked.out + blocked.err
    assert "vend-acme-health-global [us-east-1] BLOCKED" in blocked.out
    # UPDATE_ROLLBACK_FAILED is not blocked: the deploy continues the rollback itself
    assert "vend-ledgerly-global [us-east-2] CONTINUE-ROLLBACK" in blocked.out
    assert blocked.out.rstrip().splitlines()[-1] == (
        "exit 1: 1 stack(s) BLOCKED (a deploy would fail them; see each one's reason)"
    )
    markdown = (blocked.dir / "deploy-plan.md").read_text()
    assert "**exit 1: 1 stack(s) BLOCKED" in markdown

    recreate = deploy(emulator, assembly, tmp_path, capsys, "--plan", "--recreate-failed")

    assert recreate.code == 0, recreate.out
    assert "vend-acme-health-global [us-east-1] RECREATE" in recreate.out
    assert "exit 1" not in recreate.out
    assert recreate.out.rstrip().splitlines()[-1].startswith("plan: 4 target(s)")
    for account in (ACME, LEDGERLY):
        assert not WRITES & set(calls(emulator, account))


def test_the_plan_exits_1_for_a_stack_only_an_operator_can_unblock(
    emulator: Emulator, assembly: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reset(
        emulator,
        f'stacks:\n  - {{account: "{BRIGHTMART}", region: eu-west-1, stack: vend-brightmart-global,'
        " status: DELETE_FAILED}\n",
    )

    run = deploy(emulator, assembly, tmp_path, capsys, "--plan", "--recreate-failed", "--format", "json")

    assert run.code == 1
    assert json.loads(run.out)["summary"]["stacks"]["blocked"] == 1


def test_no_lock_help_names_the_lock_vend_really_takes(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")  # argparse breaks lines at hyphens
    with pytest.raises(SystemExit):
        main(["deploy", "--help"])
    text = " ".join(capsys.readouterr().out.split())

    where = f"s3://{vend_bucket_name('<account>', '<region>')}/{lock.LOCK_KEY}"
    assert f"do not take the deploy lock ({where}," in text
    # ... where the tests above find the lock of a real run
    assert (vend_bucket_name(LOG_ARCHIVE, "us-east-1"), lock.LOCK_KEY) == (LOCK_BUCKET, LOCK_KEY)
    assert "exits 1 when a stack is blocked" in text


# --------------------------------------------------------------------------- interrupts around the rollout
# A signal this process sends itself runs vend's handler in the main thread at once (os.kill
# returns into it), so each one lands exactly where the test sends it. The second signal's
# quit-at-once exit (os._exit) becomes SystemExit here.


class QuitAtOnce(SystemExit):
    pass


def quit_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def quit_now(code: int) -> None:
        raise QuitAtOnce(code)

    monkeypatch.setattr(deploy_cmd, "_quit_now", quit_now)


def send(*signals: signal.Signals) -> None:
    for sig in signals:
        os.kill(os.getpid(), sig)
        time.sleep(0.05)  # interruptible: the handler has run before the next one is sent


def signal_when_the_lock_is_deleted(monkeypatch: pytest.MonkeyPatch, *signals: signal.Signals) -> None:
    """Send ``signals`` from inside the S3 DeleteObject of the lock's release: after the
    rollout, before the summary and the report."""
    real = deploy_cmd._lock_for
    sent: list[bool] = []

    def lock_for(*args: Any, **kwargs: Any) -> lock.DeployLock:
        deploy_lock = real(*args, **kwargs)

        def interrupt(**_: Any) -> None:
            if not sent:
                sent.append(True)
                send(*signals)

        deploy_lock.s3.meta.events.register("before-call.s3.DeleteObject", interrupt)
        return deploy_lock

    monkeypatch.setattr(deploy_cmd, "_lock_for", lock_for)


def no_lock_object(emulator: Emulator) -> bool:
    return "Contents" not in s3_in_log_archive(emulator).list_objects_v2(Bucket=LOCK_BUCKET, Prefix="locks/")


def test_a_signal_while_the_lock_is_released_still_writes_the_report(
    emulator: Emulator,
    assembly: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    signal_when_the_lock_is_deleted(monkeypatch, signal.SIGINT)

    run = deploy(emulator, assembly, tmp_path, capsys)

    assert run.code == 130, run.err
    assert "vend: SIGINT: the rollout is over; giving the deploy lock back" in run.out
    assert "finished in" in run.out  # the summary table
    assert run.report["run"]["exit_code"] == 130
    assert set(run.outcomes().values()) == {"OK"}  # the rollout had finished: nothing to take back
    assert run.report["run"]["lock"]["released"] is True
    assert no_lock_object(emulator)


def test_a_second_signal_while_the_lock_is_released_quits_with_the_report_and_the_lock_released(
    emulator: Emulator,
    assembly: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    quit_raises(monkeypatch)
    signal_when_the_lock_is_deleted(monkeypatch, signal.SIGINT, signal.SIGINT)
    report_dir = tmp_path / "report"

    with pytest.raises(QuitAtOnce) as quit:
        main(
            ["deploy", "--all", "--overrides", str(REPO / "overrides"), "--assembly", str(assembly)]
            + ["--endpoint-url", emulator.url, "--report", str(report_dir), "--progress", "plain", "--poll", "0.01"]
        )
    err = capsys.readouterr().err

    assert quit.value.code == 130
    assert "vend: SIGINT again: quit without waiting for in-flight calls" in err
    assert "vend: deploy lock released" in err
    report = json.loads((report_dir / "deploy-report.json").read_text())
    assert report["run"]["exit_code"] == 130
    assert {t["outcome"] for t in report["targets"]} == {"OK"}
    assert no_lock_object(emulator)
    assert not [t for t in threading.enumerate() if t.name == "vend-progress"]  # the progress display stopped


def test_a_signal_while_the_lock_is_taken_starts_nothing_and_reports_it(
    emulator: Emulator,
    assembly: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = deploy_cmd._lock_for

    def interrupted_lock_for(*args: Any, **kwargs: Any) -> lock.DeployLock:
        send(signal.SIGINT)
        return real(*args, **kwargs)

    monkeypatch.setattr(deploy_cmd, "_lock_for", interrupted_lock_for)

    run = deploy(emulator, assembly, tmp_path, capsys)

    assert run.code == 130, run.err
    assert run.report["run"]["exit_code"] == 130 and run.report["run"]["interrupted"] is True
    for target in run.report["targets"]:
        assert target["outcome"] == "SKIPPED"
        assert target["detail"] == "not started: interrupted by SIGINT"
        assert len(target["stacks"]) > 0
    for account in (LOG_ARCHIVE, ACME, BRIGHTMART, LEDGERLY):
        assert not WRITES & set(calls(emulator, account))
    assert all(calls(emulator, a, "sts") == [] for a in (ACME, BRIGHTMART, LEDGERLY))
    assert no_lock_object(emulator)


def test_a_signal_while_preparing_stops_it_and_reports_that_nothing_started(
    emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``prepare`` stands for the synthesis ``vend deploy`` runs without --assembly."""
    report_dir = tmp_path / "report"
    args = parser().parse_args(["deploy", "--all", "--report", str(report_dir), "--progress", "plain"])
    portfolio, _ = load_portfolio(REPO / "overrides")
    assert portfolio is not None

    def synthesizing() -> int:
        send(signal.SIGINT)
        time.sleep(30)  # the handler cuts this short
        return 0

    start = time.monotonic()
    code = deploy_cmd.deploy_command(
        args,
        access_for(emulator),
        portfolio,
        tmp_path / "never-written",
        ["acme-health", "brightmart", "ledgerly"],
        prepare=synthesizing,
    )
    err = capsys.readouterr().err

    assert code == 130
    assert time.monotonic() - start < 10
    assert "vend: interrupted by SIGINT before anything was deployed; nothing was started" in err
    report = json.loads((report_dir / "deploy-report.json").read_text())
    assert report["run"]["exit_code"] == 130
    assert report["run"]["stop_reason"] == "interrupted by SIGINT before the rollout started"
    targets = {t["name"]: t for t in report["targets"]}
    assert list(targets) == ["msp-log-archive", "acme-health", "brightmart", "ledgerly"]
    assert targets["acme-health"]["account"] == ACME
    assert {(t["outcome"], t["detail"]) for t in targets.values()} == {
        ("SKIPPED", "not started: interrupted by SIGINT")
    }
    assert dict(emulator.injector.calls) == {}  # not one AWS call
