"""Rollouts across many clients: throttling, unassumable roles, canaries, failure limits,
interrupts, re-runs and the dry-run plan, against the emulator with fault plans.

Clients here are tiny (a queue per stack) so that each scenario takes a second or two;
the CLI scenarios on the real baseline are in ``test_deploy_cli.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts.deploy import (
    Cancel,
    RolloutOptions,
    StackOptions,
    Target,
    TargetResult,
    plan_targets,
    run_rollout,
)
from scripts.emulator.server import Emulator
from tests.scripts.kit import (
    MSP,
    WRITES,
    access_for,
    calls,
    client_target,
    fake_aws_env,
    make_stack,
    queue,
    reset,
    stack_status,
)

ACCOUNTS = [f"5000000000{i:02d}" for i in range(10)]
FAST = StackOptions(poll_s=0.01, timeout_s=10)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with fake_aws_env(tmp_path_factory.mktemp("aws")), Emulator().start() as emu:
        yield emu


@pytest.fixture(autouse=True)
def clean(emulator: Emulator) -> Iterator[None]:
    reset(emulator)
    yield
    reset(emulator)


def clients(tmp_path: Path, n: int, *, regions: tuple[str, ...] = ()) -> list[Target]:
    return [client_target(tmp_path, f"c{i}", ACCOUNTS[i], regions=regions) for i in range(n)]


def msp(tmp_path: Path) -> Target:
    return Target("msp", None, None, (make_stack(tmp_path / "msp", "Msp", {"Q": queue("msp-q")}, account=MSP),))


def deny(*accounts: str) -> str:
    rules = "".join(
        f'  - {{service: sts, operation: AssumeRole, account: "{a}", error: AccessDenied,'
        " message: not authorized to perform sts:AssumeRole}\n"
        for a in accounts
    )
    return "faults:\n" + rules


def outcomes(results: tuple[TargetResult, ...] | list[TargetResult]) -> dict[str, str]:
    return {r.name: r.outcome for r in results}


def test_thirty_percent_throttling_on_every_cloudformation_call_still_deploys_everything(
    emulator: Emulator, tmp_path: Path
) -> None:
    throttle = "{service: cloudformation, error: Throttling, message: Rate exceeded, probability: 0.3}"
    reset(emulator, f"seed: 5\nfaults:\n  - {throttle}\n")
    report = run_rollout(
        access_for(emulator),
        first=msp(tmp_path),
        targets=clients(tmp_path, 3),
        options=RolloutOptions(concurrency=3, stack=FAST),
    )

    assert report.ok, [(r.name, r.detail) for r in report.results]
    assert {s.outcome for r in report.results for s in r.stacks} == {"CREATED"}
    assert sum(emulator.injector.fired.values()) >= 5  # the throttling really happened


def test_an_unassumable_role_fails_that_client_with_a_hint_and_the_rest_go_on(
    emulator: Emulator, tmp_path: Path
) -> None:
    reset(emulator, deny(ACCOUNTS[1]))
    report = run_rollout(
        access_for(emulator), first=msp(tmp_path), targets=clients(tmp_path, 4), options=RolloutOptions(stack=FAST)
    )

    assert outcomes(report.results) == {"msp": "OK", "c0": "OK", "c1": "FAILED", "c2": "OK", "c3": "OK"}
    failed = report.results[2]
    assert "AccessDenied" in failed.detail and "not authorized" in failed.detail
    assert "ExternalId" in failed.detail and "trust policy" in failed.detail and "offboarded" in failed.detail
    assert not report.ok and report.stop_reason == ""


def test_a_failed_canary_stops_the_rollout(emulator: Emulator, tmp_path: Path) -> None:
    reset(emulator, deny(ACCOUNTS[1]))
    report = run_rollout(
        access_for(emulator),
        first=None,
        targets=clients(tmp_path, 6),
        options=RolloutOptions(concurrency=4, canary=2, stack=FAST),
    )

    assert outcomes(report.results) == {
        "c0": "OK",
        "c1": "FAILED",
        **{f"c{i}": "SKIPPED" for i in range(2, 6)},
    }
    assert report.stop_reason == "canary failed (c1); the other clients were not started"
    assert report.canary == ("c0", "c1")
    assert all(r.detail.startswith("not started: canary failed") for r in report.results[2:])
    for account in ACCOUNTS[2:6]:
        assert calls(emulator, account, "sts") == []  # never even assumed


def test_a_good_canary_lets_the_rest_follow(emulator: Emulator, tmp_path: Path) -> None:
    started: list[str] = []
    report = run_rollout(
        access_for(emulator),
        first=None,
        targets=clients(tmp_path, 5),
        options=RolloutOptions(concurrency=5, canary=2, stack=FAST),
        on_start=lambda t: started.append(t.name),
        on_result=lambda r: started.append(f"done:{r.name}"),
    )

    assert report.ok
    canary_done = max(started.index("done:c0"), started.index("done:c1"))
    assert all(started.index(f"c{i}") > canary_done for i in range(2, 5))  # the rest waited for the canary


def test_max_failures_stops_scheduling_new_clients(emulator: Emulator, tmp_path: Path) -> None:
    reset(emulator, deny(ACCOUNTS[0], ACCOUNTS[2], ACCOUNTS[4]))
    report = run_rollout(
        access_for(emulator),
        first=None,
        targets=clients(tmp_path, 7),
        options=RolloutOptions(concurrency=1, max_failures=2, stack=FAST),
    )

    assert outcomes(report.results) == {
        "c0": "FAILED",
        "c1": "OK",
        "c2": "FAILED",
        **{f"c{i}": "SKIPPED" for i in range(3, 7)},
    }
    assert report.stop_reason == "--max-failures 2 reached (2 client(s) failed)"
    assert report.results[3].detail == "not started: --max-failures 2 reached (2 client(s) failed)"


def test_msp_side_failure_deploys_no_client(emulator: Emulator, tmp_path: Path) -> None:
    reset(
        emulator,
        f'faults:\n  - {{service: cloudformation, operation: CreateChangeSet, account: "{MSP}", '
        "error: InsufficientCapabilitiesException, message: needs CAPABILITY_X}\n",
    )
    report = run_rollout(access_for(emulator), first=msp(tmp_path), targets=clients(tmp_path, 3))

    assert outcomes(report.results) == {"msp": "FAILED", "c0": "SKIPPED", "c1": "SKIPPED", "c2": "SKIPPED"}
    assert report.stop_reason.startswith("MSP-side stacks failed: vend-msp (us-east-1): CreateChangeSet")
    assert all(calls(emulator, a, "sts") == [] for a in ACCOUNTS[:3])


def test_interrupt_starts_nothing_new_and_reports_every_client(emulator: Emulator, tmp_path: Path) -> None:
    cancel = Cancel()

    def interrupt_after_two(result: TargetResult) -> None:
        if result.name == "c1":
            cancel.set("interrupted by SIGINT")

    report = run_rollout(
        access_for(emulator),
        first=None,
        targets=clients(tmp_path, 6),
        options=RolloutOptions(concurrency=1, stack=FAST),
        cancel=cancel,
        on_result=interrupt_after_two,
    )

    assert outcomes(report.results) == {"c0": "OK", "c1": "OK", **{f"c{i}": "SKIPPED" for i in range(2, 6)}}
    assert report.interrupted and report.stop_reason == "interrupted by SIGINT"
    assert {r.detail for r in report.results[2:]} == {"not started: interrupted by SIGINT"}
    assert all(s.detail == "not started: interrupted by SIGINT" for r in report.results[2:] for s in r.stacks)


def test_before_clients_can_stop_the_run_after_the_msp_side(emulator: Emulator, tmp_path: Path) -> None:
    report = run_rollout(
        access_for(emulator),
        first=msp(tmp_path),
        targets=clients(tmp_path, 2),
        before_clients=lambda: "deploy lock held: someone else",
    )

    assert outcomes(report.results) == {"msp": "OK", "c0": "SKIPPED", "c1": "SKIPPED"}
    assert report.results[1].detail == "not started: deploy lock held: someone else"


def test_a_rerun_after_faults_are_gone_finishes_the_rest_and_touches_none_of_the_done(
    emulator: Emulator, tmp_path: Path
) -> None:
    targets = clients(tmp_path, 4, regions=("us-west-2",))
    reset(
        emulator,
        deny(ACCOUNTS[1]) + f'stacks:\n  - {{account: "{ACCOUNTS[2]}", region: us-east-1, stack: vend-c2-global,'
        " status: ROLLBACK_COMPLETE, reason: 'Queue: limit exceeded'}\n",
    )
    access = access_for(emulator)
    first = run_rollout(access, first=None, targets=targets, options=RolloutOptions(stack=FAST))
    assert outcomes(first.results) == {"c0": "OK", "c1": "FAILED", "c2": "FAILED", "c3": "OK"}
    assert "Queue: limit exceeded" in first.results[2].detail and "--recreate-failed" in first.results[2].detail

    emulator.injector.load(None)  # the faults are fixed; the stacks stay as they are
    again = run_rollout(
        access,
        first=None,
        targets=targets,
        options=RolloutOptions(stack=StackOptions(poll_s=0.01, recreate_failed=True)),
    )

    assert outcomes(again.results) == {"c0": "OK", "c1": "OK", "c2": "OK", "c3": "OK"}
    assert {s.outcome for s in again.results[0].stacks} == {"UNCHANGED"}
    assert {s.outcome for s in again.results[1].stacks} == {"CREATED"}
    assert again.results[2].stacks[0].detail.startswith("recreated (was ROLLBACK_COMPLETE: ")
    for done in (ACCOUNTS[0], ACCOUNTS[3]):
        assert not WRITES & set(calls(emulator, done)), calls(emulator, done)
    assert stack_status(access, ACCOUNTS[2], "vend-c2-global") == "CREATE_COMPLETE"


def test_the_plan_says_what_would_change_in_order_and_touches_nothing(emulator: Emulator, tmp_path: Path) -> None:
    targets = clients(tmp_path, 3, regions=("us-west-2",))
    access = access_for(emulator)
    run_rollout(access, first=None, targets=targets[:1], options=RolloutOptions(stack=FAST))
    changed = client_target(tmp_path / "v2", "c0", ACCOUNTS[0], regions=("us-west-2",))
    bigger = {"Q": queue("c0-us-west-2-q"), "Q2": queue("c0-extra-q")}
    regional = make_stack(
        tmp_path / "v2b", "c0-us-west-2", bigger, account=ACCOUNTS[0], region="us-west-2", depends_on=("c0-global",)
    )
    changed = Target("c0", changed.role_arn, changed.external_id, (changed.stacks[0], regional))
    reset(
        emulator,
        deny(ACCOUNTS[2]) + f'stacks:\n  - {{account: "{ACCOUNTS[1]}", region: us-east-1, stack: vend-c1-global,'
        " status: ROLLBACK_COMPLETE}\n",
    )
    run_rollout(access, first=None, targets=targets[:1], options=RolloutOptions(stack=FAST))  # c0 v1 again
    emulator.injector.calls.clear()

    plans = plan_targets(access, first=None, targets=[changed, targets[1], targets[2]], options=FAST)

    c0, c1, c2 = plans
    assert [(s.stack_name, s.step, s.action) for s in c0.stacks] == [
        ("vend-c0-global", 1, "unchanged"),
        ("vend-c0-us-west-2", 2, "update"),
    ]
    assert [(c.action, c.logical_id) for c in c0.stacks[1].changes] == [("Add", "Q2")]
    assert c0.stacks[1].depends_on == ("c0-global",)
    assert [(s.action, s.step) for s in c1.stacks] == [("blocked", 1), ("create", 2)]
    assert "--recreate-failed" in c1.stacks[0].detail
    assert not c2.ok and "AccessDenied" in c2.detail
    for account in ACCOUNTS[:3]:
        assert not WRITES & set(calls(emulator, account))
