"""Writing the cloud assembly from cached shape entries (scripts/synth.py decides what to build).

A client's templates are its shape's prototype templates with the prototype's sentinels
replaced by the client's values (:class:`scripts.shapes.Stencil`). The writer keeps an index
in the assembly folder (``.vend-render.json``): a client whose shape entry and values are
the same as at the last write, and whose files are untouched since (size and mtime), is
neither rendered nor written again. So after one override file changes, only that client's
files are written: the assembly of 1,000 clients is brought up to date in about the time it
takes to read the portfolio.

This module never imports aws_cdk.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts.assembly import TEMPLATE_HASH_OUTPUT
from scripts.shapes import Stencil, replacements

INDEX = ".vend-render.json"
INDEX_VERSION = 2
WRITERS = 8


@dataclass
class CachedStack:
    """One stack as synthesized: its artifact entry, template and metadata, as text."""

    artifact_id: str
    artifact: str
    template: str
    metadata: str | None

    def to_json(self) -> dict[str, Any]:
        return {"id": self.artifact_id, "artifact": self.artifact, "template": self.template, "metadata": self.metadata}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CachedStack:
        return cls(data["id"], data["artifact"], data["template"], data.get("metadata"))


@dataclass
class ShapeEntry:
    """A cache entry: the stacks of a shape's prototype (or of the MSP side) and the
    prototype's sentinels, by placeholder name."""

    stacks: list[CachedStack]
    sentinels: dict[str, str | float] = field(default_factory=dict)
    header: dict[str, Any] = field(default_factory=dict)
    #: Built with aws-cdk-lib's template validator on: only such an entry serves a
    #: synthesis that asks for validation (an unvalidated one would skip it silently).
    validated: bool = False


def with_hash(canonical: str) -> str:
    """The template file: the canonical text plus its hash output (as
    :func:`scripts.assembly.stamped` computes it: the hash of the canonical text of the rest)."""
    digest = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    output = {
        TEMPLATE_HASH_OUTPUT: {
            "Description": "SHA-256 of this template without this output; vend deploy skips a stack that has it",
            "Value": digest,
        }
    }
    return canonical[:-1] + ',"Outputs":' + json.dumps(output, separators=(",", ":")) + "}"


def render_key(code_key: str, digest: str, values: Mapping[str, str | float]) -> str:
    """What a client's rendered files are made of: the baseline code, its shape and its values."""
    return hashlib.sha256(json.dumps([code_key, digest, values], sort_keys=True, default=str).encode()).hexdigest()


def rendered_as(outdir: Path, client: str, key: str) -> bool:
    """The index of ``outdir`` vouches that ``client``'s files were rendered from ``key`` and are
    untouched since (an assembly without the index, e.g. from ``cdk synth``, vouches for nothing)."""
    try:
        index = json.loads((outdir / INDEX).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    record = (index.get("clients") or {}).get(client) if index.get("version") == INDEX_VERSION else None
    if not record or record.get("key") != key:
        return False
    return all(_stat(outdir / name) == stat[:2] for name, stat in (record.get("files") or {}).items())


def _stat(path: Path) -> list[int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


class AssemblyWriter:
    """Collects the artifacts of one assembly and writes the files that changed."""

    def __init__(self, outdir: Path, code_key: str) -> None:
        self.outdir = outdir
        self.code_key = code_key
        outdir.mkdir(parents=True, exist_ok=True)
        self.old = self._read_index()
        self.old_files: dict[str, list[Any]] = {
            name: record
            for owner in [*(self.old.get("clients") or {}).values(), self.old.get("msp") or {}]
            for name, record in (owner.get("files") or {}).items()
        }
        self.clients: dict[str, dict[str, Any]] = {}  # client -> index record
        self.msp: dict[str, Any] = {}
        self.rendered = 0  # clients rendered (not taken from the index)
        self._stencils: dict[str, list[tuple[Stencil, Stencil, Stencil]]] = {}
        self._pool = ThreadPoolExecutor(max_workers=WRITERS)

    def _read_index(self) -> dict[str, Any]:
        try:
            data = json.loads((self.outdir / INDEX).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if data.get("version") == INDEX_VERSION else {}

    def _write(self, name: str, text: str) -> list[Any] | Future[list[Any]]:
        """Write ``name`` unless it already holds ``text`` (by the index, and untouched since):
        a file whose content did not change keeps its mtime, so tools see what changed.
        Writes run in a thread pool: creating a file costs about 0.5 ms on these disks,
        and they overlap."""
        path = self.outdir / name
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        old = self.old_files.get(name)
        stat = _stat(path)
        if old is not None and stat is not None and old == [*stat, digest]:
            return old

        def write() -> list[Any]:
            path.write_text(text, encoding="utf-8")
            return [*(_stat(path) or [0, 0]), digest]

        return self._pool.submit(write)

    def _unchanged(self, record: Mapping[str, Any] | None, key: str) -> bool:
        """The index says these files hold exactly what ``key`` renders, and nobody touched them."""
        if not record or record.get("key") != key:
            return False
        return all(_stat(self.outdir / name) == stat[:2] for name, stat in record["files"].items())

    def render_client(self, client: str, digest: str, entry: ShapeEntry, values: Mapping[str, str | float]) -> None:
        key = render_key(self.code_key, digest, values)
        old = (self.old.get("clients") or {}).get(client)
        if self._unchanged(old, key):
            assert old is not None
            self.clients[client] = old
            return
        if digest not in self._stencils:
            self._stencils[digest] = [
                (
                    Stencil(s.artifact_id, entry.sentinels),
                    Stencil(s.artifact, entry.sentinels),
                    Stencil(s.template, entry.sentinels),
                )
                for s in entry.stacks
            ]
        text_values = replacements(values)
        artifacts: dict[str, Any] = {}
        files: dict[str, Any] = {}
        for artifact_id, artifact_text, template in self._stencils[digest]:
            artifact = json.loads(artifact_text.render(text_values))
            template_file = artifact["properties"]["templateFile"]
            files[template_file] = self._write(template_file, with_hash(template.render(text_values)))
            artifacts[artifact_id.render(text_values)] = artifact
        self.clients[client] = {"key": key, "artifacts": artifacts, "files": files}
        self.rendered += 1

    def _as_built(self, stacks: Sequence[CachedStack]) -> dict[str, Any]:
        artifacts: dict[str, Any] = {}
        files: dict[str, Any] = {}
        for stack in stacks:
            artifact = json.loads(stack.artifact)
            artifact["properties"].pop("validateOnSynth", None)
            template_file = artifact["properties"]["templateFile"]
            files[template_file] = self._write(template_file, stack.template)
            metadata_file = artifact.get("additionalMetadataFile")
            if stack.metadata is not None and metadata_file:
                files[metadata_file] = self._write(metadata_file, stack.metadata)
            artifacts[stack.artifact_id] = artifact
        return {"key": None, "artifacts": artifacts, "files": files}

    def put_client_as_built(self, client: str, stacks: Sequence[CachedStack]) -> None:
        """A client the CDK built as itself (no shape): written as the CDK wrote it."""
        self.clients[client] = self._as_built(stacks)
        self.rendered += 1

    def put_msp(self, stacks: Sequence[CachedStack]) -> None:
        self.msp = self._as_built(stacks)

    def finish(self, header: Mapping[str, Any], order: Sequence[str]) -> int:
        """Write the manifest (MSP side first, then the clients in ``order``), remove the
        files of stacks that are gone, and save the index. Returns the number of stacks."""
        self._pool.shutdown(wait=True)
        for record in [*self.clients.values(), self.msp]:  # the writes' results, now that they are done
            files = record.get("files") or {}
            for name, result in files.items():
                if isinstance(result, Future):
                    files[name] = result.result()
        header = dict(header)
        cdk_out = header.pop("cdk.out", None)
        artifacts = dict(self.msp.get("artifacts") or {})
        for client in order:
            artifacts.update(self.clients[client]["artifacts"])
        # The manifest follows from the header, the order and the records: when none changed
        # and nobody touched the manifest (a no-op deploy), the assembly is left as it is.
        manifest_key = hashlib.sha256(json.dumps([header, cdk_out, list(order)], sort_keys=True).encode()).hexdigest()
        if (
            self.old.get("clients") == self.clients
            and self.old.get("msp") == self.msp
            and self.old.get("manifest") == [manifest_key, *(_stat(self.outdir / "manifest.json") or [])]
        ):
            return len(artifacts)
        manifest = {**header, "artifacts": artifacts}
        # The index goes first: a crash below leaves an index that no longer matches, never
        # one that vouches for files that were not written.
        (self.outdir / INDEX).unlink(missing_ok=True)
        (self.outdir / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
        if cdk_out is not None:
            (self.outdir / "cdk.out").write_text(cdk_out, encoding="utf-8")
        written = set(self.msp.get("files") or {}) | {f for r in self.clients.values() for f in r["files"]}
        for stale in [
            *self.outdir.glob("*.template.json"),
            *self.outdir.glob("*.metadata.json"),
            self.outdir / "tree.json",
        ]:
            if stale.name not in written and stale.is_file():
                stale.unlink()
        manifest_stat = _stat(self.outdir / "manifest.json") or []
        index = {
            "version": INDEX_VERSION,
            "clients": self.clients,
            "msp": self.msp,
            "manifest": [manifest_key, *manifest_stat],
        }
        tmp = self.outdir / f".{INDEX}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(index), encoding="utf-8")
        os.replace(tmp, self.outdir / INDEX)
        return len(artifacts)
