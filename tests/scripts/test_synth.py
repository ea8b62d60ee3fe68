"""Synthesis by client shape (scripts/synth.py, scripts/shapes.py) against the plain CDK app.

A varied portfolio is synthesized both ways; every stack of every client must come out the
same: same artifacts, same templates. The portfolio is chosen to break a naive text
substitution: the longest slug, a display name with quotes and non-ASCII letters, budgets
that JavaScript and Python write differently, many regions, exceptions and inherited
resources per region, and two clients of one shape.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from baseline.portfolio import load_portfolio
from scripts.synth import build_assembly, synthesize_direct

LONG = "a-very-long-client-slug-32-chars"  # the longest slug the model allows
CLIENTS = {
    LONG: f"""\
client: {LONG}
display_name: 'Zoë "Quoted" & Sons: 100% <Ltd>'
account_id: "000000000017"
home_region: eu-west-1
regions: [eu-west-1, us-east-1, ap-southeast-2, sa-east-1, ca-central-1]
engagement: managed
access:
  deploy_role_arn: arn:aws:iam::000000000017:role/VendDeploy
  external_id: "x+=,.@:/-Zoe_{LONG}"
profiles: [hipaa, pci]
budget:
  monthly_limit_usd: 1234567.25
  thresholds_pct: [10, 50, 90, 100]
  notify: [a@zoe.example, b.c+d@sub.zoe.example, finops@msp.example]
tags:
  required: [Owner, CostCenter, Environment, App, Team, Tier, Data]
guardduty:
  finding_publishing_frequency: ONE_HOUR
  features: {{runtime_monitoring: true}}
inherited:
  config_recorder: {{us-east-1: adopt}}
  guardduty_detector: replace
exceptions:
  - control: guardduty
    regions: [sa-east-1]
    reason: the client's SOC runs its own detector there (SEC-1)
    approver: security-lead@msp.example
    expires: 2099-12-31
  - control: config-rules
    rules: [restricted-ssh]
    reason: bastion hosts behind the client VPN (SEC-2)
    approver: security-lead@msp.example
    expires: 2099-12-31
""",
    # Two clients of one shape: rendered from one prototype.
    "twin-one": """\
client: twin-one
display_name: Twin One
account_id: "000000000101"
home_region: us-east-1
regions: [us-east-1, us-west-2]
engagement: monitoring
access:
  deploy_role_arn: arn:aws:iam::000000000101:role/VendDeploy
  external_id: twin-one-1
budget:
  monthly_limit_usd: 1000000
  notify: [ops@one.example]
""",
    "twin-two": """\
client: twin-two
display_name: Twin Two
account_id: "000000000202"
home_region: eu-central-1
regions: [eu-central-1, eu-west-2]
engagement: monitoring
access:
  deploy_role_arn: arn:aws:iam::000000000202:role/VendDeploy
  external_id: twin-two-2
budget:
  monthly_limit_usd: 99.5
  notify: [ops@two.example]
""",
}


def _templates(outdir: Path) -> dict[str, Any]:
    """Every stack artifact and its parsed template, by artifact id."""
    manifest = json.loads((outdir / "manifest.json").read_text())
    out: dict[str, Any] = {}
    for artifact_id, artifact in manifest["artifacts"].items():
        if artifact["type"] != "aws:cloudformation:stack":
            continue
        props = dict(artifact["properties"])
        props.pop("validateOnSynth", None)
        template = json.loads((outdir / props["templateFile"]).read_text())
        out[artifact_id] = {"environment": artifact["environment"], "properties": props, "template": template}
    return out


@pytest.fixture(scope="module")
def overrides(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("shapes") / "overrides"
    root.mkdir()
    for name, text in CLIENTS.items():
        (root / f"{name}.yaml").write_text(text, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def direct(overrides: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    outdir = tmp_path_factory.mktemp("direct") / "cdk.out"
    assert synthesize_direct(overrides, outdir, validation=False, quiet=True) == 0
    return _templates(outdir)


def test_shapes_render_exactly_what_the_cdk_builds(overrides: Path, direct: dict[str, Any], tmp_path: Path) -> None:
    portfolio, problems = load_portfolio(overrides)
    assert portfolio is not None, problems
    outdir = tmp_path / "cdk.out"
    stats = build_assembly(portfolio, overrides, outdir, cache_dir=tmp_path / "cache")
    assert stats.shapes == 2 and stats.prototypes_synthesized == 2 and stats.direct_clients == 0
    rendered = _templates(outdir)
    assert sorted(rendered) == sorted(direct)
    assert len(direct) == 2 + (1 + 5) + (1 + 2) * 2  # MSP side (2 stacks), then each client: global + regional
    for artifact_id, expected in direct.items():
        assert rendered[artifact_id] == expected, artifact_id
    # Nothing of a prototype is left in what a client gets.
    text = "".join(p.read_text() for p in outdir.glob("*.template.json"))
    assert "vendproto" not in text and "prototype.example" not in text and "VendProto" not in text


def test_a_warm_cache_builds_nothing_and_a_new_shape_builds_one_prototype(overrides: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    portfolio, _ = load_portfolio(overrides)
    assert portfolio is not None
    build_assembly(portfolio, overrides, tmp_path / "first", cache_dir=cache)

    again = build_assembly(portfolio, overrides, tmp_path / "second", cache_dir=cache)
    assert (again.prototypes_synthesized, again.processes, again.msp_cached) == (0, 0, True)
    assert _templates(tmp_path / "first") == _templates(tmp_path / "second")

    # Entries built without aws-cdk-lib's validator never stand in for a validated synthesis.
    validated = build_assembly(portfolio, overrides, tmp_path / "validated", validation=True, cache_dir=cache)
    assert (validated.prototypes_synthesized, validated.msp_cached) == (2, False)
    assert _templates(tmp_path / "validated") == _templates(tmp_path / "first")

    # A value that is not part of the shape (the budget) renders from the cached prototype.
    changed = tmp_path / "changed"
    shutil.copytree(overrides, changed)
    twin = changed / "twin-two.yaml"
    twin.write_text(twin.read_text().replace("99.5", "250"))
    portfolio, _ = load_portfolio(changed)
    assert portfolio is not None
    stats = build_assembly(portfolio, changed, tmp_path / "third", cache_dir=cache)
    assert stats.prototypes_synthesized == 0
    budgets = [
        r["Properties"]["Budget"]["BudgetLimit"]["Amount"]
        for r in _templates(tmp_path / "third")["vend-twin-two-global"]["template"]["Resources"].values()
        if r["Type"] == "AWS::Budgets::Budget"
    ]
    assert budgets == [250]

    # A new engagement is a new shape: one prototype through the CDK, the rest from the cache.
    twin.write_text(twin.read_text().replace("engagement: monitoring", "engagement: managed"))
    portfolio, _ = load_portfolio(changed)
    assert portfolio is not None
    stats = build_assembly(portfolio, changed, tmp_path / "fourth", cache_dir=cache)
    assert (stats.shapes, stats.prototypes_synthesized) == (3, 1)


def test_only_the_changed_client_is_written_again(overrides: Path, tmp_path: Path) -> None:
    work = tmp_path / "overrides"
    shutil.copytree(overrides, work)
    portfolio, _ = load_portfolio(work)
    assert portfolio is not None
    outdir, cache = tmp_path / "cdk.out", tmp_path / "cache"
    first = build_assembly(portfolio, work, outdir, cache_dir=cache)
    assert first.rendered == 3
    before = {p.name: p.stat().st_mtime_ns for p in outdir.glob("*.template.json")}
    expected = _templates(outdir)

    twin = work / "twin-one.yaml"
    twin.write_text(twin.read_text().replace("1000000", "2000000"))
    portfolio, _ = load_portfolio(work)
    assert portfolio is not None
    second = build_assembly(portfolio, work, outdir, cache_dir=cache)
    assert second.rendered == 1
    after = {p.name: p.stat().st_mtime_ns for p in outdir.glob("*.template.json")}
    touched = {name for name in before if after[name] != before[name]}
    assert touched == {"vend-twin-one-global.template.json"}  # not its regional stacks, nor the MSP side
    got = _templates(outdir)
    assert got["vend-twin-two-global"] == expected["vend-twin-two-global"]
    assert got["vend-twin-one-global"] != expected["vend-twin-one-global"]

    # A file edited by hand is not vouched for by the index: it is written again.
    path = outdir / "vend-twin-two-us-west-2.template.json"
    if not path.exists():
        path = next(outdir.glob("vend-twin-two-eu-*.template.json"))
    path.write_text(path.read_text().replace("vend", "VEND", 1))
    third = build_assembly(portfolio, work, outdir, cache_dir=cache)
    assert third.rendered == 1
    assert _templates(outdir) == got


def test_an_unchanged_synthesis_leaves_the_assembly_and_layout_as_they_are(overrides: Path, tmp_path: Path) -> None:
    work = tmp_path / "overrides"
    shutil.copytree(overrides, work)
    outdir, cache = tmp_path / "cdk.out", tmp_path / "cache"
    portfolio, _ = load_portfolio(work)
    assert portfolio is not None
    build_assembly(portfolio, work, outdir, cache_dir=cache)
    layout_file = outdir / "stacksets.json"
    written = layout_file.stat().st_mtime_ns
    kept = ["manifest.json", ".vend-render.json"]
    before = {name: (outdir / name).stat().st_mtime_ns for name in kept}

    build_assembly(portfolio, work, outdir, cache_dir=cache)  # nothing changed: nothing written again
    assert layout_file.stat().st_mtime_ns == written
    assert {name: (outdir / name).stat().st_mtime_ns for name in kept} == before

    # A manifest edited by hand is not vouched for: it is written again, as synthesized.
    manifest = (outdir / "manifest.json").read_text()
    (outdir / "manifest.json").write_text("{}")
    build_assembly(portfolio, work, outdir, cache_dir=cache)
    assert (outdir / "manifest.json").read_text() == manifest

    twin = work / "twin-one.yaml"
    twin.write_text(twin.read_text().replace("1000000", "2000000"))
    portfolio, _ = load_portfolio(work)
    assert portfolio is not None
    build_assembly(portfolio, work, outdir, cache_dir=cache)
    assert layout_file.stat().st_mtime_ns != written
    # What it holds now is what a synthesis into an empty directory writes.
    build_assembly(portfolio, work, tmp_path / "fresh", cache_dir=cache)
    assert layout_file.read_text() == (tmp_path / "fresh" / "stacksets.json").read_text()
    assert "2000000" in layout_file.read_text()  # the new budget, a parameter of the client's instance


def test_vend_synth_says_what_it_built_and_writes_nothing_for_bad_input(
    overrides: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from scripts.cli import main

    monkeypatch.setenv("VEND_CACHE_DIR", str(tmp_path / "cache"))
    assert main(["synth", "--overrides", str(overrides), "--output", str(tmp_path / "good")]) == 0
    out = capsys.readouterr().out
    assert "synthesized 14 stacks of 3 client(s)" in out and "2 shape(s)" in out

    bad = tmp_path / "bad"
    shutil.copytree(overrides, bad)
    (bad / "twin-one.yaml").write_text((bad / "twin-one.yaml").read_text().replace('"000000000101"', "000000000101"))
    assert main(["synth", "--overrides", str(bad), "--output", str(tmp_path / "bad.out")]) == 2
    err = capsys.readouterr().err
    assert "twin-one.yaml:3:" in err and "Traceback" not in err
    assert not (tmp_path / "bad.out").exists()
