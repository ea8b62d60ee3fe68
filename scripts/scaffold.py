"""`vend new-client`: write a valid, commented override file for a new client.

The file gets a fresh random ExternalId, the editor schema line (a path relative to the
folder it is written to), and only what differs from the MSP defaults. A slug, account id or
ExternalId already in the portfolio is refused. The written file is validated on its own
(removed again if it would not validate), so what lands in a pull request is valid; another
client's broken file does not block it, but is named in a warning.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from baseline.model import ACCOUNT_ID_PATTERN, SLUG_PATTERN
from baseline.portfolio import SCHEMA_FILE, load_portfolio
from baseline.regions import COMMERCIAL_REGIONS
from baseline.yamlsource import Problem

DEPLOY_ROLE_NAME = "VendDeploy"


@dataclass(frozen=True)
class NewClient:
    slug: str
    account_id: str
    home_region: str
    regions: tuple[str, ...]
    engagement: str = "monitoring"
    display_name: str = ""
    monthly_limit_usd: float = 1000
    notify: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()


class ScaffoldError(Exception):
    """The new client was refused; the message says why."""


def new_external_id(slug: str) -> str:
    """``<slug>-<16 random hex>``: unique per client, unguessable, valid for sts:ExternalId."""
    return f"{slug}-{secrets.token_hex(8)}"


def _taken(overrides: Path) -> dict[tuple[str, str], tuple[str, str]]:
    """(field, value) -> (slug, file) for the slug, account id and ExternalId of every override
    file that can be read: leniently, every value as text, so a file with errors elsewhere
    still takes its values."""
    out: dict[tuple[str, str], tuple[str, str]] = {}
    for f in sorted([*overrides.glob("*.yaml"), *overrides.glob("*.yml")]):
        try:
            data = yaml.load(f.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)  # everything as text
        except (yaml.YAMLError, OSError, UnicodeDecodeError, RecursionError):
            continue
        if not isinstance(data, dict):
            continue
        slug = str(data.get("client") or f.stem)
        access = data.get("access")
        access = access if isinstance(access, dict) else {}
        for field, value in (
            ("client", slug),
            ("client", f.stem),
            ("account_id", data.get("account_id")),
            ("external_id", access.get("external_id")),
        ):
            if isinstance(value, str) and value:
                out.setdefault((field, value), (slug, str(f)))
    return out


def schema_reference(folder: Path) -> str:
    """The editor schema line's path: from the folder the file is written to, to the schema."""
    return Path(os.path.relpath(SCHEMA_FILE, folder.resolve())).as_posix()


def render(c: NewClient, external_id: str, schema: str = "../baseline/override.schema.json") -> str:
    name = c.display_name or c.slug.replace("-", " ").title()
    notify = (
        f"\n  notify: [{', '.join(c.notify)}]"
        if c.notify
        else "\n  # notify: [ops@client.example]   # default: client_defaults.budget_notify"
    )
    profiles = (
        f"profiles: [{', '.join(c.profiles)}]"
        if c.profiles
        else "# profiles: [hipaa]             # rule packs from baseline/profiles/"
    )
    limit = int(c.monthly_limit_usd) if float(c.monthly_limit_usd).is_integer() else c.monthly_limit_usd
    return f"""# yaml-language-server: $schema={schema}
# {name}: written by `vend new-client`; review every value, then open a pull request.
# Only what differs from baseline/defaults.yaml belongs here (`vend show {c.slug}` prints the result).
client: {c.slug}
display_name: {json.dumps(name)}
account_id: "{c.account_id}"          # quoted: YAML would read a bare number
home_region: {c.home_region}              # trail, MSP role and budget live here
regions: [{", ".join(c.regions)}]   # Config and GuardDuty run in each
engagement: {c.engagement}               # monitoring: read-only MSP role; managed: scoped write
access:
  # The role the client's administrator creates for vend (see the next steps printed below).
  deploy_role_arn: arn:aws:iam::{c.account_id}:role/{DEPLOY_ROLE_NAME}
  external_id: {external_id}    # random, never reuse it for another client
{profiles}
budget:
  monthly_limit_usd: {limit}
  # thresholds_pct: [80, 100]       # default: client_defaults.budget_thresholds_pct{notify}
# tags:
#   required: [Owner, CostCenter, Environment]   # default: client_defaults.required_tags
# exceptions:                       # a waived control needs a reason, an approver and an expiry
#   - control: guardduty
#     reason: the client's SOC runs its own detector (ticket SEC-123)
#     approver: security-lead@msp.example
#     expires: 2026-12-31
"""


def next_steps(c: NewClient, path: Path, external_id: str, msp_account: str) -> str:
    """What to do after the file is written. The deploy role comes from `vend onboarding-template`
    (scripts/onboarding.py): it trusts only ``msp.deploy_principal_arns`` with this client's
    ExternalId, never the whole MSP account, so no trust policy is printed here."""
    template = f"onboarding-{c.slug}.json"
    return f"""wrote {path}

next steps:
  1. Onboarding: `vend onboarding-template {c.slug} --output {template}` writes the CloudFormation
     template that creates the role {DEPLOY_ROLE_NAME} in account {c.account_id}: trusted only by the MSP's
     deployment principals (msp.deploy_principal_arns in baseline/defaults.yaml, MSP account {msp_account})
     and only with this client's ExternalId, with just the permissions the baseline needs.
     Send {template} to the client's administrator, who deploys it once (CloudFormation console, or
     `aws cloudformation deploy --template-file {template} --stack-name vend-onboarding
     --capabilities CAPABILITY_NAMED_IAM`). Send the ExternalId {external_id} over a separate channel.
  2. Pull request: git checkout -b onboard-{c.slug} && git add {path} && git commit -m "Onboard {c.slug}"
     CI runs `vend validate` and posts `vend diff --format markdown` (new stacks, MSP bucket/key policy changes).
  3. After merge: `vend deploy {c.slug}` (MSP side first, then the client), then `vend drift {c.slug}`.
"""


def create(overrides: Path, c: NewClient) -> tuple[Path, str, list[Problem | str]]:
    """Write ``overrides/<slug>.yaml``; return (path, external id, warnings). Raise ScaffoldError."""
    if not re.match(SLUG_PATTERN, c.slug):
        raise ScaffoldError(f"slug {c.slug!r} must be 3-32 lowercase letters, digits and dashes")
    if not re.match(ACCOUNT_ID_PATTERN, c.account_id):
        raise ScaffoldError(f"account {c.account_id!r} must be a 12-digit AWS account id")
    for region in (c.home_region, *c.regions):
        if region not in COMMERCIAL_REGIONS:
            raise ScaffoldError(f"unknown region {region}")
    if not overrides.is_dir():
        raise ScaffoldError(f"{overrides} is not a directory")
    path = overrides / f"{c.slug}.yaml"
    taken = _taken(overrides)
    if path.exists() or ("client", c.slug) in taken:
        where = taken.get(("client", c.slug), (c.slug, str(path)))[1]
        raise ScaffoldError(f"client {c.slug} already exists ({where})")
    if ("account_id", c.account_id) in taken:
        slug, file = taken[("account_id", c.account_id)]
        raise ScaffoldError(f"account {c.account_id} already belongs to client {slug} ({file})")
    external_id = new_external_id(c.slug)
    while ("external_id", external_id) in taken:  # pragma: no cover - 64 random bits
        external_id = new_external_id(c.slug)
    path.write_text(render(c, external_id, schema_reference(overrides)), encoding="utf-8")
    # The new file on its own (defaults and profiles included): another client's broken file
    # must not block onboarding, and must not hide a problem of this one.
    portfolio, problems = load_portfolio([path])
    if portfolio is None:
        path.unlink()
        shown = [p for p in problems if p.severity == "error"]
        raise ScaffoldError("the new file would not validate:\n" + "\n".join(str(p) for p in shown))
    warnings: list[Problem | str] = [p for p in problems if p.severity != "error"]
    _, everything = load_portfolio(overrides)
    broken: dict[str, Problem] = {}
    for p in everything:
        if p.severity == "error" and Path(p.file).resolve() != path.resolve():
            broken.setdefault(p.file, p)
    warnings += [
        f"vend new-client: warning: {file}, another client's file, does not validate (first problem: "
        f"{first.line}:{first.col}: {first.path or '(document)'}: {first.message}); the portfolio cannot be "
        "synthesized or deployed until it is fixed (`vend validate`)"
        for file, first in sorted(broken.items())
    ]
    return path, external_id, warnings


def main_new_client(
    overrides: Path,
    slug: str,
    account: str,
    region: str,
    regions: Sequence[str] | None,
    engagement: str,
    display_name: str | None,
    budget: float,
    notify: Sequence[str] | None,
    profiles: Sequence[str] | None,
) -> int:
    import sys

    all_regions = tuple(dict.fromkeys([region, *(regions or [])]))
    c = NewClient(
        slug=slug,
        account_id=account,
        home_region=region,
        regions=all_regions,
        engagement=engagement,
        display_name=display_name or "",
        monthly_limit_usd=budget,
        notify=tuple(notify or ()),
        profiles=tuple(profiles or ()),
    )
    try:
        path, external_id, warnings = create(overrides, c)
    except ScaffoldError as exc:
        print(f"vend new-client: {exc}", file=sys.stderr)
        return 2
    for w in warnings:
        print(w, file=sys.stderr)
    portfolio, _ = load_portfolio([path])
    msp = portfolio.defaults.msp.account_id if portfolio else "<MSP account id>"
    print(next_steps(c, path, external_id, msp), end="")
    return 0
