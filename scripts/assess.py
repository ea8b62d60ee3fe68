"""``vend assess``: the as-found report of an inherited account, before the first deploy.

It runs with the same access as a deploy (the client's deploy role) and changes nothing.
It looks at what an MSP must know before taking an account over: existing Config
recorders and delivery channels, GuardDuty detectors, trails, IAM users with console
passwords or access keys, root account MFA and access keys, public S3 buckets, budgets
and tag coverage. Every finding has a risk (critical, high, medium, low) and the
remediation step; a check that could not run is listed as not checked, never dropped.

Each run is saved as ``assessments/<client>/<UTC timestamp>.json`` (and ``.md`` for
people). ``vend assess <client> --compare`` runs a new assessment and shows the progress
since the first one as the 30-60-90 day remediation plan: critical and high findings are
due 30 days after the first assessment, medium 60, low 90.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from baseline.model import EffectiveClient
from baseline.spec import ClientBaseline
from scripts.aws import AssumeRoleError, AwsAccess
from scripts.preflight import account_trails, owned_resources

Risk = Literal["critical", "high", "medium", "low"]
RISKS: tuple[Risk, ...] = ("critical", "high", "medium", "low")
#: Days after the first assessment by which a finding of this risk must be resolved.
DUE_DAYS = {"critical": 30, "high": 30, "medium": 60, "low": 90}
KEY_MAX_AGE_DAYS = 90
ADMIN_POLICY = "arn:aws:iam::aws:policy/AdministratorAccess"
PUBLIC_GROUPS = (
    "http://acs.amazonaws.com/groups/global/AllUsers",
    "http://acs.amazonaws.com/groups/global/AuthenticatedUsers",
)
_TS = "%Y%m%dT%H%M%SZ"


@dataclass(frozen=True)
class AssessFinding:
    """One thing found; ``id`` is stable across runs, so runs can be compared."""

    id: str
    category: str
    region: str
    resource: str
    risk: Risk
    title: str
    remediation: str
    detail: str = ""


@dataclass
class Assessment:
    client: str
    account_id: str
    assessed_at: str  # ISO 8601, UTC
    regions: list[str]
    findings: list[AssessFinding] = field(default_factory=list)
    inventory: dict[str, Any] = field(default_factory=dict)
    not_checked: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {r: n for r in RISKS if (n := sum(1 for f in self.findings if f.risk == r))}

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["summary"] = self.counts()
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Assessment:
        return cls(
            client=data["client"],
            account_id=data["account_id"],
            assessed_at=data["assessed_at"],
            regions=list(data.get("regions", [])),
            findings=[AssessFinding(**f) for f in data.get("findings", [])],
            inventory=dict(data.get("inventory", {})),
            not_checked=list(data.get("not_checked", [])),
        )

    @property
    def when(self) -> datetime:
        return datetime.fromisoformat(self.assessed_at)


class _Run:
    def __init__(self, access: AwsAccess, session: Any, client: EffectiveClient, now: datetime) -> None:
        self.access = access
        self.session = session
        self.client = client
        self.now = now
        #: Recorders, channels, detectors and trails vend's own stacks created: not inherited.
        self.owned: set[str] = set()
        self.out = Assessment(client.client, client.account_id, now.isoformat(), list(client.regions))

    def api(self, service: str, region: str) -> Any:
        return self.access.client(self.session, service, region)

    def add(self, *args: Any, **kwargs: Any) -> None:
        self.out.findings.append(AssessFinding(*args, **kwargs))

    def check(self, what: str, fn: Callable[[], None]) -> None:
        try:
            fn()
        except ClientError as exc:
            err = exc.response.get("Error", {})
            self.out.not_checked.append(f"{what}: {err.get('Code')}: {err.get('Message')}")
        except (BotoCoreError, KeyError, ValueError) as exc:
            self.out.not_checked.append(f"{what}: {type(exc).__name__}: {exc}")


# --- the checks ------------------------------------------------------------------------------


def _config(run: _Run, region: str) -> None:
    cfg = run.api("config", region)
    recorders = cfg.describe_configuration_recorders().get("ConfigurationRecorders", [])
    status = {
        s["name"]: s for s in cfg.describe_configuration_recorder_status().get("ConfigurationRecordersStatus", [])
    }
    channels = cfg.describe_delivery_channels().get("DeliveryChannels", [])
    run.out.inventory.setdefault("config", {})[region] = {
        "recorders": [
            {"name": r["name"], "recording": bool(status.get(r["name"], {}).get("recording"))} for r in recorders
        ],
        "delivery_channels": [{"name": c["name"], "bucket": c.get("s3BucketName")} for c in channels],
    }
    decided = run.client.inherited.action
    if not recorders:
        run.add(
            f"config-off:{region}", "config", region, "-", "high",
            "AWS Config does not record in this region",
            "vend deploy creates the baseline recorder and delivery channel",
        )  # fmt: skip
    for r in recorders:
        if not status.get(r["name"], {}).get("recording"):
            run.add(
                f"config-recorder-stopped:{region}:{r['name']}", "config", region, r["name"], "high",
                "the Config recorder exists but does not record",
                "adopt it (inherited.config_recorder) and run `vend drift --remediate`, or replace it",
            )  # fmt: skip
        if r["name"] not in run.owned and not decided("config_recorder", region):
            run.add(
                f"config-recorder-existing:{region}:{r['name']}", "config", region, r["name"], "low",
                "a Config recorder exists (one per region): the first deploy needs a decision",
                f"set inherited.config_recorder: {{{region}: adopt}} (keep it, checked against the baseline) "
                "or replace (delete it, vend deploys its own)",
            )  # fmt: skip
    for c in channels:
        if c["name"] not in run.owned and not decided("config_delivery_channel", region):
            run.add(
                f"config-channel-existing:{region}:{c['name']}", "config", region, c["name"], "low",
                f"a Config delivery channel exists, delivering to s3://{c.get('s3BucketName')}",
                f"set inherited.config_delivery_channel: {{{region}: adopt}} (vend points it to the central "
                "bucket) or replace",
            )  # fmt: skip


def _guardduty(run: _Run, region: str) -> None:
    gd = run.api("guardduty", region)
    ids = gd.list_detectors().get("DetectorIds", [])
    detectors = []
    for detector_id in ids:
        det = gd.get_detector(DetectorId=detector_id)
        detectors.append({"id": detector_id, "status": det.get("Status")})
        if det.get("Status") != "ENABLED":
            run.add(
                f"guardduty-disabled:{region}", "guardduty", region, detector_id, "high",
                "the GuardDuty detector is suspended",
                "adopt it (inherited.guardduty_detector) and run `vend drift --remediate`, or replace it",
            )  # fmt: skip
        if detector_id not in run.owned and not run.client.inherited.action("guardduty_detector", region):
            run.add(
                f"guardduty-existing:{region}:{detector_id}", "guardduty", region, detector_id, "low",
                "a GuardDuty detector exists (one per region): the first deploy needs a decision",
                f"set inherited.guardduty_detector: {{{region}: adopt}} or replace",
            )  # fmt: skip
    run.out.inventory.setdefault("guardduty", {})[region] = detectors
    if not ids:
        run.add(
            f"guardduty-off:{region}", "guardduty", region, "-", "high",
            "GuardDuty is off in this region", "vend deploy creates an enabled detector",
        )  # fmt: skip


def _trails(run: _Run) -> None:
    seen: dict[str, dict[str, Any]] = {}
    # Account-wide: a multi-region trail homed in a region the client does not use still covers it.
    for t, status in account_trails(run.access, run.session, run.client.home_region, run.client.regions):
        arn = str(t.get("TrailARN", t.get("Name", "")))
        seen[arn] = {
            "name": t.get("Name"),
            "home_region": t["HomeRegion"],
            "multi_region": bool(t.get("IsMultiRegionTrail")),
            "logging": bool(status.get("IsLogging")),
            "log_file_validation": bool(t.get("LogFileValidationEnabled")),
            "bucket": t.get("S3BucketName"),
            "kms": bool(t.get("KmsKeyId")),
        }
    run.out.inventory["trails"] = list(seen.values())
    home = run.client.home_region
    if not any(t["multi_region"] and t["logging"] for t in seen.values()):
        run.add(
            "cloudtrail-no-multi-region",
            "cloudtrail",
            "global",
            "-",
            "high",
            "no multi-region trail is logging: activity in other regions is not recorded",
            "vend deploy creates the baseline trail to the MSP's central bucket",
        )
    for arn, t in seen.items():
        name = str(t["name"])
        if not t["logging"]:
            run.add(
                f"cloudtrail-stopped:{name}",
                "cloudtrail",
                t["home_region"] or home,
                arn,
                "medium",
                f"trail {name} exists but does not log",
                "start it, or replace it (inherited.cloudtrail: replace)",
            )
        if not t["log_file_validation"]:
            run.add(
                f"cloudtrail-no-validation:{name}",
                "cloudtrail",
                t["home_region"] or home,
                arn,
                "medium",
                f"trail {name} has no log file validation: tampering cannot be proven",
                "enable log file validation, or replace it with the baseline trail",
            )
        if arn in run.owned or name in run.owned or run.client.inherited.cloudtrail:
            continue
        run.add(
            f"cloudtrail-existing:{name}",
            "cloudtrail",
            t["home_region"] or home,
            arn,
            "low",
            f"the account has its own trail {name} (delivering to s3://{t['bucket']})",
            "set inherited.cloudtrail: adopt (keep it, checked against the baseline) or replace",
        )


def _iam_users(run: _Run) -> None:
    iam = run.api("iam", run.client.home_region)
    users = []
    for page in iam.get_paginator("list_users").paginate():
        users.extend(page.get("Users", []))
    inv = []
    for u in users:
        name = u["UserName"]
        try:
            iam.get_login_profile(UserName=name)
            console = True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchEntity":
                raise
            console = False
        mfa = bool(iam.list_mfa_devices(UserName=name).get("MFADevices"))
        keys = [
            k for k in iam.list_access_keys(UserName=name).get("AccessKeyMetadata", []) if k.get("Status") == "Active"
        ]
        admin = ADMIN_POLICY in {
            p["PolicyArn"] for p in iam.list_attached_user_policies(UserName=name)["AttachedPolicies"]
        }
        inv.append({"user": name, "console": console, "mfa": mfa, "active_keys": len(keys), "admin": admin})
        if console and not mfa:
            run.add(
                f"iam-console-no-mfa:{name}",
                "iam",
                "global",
                name,
                "high",
                f"IAM user {name} signs in to the console without MFA",
                "enforce MFA for the user, or move the person to SSO and delete the user",
            )
        if admin:
            run.add(
                f"iam-user-admin:{name}",
                "iam",
                "global",
                name,
                "high",
                f"IAM user {name} has AdministratorAccess",
                "replace with a role assumed through SSO; detach the policy",
            )
        for k in keys:
            created = k.get("CreateDate")
            age = (run.now - created).days if isinstance(created, datetime) else 0
            old = age > KEY_MAX_AGE_DAYS
            run.add(
                f"iam-access-key:{name}:{k['AccessKeyId']}",
                "iam",
                "global",
                name,
                "medium" if old else "low",
                f"IAM user {name} has an active access key ({age} days old)",
                "rotate it, or replace it with a role (instance profile, OIDC) and delete the key",
                detail=f"key {k['AccessKeyId']}",
            )
    run.out.inventory["iam_users"] = inv


def _root(run: _Run) -> None:
    summary = run.api("iam", run.client.home_region).get_account_summary()["SummaryMap"]
    mfa = bool(summary.get("AccountMFAEnabled"))
    keys = bool(summary.get("AccountAccessKeysPresent"))
    run.out.inventory["root"] = {"mfa": mfa, "access_keys": keys}
    if not mfa:
        run.add(
            "root-no-mfa",
            "root",
            "global",
            "root",
            "critical",
            "the root user has no MFA",
            "enable a hardware or virtual MFA device on the root user; store it with the MSP's break-glass process",
        )
    if keys:
        run.add(
            "root-access-keys",
            "root",
            "global",
            "root",
            "critical",
            "the root user has access keys",
            "delete the root user's access keys (IAM console, signed in as root)",
        )


def _s3(run: _Run) -> None:
    s3 = run.api("s3", run.client.home_region)
    inv: dict[str, Any] = {}
    try:
        block = _s3control(run).get_public_access_block(AccountId=run.client.account_id)
        conf = block.get("PublicAccessBlockConfiguration", {})
        account_block = all(
            conf.get(k) for k in ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
        )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchPublicAccessBlockConfiguration":
            raise
        account_block = False
    inv["account_public_access_block"] = account_block
    if not account_block:
        run.add(
            "s3-account-block-off",
            "s3",
            "global",
            run.client.account_id,
            "medium",
            "S3 Block Public Access is not fully on for the account",
            "turn on all four account-level Block Public Access settings (after checking no site relies on them)",
        )
    public = []
    for b in s3.list_buckets().get("Buckets", []):
        name = b["Name"]
        reasons = []
        try:
            if s3.get_bucket_policy_status(Bucket=name)["PolicyStatus"].get("IsPublic"):
                reasons.append("bucket policy")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("NoSuchBucketPolicy", "NoSuchBucket"):
                raise
        grants = s3.get_bucket_acl(Bucket=name).get("Grants", [])
        if any(g.get("Grantee", {}).get("URI") in PUBLIC_GROUPS for g in grants):
            reasons.append("ACL")
        if reasons and not account_block and not _bucket_blocked(s3, name):
            public.append(name)
            run.add(
                f"s3-public:{name}",
                "s3",
                "global",
                name,
                "critical",
                f"bucket {name} is public ({' and '.join(reasons)})",
                "remove the public grant or statement, then turn on Block Public Access; use CloudFront for websites",
            )
    inv["public_buckets"] = public
    run.out.inventory["s3"] = inv


def _s3control(run: _Run) -> Any:
    """S3 Control puts the account id in the host name; a local endpoint (the emulator) has
    no such names, so there the prefix is left out (the account id still goes in a header)."""
    endpoint = run.access.endpoint_url
    if not endpoint:
        return run.api("s3control", run.client.home_region)
    config = Config(retries={"mode": "standard", "max_attempts": 3}, inject_host_prefix=False)
    client = run.session.client("s3control", region_name=run.client.home_region, endpoint_url=endpoint, config=config)
    prefix = f"//{run.client.account_id}."

    def strip_account_host(request: Any, **_: Any) -> None:
        request.url = request.url.replace(prefix, "//", 1)

    client.meta.events.register("before-sign.s3-control", strip_account_host)
    return client


def _bucket_blocked(s3: Any, bucket: str) -> bool:
    """The bucket's own Block Public Access neutralizes public ACLs and policies."""
    try:
        conf = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "NoSuchPublicAccessBlockConfiguration":
            raise
        return False
    return bool(conf.get("IgnorePublicAcls") and conf.get("RestrictPublicBuckets"))


def _budgets(run: _Run) -> None:
    budgets = run.api("budgets", "us-east-1").describe_budgets(AccountId=run.client.account_id).get("Budgets", [])
    run.out.inventory["budgets"] = [
        {"name": b["BudgetName"], "limit": b.get("BudgetLimit", {}).get("Amount")} for b in budgets
    ]
    if not budgets:
        run.add(
            "budget-none",
            "budget",
            "global",
            "-",
            "low",
            "no cost budget: nobody hears of a cost spike",
            "vend deploy creates the monthly budget from the override (budget.monthly_limit_usd)",
        )


def _tags(run: _Run, region: str) -> None:
    required = list(run.client.required_tags)
    api = run.api("resourcegroupstaggingapi", region)
    total = missing = 0
    for page in api.get_paginator("get_resources").paginate(ResourcesPerPage=100):
        for r in page.get("ResourceTagMappingList", []):
            tags = {t["Key"]: t.get("Value", "") for t in r.get("Tags", [])}
            if "vend:client" in tags or tags.get("aws:cloudformation:stack-name", "").startswith("vend-"):
                continue  # vend's own baseline, not the client's workload
            total += 1
            missing += not set(required) <= set(tags)
    run.out.inventory.setdefault("tags", {})[region] = {"resources": total, "missing_required": missing}
    if missing:
        run.add(
            f"tags-missing:{region}",
            "tags",
            region,
            "-",
            "medium" if missing * 2 > total else "low",
            f"{missing} of {total} tagged resources miss a required tag ({', '.join(required)})",
            "tag them; the vend-required-tags Config rule reports them after the deploy",
        )


def assess_client(access: AwsAccess, baseline: ClientBaseline, *, now: datetime | None = None) -> Assessment:
    """Assess one client's account as found; raises AssumeRoleError when it cannot be reached."""
    c = baseline.client
    session = access.assume_role(
        c.deploy_role_arn, external_id=c.external_id, session_name=f"vend-assess-{c.client}", region=c.home_region
    )
    run = _Run(access, session, c, (now or datetime.now(UTC)).replace(microsecond=0))
    run.check("vend's own stacks", lambda: run.owned.update(owned_resources(access, session, baseline)))
    for region in c.regions:
        run.check(f"config {region}", lambda region=region: _config(run, region))  # type: ignore[misc]
        run.check(f"guardduty {region}", lambda region=region: _guardduty(run, region))  # type: ignore[misc]
        run.check(f"tags {region}", lambda region=region: _tags(run, region))  # type: ignore[misc]
    run.check("cloudtrail", lambda: _trails(run))
    run.check("iam users", lambda: _iam_users(run))
    run.check("root user", lambda: _root(run))
    run.check("s3", lambda: _s3(run))
    run.check("budgets", lambda: _budgets(run))
    run.out.findings.sort(key=lambda f: (RISKS.index(f.risk), f.category, f.region, f.id))
    return run.out


# --- saving and comparing ---------------------------------------------------------------------


def save(assessment: Assessment, directory: Path) -> Path:
    """Write ``<directory>/<client>/<timestamp>.json`` and ``.md``; returns the JSON path."""
    folder = directory / assessment.client
    folder.mkdir(parents=True, exist_ok=True)
    stamp = assessment.when.strftime(_TS)
    path = folder / f"{stamp}.json"
    n = 1
    while path.exists():  # two runs in the same second
        n += 1
        path = folder / f"{stamp}-{n}.json"
    path.write_text(json.dumps(assessment.to_dict(), indent=2, default=str) + "\n", encoding="utf-8")
    path.with_suffix(".md").write_text(markdown(assessment) + "\n", encoding="utf-8")
    return path


def history(directory: Path, client: str) -> list[Assessment]:
    """Every saved assessment of ``client``, oldest first."""
    folder = directory / client
    runs = [Assessment.from_dict(json.loads(p.read_text(encoding="utf-8"))) for p in sorted(folder.glob("*.json"))]
    return sorted(runs, key=lambda a: a.when)


@dataclass(frozen=True)
class PlanItem:
    finding: AssessFinding
    state: Literal["resolved", "open", "new"]
    due: str  # ISO date
    overdue: bool


@dataclass
class Progress:
    first: Assessment
    latest: Assessment
    items: list[PlanItem]

    @property
    def day(self) -> int:
        return (self.latest.when - self.first.when).days

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in self.items:
            out[i.state] = out.get(i.state, 0) + 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "client": self.first.client,
            "first": self.first.assessed_at,
            "latest": self.latest.assessed_at,
            "day": self.day,
            "summary": self.counts(),
            "plan": [{**asdict(i.finding), "state": i.state, "due": i.due, "overdue": i.overdue} for i in self.items],
        }


def compare(first: Assessment, latest: Assessment) -> Progress:
    """The 30-60-90 day plan: each finding of either run, resolved or open, with its due date."""
    before = {f.id: f for f in first.findings}
    now = {f.id: f for f in latest.findings}
    items = []
    for fid in list(before) + [i for i in now if i not in before]:
        f = now.get(fid) or before[fid]
        state: Literal["resolved", "open", "new"] = (
            "resolved" if fid not in now else ("open" if fid in before else "new")
        )
        due = first.when + timedelta(days=DUE_DAYS[f.risk])
        items.append(PlanItem(f, state, due.date().isoformat(), state != "resolved" and latest.when > due))
    items.sort(key=lambda i: (i.state == "resolved", RISKS.index(i.finding.risk), i.due, i.finding.id))
    return Progress(first, latest, items)


# --- rendering -------------------------------------------------------------------------------------


def table(a: Assessment) -> str:
    lines = [f"{a.client} ({a.account_id}) assessed {a.assessed_at}, regions {', '.join(a.regions)}"]
    for f in a.findings:
        lines.append(f"  {f.risk:<9} {f.category:<10} {f.region:<14} {f.title}")
        lines.append(f"  {'':<9} {'':<10} {'':<14} fix: {f.remediation}")
    lines += [f"  not checked: {n}" for n in a.not_checked]
    summary = ", ".join(f"{n} {r}" for r, n in a.counts().items()) or "nothing found"
    lines.append(f"summary: {summary}")
    return "\n".join(lines)


def markdown(a: Assessment) -> str:
    lines = [
        f"## Assessment of {a.client} ({a.account_id})",
        "",
        f"As found on {a.assessed_at}, regions {', '.join(a.regions)}.",
        "",
        "| risk | count |",
        "|---|---|",
        *[f"| {r} | {n} |" for r, n in a.counts().items()],
        "",
        "| risk | area | region | finding | remediation |",
        "|---|---|---|---|---|",
        *[f"| **{f.risk}** | {f.category} | {f.region} | {_md(f.title)} | {_md(f.remediation)} |" for f in a.findings],
    ]
    if a.not_checked:
        lines += ["", "Not checked:", *[f"- {_md(n)}" for n in a.not_checked]]
    return "\n".join(lines)


def progress_table(p: Progress) -> str:
    counts = p.counts()
    lines = [
        f"{p.first.client}: day {p.day} of the 90-day plan (first assessment {p.first.assessed_at}, "
        f"latest {p.latest.assessed_at})",
        f"  {counts.get('resolved', 0)} resolved, {counts.get('open', 0)} open, {counts.get('new', 0)} new",
    ]
    for i in p.items:
        flag = "OVERDUE" if i.overdue else ("done" if i.state == "resolved" else f"due {i.due}")
        lines.append(f"  {i.state:<9} {i.finding.risk:<9} {flag:<14} {i.finding.title}")
    return "\n".join(lines)


def progress_markdown(p: Progress) -> str:
    lines = [
        f"## Remediation plan for {p.first.client}: day {p.day} of 90",
        "",
        "| state | risk | due | finding | remediation |",
        "|---|---|---|---|---|",
    ]
    for i in p.items:
        due = "done" if i.state == "resolved" else (f"**overdue** ({i.due})" if i.overdue else i.due)
        lines.append(
            f"| {i.state} | {i.finding.risk} | {due} | {_md(i.finding.title)} | {_md(i.finding.remediation)} |"
        )
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def run_assess(
    access: AwsAccess,
    baseline: ClientBaseline,
    directory: Path,
    *,
    compare_first: bool = False,
    fmt: str = "table",
    now: datetime | None = None,
) -> tuple[int, str, Path | None]:
    """Assess, save, and render (the assessment, or the progress since the first one)."""
    try:
        assessment = assess_client(access, baseline, now=now)
    except AssumeRoleError as exc:
        return 1, f"cannot assess {baseline.client.client}: {exc}", None
    path = save(assessment, directory)
    if compare_first:
        runs: Sequence[Assessment] = history(directory, baseline.client.client)
        progress = compare(runs[0], assessment)
        if fmt == "json":
            return 0, json.dumps(progress.to_dict(), indent=2, default=str), path
        if fmt == "markdown":
            return 0, progress_markdown(progress), path
        return 0, progress_table(progress), path
    if fmt == "json":
        return 0, json.dumps(assessment.to_dict(), indent=2, default=str), path
    if fmt == "markdown":
        return 0, markdown(assessment), path
    return 0, table(assessment), path
