"""``vend deploy`` with the deploy ledger (scripts/ledger.py) and ``--engine stacksets``, on the
emulator: an unchanged client costs two API calls, a changed one takes the usual path,
``--refresh`` checks everything live, and the StackSets engine runs from the command line
with the same reports.
"""

from __future__ import annotations

import json
import shutil
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from scripts.cli import main
from scripts.emulator.server import Emulator
from scripts.synth import synthesize
from tests.scripts.kit import access_for, fake_aws_env, reset, role

REPO = Path(__file__).resolve().parents[2]
ACME, BRIGHTMART, LEDGERLY = "111122223333", "444455556666", "777788889999"
CLIENT_ACCOUNTS = (ACME, BRIGHTMART, LEDGERLY)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with fake_aws_env(tmp_path_factory.mktemp("aws")), Emulator().start() as emu:
        yield emu


@pytest.fixture
def overrides(tmp_path: Path) -> Path:
    target = tmp_path / "overrides"
    shutil.copytree(REPO / "overrides", target)
    return target


@pytest.fixture(autouse=True)
def clean(emulator: Emulator) -> Iterator[None]:
    reset(emulator)
    yield
    reset(emulator)


def deploy(
    emulator: Emulator, overrides: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, dict[str, Any]]:
    assembly = tmp_path / f"cdk.out-{time.monotonic_ns()}"
    assert synthesize(overrides, assembly, validation=False, quiet=True) == 0
    report = tmp_path / f"report-{time.monotonic_ns()}"
    code = main(
        ["deploy", "--all", "--overrides", str(overrides), "--assembly", str(assembly), "--endpoint-url", emulator.url]
        + ["--report", str(report), "--progress", "plain", "--poll", "0.01", *args]
    )
    capsys.readouterr()
    return code, json.loads((report / "deploy-report.json").read_text())


def calls_by_account(emulator: Emulator) -> Counter[str]:
    counts: Counter[str] = Counter()
    for call, n in dict(emulator.injector.calls).items():
        counts[call.account] += n
    return counts


def outcomes(report: dict[str, Any]) -> dict[str, set[str]]:
    return {t["name"]: {s["outcome"] for s in t["stacks"]} for t in report["targets"]}


def test_an_unchanged_client_costs_two_calls_and_a_changed_one_is_deployed(
    emulator: Emulator, overrides: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = deploy(emulator, overrides, tmp_path, capsys)
    assert code == 0

    before = calls_by_account(emulator)
    code, report = deploy(emulator, overrides, tmp_path, capsys)
    spent = calls_by_account(emulator) - before
    assert code == 0
    assert {name: o for name, o in outcomes(report).items()} == {
        "msp-log-archive": {"UNCHANGED"},
        "acme-health": {"UNCHANGED"},
        "brightmart": {"UNCHANGED"},
        "ledgerly": {"UNCHANGED"},
    }
    # AssumeRole + DescribeStacks of the global stack, whatever the number of regions.
    assert [spent[a] for a in CLIENT_ACCOUNTS] == [2, 2, 2], spent
    acme = next(t for t in report["targets"] if t["name"] == "acme-health")
    assert "deploy ledger" in acme["stacks"][1]["detail"] and "--refresh" in acme["stacks"][1]["detail"]

    path = overrides / "brightmart.yaml"
    path.write_text(path.read_text().replace("monthly_limit_usd: 800", "monthly_limit_usd: 950"))
    before = calls_by_account(emulator)
    code, report = deploy(emulator, overrides, tmp_path, capsys)
    spent = calls_by_account(emulator) - before
    assert code == 0 and outcomes(report)["brightmart"] == {"UPDATED", "UNCHANGED"}
    assert spent[ACME] == 2 and spent[LEDGERLY] == 2 and spent[BRIGHTMART] > 4


def test_refresh_checks_every_stack_live(
    emulator: Emulator, overrides: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy(emulator, overrides, tmp_path, capsys)[0] == 0
    # A regional stack deleted out of band (termination protection off first, as a person would).
    access = access_for(emulator)
    session = access.assume_role(role(ACME), external_id=None, session_name="test", region="us-west-2")
    cfn = access.client(session, "cloudformation", "us-west-2")
    cfn.update_termination_protection(StackName="vend-acme-health-us-west-2", EnableTerminationProtection=False)
    cfn.delete_stack(StackName="vend-acme-health-us-west-2")

    code, report = deploy(emulator, overrides, tmp_path, capsys)
    assert code == 0 and outcomes(report)["acme-health"] == {"UNCHANGED"}  # the ledger's word, said so

    code, report = deploy(emulator, overrides, tmp_path, capsys, "--refresh")
    assert code == 0
    acme = {s["stack_name"]: s["outcome"] for t in report["targets"] if t["name"] == "acme-health" for s in t["stacks"]}
    assert acme["vend-acme-health-us-west-2"] == "CREATED"


def test_stacksets_engine_from_the_command_line(
    emulator: Emulator, overrides: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = deploy(emulator, overrides, tmp_path, capsys, "--engine", "stacksets", "--concurrency", "4")
    assert code == 0, report
    names = [t["name"] for t in report["targets"]]
    assert names == ["msp-log-archive", "msp-stacksets-admin", "acme-health", "brightmart", "ledgerly"]
    assert outcomes(report)["ledgerly"] == {"CREATED"} and len(report["targets"][-1]["stacks"]) == 4
    access = access_for(emulator)
    iam = access.client(access.base_session(), "iam", "us-east-1")
    assert iam.get_role(RoleName="vend-stacksets-admin")["Role"]["Arn"].endswith(":role/vend-stacksets-admin")

    code, report = deploy(emulator, overrides, tmp_path, capsys, "--engine", "stacksets")
    assert code == 0
    assert {o for name, o in outcomes(report).items() for o in o} == {"UNCHANGED"}


def test_stacksets_engine_runs_the_preflight_for_inherited_resources(
    emulator: Emulator, overrides: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    access = access_for(emulator)
    session = access.assume_role(role(BRIGHTMART), external_id=None, session_name="test", region="eu-west-1")
    access.client(session, "guardduty", "eu-west-1").create_detector(Enable=True)  # the account's own

    code, report = deploy(emulator, overrides, tmp_path, capsys, "--engine", "stacksets")
    assert code == 1, report
    brightmart = next(t for t in report["targets"] if t["name"] == "brightmart")
    assert brightmart["outcome"] == "FAILED" and "guardduty_detector" in brightmart["detail"], brightmart["detail"]
    assert {o for name, o in outcomes(report).items() if name in ("acme-health", "ledgerly") for o in o} == {"CREATED"}

    # A new region for a client deployed through StackSets: its own resources are not inherited.
    path = overrides / "acme-health.yaml"
    path.write_text(
        path.read_text().replace("regions: [us-east-1, us-west-2]", "regions: [us-east-1, us-west-2, eu-west-1]")
    )
    code, report = deploy(emulator, overrides, tmp_path, capsys, "--engine", "stacksets")
    acme = next(t for t in report["targets"] if t["name"] == "acme-health")
    assert acme["outcome"] == "OK", acme["detail"]
    assert {s["stack_name"]: s["outcome"] for s in acme["stacks"]}["vend-acme-health-eu-west-1"] == "CREATED"
