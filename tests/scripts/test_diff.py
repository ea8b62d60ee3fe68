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
# scripts/: each side synthesizes with its own checkout's scripts.synth (shapes, rendering).
PROJECT_FILES = ("app.py", "cdk.json", "baseline", "stacks", "scripts", "overrides")
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
    (repo / ".gitignore").write_text("__pycache__/\ncdk.out/\n.vend-cache/\n")
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


def _client_stacks(names: list[str]) -> list[str]:
    return [n for n in names if not n.startswith("vend-msp-")]


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
    # the MSP side (vend-msp-*: the log archive, the StackSets admin) always comes along
    assert _client_stacks(report["synthesized"]["head"]) == ["vend-brightmart-eu-west-1", "vend-brightmart-global"]
    assert "vend-msp-log-archive" in report["synthesized"]["head"]
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
    # the module that holds the boundary's statements (boundary.py, or the policies it imports)
    (source,) = [p for p in sorted((repo / "baseline").glob("*.py")) if '"iam:AddUserToGroup",' in p.read_text()]
    edit(source, '"iam:AddUserToGroup",', '"iam:AddUserToGroup",\n"iam:UploadSSHPublicKey",')
    commit(repo, "boundary: deny service-specific credentials")
    code, report = vend_diff(capsys)
    assert code == 1
    assert [c["client"] for c in report["clients"]] == ["acme-health", "brightmart", "ledgerly"]
    for c in report["clients"]:
        assert c["reasons"] == [f"baseline code changed (baseline/{source.name})"]
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
    # the MSP side (vend-msp-*: the log archive, the StackSets admin) always comes along
    assert _client_stacks(report["synthesized"]["head"]) == ["vend-client-042-eu-west-1", "vend-client-042-global"]
    assert "vend-msp-log-archive" in report["synthesized"]["head"]
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


# --- synthesis like vend synth/deploy, and what counts as baseline code -----------------------


def test_template_rendering_scripts_count_as_baseline_code() -> None:
    from scripts.diff import affected_clients, is_code

    for path in ("scripts/synth.py", "scripts/shapes.py", "scripts/assembly.py", "scripts/render.py"):
        assert is_code(path), path
    assert is_code("baseline/boundary.py") and is_code("stacks/client.py") and is_code("app.py")
    assert not is_code("scripts/drift.py") and not is_code("README.md") and not is_code("tests/test_x.py")
    clients = {"a": [], "b": ["hipaa"]}
    reasons = affected_clients(["scripts/shapes.py", "NOTES.md"], clients, clients, "overrides")
    assert reasons == {
        "a": ["baseline code changed (scripts/shapes.py)"],
        "b": ["baseline code changed (scripts/shapes.py)"],
    }


def test_both_sides_synthesize_through_scripts_synth(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A change to scripts/shapes.py affects every client, and each side is synthesized by its
    own checkout's scripts.synth.synthesize: the shape cache gets one entry set per code version."""
    edit(repo / "scripts" / "shapes.py", '"""Client *shapes*', '"""Client *shapes* (reviewed)')
    commit(repo, "shapes: docstring")
    code, report = vend_diff(capsys)
    assert [c["client"] for c in report["clients"]] == ["acme-health", "brightmart", "ledgerly"]
    assert {tuple(c["reasons"]) for c in report["clients"]} == {("baseline code changed (scripts/shapes.py)",)}
    assert (code, {c["status"] for c in report["clients"]}) == (0, {"unchanged"})  # same templates
    # synthesize() keys its cache by the code's hash: base and head code differ, two key folders
    assert len(list((repo / ".vend-cache" / "synth").iterdir())) == 2


def test_overrides_outside_the_project_is_an_error(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "elsewhere"
    shutil.copytree(repo / "overrides", outside)
    assert main(["diff", "--overrides", str(outside)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"vend diff: the override folder {outside.resolve()} is outside the project {repo.resolve()}: vend diff "
        "compares the override files git tracks in the project; pass --overrides DIR inside it (or --project)\n"
    )
    assert main(["diff", "--overrides", "no-such-folder"]) == 2
    assert "no override folder no-such-folder in the project, on either side" in capsys.readouterr().err


def test_write_renders_the_same_diff_in_other_formats(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    edit(repo / "overrides" / "brightmart.yaml", "monthly_limit_usd: 800", "monthly_limit_usd: 950")
    code = main(["diff", "--format", "markdown", "--write", f"json={tmp_path / 'd.json'}"])
    assert code == 1
    assert capsys.readouterr().out.startswith("### vend diff: 1 client(s) affected")
    assert json.loads((tmp_path / "d.json").read_text())["clients"][0]["client"] == "brightmart"


# --- Markdown: escaped, grouped, bounded ------------------------------------------------------


def _report(**clients: Any) -> Any:
    from scripts.diff import DiffReport

    return DiffReport(base_ref="main", base_sha="0123456789abcdef", changed_files=["x"], clients=list(clients.values()))


def _table_rows_are_whole(md: str) -> None:
    """Every table row has as many cells as its header: nothing broke a row."""
    import re

    def cells(line: str) -> int:
        return len(re.findall(r"(?<!\\)\|", line)) - 1

    header = None
    for line in md.splitlines():
        if line.startswith("|"):
            if header is None:
                header = cells(line)
            assert cells(line) == header, line
        else:
            header = None


def test_markdown_escapes_everything_from_files_and_templates() -> None:
    from scripts.diff import ClientDiff, ConfigChange, PropertyChange, ResourceChange, StackDiff, render_markdown

    hostile = "Acme | Health\n<!-- hidden"
    res = ResourceChange(
        "Topic1234ABCD",
        "AWS::SNS::Topic",
        "modified",
        [PropertyChange("DisplayName", "Acme Health", hostile)],
        reason="`x` <b>y</b> [link](http://evil.example)",
    )
    cd = ClientDiff(
        "acme-health",
        "changed",
        ["override file changed"],
        [ConfigChange("display_name", "Acme Health", hostile)],
        [StackDiff("vend-acme-health-global", "acme-health", "111122223333", "us-east-1", "modified", [res])],
        note="base: 1 validation error(s), first: x.yaml:1:1: display_name: `a|b` <!--",
    )
    md = render_markdown(_report(a=cd))
    # `<!--` at the start of a line opens an HTML block that hides the rest of the comment on
    # GitHub; inside a one-line code span it is text. Outside code it is backslash-escaped.
    assert not any(line.startswith("<!") for line in md.splitlines())
    for line in md.splitlines():
        for at in [i for i in range(len(line)) if line.startswith("<!--", i)]:
            assert line[:at].count("`") % 2 == 1 or line[at - 1] == "\\", line
    assert "<b>y</b>" not in md and "[link](" not in md  # no HTML, no link: text
    assert "_\\`x\\` \\<b\\>y\\</b\\> \\[link\\](http://evil.example)_ |" in md
    _table_rows_are_whole(md)
    assert "| display\\_name | `Acme Health` | `Acme \\| Health⏎<!-- hidden` |" in md
    assert "_base: 1 validation error(s), first: x.yaml:1:1: display\\_name: \\`a\\|b\\` \\<\\!--_" in md


def test_markdown_code_spans_survive_backticks() -> None:
    from scripts.diff import md_code

    assert md_code("plain") == "`plain`"
    assert md_code("a`b") == "``a`b``"
    assert md_code("`x`") == "`` `x` ``"
    assert md_code("a|b") == "`a\\|b`" and md_code("a|b", in_table=False) == "`a|b`"
    assert md_code("one\ntwo\r\nthree\x00") == "`one⏎two⏎three `"


def test_new_exception_is_shown_in_full(capsys: pytest.CaptureFixture[str]) -> None:
    from scripts.diff import ClientDiff, ConfigChange, render_markdown, render_text

    entry = {
        "control": "guardduty",
        "regions": ["eu-central-1"],
        "rules": None,
        "reason": "the client's SOC runs its own detector in eu-central-1 under contract SEC-123-2026",
        "approver": "security-lead@msp.example",
        "expires": "2026-12-31",
    }
    cd = ClientDiff("acme-health", "changed", ["override file changed"], [ConfigChange("exceptions", [], [entry])])
    line = (
        "+ guardduty in eu-central-1 until 2026-12-31, approved by security-lead@msp.example: the client's SOC "
        "runs its own detector in eu-central-1 under contract SEC-123-2026"
    )
    assert f"    {line}" in render_text(_report(a=cd)).splitlines()
    assert f"| exceptions | `(none)` | `{line}` |" in render_markdown(_report(a=cd))


def test_identical_changes_are_one_entry_and_the_size_is_capped() -> None:
    from scripts.diff import (
        GITHUB_COMMENT_LIMIT,
        ClientDiff,
        PropertyChange,
        ResourceChange,
        StackDiff,
        render_markdown,
    )

    def client(i: int, statement: str = "Deny iam:UploadSSHPublicKey") -> ClientDiff:
        slug, account = f"client-{i:03d}", f"{300000000000 + i}"
        policy = ResourceChange(
            "PermissionBoundaryPolicyA1B2C3D4",
            "AWS::IAM::ManagedPolicy",
            "modified",
            [PropertyChange("PolicyDocument.Statement[3]", None, statement)],
            security=["boundary"],
            policy_changes=[f"PolicyDocument: + {statement} on arn:aws:iam::{account}:user/*"],
        )
        stack = StackDiff(f"vend-{slug}-global", slug, account, "us-east-1", "modified", [policy])
        return ClientDiff(slug, "changed", ["baseline code changed (baseline/policies.py)"], [], [stack])

    clients = {f"c{i}": client(i) for i in range(150)}
    clients["odd"] = client(150, "Deny iam:CreateAccessKey")
    md = render_markdown(_report(**clients))
    assert len(md) < GITHUB_COMMENT_LIMIT
    assert md.count("<details>") == 2  # 150 identical clients, and the one that differs
    assert "150 clients: client-000, client-001" in md
    assert "`vend-<client>-global` (`<account>`, us-east-1)" in md
    assert "arn:aws:iam::<account>:user/*" in md
    for i in range(151):
        assert f"client-{i:03d}" in md
    _table_rows_are_whole(md)

    # all different: too long for one comment, shortened with a note; every client still named
    many = {f"c{i}": client(i, f"Deny iam:Action{i} " + "x" * 400) for i in range(150)}
    md = render_markdown(_report(**many))
    assert len(md) < GITHUB_COMMENT_LIMIT
    assert "Shortened to stay under GitHub's 65,536-character comment limit" in md
    assert "`vend diff --format json`" in md and "`vend-diff` artifact" in md
    for i in range(150):
        assert f"client-{i:03d}" in md
    _table_rows_are_whole(md)
    small = render_markdown(_report(**many), limit=5000)
    assert len(small) <= 5000 and "Affected clients (150)" in small


def test_baseline_change_for_150_clients_fits_one_comment(
    template_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.portfolio import write_portfolio

    dest = tmp_path / "repo"
    shutil.copytree(template_repo, dest, symlinks=True)
    monkeypatch.chdir(dest)
    shutil.rmtree(dest / "overrides")
    names = write_portfolio(dest / "overrides", 150)
    commit(dest, "150 clients")
    git(dest, "checkout", "-q", "-b", "pr")
    (source,) = [p for p in sorted((dest / "baseline").glob("*.py")) if '"iam:AddUserToGroup",' in p.read_text()]
    edit(source, '"iam:AddUserToGroup",', '"iam:AddUserToGroup",\n"iam:UploadSSHPublicKey",')
    assert main(["diff", "--format", "markdown"]) == 1
    md = capsys.readouterr().out
    assert len(md) < 65_536, len(md)
    assert md.startswith("### vend diff: 150 client(s) affected")
    assert all(name in md for name in names)
    assert "Shortened" not in md  # grouped, it fits whole
    _table_rows_are_whole(md)
