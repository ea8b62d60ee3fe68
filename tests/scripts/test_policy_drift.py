"""Drift of policy contents and an account that already has an AWS services anomaly monitor,
on the emulator.

* The permission boundary is checked by content (its default version against the code's
  document), not only by attachment; so are the MSP role's inline operations policy and its
  managed policy ARNs. A change shows as DRIFTED with the statements that differ.
* Cost Anomaly Detection allows one AWS services monitor per account and newer accounts come
  with one: a client that names it (``inherited.anomaly_monitor``) deploys with no monitor of
  its own, its alert subscription attached to the existing one.

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

from baseline.policies import operations_policy
from baseline.portfolio import load_portfolio
from scripts.aws import AwsAccess
from scripts.cli import main, run_deploy
from scripts.emulator.cfn_models_extra import ANOMALY_STATE
from scripts.emulator.server import Emulator
from scripts.synth import synthesize

REPO = Path(__file__).resolve().parents[2]
ACME = "111122223333"
FRESH = "999900004444"
# What AWS creates in a new account (name as the console shows it); the emulator keeps it as state.
DEFAULT_MONITOR = f"arn:aws:ce::{FRESH}:anomalymonitor/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
FRESHACCT = f"""\
client: freshacct
display_name: Fresh Account
account_id: "{FRESH}"
home_region: us-east-1
regions: [us-east-1]
engagement: monitoring
access:
  deploy_role_arn: arn:aws:iam::{FRESH}:role/VendDeploy
  external_id: freshacct-7a6b5c
budget:
  monthly_limit_usd: 300
inherited:
  anomaly_monitor: {DEFAULT_MONITOR}
"""
BOUNDARY = ("acme-health", "global", "permission-boundary")
ROLE = ("acme-health", "global", "msp-role")


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator().start() as emu:
        requests.post(f"{emu.url}/moto-api/reset", timeout=10)
        yield emu
        requests.post(f"{emu.url}/moto-api/reset", timeout=10)
        ANOMALY_STATE.pop(FRESH, None)
        ANOMALY_STATE.pop(ACME, None)


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
    out = tmp_path_factory.mktemp("overrides")
    shutil.copy(REPO / "overrides" / "acme-health.yaml", out / "acme-health.yaml")  # managed, hipaa
    (out / "freshacct.yaml").write_text(FRESHACCT)
    return out


@pytest.fixture(scope="module")
def deployed(access: AwsAccess, overrides: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The account already has AWS's default services monitor (the emulator has no CE API: its state).
    ANOMALY_STATE.setdefault(FRESH, {})[DEFAULT_MONITOR] = {
        "MonitorName": "Default-Services-Monitor",
        "MonitorType": "DIMENSIONAL",
        "MonitorDimension": "SERVICE",
    }
    assembly = tmp_path_factory.mktemp("assembly")
    assert synthesize(overrides, assembly, validation=False, quiet=True) == 0
    portfolio, problems = load_portfolio(overrides)
    assert portfolio is not None, problems
    results = run_deploy(access, portfolio, assembly, ["acme-health", "freshacct"], concurrency=2)
    assert all(r.outcome == "OK" for r in results), [(r.name, r.detail) for r in results]
    return assembly


def _session(access: AwsAccess, account: str) -> boto3.Session:
    return access.assume_role(
        f"arn:aws:iam::{account}:role/VendDeploy", external_id=None, session_name="t", region="us-east-1"
    )


def _drift(
    capsys: pytest.CaptureFixture[str], emulator: Emulator, overrides: Path, assembly: Path, *extra: str
) -> tuple[int, dict[tuple[str, str, str], dict[str, Any]], dict[str, Any]]:
    capsys.readouterr()
    code = main(
        ["drift", "--all", "--format", "json", "--endpoint-url", emulator.url,
         "--overrides", str(overrides), "--assembly", str(assembly), *extra]
    )  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    return code, {(f["client"], f["region"], f["control"]): f for f in report["findings"]}, report


def _monitors(account: str) -> dict[str, dict[str, Any]]:
    return {arn: p for arn, p in ANOMALY_STATE.get(account, {}).items() if ":anomalymonitor/" in arn}


def _subscriptions(account: str) -> dict[str, dict[str, Any]]:
    return {arn: p for arn, p in ANOMALY_STATE.get(account, {}).items() if ":anomalysubscription/" in arn}


def test_an_account_with_the_default_services_monitor_gets_only_a_subscription(deployed: Path) -> None:
    monitors = _monitors(FRESH)
    assert list(monitors) == [DEFAULT_MONITOR]  # no second DIMENSIONAL/SERVICE monitor (AWS refuses one)
    (subscription,) = _subscriptions(FRESH).values()
    assert subscription["MonitorArnList"] == [DEFAULT_MONITOR]
    assert subscription["SubscriptionName"] == "vend-anomalies"
    # A client without the setting gets vend's own monitor, watched by its subscription.
    (own,) = _monitors(ACME).items()
    assert own[1]["MonitorName"] == "vend-services"
    (acme_subscription,) = _subscriptions(ACME).values()
    assert acme_subscription["MonitorArnList"] == [own[0]]


def test_policy_contents_in_sync_after_deploy(
    deployed: Path, emulator: Emulator, overrides: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, found, _ = _drift(capsys, emulator, overrides, deployed)
    boundary, role = found[BOUNDARY], found[ROLE]
    assert (boundary["status"], role["status"]) == ("IN_SYNC", "IN_SYNC"), (boundary, role)
    assert boundary["actual"]["policy_document"] == boundary["expected"]["policy_document"]
    assert "as in the code" in boundary["actual"]["policy_document"]
    assert role["actual"]["inline_policy_documents"] == role["expected"]["inline_policy_documents"]
    assert set(role["expected"]["inline_policy_documents"]) == {"vend-msp-operations"}
    assert found[("freshacct", "global", "permission-boundary")]["status"] == "IN_SYNC"
    # Drift checks the HIPAA pack's rules too (it reads the same effective config as the stacks).
    for region in ("us-east-1", "us-west-2"):
        rules = found[("acme-health", region, "config-rules")]
        assert rules["status"] == "IN_SYNC", rules
        assert {"vend-ec2-ebs-encryption-by-default", "vend-securityhub-enabled"} <= set(rules["expected"])
    home = set(found[("acme-health", "us-east-1", "config-rules")]["expected"])
    other = set(found[("acme-health", "us-west-2", "config-rules")]["expected"])
    assert "vend-iam-password-policy" in home - other  # IAM is global: home region only
    assert found[("freshacct", "global", "msp-role")]["expected"]["inline_policy_documents"] == {}  # monitoring


def test_a_rewritten_boundary_is_drift_with_the_statements_that_differ(
    deployed: Path, access: AwsAccess, emulator: Emulator, overrides: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    iam = access.client(_session(access, ACME), "iam", "us-east-1")
    arn = f"arn:aws:iam::{ACME}:policy/vend-permission-boundary"
    policy = iam.get_policy(PolicyArn=arn)["Policy"]
    original = policy["DefaultVersionId"]
    doc = iam.get_policy_version(PolicyArn=arn, VersionId=original)["PolicyVersion"]["Document"]
    doc = json.loads(doc) if isinstance(doc, str) else doc
    # Out of band: users and access keys allowed again, and one extra statement.
    doc["Statement"] = [s for s in doc["Statement"] if s.get("Sid") != "DenyLongLivedCredentials"]
    doc["Statement"].append({"Sid": "Backdoor", "Effect": "Allow", "Action": "iam:PassRole", "Resource": "*"})
    iam.create_policy_version(PolicyArn=arn, PolicyDocument=json.dumps(doc), SetAsDefault=True)

    code, found, _ = _drift(capsys, emulator, overrides, deployed)
    assert code == 3
    f = found[BOUNDARY]
    assert f["status"] == "DRIFTED", f
    assert set(f["expected"]) == {"policy_document"}  # still attached to every baseline role
    (missing,) = f["expected"]["policy_document"]["only in the code"]
    assert missing["Sid"] == "DenyLongLivedCredentials" and "iam:CreateUser" in missing["Action"]
    (extra,) = f["actual"]["policy_document"]["only in the live policy"]
    assert extra["Sid"] == "Backdoor"
    assert "DenyLongLivedCredentials" in f["detail"] and "Backdoor" in f["detail"]
    assert "CloudTrail" in f["fix"] and "set-default-policy-version" in f["fix"]

    # Remediation does not pretend: the deploy role may change the boundary only through CloudFormation.
    code, found, report = _drift(capsys, emulator, overrides, deployed, "--remediate")
    (action,) = [a for a in report["remediation"] if a["control"] == "permission-boundary"]
    assert (action["how"], action["outcome"]) == ("manual", "SKIPPED")
    assert found[BOUNDARY]["status"] == "DRIFTED"

    # What the client administrator does: the code's version is the default again.
    iam.set_default_policy_version(PolicyArn=arn, VersionId=original)
    code, found, _ = _drift(capsys, emulator, overrides, deployed)
    assert found[BOUNDARY]["status"] == "IN_SYNC"


def test_msp_role_policy_contents_drift_and_remediation_restores_them(
    deployed: Path, access: AwsAccess, emulator: Emulator, overrides: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    iam = access.client(_session(access, ACME), "iam", "us-east-1")
    widened = operations_policy()
    widened["Statement"].append({"Sid": "Shell", "Effect": "Allow", "Action": "ssm:StartSession", "Resource": "*"})
    iam.put_role_policy(RoleName="VendMspAccess", PolicyName="vend-msp-operations", PolicyDocument=json.dumps(widened))
    admin = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
    admin_arn = iam.create_policy(PolicyName="client-admin", PolicyDocument=json.dumps(admin))["Policy"]["Arn"]
    iam.attach_role_policy(RoleName="VendMspAccess", PolicyArn=admin_arn)

    code, found, _ = _drift(capsys, emulator, overrides, deployed)
    assert code == 3
    f = found[ROLE]
    assert f["status"] == "DRIFTED"
    assert set(f["expected"]) == {"inline_policy_documents", "managed_policies"}
    assert admin_arn in f["actual"]["managed_policies"]
    ops = f["actual"]["inline_policy_documents"]["vend-msp-operations"]
    assert [s["Sid"] for s in ops["only in the live policy"]] == ["Shell"]
    assert f["expected"]["inline_policy_documents"]["vend-msp-operations"] == {"only in the code": []}
    assert "vend-msp-operations" in f["detail"] and "Shell" in f["detail"]

    code, found, report = _drift(capsys, emulator, overrides, deployed, "--remediate")
    (action,) = [a for a in report["remediation"] if a["control"] == "msp-role"]
    assert action["outcome"] == "DONE", action
    assert found[ROLE]["status"] == "IN_SYNC", found[ROLE]
    attached = iam.list_attached_role_policies(RoleName="VendMspAccess")["AttachedPolicies"]
    assert admin_arn not in {p["PolicyArn"] for p in attached}
