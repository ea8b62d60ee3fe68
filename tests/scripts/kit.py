"""Shared pieces for the deploy tests: an emulator with per-test fault plans, tiny stacks."""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from scripts.assembly import StackArtifact, read_assembly
from scripts.aws import AwsAccess
from scripts.deploy import Target
from scripts.emulator.faults import Call, FaultPlan, parse_fault_text
from scripts.emulator.server import Emulator

MSP = "123456789012"  # moto's account for the base (non-assumed) credentials
REGION = "us-east-1"
WRITES = frozenset(
    {"CreateChangeSet", "ExecuteChangeSet", "DeleteStack", "ContinueUpdateRollback", "DeleteChangeSet", "CreateStack"}
)


@contextmanager
def fake_aws_env(tmp: Path) -> Iterator[None]:
    """Fake credentials, no user AWS config, no endpoint from the environment."""
    nowhere = tmp / "none"
    with pytest.MonkeyPatch.context() as env:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "MOTO_ACCOUNT_ID", "CI"):
            env.delenv(name, raising=False)
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", REGION)
        env.setenv("AWS_CONFIG_FILE", str(nowhere))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(nowhere))
        yield


def subprocess_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "CI"}
    env.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        AWS_CONFIG_FILE=str(tmp / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(tmp / "none"),
    )
    return env


def reset(emulator: Emulator, plan_text: str | None = None) -> FaultPlan | None:
    """Empty the emulator and load ``plan_text`` (None: no faults)."""
    plan = None
    if plan_text is not None:
        plan, problems = parse_fault_text(plan_text)
        assert plan is not None, problems
    emulator.injector.load(None)
    urllib.request.urlopen(urllib.request.Request(f"{emulator.url}/moto-api/reset", method="POST")).close()
    emulator.injector.load(plan)
    return plan


def calls(emulator: Emulator, account: str, service: str = "cloudformation") -> list[str]:
    """Operations the emulator answered for ``account`` (with repeats), in no particular order."""
    found: list[str] = []
    snapshot: dict[Call, int] = dict(emulator.injector.calls)
    for call, n in snapshot.items():
        if call.account == account and call.service == service:
            found += [call.operation] * n
    return found


def role(account: str) -> str:
    return f"arn:aws:iam::{account}:role/VendDeploy"


def queue(name: str) -> dict[str, Any]:
    return {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": name}}


def make_stack(
    outdir: Path,
    artifact_id: str,
    resources: dict[str, Any],
    *,
    account: str,
    region: str = REGION,
    depends_on: tuple[str, ...] = (),
    stack_name: str | None = None,
) -> StackArtifact:
    """Write a one-stack cloud assembly and read the stack back."""
    outdir = outdir / artifact_id
    outdir.mkdir(parents=True, exist_ok=True)
    template = outdir / f"{artifact_id}.template.json"
    template.write_text(json.dumps({"Resources": resources}))
    manifest = {
        "version": "55.0.0",
        "artifacts": {
            artifact_id: {
                "type": "aws:cloudformation:stack",
                "environment": f"aws://{account}/{region}",
                "properties": {"templateFile": template.name, "stackName": stack_name or f"vend-{artifact_id.lower()}"},
            }
        },
    }
    (outdir / "manifest.json").write_text(json.dumps(manifest))
    (artifact,) = read_assembly(outdir)
    if depends_on:
        from dataclasses import replace

        artifact = replace(artifact, depends_on=depends_on)
    return artifact


def client_target(tmp: Path, name: str, account: str, *, regions: tuple[str, ...] = ()) -> Target:
    """A client with a global stack (one queue) and optional regional stacks after it."""
    stacks = [make_stack(tmp / name, f"{name}-global", {"Q": queue(f"{name}-q")}, account=account)]
    for region in regions:
        stacks.append(
            make_stack(
                tmp / name,
                f"{name}-{region}",
                {"Q": queue(f"{name}-{region}-q")},
                account=account,
                region=region,
                depends_on=(f"{name}-global",),
            )
        )
    return Target(name, role(account), f"{name}-ext", tuple(stacks))


def access_for(emulator: Emulator) -> AwsAccess:
    return AwsAccess(endpoint_url=emulator.url)


def stack_status(access: AwsAccess, account: str, name: str, region: str = REGION) -> str | None:
    session = access.assume_role(role(account), external_id=None, session_name="check", region=region)
    cfn = access.client(session, "cloudformation", region)
    try:
        return str(cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"])
    except Exception:
        return None


@dataclass
class Account:
    """boto3 clients acting in one assumed account, against the emulator."""

    account_id: str
    session: boto3.Session
    url: str

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.url)  # type: ignore[call-overload]


def assume(emulator: Emulator, account_id: str, region: str = REGION) -> Account:
    """Assume the deploy role as the driver does; later calls act in that account."""
    sts = boto3.client(
        "sts",
        endpoint_url=emulator.url,
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    creds = sts.assume_role(
        RoleArn=f"arn:aws:iam::{account_id}:role/VendDeploy",
        RoleSessionName="vend-test",
        ExternalId="x-1234",
    )["Credentials"]
    session = boto3.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
        region_name=region,
    )
    return Account(account_id, session, emulator.url)
