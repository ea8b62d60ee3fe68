"""Adopted resources are in the client's stack, ready for import (baseline/adoption.py): the
recorder, channel and detector an override adopts keep the account's names, are retained,
marked for import and protected by the stack policy; vend's own are as before. The trail an
override adopts stays out of the stack (CloudFormation could import it; vend's template could
never apply to it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from baseline.adoption import IMPORT_METADATA_KEY, without_imported
from baseline.portfolio import load_portfolio
from baseline.stack_policy import STACK_POLICY_METADATA_KEY
from stacks.portfolio import build_app

REPO = Path(__file__).resolve().parents[2]
FLAGS = json.loads((REPO / "cdk.json").read_text())["context"]
ADOPT = """inherited:
  config_recorder: {us-east-1: adopt}
  config_delivery_channel: {us-east-1: adopt}
  guardduty_detector: {us-east-1: adopt}
  cloudtrail: adopt
"""


@pytest.fixture(scope="module")
def templates(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    overrides = tmp_path_factory.mktemp("overrides")
    shutil.copy(REPO / "overrides" / "acme-health.yaml", overrides)
    with (overrides / "acme-health.yaml").open("a") as f:
        f.write(ADOPT)
    portfolio, problems = load_portfolio(overrides)
    assert portfolio is not None, problems
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk")), context=FLAGS, analytics_reporting=False)
    build_app(app, portfolio)
    assembly = app.synth()
    return {s.stack_name: s.template for s in assembly.stacks}


def _by_type(template: dict[str, Any], rtype: str) -> tuple[str, dict[str, Any]]:
    (found,) = [(lid, r) for lid, r in template["Resources"].items() if r["Type"] == rtype]
    return found


def test_adopted_resources_are_retained_marked_and_keep_the_accounts_names(
    templates: dict[str, dict[str, Any]],
) -> None:
    home = templates["vend-acme-health-us-east-1"]
    protected = json.dumps(home["Metadata"][STACK_POLICY_METADATA_KEY])
    for rtype, setting in (
        ("AWS::Config::ConfigurationRecorder", "config_recorder"),
        ("AWS::Config::DeliveryChannel", "config_delivery_channel"),
        ("AWS::GuardDuty::Detector", "guardduty_detector"),
    ):
        lid, res = _by_type(home, rtype)
        assert res["DeletionPolicy"] == res["UpdateReplacePolicy"] == "Retain", rtype
        assert res["Metadata"][IMPORT_METADATA_KEY] == setting
        assert "Name" not in res["Properties"]  # the account's own name stays
        assert lid in protected  # Update:Replace/Delete need an explicit override, like vend's own
    # The baseline's values all the same: CloudFormation applies them once the resource is imported.
    _, channel = _by_type(home, "AWS::Config::DeliveryChannel")
    assert channel["Properties"]["S3BucketName"] == "vend-logs-210987654321-us-east-1"
    # Not adopted in us-west-2: vend's own, by vend's names, deleted with the stack as before.
    west = templates["vend-acme-health-us-west-2"]
    _, recorder = _by_type(west, "AWS::Config::ConfigurationRecorder")
    assert recorder["Properties"]["Name"] == "vend-recorder" and "DeletionPolicy" not in recorder
    assert IMPORT_METADATA_KEY not in (recorder.get("Metadata") or {})


def test_an_adopted_trail_stays_out_and_stack_sets_leave_imports_out(templates: dict[str, dict[str, Any]]) -> None:
    assert not [
        r for r in templates["vend-acme-health-global"]["Resources"].values() if r["Type"] == "AWS::CloudTrail::Trail"
    ]
    home = without_imported(templates["vend-acme-health-us-east-1"])
    kinds = {r["Type"] for r in home["Resources"].values()}
    assert not kinds & {
        "AWS::Config::ConfigurationRecorder",
        "AWS::Config::DeliveryChannel",
        "AWS::GuardDuty::Detector",
    }
    # Nothing left depends on what was left out (the rules depended on the recorder).
    assert not [r for r in home["Resources"].values() if r.get("DependsOn")]
