"""The README's CDK CLI flow, for real: ``vend emulator``, ``vend credentials``, ``npx cdk
deploy`` and ``vend deploy --verify-protection`` as subprocesses, then the stacks are checked
with boto3 in their accounts.

Everything the commands write goes to the test's temporary folder (``--output``,
``VEND_CACHE_DIR``); the emulator listens on a free port.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import boto3
import pytest
from botocore.exceptions import ClientError

from baseline.stack_policy import STACK_POLICY_METADATA_KEY
from tests.scripts.kit import subprocess_env

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
VEND = [sys.executable, "-m", "scripts.cli"]
BIN = Path(sys.executable).parent
BRIGHTMART_STACKS = {"vend-brightmart-global": "eu-west-1", "vend-brightmart-eu-west-1": "eu-west-1"}


def _read_until(stream: IO[str], marker: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        line = stream.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return line
    raise AssertionError(f"no {marker!r} in time; got {seen}")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cdk-cli")


@pytest.fixture(scope="module")
def emulator(workdir: Path) -> Iterator[str]:
    proc = subprocess.Popen(
        [*VEND, "emulator", "--port", "0"],
        cwd=REPO,
        env=subprocess_env(workdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = _read_until(proc.stdout, "vend emulator ready at", 60)
        yield line.split("ready at ", 1)[1].split()[0]
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def env(workdir: Path, emulator: str) -> dict[str, str]:
    """What the README exports, plus a quiet CDK CLI and a cache outside the repository."""
    env = subprocess_env(workdir)
    env.update(
        AWS_ENDPOINT_URL=emulator,
        AWS_ACCESS_KEY_ID="test",
        AWS_SECRET_ACCESS_KEY="test",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # Node.js 24 and npx from the venv
        VEND_CACHE_DIR=str(workdir / "vend-cache"),
        CDK_DISABLE_CLI_TELEMETRY="true",
        CDK_DISABLE_VERSION_CHECK="true",
    )
    return env


def run(cmd: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def credentials(target: str, env: dict[str, str]) -> dict[str, str]:
    """`eval "$(vend credentials TARGET)"`, as a dict."""
    exports: dict[str, str] = {}
    for line in run([*VEND, "credentials", target], env, timeout=60).stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        exports[key] = value
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_REGION"} <= set(exports)
    return exports


def cfn(creds: dict[str, str], endpoint: str, region: str) -> Any:
    return boto3.client(
        "cloudformation",
        endpoint_url=endpoint,
        region_name=region,
        aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
        aws_session_token=creds["AWS_SESSION_TOKEN"],
    )


@pytest.fixture(scope="module")
def cdk_deployed(env: dict[str, str], workdir: Path) -> dict[str, Path]:
    """The README's two `cdk deploy` lines; returns each one's cloud assembly."""
    npx = shutil.which("npx", path=env["PATH"])
    assert npx is not None and Path(npx).parent == BIN, npx
    steps = {
        "log-archive": ["vend-msp-log-archive"],
        "brightmart": ["vend-brightmart-*", "-c", "client=brightmart"],
    }
    outputs: dict[str, Path] = {}
    for target, selection in steps.items():
        out = workdir / f"cdk.out-{target}"
        command = [npx, "cdk", "deploy", *selection, "--require-approval", "never", "--output", str(out)]
        run([*command, "--no-notices"], {**env, **credentials(target, env)}, timeout=300)
        outputs[target] = out
    return outputs


def test_cdk_deploy_creates_the_stacks_with_termination_protection(
    cdk_deployed: dict[str, Path], env: dict[str, str], emulator: str
) -> None:
    creds = credentials("brightmart", env)
    for name, region in BRIGHTMART_STACKS.items():
        (stack,) = cfn(creds, emulator, region).describe_stacks(StackName=name)["Stacks"]
        assert stack["StackStatus"] == "CREATE_COMPLETE", name
        assert stack["EnableTerminationProtection"] is True, name
    with pytest.raises(ClientError, match="cannot be deleted while TerminationProtection is enabled"):
        cfn(creds, emulator, "eu-west-1").delete_stack(StackName="vend-brightmart-global")
    archive = credentials("log-archive", env)
    (msp,) = cfn(archive, emulator, "us-east-1").describe_stacks(StackName="vend-msp-log-archive")["Stacks"]
    assert msp["StackStatus"] == "CREATE_COMPLETE"
    assert msp["EnableTerminationProtection"] is False  # the MSP side does not ask for it


def test_vend_deploy_verify_protection_adds_the_stack_policies_cdk_cannot_set(
    cdk_deployed: dict[str, Path], env: dict[str, str], emulator: str, workdir: Path
) -> None:
    creds = credentials("brightmart", env)
    for name, region in BRIGHTMART_STACKS.items():
        assert "StackPolicyBody" not in cfn(creds, emulator, region).get_stack_policy(StackName=name)

    out = workdir / "vend.out"
    deploy = run(
        [*VEND, "deploy", "brightmart", "--verify-protection", "--output", str(out), "--progress", "plain"], env
    )
    assert "FAILED" not in deploy.stdout, deploy.stdout

    for name, region in BRIGHTMART_STACKS.items():
        client = cfn(creds, emulator, region)
        template = json.loads((out / f"{name}.template.json").read_text())
        policy = json.loads(client.get_stack_policy(StackName=name)["StackPolicyBody"])
        assert policy == template["Metadata"][STACK_POLICY_METADATA_KEY], name
        assert client.describe_stacks(StackName=name)["Stacks"][0]["EnableTerminationProtection"] is True
    drift = run([*VEND, "drift", "brightmart"], env, timeout=120)
    assert drift.stdout.splitlines()[-1].startswith("summary: ") and "IN_SYNC" in drift.stdout
