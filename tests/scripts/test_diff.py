"""`vend diff` on real git histories: a temporary repository with the project's files, a
commit on main, a change on a branch, then `vend diff` (synthesizing only affected clients)."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scripts.cli import main

REPO = Path(__file__).resolve().parents[2]
PROJECT_FILES = ("app.py", "cdk.json", "baseline", "stacks", "overrides")
GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(repo: Path, *args: str) -> str:
    import os

    env = {**os.environ, **GIT_ENV}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's files committed on main, once per module."""
    repo = tmp_path_factory.mktemp("template") / "repo"
    repo.mkdir()
    for name in PROJECT_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, repo / name)
    (repo / ".gitignore").write_text("__pycache__/\ncdk.out/\n")
    git(repo, "init", "-q", "-b", "main")
    commit(repo, "baseline")
    return repo


@pytest.fixture
def repo(template_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the template repository on a pull-request branch, as the cwd."""
    dest = tmp_path / "repo"
    shutil.copytree(template_repo, dest, symlinks=True)
    git(dest, "checkout", "-q", "-b", "pr")
    monkeypatch.chdir(dest)
    return dest


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new))


def vend_diff(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any]:
    code = main(["diff", "--format", "json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


def client(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in report["clients"] if c["client"] == name)


def resources(stack: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Resource changes by construct name (logical id without CDK's hash)."""
    import re

    return {re.sub(r"[0-9A-F]{8}$", "", r["logical_id"]): r for r in stack["resources"]}


def stack(report_client: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in report_client["stacks"] if s["stack"] == name)


# --- the four reviewer stories from the issue ----------------------------------------------


def test_budget_change_modifies_only_that_clients_budget(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(repo / "overrides" / "brightmart.yaml", "monthly_limit_usd: 800", "monthly_limit_usd: 950")
    commit(repo, "brightmart: raise the budget")
    code, report = vend_diff(capsys)
    assert code == 1
    assert [c["client"] for c in report["clients"]] == ["brightmart"]
    bm = client(report, "brightmart")
    assert bm["reasons"] == ["override file changed"]
    assert bm["config"] == [{"field": "budget_limit_usd", "before": 800.0, "after": 950.0}]
    budget = resources(stack(bm, "vend-brightmart-global"))["Budget"]
    assert budget["action"] == "modified"
    assert budget["properties"] == [
        {"path": "Budget.BudgetLimit.Amount", "before": 800, "after": 950, "replaces": False}
    ]
    assert budget["security"] == []
    # Only the affected client (and the MSP side) were synthesized, on both sides.
    assert report["synthesized"]["head"] == [
        "vend-brightmart-eu-west-1",
        "vend-brightmart-global",
        "vend-msp-log-archive",
    ]
    assert report["synthesized"]["base"] == report["synthesized"]["head"]
    assert report["msp"] == []
    assert report["summary"]["security"] == 0


def test_adding_a_region_adds_a_regional_stack(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(repo / "overrides" / "brightmart.yaml", "regions: [eu-west-1]", "regions: [eu-west-1, eu-central-1]")
    commit(repo, "brightmart: add eu-central-1")
    code, report = vend_diff(capsys)
    assert code == 1
    bm = client(report, "brightmart")
    assert bm["config"] == [{"field": "regions", "before": ["eu-west-1"], "after": ["eu-west-1", "eu-central-1"]}]
    new = stack(bm, "vend-brightmart-eu-central-1")
    assert new["status"] == "added"
    assert (new["account"], new["region"]) == ("444455556666", "eu-central-1")
    added = resources(new)
    assert {r["action"] for r in added.values()} == {"added"}
    assert {"ConfigRecorder", "ConfigDeliveryChannel", "GuardDutyDetector", "TagRule"} <= set(added)
    assert added["GuardDutyDetector"]["type"] == "AWS::GuardDuty::Detector"
    # The home-region stack is untouched.
    assert "vend-brightmart-eu-west-1" not in {s["stack"] for s in bm["stacks"]}


def test_changing_the_boundary_affects_every_client_and_is_called_out_first(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(repo / "baseline" / "boundary.py", '"iam:AddUserToGroup",', '"iam:AddUserToGroup",\n"iam:UploadSSHPublicKey",')
    commit(repo, "boundary: deny service-specific credentials")
    code, report = vend_diff(capsys)
    assert code == 1
    assert [c["client"] for c in report["clients"]] == ["acme-health", "brightmart", "ledgerly"]
    for c in report["clients"]:
        assert c["reasons"] == ["baseline code changed (baseline/boundary.py)"]
        assert c["config"] == []
        policy = resources(stack(c, f"vend-{c['client']}-global"))["PermissionBoundaryPolicy"]
        assert policy["action"] == "modified"
        assert policy["security"] == ["boundary"]
        assert policy["policy_changes"] == [
            "PolicyDocument: ~ [DenyLongLivedCredentials] Action: +iam:UploadSSHPublicKey"
        ]
    assert report["summary"]["security"] == 3

    assert main(["diff", "--format", "markdown"]) == 1
    md = capsys.readouterr().out
    first_section = md.index("#### ⚠️ Security-sensitive changes")
    assert first_section < md.index("| client | why |") < md.index("<details>")
    assert "permission boundary" in md[first_section : md.index("| client | why |")]
    assert "`PolicyDocument: ~ [DenyLongLivedCredentials] Action: +iam:UploadSSHPublicKey`" in md


def test_adding_a_client_shows_its_stacks_trust_and_the_msp_side(
    repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (repo / "overrides" / "brightmart.yaml").read_text()
    text = text.replace("brightmart", "northwind").replace("444455556666", "121212121212")
    (repo / "overrides" / "northwind.yaml").write_text(text.replace("Brightmart Retail", "Northwind Traders"))
    commit(repo, "onboard northwind")
    code, report = vend_diff(capsys)
    assert code == 1
    nw = client(report, "northwind")
    assert nw["status"] == "added"
    assert nw["reasons"] == ["override file added"]
    assert {s["stack"]: s["status"] for s in nw["stacks"]} == {
        "vend-northwind-eu-west-1": "added",
        "vend-northwind-global": "added",
    }
    role = resources(stack(nw, "vend-northwind-global"))["MspRole"]
    assert role["action"] == "added"
    assert role["security"][0] == "trust"
    assert any("sts:ExternalId=northwind-9c27aa" in line for line in role["policy_changes"])
    # The MSP side lets the new account write its own prefix: bucket policy and key policy.
    (archive,) = report["msp"]
    msp = resources(archive)
    assert msp["CentralLogsPolicy"]["security"] == ["bucket-policy"]
    assert msp["CentralLogsKey"]["security"] == ["kms"]
    assert any("121212121212" in line for line in msp["CentralLogsPolicy"]["policy_changes"])
    assert any("121212121212" in line for line in msp["CentralLogsKey"]["policy_changes"])
    kinds = [s["security"] for s in _security_rows(report)]
    assert kinds == sorted(kinds, key=lambda k: ["trust", "boundary", "iam", "kms", "bucket-policy"].index(k[0]))


def _security_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    stacks = [s for c in report["clients"] for s in c["stacks"]] + report["msp"]
    rows = [r for s in stacks for r in s["resources"] if r["security"]]
    order = ["trust", "boundary", "iam", "kms", "bucket-policy"]
    return sorted(rows, key=lambda r: min(order.index(k) for k in r["security"]))


# --- replacement, scope and exit codes ----------------------------------------------------


def test_changing_budget_thresholds_replaces_the_budget(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Uncommitted changes in the working tree count too.
    edit(repo / "overrides" / "ledgerly.yaml", "thresholds_pct: [70, 90, 100, 120]", "thresholds_pct: [70, 100, 120]")
    code, report = vend_diff(capsys)
    assert code == 1
    budget = resources(stack(client(report, "ledgerly"), "vend-ledgerly-global"))["Budget"]
    assert budget["action"] == "replaced"
    assert budget["reason"] == "create-only Budget/BudgetName, NotificationsWithSubscribers changed"
    assert report["summary"]["replaced"] == 1
    assert main(["diff", "--format", "markdown"]) == 1
    assert "> **1 resource(s) will be replaced**" in capsys.readouterr().out


def test_profile_change_affects_only_clients_using_it(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(repo / "baseline" / "profiles" / "pci.yaml", 'maxCredentialUsageAge: "90"', 'maxCredentialUsageAge: "45"')
    commit(repo, "pci: 45 days")
    code, report = vend_diff(capsys)
    assert code == 1
    assert [c["client"] for c in report["clients"]] == ["ledgerly"]
    assert client(report, "ledgerly")["reasons"] == ["profile pci changed"]


def test_no_change_and_unrelated_change_exit_zero(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, report = vend_diff(capsys)
    assert (code, report["clients"], report["has_changes"]) == (0, [], False)
    (repo / "NOTES.md").write_text("not part of the baseline\n")
    commit(repo, "notes")
    code, report = vend_diff(capsys)
    assert (code, report["changed_files"], report["clients"]) == (0, ["NOTES.md"], [])
    assert report["synthesized"] == {}
    assert main(["diff", "--format", "markdown"]) == 0
    assert "no client is affected by the changed files" in capsys.readouterr().out


def test_comment_only_change_is_affected_but_unchanged(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(repo / "overrides" / "brightmart.yaml", "# Brightmart:", "# Brightmart (reviewed):")
    code, report = vend_diff(capsys)
    assert code == 0
    assert client(report, "brightmart")["status"] == "unchanged"


def test_exit_zero_flag_and_explicit_base(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit(repo / "overrides" / "brightmart.yaml", "monthly_limit_usd: 800", "monthly_limit_usd: 801")
    commit(repo, "one")
    assert vend_diff(capsys, "--exit-zero")[0] == 0
    code, report = vend_diff(capsys, "--base", "HEAD")
    assert (code, report["base_ref"], report["clients"]) == (0, "HEAD", [])


def test_invalid_head_or_unknown_ref_exit_2(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["diff", "--base", "no-such-ref"]) == 2
    assert "no-such-ref" in capsys.readouterr().err
    edit(repo / "overrides" / "brightmart.yaml", "engagement: monitoring", "engagement: monitor")
    assert main(["diff"]) == 2
    err = capsys.readouterr().err
    assert "synthesis of" in err and "engagement: 'monitor' is not one of" in err


def test_one_client_of_many_synthesizes_only_that_client(
    template_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "repo"
    shutil.copytree(template_repo, dest, symlinks=True)
    monkeypatch.chdir(dest)
    source = (dest / "overrides" / "brightmart.yaml").read_text()
    for i in range(150):
        slug, account = f"client-{i:03d}", f"{500000000000 + i:012d}"
        (dest / "overrides" / f"{slug}.yaml").write_text(
            source.replace("brightmart-9c27aa", f"{slug}-x")
            .replace("brightmart", slug)
            .replace("444455556666", account)
        )
    commit(dest, "150 more clients")
    git(dest, "checkout", "-q", "-b", "pr")
    edit(dest / "overrides" / "client-042.yaml", "monthly_limit_usd: 800", "monthly_limit_usd: 1200")
    started = time.monotonic()
    code, report = vend_diff(capsys)
    elapsed = time.monotonic() - started
    assert code == 1
    assert [c["client"] for c in report["clients"]] == ["client-042"]
    assert report["synthesized"]["head"] == [
        "vend-client-042-eu-west-1",
        "vend-client-042-global",
        "vend-msp-log-archive",
    ]
    assert elapsed < 30, f"vend diff took {elapsed:.1f}s for one client of 153"


# --- template comparison units ------------------------------------------------------------


def _tpl(**resources: dict[str, Any]) -> dict[str, Any]:
    return {"Resources": resources}


def test_replacement_comes_from_create_only_properties() -> None:
    from scripts.diff import compare_templates

    role = {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "a", "MaxSessionDuration": 3600}}
    renamed = {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "b", "MaxSessionDuration": 3600}}
    longer = {"Type": "AWS::IAM::Role", "Properties": {"RoleName": "a", "MaxSessionDuration": 7200}}
    (change,) = compare_templates(_tpl(R=role), _tpl(R=renamed))
    assert (change.action, change.reason) == ("replaced", "create-only RoleName changed")
    (change,) = compare_templates(_tpl(R=role), _tpl(R=longer))
    assert (change.action, change.security) == ("modified", ["iam"])
    (change,) = compare_templates(_tpl(R=role), _tpl(R={"Type": "AWS::IAM::User", "Properties": {}}))
    assert (change.action, change.reason) == ("replaced", "type AWS::IAM::Role -> AWS::IAM::User")


def test_a_resource_referencing_a_replaced_one_is_flagged() -> None:
    from scripts.diff import compare_templates

    def rule(name: str) -> dict[str, Any]:
        return {"Type": "AWS::Config::ConfigRule", "Properties": {"ConfigRuleName": name}}

    user = {"Type": "AWS::SSM::Parameter", "Properties": {"Value": {"Ref": "Rule"}}}
    changes = {c.logical_id: c for c in compare_templates(_tpl(Rule=rule("a"), P=user), _tpl(Rule=rule("b"), P=user))}
    assert changes["Rule"].action == "replaced"
    assert (changes["P"].action, changes["P"].reason) == ("modified", "references replaced Rule: gets its new id")


def test_trust_and_boundary_changes_on_a_role_are_classified() -> None:
    from scripts.diff import compare_templates

    def role(principal: str, boundary: str) -> dict[str, Any]:
        trust = {
            "Statement": [{"Sid": "T", "Effect": "Allow", "Action": "sts:AssumeRole", "Principal": {"AWS": principal}}]
        }
        return {
            "Type": "AWS::IAM::Role",
            "Properties": {"AssumeRolePolicyDocument": trust, "PermissionsBoundary": boundary},
        }

    (change,) = compare_templates(_tpl(R=role("arn:aws:iam::1:root", "b1")), _tpl(R=role("arn:aws:iam::2:root", "b2")))
    assert change.security == ["trust", "boundary"]
    assert change.policy_changes == [
        "AssumeRolePolicyDocument: ~ [T] Principal.AWS: -arn:aws:iam::1:root +arn:aws:iam::2:root",
        "PermissionsBoundary: b1 -> b2",
    ]


def test_committed_create_only_table_matches_cfn_lint() -> None:
    pytest.importorskip("cfnlint")
    from scripts.cfnspec import DATA_FILE, render

    assert DATA_FILE.read_text() == render(), "stale: python -m scripts.cfnspec > scripts/cfn_create_only.json"


def _cdk() -> Callable[..., subprocess.CompletedProcess[str]] | None:
    cdk = REPO / "node_modules" / ".bin" / "cdk"
    if not cdk.exists():
        return None

    def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        from scripts.synth import node_path_env

        env = node_path_env()
        env["CDK_DISABLE_VERSION_CHECK"] = "1"
        return subprocess.run([str(cdk), *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)

    return run


def test_replacement_agrees_with_cdk_diff(tmp_path: Path) -> None:
    """The CDK CLI's own template diff (`cdk diff --template`, offline) also says the budget
    is replaced when its thresholds change."""
    cdk = _cdk()
    if cdk is None:
        pytest.skip("CDK CLI not installed (npm ci)")
    from scripts.diff import compare_templates
    from scripts.synth import synthesize

    over = tmp_path / "overrides"
    over.mkdir()
    src = (REPO / "overrides" / "ledgerly.yaml").read_text()
    (over / "ledgerly.yaml").write_text(src)
    synthesize(over, tmp_path / "base.out", client="ledgerly", validation=False, quiet=True)
    (over / "ledgerly.yaml").write_text(src.replace("[70, 90, 100, 120]", "[70, 100, 120]"))
    synthesize(over, tmp_path / "head.out", client="ledgerly", validation=False, quiet=True)
    name = "vend-ledgerly-global"
    base_tpl = tmp_path / "base.out" / f"{name}.template.json"
    proc = cdk("diff", "--app", str(tmp_path / "head.out"), "--template", str(base_tpl), name, cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr
    out = proc.stdout + proc.stderr
    budget_lines = [line for line in out.splitlines() if "AWS::Budgets::Budget" in line]
    assert budget_lines and "replace" in budget_lines[0], out
    mine = compare_templates(
        json.loads(base_tpl.read_text()), json.loads((tmp_path / "head.out" / f"{name}.template.json").read_text())
    )
    assert [c.action for c in mine if c.type == "AWS::Budgets::Budget"] == ["replaced"]
