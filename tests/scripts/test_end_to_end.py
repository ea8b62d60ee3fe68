"""End to end on the emulator: deploy every example client, check live state, drift.

One emulator and one deploy per module; the tests run in file order and build on each
other (deploy -> live checks -> redeploy unchanged -> drift in sync -> out-of-band changes).
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
from baseline.spec import client_baseline
from scripts.aws import AssumeRoleError, AwsAccess
from scripts.cli import main, run_deploy
from scripts.drift import drift_portfolio
from scripts.emulator.server import Emulator
from scripts.synth import synthesize

REPO = Path(__file__).resolve().parents[2]
CLIENTS = ["acme-health", "brightmart", "ledgerly"]


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    with Emulator().start() as emu:
        requests.post(f"{emu.url}/moto-api/reset", timeout=10)  # moto state is per process
        yield emu
        requests.post(f"{emu.url}/moto-api/reset", timeout=10)


@pytest.fixture(scope="module")
def env(emulator: Emulator) -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ACCESS_KEY_ID", "test")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "test")
    mp.delenv("AWS_PROFILE", raising=False)
    mp.delenv("AWS_SESSION_TOKEN", raising=False)
    mp.delenv("AWS_ENDPOINT_URL", raising=False)
    yield
    mp.undo()


@pytest.fixture(scope="module")
def access(emulator: Emulator, env: None) -> AwsAccess:
    return AwsAccess(endpoint_url=emulator.url)


@pytest.fixture(scope="module")
def portfolio() -> Portfolio:
    p, problems = load_portfolio(REPO / "overrides")
    assert p is not None, problems
    return p


@pytest.fixture(scope="module")
def assembly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("assembly")
    assert synthesize(REPO / "overrides", out, validation=False, quiet=True) == 0
    return out


@pytest.fixture(scope="module")
def first_deploy(access: AwsAccess, portfolio: Portfolio, assembly: Path) -> list[Any]:
    return run_deploy(access, portfolio, assembly, CLIENTS, concurrency=3)


def _session(access: AwsAccess, portfolio: Portfolio, client: str) -> boto3.Session:
    c = portfolio.client(client)
    return access.assume_role(c.deploy_role_arn, external_id=c.external_id, session_name="test", region=c.home_region)


def test_first_deploy_creates_msp_side_then_every_client(first_deploy: list[Any]) -> None:
    assert [r.name for r in first_deploy] == ["msp-log-archive", *CLIENTS]
    assert all(r.outcome == "OK" for r in first_deploy), [(r.name, r.detail) for r in first_deploy]
    assert {s.outcome for r in first_deploy for s in r.stacks} == {"CREATED"}
    assert sum(len(r.stacks) for r in first_deploy) == 10


def test_central_bucket_and_key_exist_in_log_archive_account(
    first_deploy: list[Any], access: AwsAccess, portfolio: Portfolio
) -> None:
    la = portfolio.defaults.log_archive
    assert la.deploy_role_arn
    session = access.assume_role(la.deploy_role_arn, external_id=la.external_id, session_name="t", region=la.region)
    s3 = access.client(session, "s3", la.region)
    policy = json.loads(s3.get_bucket_policy(Bucket="vend-logs-210987654321-us-east-1")["Policy"])
    sids = {st.get("Sid") for st in policy["Statement"]}
    assert {"PortfolioLogDelivery", "CloudTrailOnlyTheBaselineTrail", "ConfigOnlyUnderConfig"} <= sids
    (writers,) = [st for st in policy["Statement"] if st.get("Sid") == "PortfolioLogDelivery"]
    assert set(writers["Condition"]["StringEquals"]["aws:SourceAccount"]) == {c.account_id for c in portfolio.clients}
    kms = access.client(session, "kms", la.region)
    assert kms.describe_key(KeyId="alias/vend-central-logs")["KeyMetadata"]["KeyState"] == "Enabled"


@pytest.mark.parametrize("client", CLIENTS)
def test_every_control_is_live_in_the_client_account(
    first_deploy: list[Any], access: AwsAccess, portfolio: Portfolio, client: str
) -> None:
    c = portfolio.client(client)
    spec = client_baseline(c, portfolio.defaults)
    session = _session(access, portfolio, client)
    assert access.client(session, "sts", c.home_region).get_caller_identity()["Account"] == c.account_id

    ct = access.client(session, "cloudtrail", c.home_region)
    (trail,) = ct.describe_trails(trailNameList=["vend-baseline"])["trailList"]
    assert trail["S3BucketName"] == "vend-logs-210987654321-us-east-1"
    assert trail["IsMultiRegionTrail"] and trail["LogFileValidationEnabled"]
    assert ct.get_trail_status(Name="vend-baseline")["IsLogging"] is True

    for region in c.regions:
        cfg = access.client(session, "config", region)
        (status,) = cfg.describe_configuration_recorder_status()["ConfigurationRecordersStatus"]
        assert status["recording"] is True
        (recorder,) = cfg.describe_configuration_recorders()["ConfigurationRecorders"]
        assert recorder["recordingGroup"]["includeGlobalResourceTypes"] is (region == c.home_region)
        pages = cfg.get_paginator("describe_config_rules").paginate()  # the packs pass one page
        rules = {r["ConfigRuleName"] for page in pages for r in page["ConfigRules"]}
        assert {r.name for r in spec.region(region).rules} | {"vend-required-tags"} == rules
        gd = access.client(session, "guardduty", region)
        (detector_id,) = gd.list_detectors()["DetectorIds"]
        assert gd.get_detector(DetectorId=detector_id)["Status"] == "ENABLED"

    iam = access.client(session, "iam", c.home_region)
    role = iam.get_role(RoleName="VendMspAccess")["Role"]
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"].endswith(":policy/vend-permission-boundary")
    trust = role["AssumeRolePolicyDocument"]
    trust = json.loads(trust) if isinstance(trust, str) else trust
    assert trust["Statement"][0]["Condition"]["StringEquals"]["sts:ExternalId"] == c.external_id

    budgets = access.client(session, "budgets", "us-east-1")
    budget = budgets.describe_budget(AccountId=c.account_id, BudgetName=spec.budget.name)["Budget"]
    assert float(budget["BudgetLimit"]["Amount"]) == c.budget_limit_usd


def test_clients_are_isolated_from_each_other(first_deploy: list[Any], access: AwsAccess, portfolio: Portfolio) -> None:
    session = _session(access, portfolio, "brightmart")
    regions = portfolio.client("brightmart").regions
    gd = access.client(session, "guardduty", "us-west-2")  # a region only other clients use
    assert gd.list_detectors()["DetectorIds"] == []
    assert regions == ("eu-west-1",)


def test_second_deploy_of_unchanged_input_changes_nothing(
    first_deploy: list[Any], access: AwsAccess, portfolio: Portfolio, assembly: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    again = run_deploy(access, portfolio, assembly, CLIENTS, concurrency=3)
    assert {s.outcome for r in again for s in r.stacks} == {"UNCHANGED"}
    assert all(r.outcome == "OK" for r in again)
    assert "UNCHANGED" in capsys.readouterr().out


def test_drift_after_deploy_is_all_in_sync(first_deploy: list[Any], access: AwsAccess, portfolio: Portfolio) -> None:
    report = drift_portfolio(access, portfolio, CLIENTS)
    not_in_sync = [
        (f.client, f.region, f.control, f.status, f.detail) for f in report.findings if f.status != "IN_SYNC"
    ]
    assert not_in_sync == []
    # 4 global controls per client + 5 regional controls per client region.
    assert len(report.findings) == sum(4 + 5 * len(portfolio.client(c).regions) for c in CLIENTS)
    assert report.exit_code() == 0


def test_out_of_band_changes_are_reported_exactly(
    first_deploy: list[Any],
    access: AwsAccess,
    portfolio: Portfolio,
    emulator: Emulator,
    capsys: pytest.CaptureFixture[str],
) -> None:
    acme = _session(access, portfolio, "acme-health")
    bright = _session(access, portfolio, "brightmart")
    ledg = _session(access, portfolio, "ledgerly")
    # One change per control, each by hand, as an engineer in the console would.
    access.client(acme, "cloudtrail", "us-east-1").stop_logging(Name="vend-baseline")
    gd = access.client(acme, "guardduty", "us-west-2")
    gd.delete_detector(DetectorId=gd.list_detectors()["DetectorIds"][0])
    access.client(bright, "iam", "eu-west-1").delete_role_permissions_boundary(RoleName="VendMspAccess")
    access.client(ledg, "config", "us-west-2").stop_configuration_recorder(ConfigurationRecorderName="vend-recorder")
    access.client(ledg, "config", "eu-central-1").delete_config_rule(ConfigRuleName="vend-encrypted-volumes")
    access.client(bright, "config", "eu-west-1").put_config_rule(
        ConfigRule={
            "ConfigRuleName": "vend-required-tags",
            "Source": {"Owner": "AWS", "SourceIdentifier": "REQUIRED_TAGS"},
            "InputParameters": json.dumps({"tag1Key": "Owner"}),
        }
    )
    ledgerly = portfolio.client("ledgerly")
    budgets = access.client(ledg, "budgets", "us-east-1")
    name = client_baseline(ledgerly, portfolio.defaults).budget.name
    budget = budgets.describe_budget(AccountId=ledgerly.account_id, BudgetName=name)["Budget"]
    notifications = [
        {
            "Notification": n,
            "Subscribers": budgets.describe_subscribers_for_notification(
                AccountId=ledgerly.account_id, BudgetName=name, Notification=n
            )["Subscribers"],
        }
        for n in budgets.describe_notifications_for_budget(AccountId=ledgerly.account_id, BudgetName=name)[
            "Notifications"
        ]
    ]
    budgets.delete_budget(AccountId=ledgerly.account_id, BudgetName=name)
    budget["BudgetLimit"]["Amount"] = "99999"  # someone raised the limit by hand
    budgets.create_budget(AccountId=ledgerly.account_id, Budget=budget, NotificationsWithSubscribers=notifications)

    code = main(
        ["drift", "--all", "--format", "json", "--endpoint-url", emulator.url, "--overrides", str(REPO / "overrides")]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 3
    found = {
        (f["client"], f["region"], f["control"], f["status"]) for f in report["findings"] if f["status"] != "IN_SYNC"
    }
    assert found == {
        ("acme-health", "global", "cloudtrail", "DRIFTED"),
        ("acme-health", "us-west-2", "guardduty", "MISSING"),
        ("brightmart", "global", "msp-role", "DRIFTED"),
        ("brightmart", "global", "permission-boundary", "DRIFTED"),
        ("brightmart", "eu-west-1", "tag-rules", "DRIFTED"),
        ("ledgerly", "us-west-2", "config-recorder", "DRIFTED"),
        ("ledgerly", "eu-central-1", "config-rules", "DRIFTED"),
        ("ledgerly", "global", "budget", "DRIFTED"),
    }
    by_key = {(f["client"], f["control"], f["region"]): f for f in report["findings"]}
    trail = by_key[("acme-health", "cloudtrail", "global")]
    assert trail["expected"] == {"IsLogging": True} and trail["actual"] == {"IsLogging": False}
    assert trail["account_id"] == "111122223333" and trail["fix"]
    budget_finding = by_key[("ledgerly", "budget", "global")]
    assert budget_finding["expected"] == {"limit_usd": 25000.0} and budget_finding["actual"] == {"limit_usd": 99999.0}
    assert "vend-encrypted-volumes" in by_key[("ledgerly", "config-rules", "eu-central-1")]["detail"]


class _DenyOneRole(AwsAccess):
    """Access where one client's deploy role cannot be assumed (wrong ExternalId, offboarded)."""

    def assumed_credentials(self, role_arn: str, **kwargs: Any) -> Any:  # assume_role uses it too
        if ":444455556666:" in role_arn:
            raise AssumeRoleError(role_arn, "AccessDenied", "not authorized to perform sts:AssumeRole")
        return super().assumed_credentials(role_arn, **kwargs)


def test_unreachable_client_is_not_checked_and_others_go_on(
    first_deploy: list[Any], portfolio: Portfolio, emulator: Emulator
) -> None:
    report = drift_portfolio(_DenyOneRole(endpoint_url=emulator.url), portfolio, CLIENTS)
    bright = [f for f in report.findings if f.client == "brightmart"]
    others = [f for f in report.findings if f.client != "brightmart"]
    assert bright and {f.status for f in bright} == {"NOT_CHECKED"}
    assert all("AccessDenied" in f.detail and "ExternalId" in f.detail for f in bright)
    assert others and "NOT_CHECKED" not in {f.status for f in others}


def test_bad_input_deploys_nothing(
    first_deploy: list[Any], access: AwsAccess, emulator: Emulator, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = REPO / "tests" / "fixtures" / "bad" / "unquoted-octal-account"
    code = main(
        ["deploy", "--all", "--endpoint-url", emulator.url, "--overrides", str(bad), "--output", str(tmp_path / "out")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "nothing was synthesized or deployed" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
