"""Read the synthesized CDK cloud assembly (``cdk.out/manifest.json``).

The driver never imports aws_cdk: the manifest already says which template goes
to which account and region, under which stack name, with which tags, and which
stacks must exist first. This module only reads JSON, so it is fast and works
on an assembly produced by any machine (CI artifact, ``cdk synth --output``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

STACK_TYPE = "aws:cloudformation:stack"
NESTED_ASSEMBLY_TYPE = "cdk:cloud-assembly"
_UNRESOLVED = ("unknown-account", "unknown-region")
#: Output every vend template carries: the SHA-256 of the rest of the template. A deploy
#: then knows from one DescribeStacks per region that a stack already runs this template.
TEMPLATE_HASH_OUTPUT = "VendTemplateHash"


class AssemblyError(Exception):
    """The cloud assembly is missing, malformed, or cannot be deployed as it stands."""


@dataclass(frozen=True)
class StackArtifact:
    """One CloudFormation stack of the assembly, pinned to an account and region."""

    artifact_id: str
    stack_name: str
    account: str
    region: str
    template_file: Path
    depends_on: tuple[str, ...]
    tags: Mapping[str, str] = field(default_factory=dict, hash=False)
    #: ``terminationProtection`` of the artifact (``scripts/stack_protection.py`` applies it).
    termination_protection: bool = False

    def template_body(self) -> str:
        """The template text exactly as synthesized."""
        return self.template_file.read_text(encoding="utf-8")


def read_assembly(outdir: Path) -> list[StackArtifact]:
    """All stack artifacts of the assembly in ``outdir``, in manifest order.

    Nested assemblies (CDK Stages) are read too. Dependencies on non-stack
    artifacts (tree metadata, asset manifests) are dropped, so ``depends_on``
    only names other stacks. Stacks without a concrete account and region are
    an error: the driver must know where every template goes.
    """
    stacks = _read(Path(outdir), seen_dirs=set())
    ids = [s.artifact_id for s in stacks]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise AssemblyError(f"{outdir}: duplicate stack artifact ids: {', '.join(duplicates)}")
    known = set(ids)
    return [
        StackArtifact(
            artifact_id=s.artifact_id,
            stack_name=s.stack_name,
            account=s.account,
            region=s.region,
            template_file=s.template_file,
            depends_on=tuple(d for d in s.depends_on if d in known),
            tags=s.tags,
            termination_protection=s.termination_protection,
        )
        for s in stacks
    ]


def deployment_order(stacks: Sequence[StackArtifact]) -> list[StackArtifact]:
    """Stacks ordered so each comes after the stacks it depends on.

    Stable: among stacks whose dependencies are met, input order wins, so the
    same assembly always deploys in the same order. Dependencies on stacks not
    in ``stacks`` are treated as already satisfied (e.g. a client's stacks
    depending on the MSP-side stacks deployed earlier).
    """
    remaining = list(stacks)
    present = {s.artifact_id for s in remaining}
    placed: set[str] = set()
    ordered: list[StackArtifact] = []
    while remaining:
        for index, stack in enumerate(remaining):
            if all(d in placed or d not in present for d in stack.depends_on):
                ordered.append(stack)
                placed.add(stack.artifact_id)
                del remaining[index]
                break
        else:
            cycle = ", ".join(s.artifact_id for s in remaining)
            raise AssemblyError(f"dependency cycle among stacks: {cycle}")
    return ordered


def _read(outdir: Path, seen_dirs: set[Path]) -> list[StackArtifact]:
    manifest_path = outdir / "manifest.json"
    resolved = outdir.resolve()
    if resolved in seen_dirs:
        raise AssemblyError(f"{manifest_path}: nested assembly refers back to itself")
    seen_dirs.add(resolved)
    if not manifest_path.is_file():
        raise AssemblyError(f"{manifest_path}: no cloud assembly found; run `vend synth` (or `cdk synth`) first")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise AssemblyError(f"{manifest_path}: not a readable JSON manifest: {err}") from err
    artifacts = manifest.get("artifacts") if isinstance(manifest, dict) else None
    if not isinstance(artifacts, dict):
        raise AssemblyError(f"{manifest_path}: no 'artifacts' object; is this a CDK cloud assembly?")

    stacks: list[StackArtifact] = []
    for artifact_id, artifact in artifacts.items():
        if not isinstance(artifact, dict):
            raise AssemblyError(f"{manifest_path}: artifact {artifact_id!r} is not an object")
        kind = artifact.get("type")
        if kind == STACK_TYPE:
            stacks.append(_stack(manifest_path, str(artifact_id), artifact))
        elif kind == NESTED_ASSEMBLY_TYPE:
            directory = (artifact.get("properties") or {}).get("directoryName")
            if not isinstance(directory, str):
                raise AssemblyError(f"{manifest_path}: nested assembly {artifact_id!r} has no directoryName")
            stacks.extend(_read(outdir / directory, seen_dirs))
    return stacks


def _stack(manifest_path: Path, artifact_id: str, artifact: Mapping[str, Any]) -> StackArtifact:
    where = f"{manifest_path}: stack {artifact_id!r}"
    environment = artifact.get("environment")
    if not isinstance(environment, str) or not environment.startswith("aws://"):
        raise AssemblyError(f"{where}: missing or invalid environment {environment!r}")
    parts = environment.removeprefix("aws://").split("/")
    if len(parts) != 2 or not all(parts):
        raise AssemblyError(f"{where}: environment {environment!r} is not aws://ACCOUNT/REGION")
    account, region = parts
    if account in _UNRESOLVED or region in _UNRESOLVED:
        raise AssemblyError(
            f"{where}: environment {environment!r} is not concrete; give the stack an explicit "
            "env=Environment(account=..., region=...)"
        )

    properties = artifact.get("properties")
    if not isinstance(properties, dict):
        raise AssemblyError(f"{where}: missing properties")
    template = properties.get("templateFile")
    if not isinstance(template, str) or not template:
        raise AssemblyError(f"{where}: missing properties.templateFile")
    template_file = manifest_path.parent / template
    if not template_file.is_file():
        raise AssemblyError(f"{where}: template file {template_file} does not exist")

    dependencies = artifact.get("dependencies") or []
    if not isinstance(dependencies, list) or not all(isinstance(d, str) for d in dependencies):
        raise AssemblyError(f"{where}: dependencies must be a list of artifact ids")

    return StackArtifact(
        artifact_id=artifact_id,
        stack_name=str(properties.get("stackName") or artifact_id),
        account=account,
        region=region,
        template_file=template_file,
        depends_on=tuple(dependencies),
        tags=MappingProxyType(_tags(where, properties.get("tags"))),
        termination_protection=properties.get("terminationProtection") is True,
    )


def _tags(where: str, raw: Any) -> dict[str, str]:
    """Stack tags; CDK writes a mapping, older manifests a list of {Key, Value}."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return {str(k): str(v) for k, v in raw.items()}
    if isinstance(raw, list) and all(isinstance(t, dict) and "Key" in t for t in raw):
        return {str(t["Key"]): str(t.get("Value", "")) for t in raw}
    raise AssemblyError(f"{where}: tags must be a mapping of key to value")


def template_hash(template: Mapping[str, Any]) -> str:
    """SHA-256 of ``template`` in canonical JSON, its own hash output left out."""
    rest = dict(template)
    outputs = {k: v for k, v in (rest.pop("Outputs", None) or {}).items() if k != TEMPLATE_HASH_OUTPUT}
    if outputs:
        rest["Outputs"] = outputs
    canonical = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def stamped(template: Mapping[str, Any]) -> dict[str, Any]:
    """``template`` with its hash output (replacing a stale one)."""
    out = dict(template)
    outputs = dict(out.get("Outputs") or {})
    outputs[TEMPLATE_HASH_OUTPUT] = {
        "Description": "SHA-256 of this template without this output; vend deploy skips a stack that has it",
        "Value": template_hash(template),
    }
    out["Outputs"] = outputs
    return out


def deployed_hash(description: Mapping[str, Any]) -> str | None:
    """The template hash a stack (DescribeStacks entry) was deployed with, if any."""
    for output in description.get("Outputs") or []:
        if output.get("OutputKey") == TEMPLATE_HASH_OUTPUT:
            return str(output.get("OutputValue"))
    return None


def write_template(path: Path, template: Mapping[str, Any]) -> None:
    """As the CDK writes templates (indent 1), so ``cdk diff`` and reviewers read the same."""
    path.write_text(json.dumps(template, indent=1, ensure_ascii=False), encoding="utf-8")


def stamp_assembly(outdir: Path) -> None:
    """Add the hash output to every stack template of the (top-level) assembly in ``outdir``."""
    manifest = json.loads((outdir / "manifest.json").read_text(encoding="utf-8"))
    for artifact in manifest.get("artifacts", {}).values():
        if artifact.get("type") == STACK_TYPE:
            path = outdir / artifact["properties"]["templateFile"]
            write_template(path, stamped(json.loads(path.read_text(encoding="utf-8"))))
