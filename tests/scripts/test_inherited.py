"""Inherited accounts on the emulator: assessed as found, a deploy that stops before
touching anything, adopt (keep the account's recorder, channel and detector; drift checks
them; remediation brings them to the baseline), replace, and the progress since the first
assessment.

One emulator per module; the tests build on each other in file order.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from baseline.portfolio import Portfolio, load_portfolio
from scripts.aws import AwsAccess
from scripts.cli import main, run_deploy
from scripts.emulator.server import Emulator
from scripts.synth import synthesize

OLDCO = """\
client: oldco
display_name: Old Co
account_id: "999900001111"
home_region: us-east-1
regions: [us-east-1, us-west-2]
engagement: managed
access:
  deploy_role_arn: arn:aws:iam::999900001111:role/VendDeploy
  external_id: oldco-2f9c1d
budget:
  monthly_limit_usd: 1200
guardduty:
  finding_publishing_frequency: FIFTEEN_MINUTES
"""
ADOPT = """\
inherited:
  config_recorder: {us-east-1: adopt}
  config_delivery_channel: {us-east-1: adopt}
  guardduty_detector: adopt
"""
NEWCO = """\
client: newco
display_name: New Co
account_id: "999900002222"
home_region: eu-west-1
regions: [eu-west-1]
engagement: monitoring
access:
  deploy_role_arn: arn:aws:iam::999900002222:role/VendDeploy
  external_id: newco-8a7b6c
budget:
  monthly_limit_usd: 300
inherited:
  guardduty_detector: replace
  cloudtrail: replace
"""


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
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("inherited")
    (root / "overrides").mkdir()
    (root / "overrides" / "oldco.yaml").write_text(OLDCO)
    (root / "overrides" / "newco.yaml").write_text(NEWCO)
    return root


def _portfolio(workdir: Path) -> Portfolio:
    p, problems = load_portfolio(workdir / "overrides")
    assert p is not None, problems
    return p


def _session(access: AwsAccess, account: str, region: str) -> boto3.Session:
    return access.assume_role(
        f"arn:aws:iam::{account}:role/VendDeploy", external_id=None, session_name="seed", region=region
    )


@pytest.fixture(scope="module")
def seeded(access: AwsAccess) -> dict[str, Any]:
    """Accounts as the MSP finds them: Config, GuardDuty, users, a public bucket, a trail."""
    old = _session(access, "999900001111", "us-east-1")
    iam = access.client(old, "iam", "us-east-1")
    statement = {"Effect": "Allow", "Principal": {"Service": "config.amazonaws.com"}, "Action": "sts:AssumeRole"}
    trust = {"Version": "2012-10-17", "Statement": [statement]}
    role = iam.create_role(RoleName="their-config-role", AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    s3 = access.client(old, "s3", "us-east-1")
    s3.create_bucket(Bucket="oldco-config-history")
    s3.create_bucket(Bucket="oldco-public-site", ACL="public-read")
    cfg = access.client(old, "config", "us-east-1")
    cfg.put_configuration_recorder(
        ConfigurationRecorder={
            "name": "default",
            "roleARN": role,
            "recordingGroup": {"allSupported": True, "includeGlobalResourceTypes": True},
        }  # fmt: skip
    )
    cfg.put_delivery_channel(DeliveryChannel={"name": "default", "s3BucketName": "oldco-config-history"})
    cfg.start_configuration_recorder(ConfigurationRecorderName="default")
    east = access.client(old, "guardduty", "us-east-1").create_detector(
        Enable=True, FindingPublishingFrequency="SIX_HOURS"
    )
    west_gd = access.client(old, "guardduty", "us-west-2")
    west = west_gd.create_detector(Enable=False)
    iam.create_user(UserName="alice")
    iam.create_login_profile(UserName="alice", Password="Sup3r-secret!")
    key = iam.create_access_key(UserName="alice")["AccessKey"]["AccessKeyId"]

    new = _session(access, "999900002222", "eu-west-1")
    access.client(new, "s3", "eu-west-1").create_bucket(
        Bucket="newco-trail-logs", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    ct = access.client(new, "cloudtrail", "eu-west-1")
    ct.create_trail(Name="newco-trail", S3BucketName="newco-trail-logs")
    ct.start_logging(Name="newco-trail")
    newco_detector = access.client(new, "guardduty", "eu-west-1").create_detector(Enable=True)["DetectorId"]
    return {
        "east": east["DetectorId"],
        "west": west["DetectorId"],
        "alice_key": key,
        "newco_detector": newco_detector,
    }


def _assess(emulator: Emulator, workdir: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    capsys.readouterr()
    code = main(
        ["assess", "oldco", "--format", "json", "--dir", str(workdir / "assessments"),
         "--endpoint-url", emulator.url, "--overrides", str(workdir / "overrides"), *extra]
    )  # fmt: skip
    out = capsys.readouterr()
    assert code == 0, out.err
    return dict(json.loads(out.out))


def test_assess_reports_the_account_as_found_with_risks(
    seeded: dict[str, Any], emulator: Emulator, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = _assess(emulator, workdir, capsys)
    risk = {f["id"]: f["risk"] for f in report["findings"]}
    east = seeded["east"]
    assert risk["config-recorder-existing:us-east-1:default"] == "low"
    assert risk["config-channel-existing:us-east-1:default"] == "low"
    assert risk[f"guardduty-existing:us-east-1:{east}"] == "low"
    assert risk["guardduty-disabled:us-west-2"] == "high"
    assert risk["config-off:us-west-2"] == "high"
    assert risk["cloudtrail-no-multi-region"] == "high"
    assert risk["root-no-mfa"] == "critical"
    assert risk["iam-console-no-mfa:alice"] == "high"
    assert risk[f"iam-access-key:alice:{seeded['alice_key']}"] == "low"
    assert risk["s3-public:oldco-public-site"] == "critical"
    assert risk["s3-account-block-off"] == "medium"
    assert risk["budget-none"] == "low"
    assert "s3-public:oldco-config-history" not in risk
    assert all(f["remediation"] for f in report["findings"])
    assert report["summary"]["critical"] == 2
    assert report["inventory"]["config"]["us-east-1"]["recorders"] == [{"name": "default", "recording": True}]
    saved = sorted((workdir / "assessments" / "oldco").glob("*"))
    assert [p.suffix for p in saved] == [".json", ".md"]
    assert "| **critical** |" in saved[1].read_text()


def test_deploy_without_a_setting_stops_before_changing_anything(
    seeded: dict[str, Any], access: AwsAccess, workdir: Path, tmp_path: Path
) -> None:
    assembly = tmp_path / "cdk.out"
    assert synthesize(workdir / "overrides", assembly, validation=False, quiet=True) == 0
    results = {r.name: r for r in run_deploy(access, _portfolio(workdir), assembly, ["oldco"], concurrency=1)}
    assert results["msp-log-archive"].outcome == "OK"
    oldco = results["oldco"]
    assert oldco.outcome == "FAILED"
    assert "MaxNumberOf" not in oldco.detail and "already exists" not in oldco.detail
    for words in (
        "Config recorder default in us-east-1",
        f"GuardDuty detector {seeded['west']} in us-west-2",
        "config_recorder: {us-east-1: adopt}",
        "guardduty_detector: {us-east-1: adopt, us-west-2: adopt}",
        "oldco.yaml",
        "nothing was changed",
    ):
        assert words in oldco.detail
    assert {s.outcome for s in oldco.stacks} == {"SKIPPED"}
    session = _session(access, "999900001111", "us-east-1")
    cfn = access.client(session, "cloudformation", "us-east-1")
    assert not [s for s in cfn.list_stacks()["StackSummaries"] if s["StackName"].startswith("vend-oldco")]


def _stack_resources(access: AwsAccess, session: boto3.Session, region: str) -> dict[str, tuple[str, str]]:
    """Logical id -> (type, physical id) of oldco's regional stack."""
    cfn = access.client(session, "cloudformation", region)
    summaries = cfn.list_stack_resources(StackName=f"vend-oldco-{region}")["StackResourceSummaries"]
    return {r["LogicalResourceId"]: (r["ResourceType"], r["PhysicalResourceId"]) for r in summaries}


def test_deploy_with_adopt_imports_the_account_resources_into_the_stack(
    seeded: dict[str, Any], access: AwsAccess, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (workdir / "overrides" / "oldco.yaml").write_text(OLDCO + ADOPT)
    assembly = workdir / "cdk.out"
    assert synthesize(workdir / "overrides", assembly, validation=False, quiet=True) == 0
    capsys.readouterr()
    results = {r.name: r for r in run_deploy(access, _portfolio(workdir), assembly, ["oldco"], concurrency=1)}
    assert results["oldco"].outcome == "OK", results["oldco"].detail
    assert "imported Config recorder default" in capsys.readouterr().err
    session = _session(access, "999900001111", "us-east-1")
    east = access.client(session, "config", "us-east-1")
    assert [r["name"] for r in east.describe_configuration_recorders()["ConfigurationRecorders"]] == ["default"]
    west = access.client(session, "config", "us-west-2")
    # Where nothing was inherited, vend deploys its own.
    assert [r["name"] for r in west.describe_configuration_recorders()["ConfigurationRecorders"]] == ["vend-recorder"]
    for region, detector in (("us-east-1", seeded["east"]), ("us-west-2", seeded["west"])):
        assert access.client(session, "guardduty", region).list_detectors()["DetectorIds"] == [detector]
    # Imported (IMPORT change set, then the normal update): the account's resources, by their
    # own names and ids, are the stack's; nothing was created next to them.
    physical = {rtype: pid for rtype, pid in _stack_resources(access, session, "us-east-1").values()}
    assert physical["AWS::Config::ConfigurationRecorder"] == "default"
    assert physical["AWS::Config::DeliveryChannel"] == "default"
    assert physical["AWS::GuardDuty::Detector"] == seeded["east"]
    assert "AWS::Config::ConfigRule" in physical
    west_physical = {rtype: pid for rtype, pid in _stack_resources(access, session, "us-west-2").values()}
    assert west_physical["AWS::GuardDuty::Detector"] == seeded["west"]
    assert west_physical["AWS::Config::ConfigurationRecorder"] == "vend-recorder"
    cfn = access.client(session, "cloudformation", "us-east-1")
    events = cfn.describe_stack_events(StackName="vend-oldco-us-east-1")["StackEvents"]
    assert ("AWS::GuardDuty::Detector", "IMPORT_COMPLETE") in {(e["ResourceType"], e["ResourceStatus"]) for e in events}
    template = cfn.get_template(StackName="vend-oldco-us-east-1")["TemplateBody"]  # botocore decodes JSON
    (detector,) = [r for r in template["Resources"].values() if r["Type"] == "AWS::GuardDuty::Detector"]
    assert detector["DeletionPolicy"] == detector["UpdateReplacePolicy"] == "Retain"


def _drift(
    emulator: Emulator, workdir: Path, capsys: pytest.CaptureFixture[str], *extra: str
) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(
        ["drift", "oldco", "--format", "json", "--assembly", str(workdir / "cdk.out"),
         "--endpoint-url", emulator.url, "--overrides", str(workdir / "overrides"), *extra]
    )  # fmt: skip
    return code, dict(json.loads(capsys.readouterr().out))


def test_drift_checks_the_adopted_resources_against_the_baseline(
    seeded: dict[str, Any], emulator: Emulator, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _drift(emulator, workdir, capsys)
    assert code == 3
    bad = {(f["region"], f["control"]): f for f in report["findings"] if f["status"] != "IN_SYNC"}
    assert set(bad) == {
        ("us-east-1", "config-recorder"),
        ("us-east-1", "config-delivery"),
        ("us-east-1", "guardduty"),
        ("us-west-2", "guardduty"),
    }
    assert {f["status"] for f in bad.values()} == {"DRIFTED"}
    assert bad[("us-east-1", "config-recorder")]["detail"].startswith("adopted recorder default")
    assert bad[("us-east-1", "config-recorder")]["actual"] == {"role": "their-config-role"}
    assert bad[("us-east-1", "config-delivery")]["actual"]["s3BucketName"] == "oldco-config-history"
    assert bad[("us-east-1", "guardduty")]["actual"]["FindingPublishingFrequency"] == "SIX_HOURS"
    assert bad[("us-west-2", "guardduty")]["actual"]["Status"] == "DISABLED"


def test_remediate_brings_the_adopted_resources_to_the_baseline(
    seeded: dict[str, Any], access: AwsAccess, emulator: Emulator, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = _drift(emulator, workdir, capsys, "--remediate")
    assert code == 0, report["remediation"]
    assert {f["status"] for f in report["findings"]} == {"IN_SYNC"}
    assert {a["how"] for a in report["remediation"]} == {"api"}
    session = _session(access, "999900001111", "us-east-1")
    (rec,) = access.client(session, "config", "us-east-1").describe_configuration_recorders()["ConfigurationRecorders"]
    assert rec["name"] == "default" and rec["roleARN"].endswith(":role/vend-config-recorder")


def test_assess_compare_shows_the_progress_since_the_first_assessment(
    seeded: dict[str, Any], emulator: Emulator, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    progress = _assess(emulator, workdir, capsys, "--compare")
    state = {i["id"]: i["state"] for i in progress["plan"]}
    for fid in ("config-off:us-west-2", "guardduty-disabled:us-west-2", "cloudtrail-no-multi-region", "budget-none"):
        assert state[fid] == "resolved", fid
    # The decisions are made (adopt), and vend's own resources are never "inherited".
    assert state["config-recorder-existing:us-east-1:default"] == "resolved"
    assert not [i for i, s in state.items() if s == "new"]
    for fid in ("root-no-mfa", "iam-console-no-mfa:alice", "s3-public:oldco-public-site"):
        assert state[fid] == "open", fid
    due = {i["id"]: i["due"] for i in progress["plan"]}
    assert due["root-no-mfa"] < due["s3-account-block-off"] < due["budget-none"]  # 30, 60, 90 days
    assert progress["day"] == 0 and progress["summary"]["open"] >= 3
    capsys.readouterr()
    code = main(
        ["assess", "oldco", "--compare", "--dir", str(workdir / "assessments"),
         "--endpoint-url", emulator.url, "--overrides", str(workdir / "overrides")]
    )  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0 and "day 0 of the 90-day plan" in text and "resolved" in text
    assert len(list((workdir / "assessments" / "oldco").glob("*.json"))) == 3


def test_replace_deletes_the_inherited_resources_then_deploys_the_baseline(
    seeded: dict[str, Any], access: AwsAccess, emulator: Emulator, workdir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assembly = workdir / "cdk.out"
    assert synthesize(workdir / "overrides", assembly, validation=False, quiet=True) == 0
    results = {r.name: r for r in run_deploy(access, _portfolio(workdir), assembly, ["newco"], concurrency=1)}
    assert results["newco"].outcome == "OK", results["newco"].detail
    assert "deleted GuardDuty detector" in capsys.readouterr().err
    session = _session(access, "999900002222", "eu-west-1")
    trails = access.client(session, "cloudtrail", "eu-west-1").describe_trails()["trailList"]
    assert [t["Name"] for t in trails] == ["vend-baseline"]
    (detector,) = access.client(session, "guardduty", "eu-west-1").list_detectors()["DetectorIds"]
    assert detector != seeded["newco_detector"]
    capsys.readouterr()
    code = main(
        ["drift", "newco", "--format", "json", "--assembly", str(assembly),
         "--endpoint-url", emulator.url, "--overrides", str(workdir / "overrides")]
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and {f["status"] for f in report["findings"]} == {"IN_SYNC"}


def test_a_baseline_change_reaches_the_imported_detector_through_cloudformation(
    seeded: dict[str, Any],
    access: AwsAccess,
    emulator: Emulator,
    workdir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Once imported, the adopted detector is the stack's: a changed override updates it in place
    (the same detector, no second one, no second import), and drift checks it like vend's own."""
    adopted = OLDCO.replace("FIFTEEN_MINUTES", "ONE_HOUR") + ADOPT
    (workdir / "overrides" / "oldco.yaml").write_text(adopted)
    assembly = tmp_path / "cdk.out"
    assert synthesize(workdir / "overrides", assembly, validation=False, quiet=True) == 0
    capsys.readouterr()
    results = {r.name: r for r in run_deploy(access, _portfolio(workdir), assembly, ["oldco"], concurrency=1)}
    assert results["oldco"].outcome == "OK", results["oldco"].detail
    assert "imported" not in capsys.readouterr().err
    session = _session(access, "999900001111", "us-east-1")
    for region, detector in (("us-east-1", seeded["east"]), ("us-west-2", seeded["west"])):
        gd = access.client(session, "guardduty", region)
        assert gd.list_detectors()["DetectorIds"] == [detector]
        assert gd.get_detector(DetectorId=detector)["FindingPublishingFrequency"] == "ONE_HOUR"
    capsys.readouterr()
    code = main(
        ["drift", "oldco", "--format", "json", "--assembly", str(assembly),
         "--endpoint-url", emulator.url, "--overrides", str(workdir / "overrides")]
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0 and {f["status"] for f in report["findings"]} == {"IN_SYNC"}, report


FARCO = """\
client: farco
display_name: Far Co
account_id: "999900004444"
home_region: us-east-1
regions: [us-east-1]
engagement: monitoring
access:
  deploy_role_arn: arn:aws:iam::999900004444:role/VendDeploy
  external_id: farco-1a2b3c
budget:
  monthly_limit_usd: 100
"""


def test_a_multi_region_trail_homed_where_the_client_does_not_run_is_found(
    access: AwsAccess, emulator: Emulator, workdir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The account's multi-region trail lives in eu-central-1, a region the client does not use:
    assess counts it (no false "no multi-region trail"), the preflight stops on it."""
    far = _session(access, "999900004444", "eu-central-1")
    access.client(far, "s3", "eu-central-1").create_bucket(
        Bucket="farco-trail", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"}
    )
    ct = access.client(far, "cloudtrail", "eu-central-1")
    arn = ct.create_trail(Name="org-wide", S3BucketName="farco-trail", IsMultiRegionTrail=True)["TrailARN"]
    ct.start_logging(Name="org-wide")
    (workdir / "overrides" / "farco.yaml").write_text(FARCO)
    capsys.readouterr()
    code = main(
        ["assess", "farco", "--format", "json", "--dir", str(tmp_path), "--endpoint-url", emulator.url,
         "--overrides", str(workdir / "overrides")]
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert code == 0
    risk = {f["id"]: f for f in report["findings"]}
    assert "cloudtrail-no-multi-region" not in risk
    assert risk["cloudtrail-existing:org-wide"]["region"] == "eu-central-1"
    (trail,) = report["inventory"]["trails"]
    assert trail == {**trail, "name": "org-wide", "home_region": "eu-central-1", "multi_region": True, "logging": True}

    assembly = tmp_path / "cdk.out"
    assert synthesize(workdir / "overrides", assembly, validation=False, quiet=True) == 0
    results = {r.name: r for r in run_deploy(access, _portfolio(workdir), assembly, ["farco"], concurrency=1)}
    assert results["farco"].outcome == "FAILED"
    assert f"CloudTrail trail {arn} in eu-central-1" in results["farco"].detail
    assert "cloudtrail: adopt" in results["farco"].detail
