"""Exceptions: warned 30 days before expiry, refused after it, honoured by the stacks,
shown as EXCEPTED by drift and as the client's layer by `vend show`."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest

from baseline.portfolio import load_portfolio
from baseline.spec import client_baseline
from scripts.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"

EXCEPTIONS = """exceptions:
  - control: guardduty
    regions: [us-west-2]
    reason: client SOC runs its own detector there (SEC-123)
    approver: security-lead@msp.example
    expires: 2026-07-10
  - control: config-rules
    rules: [restricted-ssh]
    reason: bastion hosts behind the client VPN (SEC-140)
    approver: security-lead@msp.example
    expires: 2026-12-31
  - control: budget
    reason: billing runs through the client's own FinOps tool (FIN-7)
    approver: finance-lead@msp.example
    expires: 2026-12-31
"""


@pytest.fixture
def overrides(tmp_path: Path) -> Path:
    dest = tmp_path / "overrides"
    dest.mkdir()
    shutil.copy(FIXTURES / "good" / "acme-health.yaml", dest)
    with (dest / "acme-health.yaml").open("a") as f:
        f.write(EXCEPTIONS)
    return dest


def test_expiry_warns_within_30_days_and_fails_after(overrides: Path, capsys: pytest.CaptureFixture[str]) -> None:
    portfolio, problems = load_portfolio(overrides, today=date(2026, 6, 15))
    assert portfolio is not None
    assert [str(p) for p in problems] == [
        f"{overrides / 'acme-health.yaml'}:22:14: exceptions[0].expires: warning: exception for guardduty expires "
        "on 2026-07-10 (in 25 day(s)); renew it or plan to restore the control"
    ]
    assert load_portfolio(overrides, today=date(2026, 6, 1))[1] == []
    portfolio, problems = load_portfolio(overrides, today=date(2026, 7, 11))
    assert portfolio is None
    assert [p.severity for p in problems] == ["error"]
    # the CLI: a warning keeps exit 0, an expired exception is exit 2
    assert main(["validate", str(overrides)]) in (0, 2)
    capsys.readouterr()


def test_stacks_leave_waived_controls_out(overrides: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from scripts.synth import synthesize

    monkeypatch.setenv("VEND_TODAY", "2026-06-01")
    out = tmp_path / "cdk.out"
    assert synthesize(overrides, out, client="acme-health", validation=False, quiet=True) == 0

    def resources(stack: str) -> list[dict]:
        return list(json.loads((out / f"{stack}.template.json").read_text())["Resources"].values())

    def types(stack: str) -> set[str]:
        return {r["Type"] for r in resources(stack)}

    def rules(stack: str) -> set[str]:
        return {r["Properties"]["ConfigRuleName"] for r in resources(stack) if r["Type"] == "AWS::Config::ConfigRule"}

    assert "AWS::GuardDuty::Detector" in types("vend-acme-health-us-east-1")
    assert "AWS::GuardDuty::Detector" not in types("vend-acme-health-us-west-2")
    assert "AWS::Budgets::Budget" not in types("vend-acme-health-global")
    for region in ("us-east-1", "us-west-2"):
        assert "vend-restricted-ssh" not in rules(f"vend-acme-health-{region}")
        assert "vend-encrypted-volumes" in rules(f"vend-acme-health-{region}")


def test_drift_reports_waived_controls_as_excepted(overrides: Path) -> None:
    from scripts.drift import _Ctx

    portfolio, _ = load_portfolio(overrides, today=date(2026, 6, 1))
    assert portfolio is not None
    baseline = client_baseline(portfolio.client("acme-health"), portfolio.defaults)
    ctx = _Ctx(None, None, baseline, frozenset())  # type: ignore[arg-type]

    def must_not_run() -> None:
        raise AssertionError("a waived control is not checked")

    ctx.run("us-west-2", "guardduty", must_not_run)
    ctx.run("global", "budget", must_not_run)
    ctx.run("us-east-1", "config-rules", lambda: ctx.record("us-east-1", "config-rules", "IN_SYNC"))
    got = [(f.region, f.control, f.status, f.detail) for f in ctx.findings]
    assert got == [
        (
            "us-west-2",
            "guardduty",
            "EXCEPTED",
            "waived until 2026-07-10 by security-lead@msp.example: client SOC runs its own detector there (SEC-123)",
        ),
        (
            "global",
            "budget",
            "EXCEPTED",
            "waived until 2026-12-31 by finance-lead@msp.example: billing runs through the client's own FinOps "
            "tool (FIN-7)",
        ),
        (
            "us-east-1",
            "config-rules",
            "EXCEPTED",
            "rule restricted-ssh waived until 2026-12-31 by security-lead@msp.example: bastion hosts behind the "
            "client VPN (SEC-140)",
        ),
        ("us-east-1", "config-rules", "IN_SYNC", ""),
    ]


def test_show_lists_exceptions_from_the_client_file(
    overrides: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VEND_TODAY", "2026-06-01")
    assert main(["show", "acme-health", "--format", "json", "--overrides", str(overrides)]) == 0
    entry = json.loads(capsys.readouterr().out)["fields"]["exceptions"]
    assert entry["layer"] == "client"
    assert [e["control"] for e in entry["value"]] == ["guardduty", "config-rules", "budget"]


def test_drift_reports_waived_tag_rules_and_cloudtrail_as_excepted(tmp_path: Path) -> None:
    from scripts.drift import _Ctx

    shutil.copy(FIXTURES / "good" / "acme-health.yaml", tmp_path)
    with (tmp_path / "acme-health.yaml").open("a") as f:
        f.write(
            "exceptions:\n"
            "  - control: tag-rules\n"
            "    regions: [us-west-2]\n"
            "    reason: the client's SCPs enforce tags there (SEC-9)\n"
            "    approver: security-lead@msp.example\n"
            "    expires: 2026-12-31\n"
            "  - control: cloudtrail\n"
            "    reason: the client's organization trail covers this account (SEC-10)\n"
            "    approver: security-lead@msp.example\n"
            "    expires: 2026-12-31\n"
        )
    portfolio, problems = load_portfolio(tmp_path, today=date(2026, 6, 1))
    assert portfolio is not None, problems
    baseline = client_baseline(portfolio.client("acme-health"), portfolio.defaults)
    assert baseline.region("us-west-2").tag_rules == ()
    assert "tag-rules" in baseline.region("us-west-2").waived
    assert [r.name for r in baseline.region("us-east-1").tag_rules] == ["vend-required-tags"]
    ctx = _Ctx(None, None, baseline, frozenset())  # type: ignore[arg-type]

    def must_not_run() -> None:
        raise AssertionError("a waived control is not checked")

    ctx.run("us-west-2", "tag-rules", must_not_run)
    ctx.run("global", "cloudtrail", must_not_run)
    ctx.run("us-east-1", "tag-rules", lambda: ctx.record("us-east-1", "tag-rules", "IN_SYNC"))
    assert [(f.region, f.control, f.status, f.detail) for f in ctx.findings] == [
        (
            "us-west-2",
            "tag-rules",
            "EXCEPTED",
            "waived until 2026-12-31 by security-lead@msp.example: the client's SCPs enforce tags there (SEC-9)",
        ),
        (
            "global",
            "cloudtrail",
            "EXCEPTED",
            "waived until 2026-12-31 by security-lead@msp.example: the client's organization trail covers this "
            "account (SEC-10)",
        ),
        ("us-east-1", "tag-rules", "IN_SYNC", ""),
    ]
