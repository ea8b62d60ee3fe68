"""`vend demo`'s normal path, as a user runs it: a subprocess from a folder outside the
repository, so it can write nothing into it (the synthesis cache goes to the test's folder)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.scripts.kit import subprocess_env

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def test_demo_deploys_everything_and_reports_every_control_in_sync(tmp_path: Path) -> None:
    env = subprocess_env(tmp_path)
    env.update(
        PYTHONPATH=str(REPO),
        VEND_CACHE_DIR=str(tmp_path / "vend-cache"),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "scripts.cli", "demo", "--overrides", str(REPO / "overrides")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{proc.stderr}"
    summaries = [line for line in out.splitlines() if line.startswith("summary: ")]
    assert len(summaries) == 1, out
    match = re.fullmatch(r"summary: (\d+) IN_SYNC", summaries[0])
    assert match and int(match.group(1)) > 0, summaries[0]  # no other status at all
    assert "== 3/4 deploy again with unchanged input" in out and "== demo finished in" in out
    unchanged = out.split("== 3/4", 1)[1].split("== 4/4", 1)[0]
    assert "protection restored" not in unchanged  # the first deploy protected every stack
    assert "FAILED" not in out
    assert not (tmp_path / "cdk.out").exists() and not (tmp_path / "overrides").exists()
