"""Cost Anomaly Detection in an account that already has its AWS services monitor, and the
size of the largest client stacks now that the HIPAA and PCI packs carry their full rule sets."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from baseline.portfolio import Portfolio, load_portfolio
from stacks.portfolio import build_client_stacks

REPO = Path(__file__).resolve().parents[2]
FLAGS = json.loads((REPO / "cdk.json").read_text())["context"]
MONITOR = "arn:aws:ce::999900005555:anomalymonitor/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
BIGGEST = """\
client: biggest
display_name: Biggest
account_id: "999900005555"
home_region: us-east-1
regions: [us-east-1, eu-west-1]
engagement: managed
access:
  deploy_role_arn: arn:aws:iam::999900005555:role/VendDeploy
  external_id: biggest-0a1b2c
profiles: [hipaa, pci]
budget:
  monthly_limit_usd: 100
tags:
  required: [{keys}]
inherited:
  anomaly_monitor: {monitor}
"""


def _portfolio(tmp: Path, monitor: str = MONITOR) -> tuple[Portfolio | None, list[str]]:
    keys = ", ".join(f"Key{i}" for i in range(1, 31))  # the most a client may require
    (tmp / "biggest.yaml").write_text(BIGGEST.format(keys=keys, monitor=monitor))
    portfolio, problems = load_portfolio(tmp)
    return portfolio, [str(p) for p in problems]


PROFILES = load_portfolio(REPO / "overrides")[0].profiles  # type: ignore[union-attr]
STANDARD = load_portfolio(REPO / "overrides")[0].defaults.config_rules  # type: ignore[union-attr]


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Template]:
    portfolio, problems = _portfolio(tmp_path_factory.mktemp("overrides"))
    assert portfolio is not None, problems
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk")), context=FLAGS, analytics_reporting=False)
    build_client_stacks(app, portfolio.defaults, portfolio.clients)
    return {s.stack_name: Template.from_stack(s) for s in app.node.children if isinstance(s, cdk.Stack)}


def test_an_adopted_services_monitor_gets_the_subscription_and_no_second_monitor(
    templates: dict[str, Template],
) -> None:
    t = templates["vend-biggest-global"]
    t.resource_count_is("AWS::CE::AnomalyMonitor", 0)
    t.has_resource_properties(
        "AWS::CE::AnomalySubscription",
        {"MonitorArnList": [MONITOR], "Subscribers": [{"Type": "SNS", "Address": Match.any_value()}]},
    )


def test_without_the_setting_vend_creates_its_services_monitor(tmp_path: Path) -> None:
    portfolio, problems = load_portfolio(REPO / "overrides")
    assert portfolio is not None, problems
    app = cdk.App(outdir=str(tmp_path), context=FLAGS, analytics_reporting=False)
    build_client_stacks(app, portfolio.defaults, [portfolio.client("brightmart")])
    t = Template.from_stack(app.node.find_child("vend-brightmart-global"))  # type: ignore[arg-type]
    t.resource_count_is("AWS::CE::AnomalyMonitor", 1)
    t.has_resource_properties("AWS::CE::AnomalyMonitor", {"MonitorType": "DIMENSIONAL", "MonitorDimension": "SERVICE"})


def test_a_monitor_of_another_account_is_refused_with_file_and_line(tmp_path: Path) -> None:
    portfolio, problems = _portfolio(tmp_path, monitor=MONITOR.replace("999900005555", "111122223333"))
    assert portfolio is None
    (problem,) = problems
    assert problem.startswith(f"{tmp_path / 'biggest.yaml'}:16:20:")
    assert "inherited.anomaly_monitor: monitor is in account 111122223333 but account_id is 999900005555" in problem
    portfolio, problems = _portfolio(tmp_path, monitor="arn:aws:ce::999900005555:anomalysubscription/x")
    assert portfolio is None and "inherited.anomaly_monitor" in problems[0]


def test_hipaa_plus_pci_and_30_tag_keys_still_deploy_inline(templates: dict[str, Template]) -> None:
    """CloudFormation takes a template body of up to 51,200 bytes; the client's stacks are sent
    inline (only the MSP side is staged in S3). Both packs, 30 tag keys (5 rules), home region."""
    for name, t in templates.items():
        body = json.dumps(t.to_json(), separators=(",", ":"))
        assert len(body.encode()) < 51_200, f"{name}: {len(body.encode())} bytes"
    home = templates["vend-biggest-us-east-1"].find_resources("AWS::Config::ConfigRule")
    packs = {r.name for name in ("hipaa", "pci") for r in PROFILES[name].config_rules}
    assert len(home) == len(STANDARD) + len(packs) + 5  # shared rules once; 30 keys = 5 tag rules
