"""The typed parameter model: the single source of the override file's JSON Schema.

Three documents feed a client's baseline:

* ``baseline/defaults.yaml`` (:class:`MspDefaults`): MSP-wide values, written once.
* ``baseline/profiles/<name>.yaml`` (:class:`Profile`): shared rule packs such as ``hipaa``.
* ``overrides/<client>.yaml`` (:class:`ClientOverride`): only what differs per client.

:func:`baseline.portfolio.effective_client` merges them into an :class:`EffectiveClient`,
the one object both the CDK constructs and the drift checks read.
This module must not import aws_cdk: the driver imports it.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from baseline.exceptions import ControlException

ACCOUNT_ID_PATTERN = r"^[0-9]{12}$"
REGION_PATTERN = r"^[a-z]{2}(-[a-z]+)+-[0-9]$"
SLUG_PATTERN = r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$"
ROLE_ARN_PATTERN = r"^arn:aws:iam::[0-9]{12}:role/[A-Za-z0-9_+=,.@/-]{1,64}$"
# sts:ExternalId: 2-1224 characters of this set; no spaces.
EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9_+=,.@:/-]+$"  # length 2-1224 set on the field
EMAIL_PATTERN = r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$"
TAG_KEY_PATTERN = r"^[A-Za-z0-9_.:/=+@ -]+$"  # length 1-128 set on the field
CONFIG_RULE_NAME_PATTERN = r"^[A-Za-z0-9-]{1,64}$"
ANOMALY_MONITOR_ARN_PATTERN = r"^arn:aws:ce::[0-9]{12}:anomalymonitor/[A-Za-z0-9-]{1,64}$"

# The AWS managed rule REQUIRED_TAGS takes tag1Key..tag6Key: more keys are split over several rules.
MAX_TAG_KEYS_PER_RULE = 6
MAX_REQUIRED_TAG_KEYS = 30
# A budget notification takes at most 10 e-mail subscribers.
MAX_BUDGET_EMAILS = 10
# A budget takes at most 5 notifications (AWS::Budgets::Budget NotificationsWithSubscribers):
# one per actual and one per forecast threshold, together.
MAX_BUDGET_NOTIFICATIONS = 5

AccountId = Annotated[
    str,
    Field(
        pattern=ACCOUNT_ID_PATTERN,
        description="12-digit AWS account id, quoted so YAML keeps it a string.",
        examples=["111122223333"],
        json_schema_extra={"x-error": 'must be a 12-digit account id in quotes, e.g. "111122223333"'},
    ),
]
Region = Annotated[
    str,
    Field(
        pattern=REGION_PATTERN,
        description="AWS region code.",
        examples=["us-east-1"],
        json_schema_extra={"x-error": "must be an AWS region code such as us-east-1"},
    ),
]
Email = Annotated[
    str,
    Field(
        pattern=EMAIL_PATTERN,
        description="E-mail address.",
        examples=["cloud-ops@acme.example"],
        json_schema_extra={"x-error": "must be an e-mail address such as ops@example.com"},
    ),
]
TagKey = Annotated[
    str,
    Field(
        pattern=TAG_KEY_PATTERN,
        min_length=1,
        max_length=128,
        description="Tag key (1-128 characters).",
        examples=["CostCenter"],
        json_schema_extra={"x-error": "must be a tag key of 1-128 letters, digits, spaces or _.:/=+-@"},
    ),
]
RoleArn = Annotated[
    str,
    Field(
        pattern=ROLE_ARN_PATTERN,
        description="IAM role ARN.",
        examples=["arn:aws:iam::111122223333:role/VendDeploy"],
        json_schema_extra={"x-error": "must be an IAM role ARN: arn:aws:iam::<12 digits>:role/<name>"},
    ),
]
ExternalId = Annotated[
    str,
    Field(
        pattern=EXTERNAL_ID_PATTERN,
        min_length=2,
        max_length=1224,
        description="sts:ExternalId the client's role requires: 2-1224 characters of [A-Za-z0-9_+=,.@:/-], no spaces.",
        examples=["acme-health-4b1d9e"],
        json_schema_extra={"x-error": "must be 2-1224 characters of letters, digits and _+=,.@:/- (no spaces)"},
    ),
]
Engagement = Literal["monitoring", "managed"]
FindingFrequency = Literal["FIFTEEN_MINUTES", "ONE_HOUR", "SIX_HOURS"]
ThresholdPct = Annotated[int, Field(ge=1, le=1000)]
# The retention periods CloudWatch Logs accepts.
LogGroupRetention = Literal[
    1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653
]


class _Strict(BaseModel):
    """Unknown keys are errors: a typo must never silently fall back to a default."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- the client override file ---------------------------------------------------------------


class Access(_Strict):
    """How the driver reaches the client account."""

    deploy_role_arn: RoleArn = Field(
        description="Role in the client account that vend assumes to deploy (created by the onboarding template)."
    )
    external_id: ExternalId


class BudgetOverride(_Strict):
    """Monthly cost budget."""

    monthly_limit_usd: float = Field(gt=0, le=100_000_000, description="Monthly cost limit in USD.", examples=[5000])
    thresholds_pct: list[Annotated[int, Field(ge=1, le=1000)]] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_BUDGET_NOTIFICATIONS,
        description="Percentages of the limit that send a notification (actual cost). Default from defaults.yaml.",
        examples=[[50, 80, 100]],
    )
    notify: list[Email] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_BUDGET_EMAILS,
        description="Recipients of the budget notifications. Default from defaults.yaml.",
        examples=[["cloud-ops@acme.example", "finance@acme.example"]],
    )
    forecast_thresholds_pct: list[ThresholdPct] | None = Field(
        default=None,
        max_length=MAX_BUDGET_NOTIFICATIONS,
        description="Percentages of the limit that notify when the FORECASTED month-end cost crosses them. "
        "Default from defaults.yaml.",
        examples=[[100]],
    )
    anomaly_threshold_usd: float | None = Field(
        default=None,
        gt=0,
        le=1_000_000,
        description="Cost Anomaly Detection alerts when an anomaly's total impact reaches this many USD. "
        "Default from defaults.yaml.",
        examples=[100],
    )


class TagsOverride(_Strict):
    """Tag keys every resource must carry (AWS Config managed rule REQUIRED_TAGS)."""

    required: list[TagKey] = Field(
        min_length=1,
        max_length=MAX_REQUIRED_TAG_KEYS,
        description=f"Required tag keys; the managed rule takes {MAX_TAG_KEYS_PER_RULE} per rule, so more keys "
        "become several rules (vend-required-tags, vend-required-tags-2, ...).",
        examples=[["Owner", "CostCenter", "Environment"]],
        json_schema_extra={"x-error": f"takes 1 to {MAX_REQUIRED_TAG_KEYS} tag keys"},
    )


class GuardDutyFeatures(_Strict):
    """GuardDuty protection plans, each on or off. Unset keys keep the default from defaults.yaml."""

    s3_data_events: bool | None = Field(default=None, description="S3 Protection (S3_DATA_EVENTS).", examples=[True])
    eks_audit_logs: bool | None = Field(default=None, description="EKS Protection (EKS_AUDIT_LOGS).", examples=[False])
    ebs_malware_protection: bool | None = Field(
        default=None, description="Malware Protection for EC2 (EBS_MALWARE_PROTECTION).", examples=[True]
    )
    rds_login_events: bool | None = Field(
        default=None, description="RDS Protection (RDS_LOGIN_EVENTS).", examples=[True]
    )
    runtime_monitoring: bool | None = Field(
        default=None,
        description="Runtime Monitoring (RUNTIME_MONITORING) with GuardDuty-managed agents.",
        examples=[True],
    )


class GuardDutyOverride(_Strict):
    """GuardDuty detector settings."""

    finding_publishing_frequency: FindingFrequency | None = Field(
        default=None, description="How often GuardDuty publishes updated findings.", examples=["SIX_HOURS"]
    )
    features: GuardDutyFeatures | None = Field(
        default=None,
        description="Protection plans to turn on or off.",
        examples=[{"runtime_monitoring": True, "eks_audit_logs": False}],
    )


InheritedAction = Literal["adopt", "replace"]
#: One action for every region, or one per region (regions not named: vend deploys its own).
RegionalInheritedAction = InheritedAction | dict[Region, InheritedAction]


class InheritedOverride(_Strict):
    """What vend does with a resource the account already had before onboarding.

    AWS allows one Config recorder, one delivery channel and one GuardDuty detector per
    account and region, so deploying the baseline next to an existing one fails. The
    preflight before every deploy finds them; this setting decides, per control (and per
    region, for the regional ones)::

        inherited:
          config_recorder: {us-east-1: adopt}   # keep it there; drift checks it against the baseline
          config_delivery_channel: {us-east-1: adopt}
          guardduty_detector: replace           # every region: delete it; vend deploys its own
          cloudtrail: adopt                     # keep the account's trail instead of vend-baseline

    ``adopt`` keeps the resource and drift checks it against the baseline: a recorder,
    channel or detector is imported into the client's stack (retained, CloudFormation then
    manages it; ``baseline/adoption.py``), a trail stays outside it; ``replace`` deletes it
    before the deploy: the reviewed override is the consent. Unset while one exists: the
    client's deploy stops with a message naming this.
    """

    config_recorder: RegionalInheritedAction | None = Field(
        default=None,
        description="An existing Config recorder: adopt (keep, import into the stack, check) or replace "
        "(delete); one action, or one per region.",
        examples=[{"us-east-1": "adopt"}, "replace"],
    )
    config_delivery_channel: RegionalInheritedAction | None = Field(
        default=None,
        description="An existing Config delivery channel: adopt (keep, import into the stack, check) or "
        "replace (delete); one action, or one per region.",
        examples=[{"us-east-1": "adopt"}, "replace"],
    )
    guardduty_detector: RegionalInheritedAction | None = Field(
        default=None,
        description="An existing GuardDuty detector: adopt (keep, import into the stack, check) or replace "
        "(delete); one action, or one per region.",
        examples=["replace", {"eu-central-1": "adopt"}],
    )
    cloudtrail: InheritedAction | None = Field(
        default=None,
        description="Existing trails: adopt (keep one as the baseline trail, check it) or replace (delete them).",
        examples=["adopt"],
    )
    anomaly_monitor: str | None = Field(
        default=None,
        pattern=ANOMALY_MONITOR_ARN_PATTERN,
        description=(
            "ARN of the account's own AWS services cost monitor (Cost Anomaly Detection allows one per "
            "account and newer accounts come with one): vend creates no monitor and attaches its alert "
            "subscription to this one. Find it with `aws ce get-anomaly-monitors`."
        ),
        examples=["arn:aws:ce::111122223333:anomalymonitor/0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"],
        json_schema_extra={"x-error": "must be an anomaly monitor ARN, arn:aws:ce::<account>:anomalymonitor/<id>"},
    )

    def action(self, setting: str, region: str) -> InheritedAction | None:
        """The action for ``setting`` (e.g. ``config_recorder``) in ``region``, or None."""
        value = getattr(self, setting)
        if isinstance(value, dict):
            return value.get(region)
        return value  # type: ignore[no-any-return]


class ClientOverride(_Strict):
    """One client: ``overrides/<client>.yaml``. Only what differs from the MSP defaults."""

    client: str = Field(
        pattern=SLUG_PATTERN,
        description="Client slug: 3-32 lowercase letters, digits and dashes; equals the file name.",
        examples=["acme-health"],
        json_schema_extra={"x-error": "must be a slug of 3-32 lowercase letters, digits and dashes"},
    )
    display_name: str = Field(
        min_length=1,
        max_length=128,
        description="Human-readable client name, used in stack descriptions and reports.",
        examples=["Acme Health"],
    )
    account_id: AccountId
    home_region: Region = Field(description="Region of the client's global resources (trail, role, budget).")
    regions: list[Region] = Field(
        min_length=1, description="Regions where regional controls (Config, GuardDuty) run.", examples=[["us-east-1"]]
    )
    engagement: Engagement = Field(
        description="monitoring: read-only MSP access; managed: scoped write access.", examples=["managed"]
    )
    access: Access = Field(
        description="How vend reaches the client account: the deploy role and its ExternalId.",
        examples=[
            {"deploy_role_arn": "arn:aws:iam::111122223333:role/VendDeploy", "external_id": "acme-health-4b1d9e"}
        ],
    )
    profiles: list[str] = Field(
        default_factory=list, description="Shared rule packs from baseline/profiles/.", examples=[["hipaa"]]
    )
    budget: BudgetOverride = Field(
        description="Monthly cost budget: limit, notification thresholds and recipients.",
        examples=[{"monthly_limit_usd": 5000, "thresholds_pct": [50, 80, 100], "notify": ["cloud-ops@acme.example"]}],
    )
    tags: TagsOverride | None = Field(
        default=None,
        description="Tag keys every resource must carry. Default from defaults.yaml.",
        examples=[{"required": ["Owner", "CostCenter", "Environment"]}],
    )
    guardduty: GuardDutyOverride | None = Field(
        default=None,
        description="GuardDuty detector settings. Default from defaults.yaml.",
        examples=[{"finding_publishing_frequency": "FIFTEEN_MINUTES", "features": {"runtime_monitoring": True}}],
    )
    inherited: InheritedOverride | None = Field(
        default=None,
        description="What to do with resources the account had before onboarding (preflight).",
        examples=[{"config_recorder": {"us-east-1": "adopt"}, "guardduty_detector": "replace"}],
    )
    # issue 4: the only way to waive (part of) a control; see baseline/exceptions.py
    exceptions: list[ControlException] = Field(
        default_factory=list,
        description="Waived controls, each with reason, approver and expiry (validation fails after it).",
        examples=[
            [
                {
                    "control": "guardduty",
                    "regions": ["eu-central-1"],
                    "reason": "the client's SOC runs its own detector there (SEC-123)",
                    "approver": "security-lead@msp.example",
                    "expires": "2026-12-31",
                }
            ]
        ],
    )


# --- MSP-wide defaults and profiles ---------------------------------------------------------


class ConfigRuleDef(_Strict):
    """An AWS managed Config rule in the standard set or a profile pack."""

    name: str = Field(pattern=CONFIG_RULE_NAME_PATTERN, description="Rule name, prefixed with vend- when deployed.")
    identifier: str = Field(pattern=r"^[A-Z0-9_]+$", description="AWS managed rule identifier.")
    scope: Literal["home", "every"] = Field(
        default="every", description="home: global resources (IAM, root), evaluated once; every: each region."
    )
    parameters: dict[str, str] = Field(default_factory=dict, description="InputParameters of the rule.")
    why: str = Field(min_length=1, description="Why the MSP runs this rule (shown to reviewers and auditors).")


class MspSettings(_Strict):
    """Who the MSP is and who may act in client accounts."""

    name: str = Field(min_length=1)
    account_id: AccountId
    principal_arns: list[str] = Field(
        min_length=1,
        description="aws:PrincipalArn patterns in the MSP account allowed to assume the MSP role.",
    )
    role_name: str = Field(
        pattern=r"^[A-Za-z0-9_+=,.@-]{1,64}$", description="Name of the MSP access role in every client."
    )
    deploy_principal_arns: list[str] = Field(
        default_factory=list,
        description="aws:PrincipalArn patterns allowed to assume each client's deploy role (the onboarding "
        "template's trust); default: principal_arns.",
    )
    max_session_hours: int = Field(ge=1, le=12)


class LogArchive(_Strict):
    """The MSP's log-archive account holding the central log bucket and its KMS key."""

    account_id: AccountId
    region: Region
    deploy_role_arn: RoleArn | None = None
    external_id: ExternalId | None = None
    bucket_name: str | None = Field(default=None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
    retention_days: int = Field(ge=1, le=36500)
    shards: int = Field(
        default=1,
        ge=1,
        le=32,
        description="Central log buckets (and keys): clients are spread over them by a jump consistent hash of "
        "their account id, so raising the number moves only the clients that land on the new shard.",
    )


class ClientDefaults(_Strict):
    """Values a client gets unless its override says otherwise."""

    budget_thresholds_pct: list[Annotated[int, Field(ge=1, le=1000)]] = Field(
        min_length=1, max_length=MAX_BUDGET_NOTIFICATIONS
    )
    budget_forecast_thresholds_pct: list[ThresholdPct] = Field(
        default_factory=lambda: [100], max_length=MAX_BUDGET_NOTIFICATIONS
    )
    budget_notify: list[Email] = Field(min_length=1, max_length=MAX_BUDGET_EMAILS)
    anomaly_threshold_usd: float = Field(default=100, gt=0, le=1_000_000)
    required_tags: list[TagKey] = Field(min_length=1, max_length=MAX_REQUIRED_TAG_KEYS)
    finding_publishing_frequency: FindingFrequency
    guardduty_features: GuardDutyFeatures = Field(default_factory=GuardDutyFeatures)


class MspDefaults(_Strict):
    """``baseline/defaults.yaml``."""

    msp: MspSettings
    log_archive: LogArchive
    client_defaults: ClientDefaults
    config_rules: list[ConfigRuleDef] = Field(min_length=1)


class TrailProfile(_Strict):
    """What a profile adds to the client's CloudTrail."""

    s3_data_events: bool = Field(default=False, description="Log S3 object-level (data) events of every bucket.")
    cloudwatch_logs_retention_days: LogGroupRetention | None = Field(
        default=None,
        description="Also deliver the trail to a CloudWatch Logs group kept this many days (for metric alarms).",
    )


class Profile(_Strict):
    """``baseline/profiles/<name>.yaml``: a rule pack for regulated clients."""

    description: str
    config_rules: list[ConfigRuleDef] = Field(default_factory=list)
    log_retention_days: int | None = Field(default=None, ge=1, le=36500)
    trail: TrailProfile | None = None


# --- the merged result ----------------------------------------------------------------------


class EffectiveClient(_Strict):
    """A client after defaults -> profiles -> override; what stacks and drift both read."""

    client: str
    display_name: str
    account_id: str
    home_region: str
    regions: tuple[str, ...]
    engagement: Engagement
    deploy_role_arn: str
    external_id: str
    profiles: tuple[str, ...]
    budget_limit_usd: float
    budget_thresholds_pct: tuple[int, ...]
    budget_notify: tuple[str, ...]
    required_tags: tuple[str, ...]
    finding_publishing_frequency: FindingFrequency
    config_rules: tuple[ConfigRuleDef, ...]
    log_retention_days: int
    source_file: str
    # Added with the auditor-ready baseline; defaults keep older callers working.
    budget_forecast_thresholds_pct: tuple[int, ...] = (100,)
    anomaly_threshold_usd: float = 100
    guardduty_features: GuardDutyFeatures = GuardDutyFeatures()
    trail_s3_data_events: bool = False
    trail_cloudwatch_logs_days: int | None = None
    inherited: InheritedOverride = InheritedOverride()
    exceptions: tuple[ControlException, ...] = ()  # issue 4
