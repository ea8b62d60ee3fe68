"""`vend diff`: what a change does to client accounts, from git alone, without AWS access.

1. The base side is REF (default: the merge base of HEAD and ``main``) exported with
   ``git archive`` into a temporary folder; the head side is the working tree as it is.
2. The clients a change affects come from the changed files: a client's own override file,
   a profile it uses (on either side), ``defaults.yaml``, or the baseline code (every client).
3. Only those clients are synthesized, on both sides, in parallel, plus the MSP-side stack
   that always covers the whole portfolio. Each side synthesizes the way `vend synth` and
   `vend deploy` do: with its own checkout's ``scripts.synth.synthesize`` (client shapes,
   prototypes, rendering), so the diff shows what a deploy of that side deploys. A checkout
   from before shape synthesis has no ``synthesize``: its ``app.py`` is run instead.
4. Templates are compared resource by resource: added, removed, modified, or **replaced**
   (a change to a create-only property, :mod:`scripts.cfnspec`). IAM, trust policy,
   permission boundary, KMS and bucket-policy changes are flagged and listed first.
5. The effective config of each affected client is compared field by field.

This module never imports aws_cdk (synthesis runs in child processes).
"""

from __future__ import annotations

import html
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import yaml

from baseline.portfolio import load_portfolio
from scripts.assembly import AssemblyError, StackArtifact, read_assembly
from scripts.cfnspec import replacing_path
from scripts.synth import CODE_FILES as TEMPLATE_CODE
from scripts.synth import default_cache_dir, node_path_env

CLIENT_TAG = "vend:client"
MSP_SIDE = "(MSP side)"
DEFAULT_BASE_BRANCHES = ("main", "origin/main")

# Files whose change affects every client: the code that turns a config into templates, as
# the synthesis cache counts it (scripts.synth.CODE_FILES: app.py, cdk.json, baseline/, stacks/
# and the scripts that render templates from client shapes: synth.py, shapes.py, assembly.py, ...).
CODE_FILES = tuple(name for name in TEMPLATE_CODE if Path(name).suffix)
CODE_DIRS = tuple(f"{name}/" for name in TEMPLATE_CODE if not Path(name).suffix)
DEFAULTS_FILE = "baseline/defaults.yaml"
PROFILES_DIR = "baseline/profiles/"

# Security-sensitive kinds, in the order a reviewer should read them.
SECURITY_ORDER = ("trust", "boundary", "iam", "kms", "bucket-policy")
SECURITY_LABEL = {
    "trust": "trust policy",
    "boundary": "permission boundary",
    "iam": "IAM",
    "kms": "KMS",
    "bucket-policy": "bucket policy",
}
POLICY_PROPERTIES = ("AssumeRolePolicyDocument", "PolicyDocument", "KeyPolicy")
_HASH_SUFFIX = re.compile(r"[0-9A-F]{8}$")


class DiffError(Exception):
    """The diff could not be computed (not a git repository, unknown ref, synth failed)."""


# --- result records ---------------------------------------------------------------------


@dataclass
class PropertyChange:
    path: str
    before: Any
    after: Any
    replaces: bool = False


@dataclass
class ResourceChange:
    logical_id: str
    type: str
    action: str  # added | removed | modified | replaced
    properties: list[PropertyChange] = field(default_factory=list)
    security: list[str] = field(default_factory=list)
    policy_changes: list[str] = field(default_factory=list)
    reason: str = ""

    @property
    def name(self) -> str:
        """The construct id without CDK's hash suffix: ``MspRole990FBE3E`` -> ``MspRole``."""
        return _HASH_SUFFIX.sub("", self.logical_id) or self.logical_id


@dataclass
class StackDiff:
    stack: str
    client: str
    account: str
    region: str
    status: str  # added | removed | modified
    resources: list[ResourceChange] = field(default_factory=list)

    def count(self, action: str) -> int:
        return sum(1 for r in self.resources if r.action == action)


@dataclass
class ConfigChange:
    field: str
    before: Any
    after: Any


@dataclass
class ClientDiff:
    client: str
    status: str  # added | removed | changed | unchanged
    reasons: list[str] = field(default_factory=list)
    config: list[ConfigChange] = field(default_factory=list)
    stacks: list[StackDiff] = field(default_factory=list)
    note: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.config or self.stacks)

    def count(self, action: str) -> int:
        return sum(s.count(action) for s in self.stacks)


@dataclass
class DiffReport:
    base_ref: str
    base_sha: str
    head: str = "working tree"
    changed_files: list[str] = field(default_factory=list)
    clients: list[ClientDiff] = field(default_factory=list)
    msp: list[StackDiff] = field(default_factory=list)
    synthesized: dict[str, list[str]] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def has_changes(self) -> bool:
        return bool(self.msp) or any(c.changed for c in self.clients)

    def all_stacks(self) -> list[StackDiff]:
        return [s for c in self.clients for s in c.stacks] + list(self.msp)

    def security_changes(self) -> list[tuple[StackDiff, ResourceChange]]:
        found = [(s, r) for s in self.all_stacks() for r in s.resources if r.security]
        return sorted(found, key=lambda sr: (min(SECURITY_ORDER.index(k) for k in sr[1].security), sr[0].stack))

    def count(self, action: str) -> int:
        return sum(s.count(action) for s in self.all_stacks())

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["has_changes"] = self.has_changes
        out["summary"] = {
            "clients_affected": len(self.clients),
            "clients_changed": sum(1 for c in self.clients if c.changed),
            **{a: self.count(a) for a in ("added", "modified", "replaced", "removed")},
            "security": len(self.security_changes()),
        }
        return out


# --- git ---------------------------------------------------------------------------------


def _git(args: Sequence[str], cwd: Path, *, binary: bool = False) -> Any:
    proc = subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=False, text=not binary)
    if proc.returncode != 0:
        err = proc.stderr if isinstance(proc.stderr, str) else proc.stderr.decode(errors="replace")
        raise DiffError(f"git {' '.join(args)}: {err.strip()}")
    return proc.stdout


def resolve_base(project: Path, base: str | None) -> tuple[str, str]:
    """Return (sha, description) of the base: REF itself, or the merge base with main."""
    if base:
        sha = _git(["rev-parse", "--verify", f"{base}^{{commit}}"], project).strip()
        return sha, base
    for branch in DEFAULT_BASE_BRANCHES:
        try:
            sha = _git(["merge-base", "HEAD", branch], project).strip()
        except DiffError:
            continue
        return sha, f"merge base with {branch}"
    raise DiffError("no branch main or origin/main to compare with: pass --base REF")


def changed_files(project: Path, base_sha: str) -> list[str]:
    """Files that differ between the base commit and the working tree, relative to ``project``
    (committed, staged, unstaged and untracked changes alike)."""
    tracked = _git(["diff", "--name-only", "--no-renames", "--relative", "-z", base_sha, "--", "."], project)
    untracked = _git(["ls-files", "--others", "--exclude-standard", "-z", "--", "."], project)
    return sorted({f for f in (tracked + untracked).split("\0") if f})


def export_tree(project: Path, sha: str, dest: Path) -> Path:
    """Write the tree of ``sha`` into ``dest`` (``git archive``); return the project folder in it."""
    prefix = _git(["rev-parse", "--show-prefix"], project).strip()
    data = _git(["archive", "--format=tar", sha], project, binary=True)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest / prefix if prefix else dest


# --- which clients a change affects -----------------------------------------------------


def _client_profiles(overrides: Path) -> dict[str, list[str]]:
    """Client slug -> profiles, read leniently (a broken file still names its client)."""
    out: dict[str, list[str]] = {}
    if not overrides.is_dir():
        return out
    for f in sorted([*overrides.glob("*.yaml"), *overrides.glob("*.yml")]):
        try:
            data = yaml.safe_load(f.read_text(encoding="utf-8"))
        except (yaml.YAMLError, OSError, UnicodeDecodeError, RecursionError):  # validation reports why
            data = None
        profiles = data.get("profiles") if isinstance(data, dict) else None
        out[f.stem] = [str(p) for p in profiles] if isinstance(profiles, list) else []
    return out


def is_code(path: str) -> bool:
    """True when a change to ``path`` (relative to the project) can change every client's templates."""
    return path in CODE_FILES or (path.startswith(CODE_DIRS) and path.endswith(".py"))


def affected_clients(
    files: Iterable[str], base: dict[str, list[str]], head: dict[str, list[str]], overrides_rel: str
) -> dict[str, list[str]]:
    """Client -> why it is affected, from the changed files."""
    everyone = sorted(set(base) | set(head))
    reasons: dict[str, list[str]] = {}

    def add(clients: Iterable[str], why: str) -> None:
        for c in clients:
            reasons.setdefault(c, [])
            if why not in reasons[c]:
                reasons[c].append(why)

    prefix = overrides_rel.rstrip("/") + "/"
    code = [f for f in files if is_code(f)]
    for f in files:
        if f.startswith(prefix) and f.endswith((".yaml", ".yml")) and "/" not in f[len(prefix) :]:
            slug = Path(f).stem
            state = "added" if slug not in base else "removed" if slug not in head else "changed"
            add([slug], f"override file {state}")
        elif f == DEFAULTS_FILE:
            add(everyone, "defaults.yaml changed")
        elif f.startswith(PROFILES_DIR) and f.endswith(".yaml"):
            name = Path(f).stem
            users = [c for c in everyone if name in base.get(c, []) or name in head.get(c, [])]
            add(users, f"profile {name} changed")
    if code:
        shown = ", ".join(code[:3]) + (f" and {len(code) - 3} more" if len(code) > 3 else "")
        add(everyone, f"baseline code changed ({shown})")
    return dict(sorted(reasons.items()))


# --- synthesis --------------------------------------------------------------------------


# Run in the side's checkout (its folder first on sys.path): that checkout's own synthesis.
_SYNTHESIZE = (
    "import sys; from pathlib import Path; from scripts.synth import synthesize; "
    "sys.exit(synthesize(Path(sys.argv[1]), Path(sys.argv[2]), client=sys.argv[3], validation=False, quiet=True))"
)


def has_synthesize(root: Path) -> bool:
    """True when the checkout at ``root`` synthesizes through ``scripts.synth.synthesize``."""
    try:
        return "\ndef synthesize(" in (root / "scripts" / "synth.py").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return False


def synthesize_side(
    root: Path,
    overrides: Path,
    clients: Sequence[str],
    outdir: Path,
    *,
    today: str | None,
    cache_dir: Path | None = None,
) -> None:
    """Synthesize ``clients`` (plus the MSP side) of the project at ``root`` into ``outdir``,
    as `vend synth --client a,b` of that checkout does (without aws-cdk-lib's validator: the
    diff reads templates, and the validator adds 4 s per process and nothing to read)."""
    env = node_path_env()
    for key in ("CDK_CONTEXT_JSON", "VEND_CLIENT", "VEND_PROTOTYPES", "VEND_OVERRIDES"):
        env.pop(key, None)
    env["CDK_VALIDATION"] = "false"
    if today:
        env["VEND_TODAY"] = today
    selection = ",".join(clients) or ","  # "," selects no client: only the MSP side
    if has_synthesize(root):
        if cache_dir is not None:  # entries are keyed by the code's hash: both sides can share one cache
            env["VEND_CACHE_DIR"] = str(cache_dir)
        command = [sys.executable, "-c", _SYNTHESIZE, str(overrides), str(outdir), selection]
    else:
        env.update(CDK_OUTDIR=str(outdir), VEND_OVERRIDES=str(overrides), VEND_CLIENT=selection)
        command = [sys.executable, "app.py"]
    proc = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        errors = "\n".join(line for line in proc.stderr.splitlines() if "jsii" not in line.lower())[-3000:]
        raise DiffError(f"synthesis of {root} failed (exit {proc.returncode}):\n{errors}")


def _stacks(outdir: Path) -> dict[str, StackArtifact]:
    try:
        return {s.stack_name: s for s in read_assembly(outdir)}
    except AssemblyError as exc:
        raise DiffError(str(exc)) from exc


# --- template comparison ----------------------------------------------------------------


def _leaf_changes(
    before: Any, after: Any, path: tuple[str | int, ...] = ()
) -> list[tuple[tuple[str | int, ...], Any, Any]]:
    if isinstance(before, dict) and isinstance(after, dict):
        out = []
        for key in sorted(set(before) | set(after)):
            out += _leaf_changes(before.get(key), after.get(key), (*path, key))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            out += _leaf_changes(b, a, (*path, i))
        return out
    return [] if before == after else [(path, before, after)]


def _fmt_path(path: Sequence[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def render_value(value: Any) -> str:
    """Template values for people: intrinsics as ``${Logical.Attr}``, the rest as compact JSON."""
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Ref":
            return f"${{{arg}}}"
        if key == "Fn::GetAtt":
            return "${" + (".".join(map(str, arg)) if isinstance(arg, list) else str(arg)) + "}"
        if key == "Fn::Join" and isinstance(arg, list) and len(arg) == 2 and isinstance(arg[1], list):
            return str(arg[0]).join(render_value(p) for p in arg[1])
        if key == "Fn::Sub" and isinstance(arg, str):
            return arg
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "[" + ", ".join(render_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {render_value(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)


def _statements(doc: Any) -> list[Any]:
    if not isinstance(doc, dict):
        return []
    st = doc.get("Statement", [])
    return st if isinstance(st, list) else [st]


def render_statement(st: Any) -> str:
    """One IAM statement on one line: ``Allow sts:AssumeRole on * by AWS arn:... if StringEquals ...``."""
    if not isinstance(st, dict):
        return render_value(st)
    parts = [str(st.get("Effect", "?"))]
    for key, label in (("Action", ""), ("NotAction", "not "), ("Resource", "on "), ("NotResource", "not on ")):
        if key in st:
            v = st[key]
            parts.append(label + ", ".join(render_value(x) for x in (v if isinstance(v, list) else [v])))
    for key, label in (("Principal", "by"), ("NotPrincipal", "not by")):
        if key in st:
            p = st[key]
            if isinstance(p, dict):
                parts.append(
                    label
                    + " "
                    + "; ".join(
                        f"{k} " + ", ".join(render_value(x) for x in (v if isinstance(v, list) else [v]))
                        for k, v in p.items()
                    )
                )
            else:
                parts.append(f"{label} {render_value(p)}")
    if "Condition" in st and isinstance(st["Condition"], dict):
        conds = [
            f"{op} {k}={render_value(v)}"
            for op, body in st["Condition"].items()
            if isinstance(body, dict)
            for k, v in body.items()
        ]
        parts.append("if " + " and ".join(conds))
    if "Sid" in st:
        parts.insert(0, f"[{st['Sid']}]")
    return " ".join(parts)


def _policy_docs(props: dict[str, Any]) -> dict[str, Any]:
    """Every policy document of a resource's properties, by a readable name."""
    docs = {k: props[k] for k in POLICY_PROPERTIES if k in props}
    for item in props.get("Policies", []) or []:
        if isinstance(item, dict):
            docs[f"Policies[{item.get('PolicyName', '?')}]"] = item.get("PolicyDocument")
    return docs


def _flatten(value: Any, prefix: str = "") -> dict[str, list[str]]:
    """``{"Principal": {"AWS": [a, b]}}`` -> ``{"Principal.AWS": ["a", "b"]}`` (values rendered)."""
    if isinstance(value, dict) and not (len(value) == 1 and next(iter(value)).startswith(("Ref", "Fn::"))):
        out: dict[str, list[str]] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    items = value if isinstance(value, list) else [value]
    return {prefix: [render_value(v) for v in items]}


def _statement_delta(before: dict[str, Any], after: dict[str, Any]) -> str:
    """What changed inside one statement, element by element: ``Action: +iam:X; Resource: -y``."""
    b, a = (
        _flatten({k: v for k, v in before.items() if k != "Sid"}),
        _flatten({k: v for k, v in after.items() if k != "Sid"}),
    )
    parts = []
    for key in sorted(set(b) | set(a)):
        bv, av = b.get(key, []), a.get(key, [])
        if bv == av:
            continue
        delta = [f"-{x}" for x in bv if x not in av] + [f"+{x}" for x in av if x not in bv]
        parts.append(f"{key}: {' '.join(delta) or 'reordered or duplicated'}")
    return "; ".join(parts)


def policy_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Statement-level changes of every policy document of a resource: ``+`` added, ``-``
    removed, ``~ [Sid]`` changed (statements with the same Sid, element by element)."""
    out: list[str] = []
    b_docs, a_docs = _policy_docs(before), _policy_docs(after)
    for name in sorted(set(b_docs) | set(a_docs)):
        b_list, a_list = _statements(b_docs.get(name)), _statements(a_docs.get(name))
        b_canon = {json.dumps(st, sort_keys=True) for st in b_list}
        a_canon = {json.dumps(st, sort_keys=True) for st in a_list}
        b_sids = {st.get("Sid"): st for st in b_list if isinstance(st, dict) and st.get("Sid")}
        a_sids = {st.get("Sid"): st for st in a_list if isinstance(st, dict) and st.get("Sid")}
        for st in b_list:
            sid = st.get("Sid") if isinstance(st, dict) else None
            if json.dumps(st, sort_keys=True) in a_canon:
                continue
            if sid and sid in a_sids:
                out.append(f"{name}: ~ [{sid}] {_statement_delta(st, a_sids[sid])}")
            else:
                out.append(f"{name}: - {render_statement(st)}")
        for st in a_list:
            sid = st.get("Sid") if isinstance(st, dict) else None
            if json.dumps(st, sort_keys=True) in b_canon or (sid and sid in b_sids):
                continue
            out.append(f"{name}: + {render_statement(st)}")
    for key in ("ManagedPolicyArns", "PermissionsBoundary"):
        if before.get(key) != after.get(key):
            out.append(f"{key}: {_list_delta(before.get(key), after.get(key))}")
    return out


def _list_delta(before: Any, after: Any) -> str:
    """``a -> b`` for values; ``-x +y`` for lists."""
    if isinstance(before, list | type(None)) and isinstance(after, list | type(None)) and (before or after):
        b = [render_value(v) for v in before or []]
        a = [render_value(v) for v in after or []]
        delta = [f"-{_short(x, 60)}" for x in b if x not in a] + [f"+{_short(x, 60)}" for x in a if x not in b]
        return " ".join(delta) or "reordered"
    return f"{_short(before)} -> {_short(after)}"


def _boundary_ids(resources: dict[str, Any]) -> set[str]:
    """Logical ids of managed policies that some role uses as its permission boundary
    (referenced with Ref, or by an ARN ending in the policy's name)."""
    refs: set[str] = set()
    names: set[str] = set()
    for res in resources.values():
        pb = (res.get("Properties") or {}).get("PermissionsBoundary")
        if isinstance(pb, dict) and "Ref" in pb:
            refs.add(str(pb["Ref"]))
        elif pb is not None:
            names.add(render_value(pb).rsplit("/", 1)[-1])
    for lid, res in resources.items():
        if (
            res.get("Type") == "AWS::IAM::ManagedPolicy"
            and (res.get("Properties") or {}).get("ManagedPolicyName") in names
        ):
            refs.add(lid)
    return refs


def security_kinds(rtype: str, logical_id: str, changed: set[str], boundary_ids: set[str]) -> list[str]:
    """Which security-sensitive kinds a change to ``changed`` properties of the resource touches
    (``changed`` holds every property for an added, removed or replaced resource)."""
    kinds: set[str] = set()
    if rtype == "AWS::IAM::Role":
        if "AssumeRolePolicyDocument" in changed:
            kinds.add("trust")
        if "PermissionsBoundary" in changed:
            kinds.add("boundary")
        if changed - {"AssumeRolePolicyDocument", "PermissionsBoundary", "Description", "Tags"}:
            kinds.add("iam")
    elif rtype.startswith("AWS::IAM::"):
        kinds.add("boundary" if logical_id in boundary_ids else "iam")
    elif rtype.startswith("AWS::KMS::"):
        kinds.add("kms")
    elif rtype == "AWS::S3::BucketPolicy":
        kinds.add("bucket-policy")
    return [k for k in SECURITY_ORDER if k in kinds]


_COMPARED_ATTRIBUTES = ("DeletionPolicy", "UpdateReplacePolicy", "Condition")


def compare_templates(base: dict[str, Any] | None, head: dict[str, Any] | None) -> list[ResourceChange]:
    """Resource-level changes from ``base`` to ``head`` (either may be None: stack added/removed)."""
    b_res: dict[str, Any] = (base or {}).get("Resources", {}) or {}
    a_res: dict[str, Any] = (head or {}).get("Resources", {}) or {}
    boundary = _boundary_ids(b_res) | _boundary_ids(a_res)
    out: list[ResourceChange] = []
    for lid in sorted(set(b_res) | set(a_res)):
        b, a = b_res.get(lid), a_res.get(lid)
        if b is not None and a is not None and b.get("Type") == a.get("Type"):
            bp, ap = b.get("Properties") or {}, a.get("Properties") or {}
            leaves = _leaf_changes(bp, ap)
            leaves += [((k,), b.get(k), a.get(k)) for k in _COMPARED_ATTRIBUTES if b.get(k) != a.get(k)]
            if not leaves:
                continue
            rtype = str(a.get("Type"))
            props = []
            reasons = []
            for path, before, after in leaves:
                hit = replacing_path(rtype, path) if path[0] not in _COMPARED_ATTRIBUTES else None
                props.append(PropertyChange(_fmt_path(path), before, after, replaces=hit is not None))
                if hit and hit not in reasons:
                    reasons.append(hit)
            changed = {str(p[0][0]) for p in leaves}
            action = "replaced" if reasons else "modified"
            reason = f"create-only {', '.join(reasons)} changed" if reasons else ""
            out.append(
                ResourceChange(
                    lid,
                    rtype,
                    action,
                    props,
                    security_kinds(rtype, lid, changed, boundary),
                    policy_changes(bp, ap),
                    reason,
                )
            )
            continue
        if b is not None and a is not None:  # type changed: always a new resource
            rtype = str(a.get("Type"))
            reason = f"type {b.get('Type')} -> {rtype}"
            action = "replaced"
        elif a is not None:
            rtype, action, reason = str(a.get("Type")), "added", ""
        else:
            assert b is not None
            rtype, action, reason = str(b.get("Type")), "removed", ""
        bp = (b or {}).get("Properties") or {}
        ap = (a or {}).get("Properties") or {}
        out.append(
            ResourceChange(
                lid,
                rtype,
                action,
                [],
                security_kinds(rtype, lid, set(bp) | set(ap) or {"*"}, boundary),
                policy_changes(bp, ap),
                reason,
            )
        )
    _mark_dependents(out, a_res)
    return out


def _references(value: Any) -> set[str]:
    if isinstance(value, dict):
        if "Ref" in value and len(value) == 1:
            return {str(value["Ref"])}
        if "Fn::GetAtt" in value and len(value) == 1:
            arg = value["Fn::GetAtt"]
            return {str(arg[0] if isinstance(arg, list) else str(arg).split(".")[0])}
        return set().union(*(_references(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_references(v) for v in value)) if value else set()
    return set()


def _mark_dependents(changes: list[ResourceChange], head: dict[str, Any]) -> None:
    """A resource that references a replaced one gets a new value after deploy even though
    its template text is unchanged (the new physical id or ARN): say so."""
    replaced = {c.logical_id for c in changes if c.action == "replaced"}
    if not replaced:
        return
    seen = {c.logical_id: c for c in changes}
    for lid, res in sorted(head.items()):
        refs = _references(res.get("Properties") or {}) & replaced
        if not refs or lid in replaced:
            continue
        note = f"references replaced {', '.join(sorted(refs))}: gets its new id"
        if lid in seen:
            seen[lid].reason = "; ".join(x for x in (seen[lid].reason, note) if x)
        else:
            rtype = str(res.get("Type"))
            changes.append(ResourceChange(lid, rtype, "modified", reason=note))


def compare_assemblies(base: dict[str, StackArtifact], head: dict[str, StackArtifact]) -> list[StackDiff]:
    out: list[StackDiff] = []
    for name in sorted(set(base) | set(head)):
        b, a = base.get(name), head.get(name)
        b_tpl = json.loads(b.template_body()) if b else None
        a_tpl = json.loads(a.template_body()) if a else None
        changes = compare_templates(b_tpl, a_tpl)
        art = a or b
        assert art is not None
        status = "added" if b is None else "removed" if a is None else "modified"
        if changes or status != "modified":
            client = art.tags.get(CLIENT_TAG, MSP_SIDE)
            out.append(StackDiff(name, client, art.account, art.region, status, changes))
    return out


# --- effective config -------------------------------------------------------------------


def _effective(root: Path, overrides: Path, today: str | None) -> tuple[dict[str, dict[str, Any]], str]:
    """Client -> effective config (as plain data) of the project at ``root``, read with this
    version's loader; plus a note when it cannot be read."""
    portfolio, problems = load_portfolio(
        overrides,
        defaults_file=root / DEFAULTS_FILE,
        profiles_dir=root / PROFILES_DIR,
        today=date.fromisoformat(today) if today else None,
    )
    if portfolio is None:
        errors = [str(p) for p in problems if p.severity == "error"]
        return {}, f"{len(errors)} validation error(s), first: {errors[0] if errors else '?'}"
    out = {}
    for c in portfolio.clients:
        data = c.model_dump(mode="json", exclude={"source_file"})
        data["config_rules"] = sorted(r["name"] for r in data["config_rules"])
        out[c.client] = data
    return out, ""


def config_changes(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[ConfigChange]:
    before, after = before or {}, after or {}
    out = []
    for key in sorted(set(before) | set(after)):
        b, a = before.get(key), after.get(key)
        if b == a:
            continue
        if isinstance(b, list) and isinstance(a, list) and key == "config_rules":
            removed = [x for x in b if x not in a]
            added = [x for x in a if x not in b]
            out.append(ConfigChange(key, removed and [f"-{x}" for x in removed], added and [f"+{x}" for x in added]))
        else:
            out.append(ConfigChange(key, b, a))
    return out


# --- the whole diff ---------------------------------------------------------------------


def run_diff(project: Path, overrides_rel: str = "overrides", base: str | None = None) -> DiffReport:
    """Compare the working tree of ``project`` with ``base`` (see the module docstring)."""
    started = time.monotonic()
    project = project.resolve()
    if not (project / "app.py").is_file():
        raise DiffError(f"{project} has no app.py: run vend diff from the project folder (or pass --project)")
    if Path(overrides_rel).is_absolute() or Path(overrides_rel).parts[:1] == ("..",):
        raise DiffError(
            f"the override folder {overrides_rel} is outside the project {project}: vend diff compares the "
            "override files git tracks in the project; pass --overrides DIR inside it (or --project)"
        )
    sha, described = resolve_base(project, base)
    files = changed_files(project, sha)
    report = DiffReport(base_ref=described, base_sha=sha, changed_files=files)
    with tempfile.TemporaryDirectory(prefix="vend-diff-") as tmp_name:
        tmp = Path(tmp_name)
        base_root = export_tree(project, sha, tmp / "base")
        # An exception that has expired since REF was committed must not hide the base side.
        base_day = _git(["show", "-s", "--format=%cs", sha], project).strip()
        base_over, head_over = base_root / overrides_rel, project / overrides_rel
        if not base_over.is_dir() and not head_over.is_dir():
            raise DiffError(f"no override folder {overrides_rel} in the project, on either side: pass --overrides DIR")
        base_clients, head_clients = _client_profiles(base_over), _client_profiles(head_over)
        reasons = affected_clients(files, base_clients, head_clients, overrides_rel)
        if not reasons:
            report.seconds = round(time.monotonic() - started, 2)
            return report
        on_base = [c for c in reasons if c in base_clients]
        on_head = [c for c in reasons if c in head_clients]
        jobs = [
            (base_root, base_over, on_base, tmp / "base.out", base_day),
            (project, head_over, on_head, tmp / "head.out", None),
        ]
        cache = _cache_dir(project)
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = [
                pool.submit(synthesize_side, root, over, cl, out, today=day, cache_dir=cache)
                for root, over, cl, out, day in jobs
            ]
            effective_base = _effective(base_root, base_over, base_day)
            effective_head = _effective(project, head_over, None)
            for f in futures:
                f.result()
        base_stacks, head_stacks = _stacks(tmp / "base.out"), _stacks(tmp / "head.out")
        report.synthesized = {"base": sorted(base_stacks), "head": sorted(head_stacks)}
        stack_diffs = compare_assemblies(base_stacks, head_stacks)
    for client, why in reasons.items():
        status = "added" if client not in base_clients else "removed" if client not in head_clients else "changed"
        cd = ClientDiff(client, status, why)
        cd.config = config_changes(effective_base[0].get(client), effective_head[0].get(client))
        cd.stacks = [s for s in stack_diffs if s.client == client]
        notes = [n for n in (effective_base[1] and f"base: {effective_base[1]}", effective_head[1]) if n]
        cd.note = "; ".join(notes)
        if status == "changed" and not cd.changed:
            cd.status = "unchanged"
        report.clients.append(cd)
    report.msp = [s for s in stack_diffs if s.client == MSP_SIDE]
    report.seconds = round(time.monotonic() - started, 2)
    return report


def _cache_dir(project: Path) -> Path:
    """The synthesis cache both sides use: the project's (``.vend-cache``, or VEND_CACHE_DIR)."""
    if os.environ.get("VEND_CACHE_DIR"):
        return default_cache_dir()
    return project / ".vend-cache"


# --- rendering --------------------------------------------------------------------------

_ACTION_MARK = {"added": "+", "removed": "-", "modified": "~", "replaced": "±"}
#: GitHub refuses a comment longer than this many characters.
GITHUB_COMMENT_LIMIT = 65_536
#: What `--format markdown` stays under: the limit, less room for what CI adds around it.
MARKDOWN_LIMIT = 60_000
#: Config values longer than this are cut in text and Markdown (never exceptions: every
#: field of a waiver is shown, reason, approver and expiry included).
CONFIG_VALUE_LIMIT = 200


def _short(value: Any, limit: int = 80) -> str:
    text = "(none)" if value is None else render_value(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def exception_text(entry: Any) -> str:
    """One exception on one line, every field: control, scope, expiry, approver, reason."""
    if not isinstance(entry, dict):
        return render_value(entry)
    scope = ""
    if entry.get("regions"):
        scope += f" in {', '.join(map(str, entry['regions']))}"
    if entry.get("rules"):
        scope += f" (rules {', '.join(map(str, entry['rules']))})"
    return (
        f"{entry.get('control')}{scope} until {entry.get('expires')}, approved by {entry.get('approver')}: "
        f"{entry.get('reason')}"
    )


def config_values(change: ConfigChange) -> tuple[list[str], list[str]]:
    """(base, head) of a config change for people: exceptions entry by entry (removed on the
    base side, added on the head side, each in full), other values cut at CONFIG_VALUE_LIMIT."""
    if change.field == "exceptions":
        before = change.before if isinstance(change.before, list) else []
        after = change.after if isinstance(change.after, list) else []
        removed = [f"- {exception_text(e)}" for e in before if e not in after]
        added = [f"+ {exception_text(e)}" for e in after if e not in before]
        return removed or ["(none)"], added or ["(none)"]
    return [_short(change.before, CONFIG_VALUE_LIMIT)], [_short(change.after, CONFIG_VALUE_LIMIT)]


def _prop_summary(r: ResourceChange, limit: int = 4) -> list[str]:
    lines = [
        f"{p.path}: {_list_delta(p.before, p.after)}" + (" (replacement)" if p.replaces else "")
        for p in r.properties
        if not any(p.path.startswith(k) for k in (*POLICY_PROPERTIES, "Policies", "ManagedPolicyArns"))
        and not p.path.startswith("PermissionsBoundary")
    ]
    lines = lines[:limit] + ([f"... {len(lines) - limit} more"] if len(lines) > limit else [])
    return r.policy_changes + lines


def _counts(obj: Any) -> str:
    parts = [f"{obj.count(a)} {a}" for a in ("added", "modified", "replaced", "removed") if obj.count(a)]
    return ", ".join(parts) or "no resource changes"


def render_text(report: DiffReport) -> str:
    lines = [f"vend diff: {report.base_ref} ({report.base_sha[:8]}) -> {report.head}"]
    if not report.clients:
        lines.append("no client is affected by the changed files" if report.changed_files else "no changes")
        return "\n".join(lines)
    sec = report.security_changes()
    if sec:
        lines.append("")
        lines.append(f"SECURITY-SENSITIVE CHANGES ({len(sec)}), review first:")
        for s, r in sec:
            kinds = ", ".join(SECURITY_LABEL[k] for k in r.security)
            lines.append(f"  {_ACTION_MARK[r.action]} {s.client} {s.stack} {r.name} ({r.type}) {r.action}: {kinds}")
            lines += [f"      {p}" for p in r.policy_changes]
    for c in report.clients:
        lines.append("")
        lines.append(f"{c.client} [{c.status}] ({'; '.join(c.reasons)}): {_counts(c)}")
        if c.note:
            lines.append(f"  note: {c.note}")
        for ch in c.config:
            before, after = config_values(ch)
            if ch.field == "exceptions":
                lines.append(f"  config {ch.field}:")
                lines += [f"    {x}" for x in (*before, *after) if x != "(none)"]
            else:
                lines.append(f"  config {ch.field}: {before[0]} -> {after[0]}")
        for s in c.stacks:
            lines += _text_stack(s)
    for s in report.msp:
        lines.append("")
        lines.append(f"{MSP_SIDE}:")
        lines += _text_stack(s)
    lines.append("")
    lines.append(
        f"summary: {len(report.clients)} client(s) affected, {_counts(report)}, {len(sec)} security-sensitive; "
        f"synthesized {len(report.synthesized.get('base', []))} + {len(report.synthesized.get('head', []))} "
        f"stack(s) in {report.seconds:.1f}s"
    )
    return "\n".join(lines)


def _text_stack(s: StackDiff) -> list[str]:
    out = [f"  stack {s.stack} ({s.account} {s.region}) {s.status}: {_counts(s)}"]
    for r in s.resources:
        why = f" [{r.reason}]" if r.reason else ""
        out.append(f"    {_ACTION_MARK[r.action]} {r.name} ({r.type}) {r.action}{why}")
        out += [f"        {line}" for line in _prop_summary(r)]
    return out


# --- Markdown: every value that comes from a file or a template is escaped -------------------

# Line breaks (and the other controls) would end a table row or open a block: shown as ⏎ / space.
_LINE_BREAKS = re.compile(r"\r\n|[\n\r\u0085\u2028\u2029]")
_CONTROLS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# Markdown's inline syntax, HTML (`<!--` would hide the rest of the comment) and table pipes.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&#!])")


def _one_line(text: Any) -> str:
    return _CONTROLS.sub(" ", _LINE_BREAKS.sub("⏎", str(text)).replace("\t", " "))


def md_text(text: Any) -> str:
    """Plain text in Markdown (a table cell or a paragraph): one line, every character that
    Markdown or HTML would interpret backslash-escaped."""
    return _MD_SPECIAL.sub(r"\\\1", _one_line(text))


def md_code(text: Any, *, in_table: bool = True) -> str:
    """``text`` as an inline code span: one line, a fence longer than any backtick run in it,
    and (in a table) ``|`` escaped, which GitHub's table parser unescapes inside code too."""
    body = _one_line(text)
    if in_table:
        body = body.replace("|", "\\|")
    runs = [len(m) for m in re.findall(r"`+", body)]
    fence = "`" * (max(runs, default=0) + 1)
    pad = " " if runs and (body.startswith("`") or body.endswith("`")) else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def md_html(text: Any) -> str:
    """Text inside our own HTML (``<summary>``): Markdown is not parsed there, HTML is."""
    return html.escape(_one_line(text), quote=True)


# Kept for callers of the old names.
_md = md_text
_code = md_code


# --- Markdown: clients with identical changes are one entry --------------------------------


@dataclass
class ClientGroup:
    """Clients whose changes are the same once each one's own names are abstracted
    (``vend-<client>-`` for its stack and resource names, ``<account>`` for its account id)."""

    clients: list[str]
    diff: ClientDiff  # the first client's changes, abstracted

    @property
    def label(self) -> str:
        return self.clients[0] if len(self.clients) == 1 else f"{len(self.clients)} clients"


def _abstract(value: Any, subs: list[tuple[str, str]]) -> Any:
    if isinstance(value, str):
        for old, new in subs:
            value = value.replace(old, new)
        return value
    if isinstance(value, list):
        return [_abstract(v, subs) for v in value]
    if isinstance(value, dict):
        return {_abstract(k, subs): _abstract(v, subs) for k, v in value.items()}
    return value


def _abstract_client(c: ClientDiff, account: str | None) -> ClientDiff:
    subs = [(f"vend-{c.client}-", "vend-<client>-")]
    if account:
        subs.append((account, "<account>"))
    data = _abstract(asdict(c), subs)
    stacks = [
        StackDiff(
            **{
                **s,
                "client": "<client>",
                "resources": [
                    ResourceChange(**{**r, "properties": [PropertyChange(**p) for p in r["properties"]]})
                    for r in s["resources"]
                ],
            }
        )
        for s in data["stacks"]
    ]
    config = [ConfigChange(**ch) for ch in data["config"]]
    return ClientDiff("<client>", data["status"], data["reasons"], config, stacks, data["note"])


def group_clients(report: DiffReport) -> list[ClientGroup]:
    """Clients with identical changes (same status, reasons, config and resource changes), in
    report order. A client alone in its group keeps its own names."""
    groups: dict[str, ClientGroup] = {}
    for c in report.clients:
        accounts = {s.account for s in c.stacks}
        abstract = _abstract_client(c, accounts.pop() if len(accounts) == 1 else None)
        key = json.dumps(asdict(abstract), sort_keys=True, default=str)
        if key in groups:
            groups[key].clients.append(c.client)
        else:
            groups[key] = ClientGroup([c.client], c)
    out = list(groups.values())
    for g in out:
        if len(g.clients) > 1:
            accounts = {s.account for s in g.diff.stacks}
            g.diff = _abstract_client(g.diff, accounts.pop() if len(accounts) == 1 else None)
    return out


def _names(clients: Sequence[str], limit: int | None = None) -> str:
    shown = list(clients) if limit is None or len(clients) <= limit else list(clients[:limit])
    more = f" and {len(clients) - len(shown)} more" if len(shown) < len(clients) else ""
    return ", ".join(shown) + more


def _security_rows(report: DiffReport) -> list[str]:
    """One row per security-sensitive change, identical changes of several clients merged."""
    rows: dict[str, list[str]] = {}
    for s, r in report.security_changes():
        sub = [(f"vend-{s.client}-", "vend-<client>-"), (s.account, "<account>")] if s.client != MSP_SIDE else []
        stack, changes = _abstract(s.stack, sub), _abstract(r.policy_changes[:6], sub)
        detail = "<br>".join(md_code(p) for p in changes) or md_text(_abstract(r.reason, sub))
        kinds = ", ".join(SECURITY_LABEL[k] for k in r.security)
        cell = f"| {md_code(stack)} | {md_text(r.name)} ({md_code(r.type)}) | {r.action} | {kinds} | {detail} |"
        rows.setdefault(cell, []).append(s.client)
    return [f"| {md_text(_names(clients, 8))} {cell}" for cell, clients in rows.items()]


def _md_group(g: ClientGroup) -> str:
    c = g.diff
    who = md_html(g.clients[0]) if len(g.clients) == 1 else f"{len(g.clients)} clients: {md_html(_names(g.clients))}"
    same = " (identical changes)" if len(g.clients) > 1 else ""
    lines = [f"<details><summary><b>{who}</b>{same}: {_counts(c)}</summary>", ""]
    if len(g.clients) > 1:
        lines += ["_`<client>` and `<account>` stand for each client's slug and account id._", ""]
    if c.note:
        lines += [f"_{md_text(c.note)}_", ""]
    if c.config:
        lines += ["Effective config:", "", "| field | base | head |", "|---|---|---|"]
        for ch in c.config:
            before, after = config_values(ch)
            lines.append(
                f"| {md_text(ch.field)} | {'<br>'.join(md_code(x) for x in before)} | "
                f"{'<br>'.join(md_code(x) for x in after)} |"
            )
        lines.append("")
    for s in c.stacks:
        lines += _md_stack(s)
    lines += ["</details>", ""]
    return "\n".join(lines)


def render_markdown(report: DiffReport, *, limit: int = MARKDOWN_LIMIT) -> str:
    """A pull-request comment: clients with identical changes as one entry, and never longer
    than ``limit`` characters (sections that do not fit are left out, with a note saying so
    and where the full report is)."""
    head = f"base {md_code(report.base_sha[:8], in_table=False)} ({md_text(report.base_ref)}) → {md_text(report.head)}"
    if not report.clients:
        what = "no client is affected by the changed files" if report.changed_files else "no changes"
        return f"### vend diff: no changes to client accounts\n\n{head}: {what}.\n"
    groups = group_clients(report)
    sec = report.security_changes()
    replaced = report.count("replaced")
    title = f"### vend diff: {len(report.clients)} client(s) affected, {_counts(report)}"
    if sec:
        title += f", ⚠️ {len(sec)} security-sensitive"
    intro = [title, "", f"{head}. Synthesized offline, only the affected clients.", ""]
    if replaced:
        intro += [f"> **{replaced} resource(s) will be replaced** (deleted and created again).", ""]
    overview = [
        "| client | why | config | stacks | added | modified | replaced | removed |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for g in groups:
        c = g.diff
        who = md_text(_names(g.clients)) + (f" ({len(g.clients)}, identical)" if len(g.clients) > 1 else "")
        overview.append(
            f"| {who} ({c.status}) | {md_text('; '.join(c.reasons))} | {len(c.config)} | {len(c.stacks)} | "
            f"{c.count('added')} | {c.count('modified')} | {c.count('replaced')} | {c.count('removed')} |"
        )
    if report.msp:
        m = report.msp
        overview.append(
            f"| {MSP_SIDE} | whole portfolio | - | {len(m)} | {sum(s.count('added') for s in m)} | "
            f"{sum(s.count('modified') for s in m)} | {sum(s.count('replaced') for s in m)} | "
            f"{sum(s.count('removed') for s in m)} |"
        )
    footer = f"<sub>{len(report.changed_files)} changed file(s); {report.seconds:.1f}s</sub>"
    # Sections in reading order; the ones after the overview are left out when they do not fit.
    security_head = ["#### ⚠️ Security-sensitive changes (review first)", ""]
    security_head += ["| client | stack | resource | change | kind | detail |", "|---|---|---|---|---|---|"]
    security = _security_rows(report)
    details = [_md_group(g) for g in groups if g.diff.changed or g.diff.note]
    if report.msp:
        msp = [f"<details><summary><b>{MSP_SIDE}</b>: {_counts(_Agg(report.msp))}</summary>", ""]
        for s in report.msp:
            msp += _md_stack(s)
        details.append("\n".join([*msp, "</details>", ""]))

    def assemble(rows: list[str], kept: list[str], overview_text: str, note: str) -> str:
        parts = ["\n".join(intro)]
        if rows:
            parts.append("\n".join([*security_head, *rows, ""]))
        parts.append(overview_text)
        parts += kept
        if note:
            parts.append(note)
        parts.append(footer)
        return "\n".join(parts) + "\n"

    overview_text = "\n".join([*overview, ""])
    full = assemble(security, details, overview_text, "")
    if len(full) <= limit:
        return full
    # Too long: keep the overview (it names every client), then as many security rows and
    # detail sections as fit, in order; say what was left out and where the full report is.
    note_room = 600
    if len(assemble([], [], overview_text, "")) + note_room > limit:
        overview_text = _compact_overview(report, groups, limit - len(assemble([], [], "", "")) - note_room)
    used = len(assemble([], [], overview_text, "")) + note_room + len("\n".join(security_head)) + 2
    rows: list[str] = []
    for row in security:
        if used + len(row) + 1 > limit:
            break
        rows.append(row)
        used += len(row) + 1
    kept: list[str] = []
    for section in details:
        if used + len(section) + 1 <= limit:
            kept.append(section)
            used += len(section) + 1
    left_out = []
    if len(rows) < len(security):
        left_out.append(f"{len(security) - len(rows)} of {len(security)} security-sensitive row(s)")
    if len(kept) < len(details):
        left_out.append(f"{len(details) - len(kept)} of {len(details)} detail section(s)")
    if overview_text != "\n".join([*overview, ""]):
        left_out.append("the per-client table (clients are listed by name only)")
    note = (
        f"> ⚠️ **Shortened to stay under GitHub's {GITHUB_COMMENT_LIMIT:,}-character comment limit**: left out "
        f"{'; '.join(left_out)}. The full report: `vend diff --format json` (or `--format text`) on this branch, "
        "or the `vend-diff` artifact of this CI run.\n"
    )
    return assemble(rows, kept, overview_text, note)


def _compact_overview(report: DiffReport, groups: list[ClientGroup], room: int) -> str:
    """Every affected client by name, as one paragraph (cut with a count if even that is too long)."""
    names = [n for g in groups for n in g.clients]
    text = f"**Affected clients ({len(names)})**: " + md_text(", ".join(names))
    if len(text) > room:
        shown: list[str] = []
        size = 60
        for n in names:
            if size + len(n) + 2 > room:
                break
            shown.append(n)
            size += len(n) + 2
        text = f"**Affected clients ({len(names)})**: " + md_text(_names(names, len(shown)))
    return text + "\n"


@dataclass
class _Agg:
    stacks: list[StackDiff]

    def count(self, action: str) -> int:
        return sum(s.count(action) for s in self.stacks)


def _md_stack(s: StackDiff) -> list[str]:
    where = f"({md_code(s.account, in_table=False)}, {md_text(s.region)})"
    lines = [f"{md_code(s.stack, in_table=False)} {where}: stack {s.status}", ""]
    if not s.resources:
        return lines
    lines += ["| resource | type | change | detail |", "|---|---|---|---|"]
    for r in s.resources:
        detail = "<br>".join(md_code(x) for x in _prop_summary(r)) or md_text(r.reason)
        if r.reason and _prop_summary(r):
            detail += f"<br>_{md_text(r.reason)}_"
        action = f"**{r.action}**" if r.action in ("replaced", "removed") else r.action
        lines.append(f"| {md_text(r.name)} | {md_code(r.type)} | {action} | {detail} |")
    return [*lines, ""]


def render(report: DiffReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.to_dict(), indent=2, default=str)
    if fmt == "markdown":
        return render_markdown(report)
    return render_text(report)


def main_diff(
    project: Path,
    overrides: Path,
    base: str | None,
    fmt: str,
    exit_zero: bool,
    writes: Sequence[tuple[str, Path]] = (),
) -> int:
    """CLI entry: print the diff (and write it in other formats to ``writes``: one diff, many
    reports); 0 no changes, 1 changes (0 with ``exit_zero``), 2 could not diff."""
    project = project.resolve()
    over = (overrides if overrides.is_absolute() else (Path.cwd() / overrides)).resolve()
    if not over.is_relative_to(project):
        print(
            f"vend diff: the override folder {over} is outside the project {project}: vend diff compares the "
            "override files git tracks in the project; pass --overrides DIR inside it (or --project)",
            file=sys.stderr,
        )
        return 2
    try:
        report = run_diff(project, os.path.relpath(over, project), base)
    except DiffError as exc:
        print(f"vend diff: {exc}", file=sys.stderr)
        return 2
    print(render(report, fmt))
    for other, path in writes:
        try:
            path.write_text(render(report, other) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"vend diff: cannot write the {other} report to {path}: {exc.strerror or exc}", file=sys.stderr)
            return 2
    return 0 if exit_zero or not report.has_changes else 1
