"""The StackSets layout (scripts/stackset_layout.py): each stack instance, its parameters
filled in by CloudFormation, is exactly the template direct mode deploys for that client and
region; clients of one shape share stack sets; a change moves only the stacks it must."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from baseline.adoption import without_imported
from baseline.model import EffectiveClient
from baseline.portfolio import load_portfolio
from scripts.shapes import STACK_SET_FIELDS
from scripts.stackset_layout import (
    NUMBER_PARAMETERS,
    Layout,
    LayoutError,
    parametrize,
    read_layout,
    resolve,
)
from scripts.synth import build_assembly
from tests.scripts.test_synth import CLIENTS, LONG

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Layout, Path]:
    root = tmp_path_factory.mktemp("layout")
    overrides = root / "overrides"
    overrides.mkdir()
    for name, text in CLIENTS.items():
        (overrides / f"{name}.yaml").write_text(text, encoding="utf-8")
    portfolio, problems = load_portfolio(overrides)
    assert portfolio is not None, problems
    build_assembly(portfolio, overrides, root / "cdk.out", cache_dir=root / "cache")
    return root / "cdk.out", read_layout(root / "cdk.out"), overrides


def _body(template: dict[str, Any]) -> dict[str, Any]:
    """What a stack runs: everything but the description, parameters and the hash output, and
    without adopted resources, which direct mode imports and StackSets cannot (baseline/adoption.py)."""
    return {k: v for k, v in without_imported(template).items() if k not in ("Description", "Parameters", "Outputs")}


def _number(text: str) -> int | float:
    value = float(text)
    return int(value) if value.is_integer() else value


def test_every_instance_resolves_to_the_template_direct_mode_deploys(built: tuple[Path, Layout, Path]) -> None:
    assembly, layout, _ = built
    manifest = json.loads((assembly / "manifest.json").read_text())["artifacts"]
    checked = 0
    for inst in layout.instances:
        template = json.loads(layout.templates[inst.stack_set])
        assert sorted(template["Parameters"]) == sorted(inst.parameters)
        for region, stack_name in zip(inst.regions, inst.direct_stacks, strict=True):
            pseudo = {"AWS::Region": region, "AWS::AccountId": inst.account_id}
            values: dict[str, Any] = {
                k: _number(v) if k in NUMBER_PARAMETERS else v for k, v in inst.parameters.items()
            } | pseudo
            direct = json.loads((assembly / manifest[stack_name]["properties"]["templateFile"]).read_text())
            assert _body(resolve(template, values)) == _body(resolve(direct, pseudo)), (inst.client, region)
            if inst.client == LONG and region == "us-east-1":  # inherited.config_recorder: {us-east-1: adopt}
                kinds = {r["Type"] for r in template["Resources"].values()}
                assert "AWS::Config::ConfigurationRecorder" not in kinds
                assert "AWS::Config::ConfigurationRecorder" in {r["Type"] for r in direct["Resources"].values()}
            checked += 1
    assert checked == 6 + 3 + 3  # every stack of every client
    assert not layout.unsupported


def test_clients_of_one_shape_share_stack_sets_and_templates_hold_no_client_value(
    built: tuple[Path, Layout, Path],
) -> None:
    _, layout, _ = built
    sets = {c: sorted(i.stack_set for i in layout.instances if i.client == c) for c in CLIENTS}
    assert sets["twin-one"] == sets["twin-two"]
    assert not set(sets["twin-one"]) & set(sets[LONG])
    # A region with a waived control (sa-east-1, GuardDuty) runs another template than the others.
    long_regional = {i.stack_set: i.regions for i in layout.instances if i.client == LONG and "regional" in i.stack_set}
    assert ("sa-east-1",) in long_regional.values() and len(long_regional) >= 2
    text = "".join(layout.templates.values())
    for value in ("twin-one", "twin-two", "000000000101", "Twin One", "ops@one.example", "eu-central-1", "vendproto"):
        assert value not in text


def test_a_change_moves_only_the_stacks_whose_template_depends_on_it(
    built: tuple[Path, Layout, Path], tmp_path: Path
) -> None:
    _, layout, overrides = built
    before = {(i.client, i.stack_set) for i in layout.instances}
    work = tmp_path / "overrides"
    shutil.copytree(overrides, work)
    twin = work / "twin-two.yaml"
    twin.write_text(
        twin.read_text().replace("monthly_limit_usd: 99.5", "monthly_limit_usd: 99.5\n  thresholds_pct: [90]")
    )
    twin.write_text(
        twin.read_text().replace("regions: [eu-central-1, eu-west-2]", "regions: [eu-central-1, eu-west-2, eu-west-3]")
    )
    portfolio, problems = load_portfolio(work)
    assert portfolio is not None, problems
    build_assembly(portfolio, work, tmp_path / "cdk.out", cache_dir=tmp_path / "cache")
    after = read_layout(tmp_path / "cdk.out")
    moved = {s for c, s in before if c == "twin-two"} - {i.stack_set for i in after.instances if i.client == "twin-two"}
    assert len(moved) == 1 and next(iter(moved)).startswith("vend-global-")  # thresholds: the budget
    # A new region joins the stack set of the client's other non-home regions.
    regional = next(i for i in after.instances if i.client == "twin-two" and "eu-west-2" in i.regions)
    assert (
        regional.regions == ("eu-west-2", "eu-west-3")
        and (
            "twin-two",
            regional.stack_set,
        )
        in before
    )


def test_every_field_of_the_effective_config_is_classified() -> None:
    assert set(STACK_SET_FIELDS) == set(EffectiveClient.model_fields)


def test_parametrize_escapes_literal_variables_and_refuses_a_client_value_in_a_key() -> None:
    sentinels = {"client": "vendproto00001", "region0": "mx-central-1", "account": "900001000000"}
    template = {
        "Resources": {
            "R": {
                "Type": "AWS::SSM::Parameter",
                "Properties": {
                    "Name": "vendproto00001",
                    "Value": "${not-a-variable} vendproto00001 in mx-central-1",
                    "Arn": {"Fn::Sub": "arn:${AWS::Partition}:iam::900001000000:role/vendproto00001"},
                },
            }
        }
    }
    text, used = parametrize(
        json.dumps(template), sentinels, own_region="region0", home_region="region0", kind="regional"
    )
    props = json.loads(text)["Resources"]["R"]["Properties"]
    assert used == ("Client",)
    assert props["Name"] == {"Ref": "Client"}
    assert props["Value"] == {"Fn::Sub": "${!not-a-variable} ${Client} in ${AWS::Region}"}
    assert props["Arn"] == {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${Client}"}
    assert (
        resolve(props["Value"], {"Client": "acme", "AWS::Region": "us-east-1"}) == "${not-a-variable} acme in us-east-1"
    )

    template["Resources"]["R"]["Properties"]["Tags"] = {"vendproto00001": "x"}
    with pytest.raises(LayoutError, match="a client value in a key"):
        parametrize(json.dumps(template), sentinels, own_region="region0", home_region="region0", kind="regional")


def test_a_baseline_change_updates_stack_sets_in_place(built: tuple[Path, Layout, Path], tmp_path: Path) -> None:
    """New defaults (another GuardDuty frequency, other budget thresholds, three log
    shards) change templates, never which stack set a client's stack is in."""
    _, layout, overrides = built
    defaults = (REPO / "baseline" / "defaults.yaml").read_text()
    assert "finding_publishing_frequency: SIX_HOURS" in defaults and "shards: 1" in defaults
    changed = (
        defaults.replace("finding_publishing_frequency: SIX_HOURS", "finding_publishing_frequency: FIFTEEN_MINUTES")
        .replace("budget_thresholds_pct: [80, 100]", "budget_thresholds_pct: [75, 90, 100]")
        .replace("shards: 1", "shards: 3")
    )
    assert changed.count("FIFTEEN_MINUTES") == 1 and "[75, 90, 100]" in changed
    (tmp_path / "defaults.yaml").write_text(changed)
    portfolio, problems = load_portfolio(overrides, defaults_file=tmp_path / "defaults.yaml")
    assert portfolio is not None, problems
    build_assembly(portfolio, overrides, tmp_path / "cdk.out", cache_dir=tmp_path / "cache")
    after = read_layout(tmp_path / "cdk.out")
    assert {(i.client, i.stack_set, i.regions) for i in after.instances} == {
        (i.client, i.stack_set, i.regions) for i in layout.instances
    }
    assert after.templates != layout.templates
    buckets = {i.client: i.parameters.get("LogBucket") for i in after.instances if "LogBucket" in i.parameters}
    assert buckets["twin-one"] != buckets["twin-two"], buckets  # other shards, one stack set
