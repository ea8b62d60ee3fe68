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
    # Per statement, by value: the one statement's SourceIdentity condition is gone.
    assert role["expected"]["source_identity"] == [["?*"]] and role["actual"]["source_identity"] == [[]]
    assert set(role["expected"]) == {"source_identity", "trust_policy"}
    (changed,) = role["actual"]["trust_policy"]["only in the live policy"]
    assert "StringLike" not in changed["Condition"]
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


ACME = "111122223333"
ACME_BUDGET = ("acme-health", "global", "budget")


def _trust(iam: Any) -> dict[str, Any]:
    doc = iam.get_role(RoleName="VendMspAccess")["Role"]["AssumeRolePolicyDocument"]
    return dict(json.loads(doc) if isinstance(doc, str) else doc)


def test_each_trust_statement_is_checked_on_its_own_and_restored(
    deployed: Path, access: AwsAccess, emulator: Emulator, overrides: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second statement trusting the MSP account with no ExternalId and no principal limit is
    drift (conditions are never pooled across statements); so is a SourceIdentity of "*"."""
    iam = access.client(_session(access, ACME), "iam", "us-east-1")
    trust = _trust(iam)
    backdoor = {"Sid": "Backdoor", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}}
    trust["Statement"].append({**backdoor, "Action": "sts:AssumeRole"})
    iam.update_assume_role_policy(RoleName="VendMspAccess", PolicyDocument=json.dumps(trust))
    code, report, _ = _drift(capsys, emulator, overrides, deployed)
    role = _by_key(report)[ACME_ROLE]
    assert code == 3 and role["status"] == "DRIFTED"
    assert role["actual"]["external_id"] == [["acme-health-4b1d9e"], []]
    assert role["actual"]["principal_arn_patterns"][1] == []
    (extra,) = role["actual"]["trust_policy"]["only in the live policy"]
    assert extra["Sid"] == "Backdoor" and "Condition" not in extra
    assert "not in the code: Backdoor" in role["detail"]

    # The value counts, not only the key: "*" also matches an empty source identity.
    trust = _trust(iam)
    trust["Statement"] = [st for st in trust["Statement"] if st.get("Sid") != "Backdoor"]
    trust["Statement"][0]["Condition"]["StringLike"] = {"sts:SourceIdentity": "*"}
    iam.update_assume_role_policy(RoleName="VendMspAccess", PolicyDocument=json.dumps(trust))
    trust["Statement"].append({**backdoor, "Action": "sts:AssumeRole"})
    iam.update_assume_role_policy(RoleName="VendMspAccess", PolicyDocument=json.dumps(trust))
    code, report, _ = _drift(capsys, emulator, overrides, deployed)
    role = _by_key(report)[ACME_ROLE]
    assert role["actual"]["source_identity"] == [["*"], []] and role["expected"]["source_identity"] == [["?*"]]

    code, report, err = _drift(capsys, emulator, overrides, deployed, "--remediate")
    actions = {(a["client"], a["region"], a["control"]): a for a in report["remediation"]}
    assert actions[ACME_ROLE]["outcome"] == "DONE", err
    assert ACME_ROLE not in _not_in_sync(report)
    (statement,) = _trust(iam)["Statement"]
    assert statement["Sid"] == "MspPrincipalsWithExternalId"
    assert statement["Condition"]["StringLike"] == {"sts:SourceIdentity": "?*"}


def test_the_trails_cloudwatch_logs_delivery_is_checked_and_restored(
    deployed: Path, access: AwsAccess, emulator: Emulator, overrides: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """HIPAA's CloudWatch Logs delivery taken off the trail, and the group's retention cut: both
    DRIFTED; remediation restores the template's group and role (its Fn::GetAtt, resolved from
    the stack's resources) and the retention."""
    acme = _session(access, ACME)
    ct = access.client(acme, "cloudtrail", "us-east-1")
    (before,) = ct.describe_trails(trailNameList=["vend-baseline"])["trailList"]
    # CloudFormation's Arn of a log group ends in ":*" (moto's does not): the same group either way.
    group_arn = before["CloudWatchLogsLogGroupArn"].removesuffix(":*")
    assert group_arn == f"arn:aws:logs:us-east-1:{ACME}:log-group:vend-cloudtrail"
    ct.update_trail(Name="vend-baseline", CloudWatchLogsLogGroupArn="", CloudWatchLogsRoleArn="")
    logs = access.client(acme, "logs", "us-east-1")
    logs.put_retention_policy(logGroupName="vend-cloudtrail", retentionInDays=1)
    code, report, _ = _drift(capsys, emulator, overrides, deployed)
    trail = _by_key(report)[ACME_TRAIL]
    assert code == 3 and trail["status"] == "DRIFTED"
    assert trail["expected"] == {
        "CloudWatchLogsLogGroup": "vend-cloudtrail",
        "CloudWatchLogsRole": "vend-cloudtrail-logs",
        "LogGroupRetentionDays": 365,
    }
    assert trail["actual"] == {"CloudWatchLogsLogGroup": None, "CloudWatchLogsRole": None, "LogGroupRetentionDays": 1}

    code, report, err = _drift(capsys, emulator, overrides, deployed, "--remediate")
    action = {(a["client"], a["region"], a["control"]): a for a in report["remediation"]}[ACME_TRAIL]
    assert action["outcome"] == "DONE" and "UpdateTrail" in action["what"] and "PutRetentionPolicy" in action["what"], (
        err
    )
    assert ACME_TRAIL not in _not_in_sync(report)
    (after,) = ct.describe_trails(trailNameList=["vend-baseline"])["trailList"]
    assert after["CloudWatchLogsLogGroupArn"].removesuffix(":*") == group_arn
    assert after["CloudWatchLogsRoleArn"] == before["CloudWatchLogsRoleArn"]
    (group,) = logs.describe_log_groups(logGroupNamePrefix="vend-cloudtrail")["logGroups"]
    assert group["retentionInDays"] == 365


def test_a_lost_budget_recipient_is_resubscribed_and_only_then_done(
    deployed: Path, access: AwsAccess, emulator: Emulator, overrides: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sns = access.client(_session(access, ACME), "sns", "us-east-1")
    topic = f"arn:aws:sns:us-east-1:{ACME}:vend-alerts"
    subs = sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]
    (ops,) = [s for s in subs if s["Endpoint"] == "cloud-ops@acme.example"]
    sns.unsubscribe(SubscriptionArn=ops["SubscriptionArn"])
    code, report, _ = _drift(capsys, emulator, overrides, deployed)
    budget = _by_key(report)[ACME_BUDGET]
    assert code == 3 and budget["status"] == "DRIFTED"
    assert budget["expected"] == {"notify": ["cloud-ops@acme.example", "finops@msp.example"]}
    assert budget["actual"] == {"notify": ["finops@msp.example"]}

    code, report, err = _drift(capsys, emulator, overrides, deployed, "--remediate")
    action = {(a["client"], a["region"], a["control"]): a for a in report["remediation"]}[ACME_BUDGET]
    assert action["outcome"] == "DONE" and "sns:Subscribe cloud-ops@acme.example" in action["what"], err
    assert "re-created" not in action["what"]  # the budget itself was fine: not touched
    assert ACME_BUDGET not in _not_in_sync(report)
    endpoints = {s["Endpoint"] for s in sns.list_subscriptions_by_topic(TopicArn=topic)["Subscriptions"]}
    assert endpoints == {"cloud-ops@acme.example", "finops@msp.example"}


def test_a_stale_assembly_is_not_taken_for_the_current_code(
    deployed: Path,
    access: AwsAccess,
    emulator: Emulator,
    overrides: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """OUTDATED means "not what the current code and overrides produce". An older assembly
    passed with --assembly must not turn an undeployed change into live drift, nor a deployed
    one into OUTDATED (remediation would then deploy the old template)."""
    old = overrides / "oldtrail.yaml"
    old.write_text(old.read_text().replace("monthly_limit_usd: 400", "monthly_limit_usd: 450"))
    code, report, err = _drift(capsys, emulator, overrides, deployed)
    assert _by_key(report)[("oldtrail", "global", "budget")]["status"] == "OUTDATED"
    assert "is not what the current code and overrides synthesize (for oldtrail)" in err
    assert any("compared with a fresh synthesis" in n for n in report["notes"])

    current = tmp_path / "cdk.out"
    assert synthesize(overrides, current, validation=False, quiet=True) == 0
    portfolio, _ = load_portfolio(overrides)
    assert portfolio is not None
    assert all(r.outcome == "OK" for r in run_deploy(access, portfolio, current, ["oldtrail"], concurrency=1))
    code, report, _ = _drift(capsys, emulator, overrides, deployed, "--remediate")
    assert _by_key(report)[("oldtrail", "global", "budget")]["status"] == "IN_SYNC"
    assert not [a for a in report["remediation"] if a["control"] == "budget"]  # nothing rolled back
    code, report, err = _drift(capsys, emulator, overrides, current)
    assert "not what the current code" not in err


def test_an_empty_rule_set_says_what_the_baseline_expects() -> None:
    """No rules expected (all waived or scoped elsewhere) is said as such, and one of vend's
    rules still there is drift; rules expected and none found is MISSING."""
    from baseline.spec import ConfigRuleSpec, client_baseline
    from scripts.drift import _compare_rules, _Ctx

    portfolio, _ = load_portfolio(REPO / "overrides")
    assert portfolio is not None
    ctx = _Ctx(AwsAccess(), None, client_baseline(portfolio.client("brightmart"), portfolio.defaults), frozenset())
    rule = {"ConfigRuleName": "vend-encrypted-volumes", "Source": {"SourceIdentifier": "ENCRYPTED_VOLUMES"}}
    _compare_rules(ctx, "eu-west-1", "config-rules", (), {})
    _compare_rules(ctx, "eu-west-1", "config-rules", (), {"vend-encrypted-volumes": rule, "their-rule": {}})
    _compare_rules(
        ctx, "eu-west-1", "config-rules", (ConfigRuleSpec("vend-encrypted-volumes", "ENCRYPTED_VOLUMES", ()),), {}
    )
    quiet, extra, missing = ctx.findings
    assert quiet.status == "IN_SYNC" and "the baseline expects no config-rules here" in quiet.detail
    assert "0 rule(s)" not in quiet.detail and "none found" in quiet.detail
    assert extra.status == "DRIFTED" and extra.actual == ["vend-encrypted-volumes"]
    assert missing.status == "MISSING"


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
