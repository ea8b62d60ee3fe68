"""Drift, complete, on the emulator: every kind of out-of-band change is found with the
right status, `--remediate` brings it back and shows it in sync, and a baseline change
that was not deployed yet is OUTDATED, not drift.

One emulator and one deploy of the example clients per module; the tests build on each
other in file order (in sync -> changes -> detected -> remediated -> outdated -> deployed).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from baseline.portfolio import Portfolio, load_portfolio
from baseline.spec import client_baseline
from scripts.assembly import read_assembly
from scripts.aws import AwsAccess
from scripts.cli import main, run_deploy
from scripts.deploy import RolloutOptions, StackOptions, run_rollout
from scripts.deploy_cmd import build_targets
from scripts.drift import drift_portfolio
from scripts.emulator.server import Emulator
from scripts.stack_protection import ProtectionOptions
from scripts.synth import synthesize

REPO = Path(__file__).resolve().parents[2]
CLIENTS = ["acme-health", "brightmart", "ledgerly"]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator().start() as emu:
        requests.post(f"{emu.url}/moto-api/reset", timeout=10)
        yield emu
        requests.post(f"{emu.url}/moto-api/reset", timeout=10)


@pytest.fixture(scope="module")
def access(emulator: Emulator) -> Iterator[AwsAccess]:
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ACCESS_KEY_ID", "test")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "test")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        mp.delenv(name, raising=False)
    yield AwsAccess(endpoint_url=emulator.url)
    mp.undo()


@pytest.fixture(scope="module")
def overrides(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the example portfolio: one test changes a client's baseline in it."""
    out = tmp_path_factory.mktemp("overrides")
    for f in (REPO / "overrides").glob("*.yaml"):
        shutil.copy(f, out / f.name)
    return out


def _load(overrides: Path) -> Portfolio:
    p, problems = load_portfolio(overrides)
    assert p is not None, problems
    return p


@pytest.fixture(scope="module")
def assembly(tmp_path_factory: pytest.TempPathFactory, overrides: Path) -> Path:
    out = tmp_path_factory.mktemp("assembly")
    assert synthesize(overrides, out, validation=False, quiet=True) == 0
    return out


@pytest.fixture(scope="module")
def deployed(access: AwsAccess, overrides: Path, assembly: Path) -> Portfolio:
    portfolio = _load(overrides)
    results = run_deploy(access, portfolio, assembly, CLIENTS, concurrency=3)
    assert all(r.outcome == "OK" for r in results), [(r.name, r.detail) for r in results]
    return portfolio


def _session(access: AwsAccess, portfolio: Portfolio, client: str) -> boto3.Session:
    c = portfolio.client(client)
    return access.assume_role(c.deploy_role_arn, external_id=c.external_id, session_name="t", region=c.home_region)


def _run_drift(
    capsys: pytest.CaptureFixture[str], emulator: Emulator, overrides: Path, assembly: Path, *extra: str
) -> tuple[int, dict[str, Any], str]:
    capsys.readouterr()
    args = ["drift", "--all", "--format", "json", "--endpoint-url", emulator.url, "--overrides", str(overrides)]
    code = main([*args, "--assembly", str(assembly), *extra])
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


def _not_in_sync(report: dict[str, Any]) -> dict[tuple[str, str, str], str]:
    return {
        (f["client"], f["region"], f["control"]): f["status"] for f in report["findings"] if f["status"] != "IN_SYNC"
    }


def test_fresh_deploy_is_in_sync_with_every_signal_accounted_for(
    deployed: Portfolio, access: AwsAccess, assembly: Path
) -> None:
    report = drift_portfolio(access, deployed, CLIENTS, assembly=assembly)
    assert {f.status for f in report.findings} == {"IN_SYNC"}
    assert report.exit_code() == 0
    for f in report.findings:
        assert f.signals["template"] == "IN_SYNC"
        # The emulator has no DetectStackDrift: said per finding and once for the report, never hidden.
        assert f.signals["cloudformation-drift"].startswith("NOT_CHECKED: ")
        assert "does not implement DetectStackDrift" in f.signals["cloudformation-drift"]
    assert any("CloudFormation drift detection not checked" in n for n in report.notes)


def test_without_an_assembly_the_template_signal_is_not_checked(deployed: Portfolio, access: AwsAccess) -> None:
    report = drift_portfolio(access, deployed, ["brightmart"])
    assert {f.status for f in report.findings} == {"IN_SYNC"}
    assert all(f.signals["template"].startswith("NOT_CHECKED") for f in report.findings)
    assert any("OUTDATED not checked" in n for n in report.notes)


def _out_of_band_changes(access: AwsAccess, portfolio: Portfolio) -> None:
    """One change per control, each by hand, as an engineer in the console would."""
    acme = _session(access, portfolio, "acme-health")
    bright = _session(access, portfolio, "brightmart")
    ledg = _session(access, portfolio, "ledgerly")
    ct = access.client(acme, "cloudtrail", "us-east-1")
    ct.stop_logging(Name="vend-baseline")
    ct.update_trail(Name="vend-baseline", EnableLogFileValidation=False)
    gd = access.client(acme, "guardduty", "us-west-2")
    gd.delete_detector(DetectorId=gd.list_detectors()["DetectorIds"][0])
    gd = access.client(acme, "guardduty", "us-east-1")
    gd.update_detector(DetectorId=gd.list_detectors()["DetectorIds"][0], Enable=False)
    iam = access.client(bright, "iam", "eu-west-1")
    iam.delete_role_permissions_boundary(RoleName="VendMspAccess")
    admin = iam.create_policy(
        PolicyName="break-glass-admin",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="VendMspAccess", PolicyArn=admin)
    trust = iam.get_role(RoleName="VendMspAccess")["Role"]["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"] = "leaked-123"
    iam.update_assume_role_policy(RoleName="VendMspAccess", PolicyDocument=json.dumps(trust))
    cfg = access.client(bright, "config", "eu-west-1")
    cfg.put_config_rule(
        ConfigRule={
            "ConfigRuleName": "vend-required-tags",
            "Source": {"Owner": "AWS", "SourceIdentifier": "REQUIRED_TAGS"},
            "InputParameters": json.dumps({"tag1Key": "Owner"}),
        }
    )
    cfg = access.client(ledg, "config", "us-west-2")
    cfg.stop_configuration_recorder(ConfigurationRecorderName="vend-recorder")
    cfg.put_delivery_channel(DeliveryChannel={"name": "vend-delivery", "s3BucketName": "someone-elses-bucket"})
    cfg = access.client(ledg, "config", "eu-central-1")
    cfg.delete_config_rule(ConfigRuleName="vend-encrypted-volumes")
    ledgerly = portfolio.client("ledgerly")
    budgets = access.client(ledg, "budgets", "us-east-1")
    name = client_baseline(ledgerly, portfolio.defaults).budget.name
    budget = budgets.describe_budget(AccountId=ledgerly.account_id, BudgetName=name)["Budget"]
    budgets.delete_budget(AccountId=ledgerly.account_id, BudgetName=name)
    budget["BudgetLimit"]["Amount"] = "99999"  # someone raised the limit by hand, without notifications
    budgets.create_budget(AccountId=ledgerly.account_id, Budget=budget)


EXPECTED_DRIFT = {
    ("acme-health", "global", "cloudtrail"): "DRIFTED",
    ("acme-health", "us-west-2", "guardduty"): "MISSING",
    ("acme-health", "us-east-1", "guardduty"): "DRIFTED",
    ("brightmart", "global", "msp-role"): "DRIFTED",
    ("brightmart", "global", "permission-boundary"): "DRIFTED",
    ("brightmart", "eu-west-1", "tag-rules"): "DRIFTED",
    ("ledgerly", "us-west-2", "config-recorder"): "DRIFTED",
    ("ledgerly", "us-west-2", "config-delivery"): "DRIFTED",
    ("ledgerly", "eu-central-1", "config-rules"): "DRIFTED",
    ("ledgerly", "global", "budget"): "DRIFTED",
}


def test_each_kind_of_out_of_band_change_is_found(
    deployed: Portfolio,
    access: AwsAccess,
    emulator: Emulator,
    overrides: Path,
    assembly: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _out_of_band_changes(access, deployed)
    code, report, _ = _run_drift(capsys, emulator, overrides, assembly)
    assert code == 3
    assert _not_in_sync(report) == EXPECTED_DRIFT
    by_key = {(f["client"], f["region"], f["control"]): f for f in report["findings"]}
    trail = by_key[("acme-health", "global", "cloudtrail")]
    assert trail["expected"] == {"IsLogging": True, "LogFileValidationEnabled": True}
    assert trail["actual"] == {"IsLogging": False, "LogFileValidationEnabled": False}
    role = by_key[("brightmart", "global", "msp-role")]
    assert set(role["expected"]) == {"external_id", "trust_policy", "managed_policies", "permissions_boundary"}
    assert role["actual"]["external_id"] == [["leaked-123"]]  # per statement
    assert by_key[("ledgerly", "us-west-2", "config-delivery")]["actual"]["s3BucketName"] == "someone-elses-bucket"
    detector = by_key[("acme-health", "us-east-1", "guardduty")]
    assert detector["expected"] == {"Status": "ENABLED"} and detector["actual"] == {"Status": "DISABLED"}
    # Drift is live state against the same code that was deployed: the templates are current.
    assert all(f["signals"]["template"] == "IN_SYNC" for f in report["findings"])


def test_drift_without_remediate_changed_nothing(
    deployed: Portfolio, emulator: Emulator, overrides: Path, assembly: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, _ = _run_drift(capsys, emulator, overrides, assembly)
    assert code == 3 and _not_in_sync(report) == EXPECTED_DRIFT


def test_remediate_brings_every_control_back_and_says_how(
    deployed: Portfolio,
    access: AwsAccess,
    emulator: Emulator,
    overrides: Path,
    assembly: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, report, err = _run_drift(capsys, emulator, overrides, assembly, "--remediate")
    assert _not_in_sync(report) == {}, err
    assert code == 0
    actions = {(a["client"], a["region"], a["control"]): a for a in report["remediation"]}
    assert set(actions) == set(EXPECTED_DRIFT)
    assert {a["outcome"] for a in actions.values()} == {"DONE"}
    # Deleted resources come back through CloudFormation; changed properties through the API.
    assert actions[("acme-health", "us-west-2", "guardduty")]["how"] == "cloudformation"
    assert actions[("ledgerly", "global", "budget")]["how"] == "cloudformation"
    assert actions[("ledgerly", "eu-central-1", "config-rules")]["how"] == "cloudformation"
    assert actions[("acme-health", "global", "cloudtrail")]["how"] == "api"
    assert "StartLogging" in actions[("acme-health", "global", "cloudtrail")]["what"]
    assert "PutRolePermissionsBoundary" in actions[("brightmart", "global", "msp-role")]["what"]
    assert "remediate:" in err  # the log, on stderr next to the JSON report

    # Live state, not just the report: the recreated detector is the stack's own again.
    acme = _session(access, deployed, "acme-health")
    gd = access.client(acme, "guardduty", "us-west-2")
    (detector_id,) = gd.list_detectors()["DetectorIds"]
    cfn = access.client(acme, "cloudformation", "us-west-2")
    resources = cfn.list_stack_resources(StackName="vend-acme-health-us-west-2")["StackResourceSummaries"]
    assert detector_id in {r["PhysicalResourceId"] for r in resources}
    bright = _session(access, deployed, "brightmart")
    attached = access.client(bright, "iam", "eu-west-1").list_attached_role_policies(RoleName="VendMspAccess")
    assert not [p for p in attached["AttachedPolicies"] if p["PolicyName"] == "break-glass-admin"]


def test_a_baseline_change_not_yet_deployed_is_outdated_then_deployed_by_remediate(
    deployed: Portfolio,
    emulator: Emulator,
    overrides: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    brightmart = overrides / "brightmart.yaml"
    brightmart.write_text(brightmart.read_text().replace("monthly_limit_usd: 800", "monthly_limit_usd: 950"))
    new_assembly = tmp_path / "cdk.out"
    assert synthesize(overrides, new_assembly, validation=False, quiet=True) == 0

    code, report, _ = _run_drift(capsys, emulator, overrides, new_assembly)
    assert code == 3
    assert _not_in_sync(report) == {("brightmart", "global", "budget"): "OUTDATED"}
    budget = next(f for f in report["findings"] if f["control"] == "budget" and f["client"] == "brightmart")
    # Live state still matches what was deployed; the code moved on.
    assert "live check: DRIFTED" in budget["detail"] and "Budget" in budget["detail"]
    assert budget["fix"].startswith("run `vend deploy brightmart`")

    code, report, err = _run_drift(capsys, emulator, overrides, new_assembly, "--remediate")
    assert code == 0 and _not_in_sync(report) == {}, err
    (action,) = report["remediation"]
    assert action["how"] == "cloudformation" and "vend-brightmart-global" in action["what"]


def test_html_report_from_the_command_line(
    deployed: Portfolio, emulator: Emulator, overrides: Path, assembly: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    args = ["drift", "brightmart", "--format", "html", "--endpoint-url", emulator.url, "--overrides", str(overrides)]
    code = main(args)
    page = capsys.readouterr().out
    assert code == 0  # the drift command synthesized the current code itself: brightmart is current
    assert page.startswith("<!DOCTYPE html>") and "brightmart" in page and 'data-status="IN_SYNC"' in page
    assert "https://" not in page and "http://" not in page


EXCEPTION = """\
exceptions:
  - control: guardduty
    regions: [us-west-2]
    reason: the client's SOC runs its own detector there (SEC-123)
    approver: security-lead@msp.example
    expires: 2030-01-01
"""


def test_an_exception_is_excepted_until_it_expires_then_checked_again(
    deployed: Portfolio,
    access: AwsAccess,
    emulator: Emulator,
    overrides: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    acme = overrides / "acme-health.yaml"
    acme.write_text(acme.read_text() + EXCEPTION)
    waived = tmp_path / "cdk.out"
    assert synthesize(overrides, waived, validation=False, quiet=True) == 0
    # The waiver takes the detector out of the stack, and its stack policy forbids deleting it:
    # refused until an operator allows it explicitly (README "Stack protection").
    (refused,) = [
        r for r in run_deploy(access, _load(overrides), waived, ["acme-health"], 1) if r.name != "msp-log-archive"
    ]
    assert refused.outcome == "FAILED" and "--allow-protected-change GuardDuty" in refused.detail, refused.detail
    first, targets = build_targets(_load(overrides), read_assembly(waived), ["acme-health"])
    allow = ProtectionOptions(allow=("AWS::GuardDuty::Detector",))
    options = RolloutOptions(concurrency=1, stack=StackOptions(protection=allow))
    results = run_rollout(access, first=first, targets=targets, options=options).results
    assert all(r.outcome == "OK" for r in results), [(r.name, r.detail) for r in results]

    code, report, _ = _run_drift(capsys, emulator, overrides, waived)
    assert code == 0 and _not_in_sync(report) == {("acme-health", "us-west-2", "guardduty"): "EXCEPTED"}
    excepted = next(f for f in report["findings"] if f["status"] == "EXCEPTED")
    assert "waived until 2030-01-01 by security-lead@msp.example" in excepted["detail"]

    # The day after the expiry: validation refuses the file (nothing is deployed with it), but
    # drift still runs and checks the detector the exception no longer waives.
    monkeypatch.setenv("VEND_TODAY", "2030-01-02")
    capsys.readouterr()
    args = ["drift", "acme-health", "--format", "json", "--endpoint-url", emulator.url, "--overrides", str(overrides)]
    code = main(args)
    out = capsys.readouterr()
    report = json.loads(out.out)
    assert code == 3
    assert "expired" in out.err
    (finding,) = [f for f in report["findings"] if f["status"] != "IN_SYNC"]
    assert (finding["region"], finding["control"], finding["status"]) == ("us-west-2", "guardduty", "MISSING")
    assert "exception expired on 2030-01-01" in finding["detail"]
    assert any("OUTDATED not checked" in n for n in report["notes"])  # the code does not synthesize either

    capsys.readouterr()
    main([*args, "--remediate"])
    (action,) = json.loads(capsys.readouterr().out)["remediation"]
    assert action["how"] == "manual" and "renew it" in action["what"]
