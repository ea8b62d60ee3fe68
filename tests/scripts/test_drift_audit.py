"""Audit findings on drift and remediation, on the emulator: every property the baseline
sets is checked (trail data events, the MSP role's SourceIdentity), remediation says only
what is true after a re-check, and the fix text names a command that does something.

One emulator and one deploy per module; the tests build on each other in file order.
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

from baseline.portfolio import load_portfolio
from scripts.aws import AwsAccess
from scripts.cli import main, run_deploy
from scripts.emulator.server import Emulator
from scripts.synth import synthesize

REPO = Path(__file__).resolve().parents[2]
OLDTRAIL = """\
client: oldtrail
display_name: Old Trail
account_id: "999900003333"
home_region: us-east-1
regions: [us-east-1]
engagement: monitoring
access:
  deploy_role_arn: arn:aws:iam::999900003333:role/VendDeploy
  external_id: oldtrail-5e4d3c
budget:
  monthly_limit_usd: 400
inherited:
  cloudtrail: adopt
"""
EXPIRED = """\
exceptions:
  - control: budget
    reason: budget owned by the client's finance team (FIN-7)
    approver: security-lead@msp.example
    expires: 2030-01-01
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
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "VEND_TODAY"):
        mp.delenv(name, raising=False)
    yield AwsAccess(endpoint_url=emulator.url)
    mp.undo()


@pytest.fixture(scope="module")
def overrides(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """acme-health (HIPAA: S3 data events) and a client that adopts its own trail."""
    out = tmp_path_factory.mktemp("overrides")
    shutil.copy(REPO / "overrides" / "acme-health.yaml", out / "acme-health.yaml")
    (out / "oldtrail.yaml").write_text(OLDTRAIL)
    return out


def _session(access: AwsAccess, account: str, region: str = "us-east-1") -> boto3.Session:
    return access.assume_role(
        f"arn:aws:iam::{account}:role/VendDeploy", external_id=None, session_name="t", region=region
    )


@pytest.fixture(scope="module")
def deployed(access: AwsAccess, overrides: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Both clients deployed; oldtrail keeps its own trail, which logs to its own bucket."""
    old = _session(access, "999900003333")
    access.client(old, "s3", "us-east-1").create_bucket(Bucket="oldtrail-logs")
    ct = access.client(old, "cloudtrail", "us-east-1")
    ct.create_trail(Name="their-trail", S3BucketName="oldtrail-logs", IsMultiRegionTrail=True)
    ct.start_logging(Name="their-trail")
    assembly = tmp_path_factory.mktemp("assembly")
    assert synthesize(overrides, assembly, validation=False, quiet=True) == 0
    portfolio, problems = load_portfolio(overrides)
    assert portfolio is not None, problems
    results = run_deploy(access, portfolio, assembly, ["acme-health", "oldtrail"], concurrency=2)
    assert all(r.outcome == "OK" for r in results), [(r.name, r.detail) for r in results]
    return assembly


def _drift(
    capsys: pytest.CaptureFixture[str], emulator: Emulator, overrides: Path, assembly: Path, *extra: str
) -> tuple[int, dict[str, Any], str]:
    capsys.readouterr()
    code = main(
        ["drift", "--all", "--format", "json", "--endpoint-url", emulator.url,
         "--overrides", str(overrides), "--assembly", str(assembly), *extra]
    )  # fmt: skip
    out = capsys.readouterr()
    return code, json.loads(out.out), out.err


def _by_key(report: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    return {(f["client"], f["region"], f["control"]): f for f in report["findings"]}


def _not_in_sync(report: dict[str, Any]) -> dict[tuple[str, str, str], str]:
    return {k: f["status"] for k, f in _by_key(report).items() if f["status"] != "IN_SYNC"}


ACME_TRAIL = ("acme-health", "global", "cloudtrail")
ACME_ROLE = ("acme-health", "global", "msp-role")
OLD_TRAIL = ("oldtrail", "global", "cloudtrail")


def _break_things(access: AwsAccess) -> None:
    acme = _session(access, "111122223333")
    ct = access.client(acme, "cloudtrail", "us-east-1")
    # Management events still recorded, S3 object-level events (HIPAA) silently gone.
    ct.put_event_selectors(
        TrailName="vend-baseline", EventSelectors=[{"ReadWriteType": "All", "IncludeManagementEvents": True}]
    )
    iam = access.client(acme, "iam", "us-east-1")
    trust = iam.get_role(RoleName="VendMspAccess")["Role"]["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    for st in trust["Statement"]:
        like = st.get("Condition", {}).get("StringLike", {})
        like.pop("sts:SourceIdentity", None)
        if not like:
            st["Condition"].pop("StringLike", None)
    iam.update_assume_role_policy(RoleName="VendMspAccess", PolicyDocument=json.dumps(trust))
    # The adopted trail logs to the client's bucket (as found) and someone stopped it.
    access.client(_session(access, "999900003333"), "cloudtrail", "us-east-1").stop_logging(Name="their-trail")


def test_lost_data_events_and_source_identity_are_drift_with_a_fix_that_does_something(
    deployed: Path, access: AwsAccess, emulator: Emulator, overrides: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, _ = _drift(capsys, emulator, overrides, deployed)
    assert code == 3 and _not_in_sync(report) == {OLD_TRAIL: "DRIFTED"}
    _break_things(access)
    code, report, _ = _drift(capsys, emulator, overrides, deployed)
    assert code == 3
    assert _not_in_sync(report) == {ACME_TRAIL: "DRIFTED", ACME_ROLE: "DRIFTED", OLD_TRAIL: "DRIFTED"}
    found = _by_key(report)
    trail = found[ACME_TRAIL]
    assert trail["expected"] == {"S3DataEvents": "All"} and trail["actual"] == {"S3DataEvents": "None"}
    role = found[ACME_ROLE]
    assert role["expected"] == {"source_identity_required": True}
    assert role["actual"] == {"source_identity_required": False}
    # `vend deploy` skips an unchanged template: the fix for live drift is remediation.
    for f in (trail, role):
        assert "vend drift acme-health --remediate" in f["fix"] and "vend deploy" not in f["fix"], f["fix"]
    old = found[OLD_TRAIL]
    # As found (moto's trail has no validation, no selectors), and stopped since.
    assert {"IsLogging", "LogFileValidationEnabled", "KmsKeyId", "S3BucketName"} <= set(old["expected"])
    assert "inherited.cloudtrail: replace" in old["fix"]


def test_remediate_fixes_data_events_and_source_identity_and_is_honest_about_the_rest(
    deployed: Path, access: AwsAccess, emulator: Emulator, overrides: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report, err = _drift(capsys, emulator, overrides, deployed, "--remediate")
    assert _not_in_sync(report) == {OLD_TRAIL: "DRIFTED"}, err
    assert code == 3
    actions = {(a["client"], a["region"], a["control"]): a for a in report["remediation"]}
    assert actions[ACME_TRAIL]["outcome"] == "DONE" and "PutEventSelectors" in actions[ACME_TRAIL]["what"]
    assert actions[ACME_ROLE]["outcome"] == "DONE" and "UpdateAssumeRolePolicy" in actions[ACME_ROLE]["what"]
    # Logging restarted, but the adopted trail still writes elsewhere: not DONE, and it says what to do.
    old = actions[OLD_TRAIL]
    assert old["outcome"] == "PARTIAL", old
    assert "StartLogging" in old["what"]
    assert "S3BucketName" in old["detail"] and "inherited.cloudtrail: replace" in old["detail"]
    assert "PARTIAL" in err and "DONE" in err
    acme = _session(access, "111122223333")
    selectors = access.client(acme, "cloudtrail", "us-east-1").get_event_selectors(TrailName="vend-baseline")
    (selector,) = selectors["EventSelectors"]
    assert selector["DataResources"][0]["Type"] == "AWS::S3::Object"

    # A second run has nothing new to do for acme-health, and still no false DONE for oldtrail.
    code, report, _ = _drift(capsys, emulator, overrides, deployed, "--remediate")
    (action,) = report["remediation"]
    assert (action["client"], action["outcome"]) == ("oldtrail", "SKIPPED")
    assert action["how"] == "manual" and "inherited.cloudtrail: replace" in action["what"]


def test_assess_runs_despite_an_expired_exception(
    deployed: Path,
    emulator: Emulator,
    overrides: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    acme = overrides / "acme-health.yaml"
    acme.write_text(acme.read_text() + EXPIRED)
    monkeypatch.setenv("VEND_TODAY", "2030-01-02")
    for client in ("oldtrail", "acme-health"):  # the expired exception is in acme-health's file
        capsys.readouterr()
        code = main(
            ["assess", client, "--format", "json", "--dir", str(tmp_path), "--endpoint-url", emulator.url,
             "--overrides", str(overrides)]
        )  # fmt: skip
        out = capsys.readouterr()
        assert code == 0, out.err
        assert json.loads(out.out)["client"] == client
        assert "expired" in out.err and "Traceback" not in out.err
    # Any other error in the overrides still stops it, with the file and line, no traceback.
    acme.write_text(acme.read_text().replace('account_id: "111122223333"', "account_id: 111122223333"))
    capsys.readouterr()
    code = main(["assess", "oldtrail", "--endpoint-url", emulator.url, "--overrides", str(overrides)])
    out = capsys.readouterr()
    assert code == 2 and "acme-health.yaml" in out.err and "Traceback" not in out.err
