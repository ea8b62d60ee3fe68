"""Independent checks over the synthesized portfolio: cdk-nag and CloudFormation validation."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks

from baseline.portfolio import load_portfolio
from scripts.assembly import read_assembly
from scripts.synth import synthesize
from stacks.portfolio import build_app

REPO = Path(__file__).resolve().parents[2]
FLAGS = json.loads((REPO / "cdk.json").read_text())["context"]


def test_aws_solutions_has_no_unacknowledged_finding(tmp_path: Path) -> None:
    portfolio, problems = load_portfolio(REPO / "overrides")
    assert portfolio is not None, problems
    app = cdk.App(outdir=str(tmp_path), context=FLAGS, analytics_reporting=False)
    build_app(app, portfolio)
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    try:
        app.synth()
    except RuntimeError as exc:  # cdk-nag interrupts synthesis on any finding
        report = json.loads((tmp_path / "validation-report.json").read_text())
        found = [
            f"{v['ruleName']} at {c['constructPath']}"
            for r in report["pluginReports"]
            for v in r["violations"]
            for c in v["violatingConstructs"]
        ]
        raise AssertionError("cdk-nag findings:\n" + "\n".join(found)) from exc
    # Every acknowledgment sits on a resource and carries a reason an auditor can read.
    acks = [
        (c.node.path, entry.data)
        for c in app.node.find_all()
        for entry in c.node.metadata
        if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
    ]
    assert acks, "expected the documented acknowledgments (IAM4/IAM5/S1)"
    for path, data in acks:  # data maps rule id -> reason
        for rule, reason in data.items():
            assert len(reason) > 40, (path, rule, reason)


def test_full_synth_with_cloudformation_validation(tmp_path: Path) -> None:
    """What `vend synth` and `cdk synth` run: aws-cdk-lib's built-in validator on."""
    assert synthesize(REPO / "overrides", tmp_path, quiet=True) == 0
    stacks = read_assembly(tmp_path)
    assert len(stacks) == 10
    for s in stacks:
        assert len(s.template_body().encode()) < 51_200, f"{s.stack_name} is too large for an inline deploy"
