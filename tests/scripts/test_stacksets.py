"""``vend deploy --engine stacksets`` on the emulator (scripts/stacksets.py): the example
clients through CloudFormation StackSets, live state in each client account, an unchanged
run that starts no operation, a client's new value as a parameter update, a failure in one
account that stops no other, and moves between stack sets only with consent.

One emulator and one first deploy per module; the tests build on each other in file order.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from baseline.portfolio import Portfolio, load_portfolio
from scripts.assembly import read_assembly
from scripts.aws import AwsAccess, ensure_private_bucket, vend_bucket_name
from scripts.deploy import RolloutOptions, run_rollout
from scripts.deploy_cmd import build_targets
from scripts.drift import drift_portfolio
from scripts.emulator.faults import fetch_calls, parse_fault_text
from scripts.emulator.server import Emulator
from scripts.ledger import Ledger
from scripts.stackset_layout import read_layout
from scripts.stacksets import StackSetOptions, StackSetsEngine
from scripts.synth import synthesize

REPO = Path(__file__).resolve().parents[2]
CLIENTS = ["acme-health", "brightmart", "ledgerly"]
MSP = "123456789012"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    mp = pytest.MonkeyPatch()
    for key, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test")):
        mp.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        mp.delenv(key, raising=False)
    with Emulator().start() as emu:
        requests.post(f"{emu.url}/moto-api/reset", timeout=10)
        yield emu
        requests.post(f"{emu.url}/moto-api/reset", timeout=10)
    mp.undo()


@pytest.fixture(scope="module")
def access(emulator: Emulator) -> AwsAccess:
    return AwsAccess(endpoint_url=emulator.url)


@pytest.fixture(scope="module")
def overrides(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stacksets") / "overrides"
    shutil.copytree(REPO / "overrides", root)
    return root


def _portfolio(overrides: Path) -> Portfolio:
    portfolio, problems = load_portfolio(overrides)
    assert portfolio is not None, problems
    return portfolio


def _ledger(access: AwsAccess) -> Ledger:
    session = access.base_session()
    s3 = access.client(session, "s3", "us-east-1")
    bucket = vend_bucket_name(MSP, "us-east-1")
    ensure_private_bucket(s3, bucket, "us-east-1", MSP)
    return Ledger(s3, bucket, owner=MSP).load()


def _engine(access: AwsAccess, assembly: Path, **options: Any) -> StackSetsEngine:
    opts = StackSetOptions(
        region="us-east-1", admin_role_arn=f"arn:aws:iam::{MSP}:role/vend-stacksets-admin", poll_s=0.05, **options
    )
    return StackSetsEngine(access, read_layout(assembly), opts, ledger=_ledger(access))


def _run(access: AwsAccess, assembly: Path, **options: Any) -> tuple[dict[str, Any], StackSetsEngine]:
    engine = _engine(access, assembly, **options)
    results = engine.run(CLIENTS)
    assert engine.ledger is not None
    engine.ledger.save()
    return {r.name: r for r in results}, engine


def _calls(emulator: Emulator) -> dict[str, int]:
    rows = fetch_calls(emulator.url)["calls"]
    out: dict[str, int] = {}
    for row in rows:
        out[row["operation"]] = out.get(row["operation"], 0) + int(row["count"])
    return out


@pytest.fixture(scope="module")
def first(access: AwsAccess, overrides: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    assembly = tmp_path_factory.mktemp("assembly")
    assert synthesize(overrides, assembly, validation=False, quiet=True) == 0
    portfolio = _portfolio(overrides)
    msp, _ = build_targets(portfolio, read_assembly(assembly), [])
    report = run_rollout(access, first=msp, targets=[], options=RolloutOptions())
    assert report.ok, report.results
    results, _ = _run(access, assembly)
    return assembly, results


def test_every_client_is_deployed_through_stack_sets(first: tuple[Path, dict[str, Any]]) -> None:
    _, results = first
    assert all(r.outcome == "OK" for r in results.values()), {n: r.detail for n, r in results.items()}
    assert {s.outcome for r in results.values() for s in r.stacks} == {"CREATED"}
    assert sum(len(r.stacks) for r in results.values()) == 9  # the same stacks as direct mode
    assert [s.stack_name for s in results["acme-health"].stacks][0] == "vend-acme-health-global"


def test_live_state_in_each_client_account(
    first: tuple[Path, dict[str, Any]], access: AwsAccess, overrides: Path
) -> None:
    portfolio = _portfolio(overrides)
    for name in CLIENTS:
        c = portfolio.client(name)
        session = access.assume_role(
            c.deploy_role_arn, external_id=c.external_id, session_name="t", region=c.home_region
        )
        cfn = access.client(session, "cloudformation", c.home_region)
        stacks = [s["StackName"] for s in cfn.describe_stacks()["Stacks"] if s["StackStatus"] != "DELETE_COMPLETE"]
        assert stacks and all(s.startswith("StackSet-vend-") for s in stacks), stacks
        assert access.client(session, "cloudtrail", c.home_region).get_trail_status(Name="vend-baseline")["IsLogging"]
    # Every control of every client, checked live as drift does: all in sync.
    assembly, _ = first
    report = drift_portfolio(access, portfolio, CLIENTS, concurrency=3, assembly=assembly)
    statuses = {(f.client, f.region, f.control): f.status for f in report.findings}
    assert set(statuses.values()) == {"IN_SYNC"}, {k: v for k, v in statuses.items() if v != "IN_SYNC"}


def test_an_unchanged_run_starts_no_operation(
    first: tuple[Path, dict[str, Any]], access: AwsAccess, emulator: Emulator
) -> None:
    assembly, _ = first
    before = _calls(emulator)
    results, _ = _run(access, assembly)
    after = _calls(emulator)
    assert {s.outcome for r in results.values() for s in r.stacks} == {"UNCHANGED"}
    started = {op: after.get(op, 0) - before.get(op, 0) for op in after}
    for op in (
        "CreateStackInstances",
        "UpdateStackInstances",
        "UpdateStackSet",
        "CreateStackSet",
        "DescribeStackInstance",
    ):
        assert started.get(op, 0) == 0, (op, started)  # the ledger vouches for every instance's values


def _resynth(overrides: Path, tmp: Path) -> Path:
    assembly = tmp / "cdk.out"
    assert synthesize(overrides, assembly, validation=False, quiet=True) == 0
    return assembly


def test_a_new_value_is_outdated_then_one_parameter_update(
    first: tuple[Path, dict[str, Any]], access: AwsAccess, overrides: Path, tmp_path: Path
) -> None:
    path = overrides / "brightmart.yaml"
    path.write_text(path.read_text().replace("monthly_limit_usd: 800", "monthly_limit_usd: 950"))
    assembly = _resynth(overrides, tmp_path)
    portfolio = _portfolio(overrides)
    report = drift_portfolio(access, portfolio, CLIENTS, concurrency=3, assembly=assembly)
    outdated = {(f.client, f.control) for f in report.findings if f.status == "OUTDATED"}
    assert outdated == {("brightmart", "budget")}

    results, engine = _run(access, assembly)
    changed = {
        (r.name, s.stack_name): s.outcome for r in results.values() for s in r.stacks if s.outcome != "UNCHANGED"
    }
    assert changed == {("brightmart", "vend-brightmart-global"): "UPDATED"}
    c = portfolio.client("brightmart")
    session = access.assume_role(c.deploy_role_arn, external_id=c.external_id, session_name="t", region=c.home_region)
    budgets = access.client(session, "budgets", "us-east-1").describe_budgets(AccountId=c.account_id)["Budgets"]
    assert [float(b["BudgetLimit"]["Amount"]) for b in budgets] == [950.0]
    report = drift_portfolio(access, portfolio, CLIENTS, concurrency=3, assembly=assembly)
    assert {f.status for f in report.findings} == {"IN_SYNC"}


def test_a_failure_in_one_account_stops_no_other(
    first: tuple[Path, dict[str, Any]], emulator: Emulator, access: AwsAccess, overrides: Path, tmp_path: Path
) -> None:
    portfolio = _portfolio(overrides)
    acme, ledgerly = portfolio.client("acme-health"), portfolio.client("ledgerly")
    plan, problems = parse_fault_text(
        f"""faults:
  - service: cloudformation
    operation: StackInstance
    account: "{acme.account_id}"
    region: eu-north-1
    error: ExecutionRoleMissing
    message: "Account {acme.account_id} should have 'vend-stacksets-execution' role with trust relationship"
"""
    )
    assert plan is not None, problems
    # Two clients add a region; the new stack fails in one account only.
    for name in ("acme-health", "ledgerly"):
        path = overrides / f"{name}.yaml"
        path.write_text(path.read_text().replace("regions: [", "regions: [eu-north-1, "))
    emulator.injector.load(plan)
    try:
        results, _ = _run(access, _resynth(overrides, tmp_path))
    finally:
        emulator.injector.load(None)
    assert results["acme-health"].outcome == "FAILED"
    assert "should have 'vend-stacksets-execution' role" in results["acme-health"].detail
    failed = [s for s in results["acme-health"].stacks if s.outcome == "FAILED"]
    assert [(s.stack_name, s.region) for s in failed] == [("vend-acme-health-eu-north-1", "eu-north-1")]
    assert results["ledgerly"].outcome == "OK" and results["brightmart"].outcome == "OK"
    assert ledgerly.account_id not in results["acme-health"].detail

    # The next run retries only what failed.
    results, _ = _run(access, _resynth(overrides, tmp_path))
    assert all(r.outcome == "OK" for r in results.values())
    redone = {(r.name, s.stack_name) for r in results.values() for s in r.stacks if s.outcome != "UNCHANGED"}
    assert redone == {("acme-health", "vend-acme-health-eu-north-1")}


def test_a_client_whose_template_changes_kind_moves_only_with_consent(
    first: tuple[Path, dict[str, Any]], access: AwsAccess, overrides: Path, tmp_path: Path
) -> None:
    path = overrides / "brightmart.yaml"
    path.write_text(path.read_text().replace("engagement: monitoring", "engagement: managed"))
    assembly = _resynth(overrides, tmp_path)
    results, _ = _run(access, assembly)
    assert results["brightmart"].outcome == "FAILED"
    assert "--move-stacks" in results["brightmart"].detail and "direct mode" in results["brightmart"].detail
    assert {s.outcome for s in results["brightmart"].stacks} == {"FAILED"}
    assert results["acme-health"].outcome == "OK"

    results, engine = _run(access, assembly, move_stacks=True)
    assert results["brightmart"].outcome == "OK", results["brightmart"].detail
    assert any("removed from" in note for note in engine.notes)
    moved = {s.stack_name: s.outcome for s in results["brightmart"].stacks}
    assert moved["vend-brightmart-global"] == "CREATED"
    report = drift_portfolio(access, _portfolio(overrides), ["brightmart"], concurrency=1, assembly=assembly)
    assert {f.status for f in report.findings} == {"IN_SYNC"}
