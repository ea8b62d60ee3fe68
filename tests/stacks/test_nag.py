"""Independent checks over the synthesized portfolio: cdk-nag and CloudFormation validation."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from cdk_nag import AwsSolutionsChecks, HIPAASecurityChecks, NIST80053R5Checks, PCIDSS321Checks
from cfnlint.api import lint_file

from baseline.portfolio import load_portfolio
from scripts.assembly import read_assembly
from scripts.synth import synthesize, synthesize_direct
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
    """What `cdk synth` runs: the plain CDK app, every client's own stacks, aws-cdk-lib's
    built-in validator on (``vend synth`` validates each shape's prototype, see test_synth)."""
    assert synthesize_direct(REPO / "overrides", tmp_path, validation=True, quiet=True) == 0
    stacks = read_assembly(tmp_path)
    assert len(stacks) == 11  # the MSP side (log archive, StackSets admin role), 3 clients' 9 stacks
    for s in stacks:
        assert len(s.template_body().encode()) < 51_200, f"{s.stack_name} is too large for an inline deploy"


def _nag(outdir: Path, portfolio: object, clients: list[str], packs: set[str]) -> list[tuple[str, str]]:
    """Synthesize the MSP side plus ``clients`` with AwsSolutions and ``packs``; return the
    acknowledgments (path, rule) or raise with every unacknowledged finding."""
    app = cdk.App(outdir=str(outdir), context=FLAGS, analytics_reporting=False)
    build_app(app, portfolio, only_client=clients)  # type: ignore[arg-type]
    plugins: list[object] = [AwsSolutionsChecks(app)]
    if "hipaa" in packs:
        plugins += [HIPAASecurityChecks(app), NIST80053R5Checks(app)]
    if "pci" in packs:
        plugins += [PCIDSS321Checks(app)] + ([] if "hipaa" in packs else [NIST80053R5Checks(app)])
    cdk.Validations.of(app).add_plugins(*plugins)  # type: ignore[arg-type]
    try:
        app.synth()
    except RuntimeError as exc:
        report = json.loads((outdir / "validation-report.json").read_text())
        found = sorted(
            {
                f"{v['ruleName']} at {c['constructPath']}"
                for r in report["pluginReports"]
                for v in r["violations"]
                for c in v["violatingConstructs"]
            }
        )
        raise AssertionError("cdk-nag findings:\n" + "\n".join(found)) from exc
    return [
        (c.node.path, rule)
        for c in app.node.find_all()
        for entry in c.node.metadata
        if entry.type == cdk.Validations.ACKNOWLEDGED_RULES_METADATA_KEY
        for rule in entry.data
    ]


@pytest.mark.parametrize(
    ("client", "packs"),
    [("acme-health", {"hipaa"}), ("ledgerly", {"pci"})],
)
def test_compliance_packs_on_regulated_clients_and_the_msp_side(client: str, packs: set[str], tmp_path: Path) -> None:
    """HIPAA (+ NIST 800-53 R5) and PCI DSS 3.2.1 on clients with those profiles; the MSP
    side holds their logs, so it is checked with each pack too. Zero unacknowledged findings."""
    portfolio, problems = load_portfolio(REPO / "overrides")
    assert portfolio is not None, problems
    assert set(portfolio.client(client).profiles) == packs
    acks = _nag(tmp_path, portfolio, [client], packs)
    assert any(rule.startswith(("HIPAA", "PCI")) for _, rule in acks)


def test_cfn_lint_finds_no_error_in_any_template(tmp_path: Path) -> None:
    assert synthesize(REPO / "overrides", tmp_path, validation=False, quiet=True) == 0
    templates = sorted(tmp_path.glob("*.template.json"))
    assert len(templates) == 11
    stack_sets = sorted((tmp_path / "stacksets").glob("*.template.json"))  # vend deploy --engine stacksets
    assert stack_sets
    templates += stack_sets
    errors = {t.name: [str(m) for m in lint_file(t) if m.rule.id.startswith("E")] for t in templates}
    assert not {k: v for k, v in errors.items() if v}, errors
