"""The desired state of every control, derived once from a client's effective config.

The CDK constructs build resources from these specs and the drift checks compare live
state against the very same specs, so no expected value is ever written twice.
Names here are API: changing one replaces the resource in every client account.
This module must not import aws_cdk: the driver imports it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from baseline.exceptions import REGIONAL_CONTROLS, waived_rules, waiver
from baseline.model import MAX_TAG_KEYS_PER_RULE, EffectiveClient, MspDefaults

TRAIL_NAME = "vend-baseline"
RECORDER_NAME = "vend-recorder"
DELIVERY_CHANNEL_NAME = "vend-delivery"
CONFIG_ROLE_NAME = "vend-config-recorder"
BOUNDARY_NAME = "vend-permission-boundary"
OPERATIONS_POLICY_NAME = "vend-msp-operations"
RULE_PREFIX = "vend-"
TAG_RULE_NAME = "vend-required-tags"
KMS_ALIAS_NAME = "alias/vend-central-logs"
ALERTS_TOPIC_NAME = "vend-alerts"
ALERTS_KEY_ALIAS = "alias/vend-alerts"
ANOMALY_MONITOR_NAME = "vend-services"
ANOMALY_SUBSCRIPTION_NAME = "vend-anomalies"
TRAIL_LOG_GROUP_NAME = "vend-cloudtrail"
TRAIL_LOGS_ROLE_NAME = "vend-cloudtrail-logs"
STACK_PREFIX = "vend-"
CLOUDTRAIL_PRINCIPAL = "cloudtrail.amazonaws.com"
CONFIG_PRINCIPAL = "config.amazonaws.com"
# S3's and KMS's documented policy size limits.
BUCKET_POLICY_LIMIT_BYTES = 20 * 1024
KEY_POLICY_LIMIT_BYTES = 32 * 1024

SECURITY_AUDIT_ARN = "arn:aws:iam::aws:policy/SecurityAudit"
VIEW_ONLY_ARN = "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"
CONFIG_ROLE_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AWS_ConfigRole"
#: Every AWS managed policy a baseline role carries; the deploy role may attach only these.
BASELINE_MANAGED_POLICY_ARNS = (SECURITY_AUDIT_ARN, VIEW_ONLY_ARN, CONFIG_ROLE_POLICY_ARN)
#: The tag every resource of a client's stacks carries (value: the client slug).
CLIENT_TAG = "vend:client"
#: Instances the client tags so that they can receive the MSP's patch commands (``managed`` engagement).
MANAGED_INSTANCE_TAG_KEY = "vend:managed"
MANAGED_INSTANCE_TAG_VALUE = "true"
#: The only documents the MSP role may send to instances (AWS-owned; they take no script).
PATCH_DOCUMENTS = ("AWS-RunPatchBaseline",)


@dataclass(frozen=True)
class CentralLogging:
    """One central log bucket and its KMS key in the MSP log-archive account (a shard).

    Shard 0 keeps the original names; shard ``k`` adds ``-k`` to the bucket and key alias.
    """

    account_id: str
    region: str
    bucket_name: str
    kms_alias_arn: str
    shard: int = 0

    @property
    def kms_alias_name(self) -> str:
        return self.kms_alias_arn.split(":", 5)[5]

    @property
    def bucket_arn(self) -> str:
        return f"arn:aws:s3:::{self.bucket_name}"


@dataclass(frozen=True)
class TrailSpec:
    name: str
    bucket_name: str
    kms_key_arn: str
    s3_key_prefix: str | None = None
    is_multi_region: bool = True
    log_file_validation: bool = True
    include_global_service_events: bool = True
    is_logging: bool = True
    # Management events, read and write, are always on; these two come from the profiles.
    s3_data_events: bool = False
    cloudwatch_logs_retention_days: int | None = None
    log_group_name: str = TRAIL_LOG_GROUP_NAME
    logs_role_name: str = TRAIL_LOGS_ROLE_NAME
    #: The account's own trail is kept as the baseline trail (``inherited.cloudtrail: adopt``):
    #: the stack creates none and drift checks the adopted one.
    adopt: bool = False


@dataclass(frozen=True)
class BoundarySpec:
    """Permission boundary attached to every role the baseline creates."""

    name: str
    protected_role_names: tuple[str, ...]
    trail_name: str
    recorder_name: str
    delivery_channel_name: str
    rule_prefix: str
    stack_prefix: str = STACK_PREFIX
    alerts_topic_name: str = ALERTS_TOPIC_NAME


@dataclass(frozen=True)
class MspRoleSpec:
    role_name: str
    msp_account_id: str
    principal_arns: tuple[str, ...]
    external_id: str
    engagement: str
    managed_policy_arns: tuple[str, ...]
    operations_policy_name: str | None
    boundary_name: str
    max_session_seconds: int
    # Every session names the person behind it in the client's CloudTrail (sts:SourceIdentity).
    require_source_identity: bool = True


@dataclass(frozen=True)
class ConfigRoleSpec:
    role_name: str
    managed_policy_arns: tuple[str, ...]
    boundary_name: str


@dataclass(frozen=True)
class BudgetSpec:
    """Monthly budget, its alert topic (KMS-encrypted SNS) and Cost Anomaly Detection."""

    name: str
    limit_usd: float
    thresholds_pct: tuple[int, ...]
    emails: tuple[str, ...]
    forecast_thresholds_pct: tuple[int, ...] = ()
    topic_name: str = ALERTS_TOPIC_NAME
    key_alias: str = ALERTS_KEY_ALIAS
    anomaly_monitor_name: str = ANOMALY_MONITOR_NAME
    anomaly_subscription_name: str = ANOMALY_SUBSCRIPTION_NAME
    anomaly_threshold_usd: float = 100
    #: The account's own AWS services monitor (``inherited.anomaly_monitor``): AWS allows one
    #: per account and newer accounts come with one, so the stack creates none and attaches
    #: its subscription to this one.
    adopted_anomaly_monitor_arn: str | None = None

    def topic_arn(self, account_id: str, region: str) -> str:
        return f"arn:aws:sns:{region}:{account_id}:{self.topic_name}"


@dataclass(frozen=True)
class RecorderSpec:
    name: str
    role_name: str
    all_supported: bool
    include_global_resource_types: bool
    #: The account's own recorder is kept (``inherited.config_recorder: adopt``).
    adopt: bool = False


@dataclass(frozen=True)
class DeliveryChannelSpec:
    name: str
    bucket_name: str
    frequency: str = "TwentyFour_Hours"
    s3_key_prefix: str | None = None
    #: The account's own channel is kept (``inherited.config_delivery_channel: adopt``).
    adopt: bool = False


@dataclass(frozen=True)
class ConfigRuleSpec:
    name: str
    identifier: str
    parameters: tuple[tuple[str, str], ...]

    @property
    def parameters_dict(self) -> dict[str, str]:
        return dict(self.parameters)


# GuardDuty feature names (CloudFormation ``Features[].Name``) for each override key.
GUARDDUTY_FEATURES: dict[str, str] = {
    "s3_data_events": "S3_DATA_EVENTS",
    "eks_audit_logs": "EKS_AUDIT_LOGS",
    "ebs_malware_protection": "EBS_MALWARE_PROTECTION",
    "rds_login_events": "RDS_LOGIN_EVENTS",
    "runtime_monitoring": "RUNTIME_MONITORING",
}


@dataclass(frozen=True)
class DetectorSpec:
    enable: bool
    finding_publishing_frequency: str
    # (feature name, enabled), in GUARDDUTY_FEATURES order.
    features: tuple[tuple[str, bool], ...] = ()
    #: The account's own detector is kept (``inherited.guardduty_detector: adopt``).
    adopt: bool = False


@dataclass(frozen=True)
class RegionalBaseline:
    region: str
    is_home: bool
    recorder: RecorderSpec
    delivery_channel: DeliveryChannelSpec
    rules: tuple[ConfigRuleSpec, ...]
    tag_rules: tuple[ConfigRuleSpec, ...]
    detector: DetectorSpec
    # issue 4: controls waived in this region by an exception (baseline/exceptions.py)
    waived: frozenset[str] = frozenset()

    @property
    def tag_rule(self) -> ConfigRuleSpec:
        """The first required-tags rule (``vend-required-tags``)."""
        return self.tag_rules[0]


@dataclass(frozen=True)
class ClientBaseline:
    """Everything one client account must carry."""

    client: EffectiveClient
    trail: TrailSpec
    boundary: BoundarySpec
    msp_role: MspRoleSpec
    config_role: ConfigRoleSpec
    budget: BudgetSpec
    regional: tuple[RegionalBaseline, ...]
    logs: CentralLogging

    def region(self, name: str) -> RegionalBaseline:
        return next(r for r in self.regional if r.region == name)


def central_logging(defaults: MspDefaults, shard: int = 0) -> CentralLogging:
    """The central bucket and key of ``shard`` (0: the original, unsuffixed names)."""
    la = defaults.log_archive
    if not 0 <= shard < la.shards:
        raise ValueError(f"log shard {shard} out of range (log_archive.shards: {la.shards})")
    base = la.bucket_name or f"vend-logs-{la.account_id}-{la.region}"
    suffix = f"-{shard}" if shard else ""
    bucket = f"{base}{suffix}"
    if len(bucket) > 63:
        raise ValueError(f"central bucket name {bucket!r} is longer than 63 characters")
    return CentralLogging(
        account_id=la.account_id,
        region=la.region,
        bucket_name=bucket,
        kms_alias_arn=f"arn:aws:kms:{la.region}:{la.account_id}:{KMS_ALIAS_NAME}{suffix}",
        shard=shard,
    )


def log_shards(defaults: MspDefaults) -> tuple[CentralLogging, ...]:
    return tuple(central_logging(defaults, k) for k in range(defaults.log_archive.shards))


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash (Lamping and Veach, 2014): going from n to n+1 buckets moves
    only the keys that land in the new bucket, about 1/(n+1) of them."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * (float(1 << 31) / float((key >> 33) + 1)))
    return b


def log_shard(account_id: str, shards: int) -> int:
    """The shard of a client account: deterministic, independent of the rest of the portfolio."""
    key = int.from_bytes(hashlib.sha256(account_id.encode()).digest()[:8], "big")
    return jump_hash(key, shards)


def client_logging(client: EffectiveClient, defaults: MspDefaults) -> CentralLogging:
    return central_logging(defaults, log_shard(client.account_id, defaults.log_archive.shards))


def retention_prefix(days: int) -> str:
    """Key prefix of a retention class: ``<prefix>/AWSLogs/<account>/...``.

    One lifecycle rule per class (not per client) keeps the bucket's lifecycle
    configuration small at any portfolio size.
    """
    return f"retain-{days}d"


def retention_classes(defaults: MspDefaults, profile_retentions: Sequence[int | None]) -> tuple[int, ...]:
    """Every retention a client can get: the default and each profile's (ascending)."""
    return tuple(sorted({defaults.log_archive.retention_days, *(d for d in profile_retentions if d)}))


def decimal_text(value: float) -> str:
    """A number as text, exactly and as JavaScript writes it: 250, 1000000, 99.5 (``:g``
    would write 1e+06 and round 1234567 to 1.23457e+06)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def budget_name(client: EffectiveClient) -> str:
    """Name carries a hash of the thresholds: CloudFormation replaces a budget whose
    notifications change, and a fixed name would collide with the old one during replacement.
    Recipients are subscriptions of the alert topic, so changing them never touches the budget."""
    digest = hashlib.sha256(
        json.dumps([client.budget_thresholds_pct, client.budget_forecast_thresholds_pct]).encode()
    ).hexdigest()[:8]
    return f"vend-{client.client}-monthly-{digest}"


def tag_rules(client: EffectiveClient) -> tuple[ConfigRuleSpec, ...]:
    """REQUIRED_TAGS takes six keys: more keys become vend-required-tags, -2, -3, ..."""
    keys = client.required_tags
    chunks = [keys[i : i + MAX_TAG_KEYS_PER_RULE] for i in range(0, len(keys), MAX_TAG_KEYS_PER_RULE)]
    return tuple(
        ConfigRuleSpec(
            name=TAG_RULE_NAME if n == 1 else f"{TAG_RULE_NAME}-{n}",
            identifier="REQUIRED_TAGS",
            parameters=tuple((f"tag{i}Key", key) for i, key in enumerate(chunk, start=1)),
        )
        for n, chunk in enumerate(chunks, start=1)
    )


def tag_rule(client: EffectiveClient) -> ConfigRuleSpec:
    """The first required-tags rule (kept for callers that predate splitting)."""
    return tag_rules(client)[0]


def client_baseline(client: EffectiveClient, defaults: MspDefaults) -> ClientBaseline:
    logs = client_logging(client, defaults)
    prefix = retention_prefix(client.log_retention_days)
    features = client.guardduty_features
    msp = defaults.msp
    if client.engagement == "monitoring":
        policies: tuple[str, ...] = (SECURITY_AUDIT_ARN, VIEW_ONLY_ARN)
        operations: str | None = None
    else:
        policies = (SECURITY_AUDIT_ARN, VIEW_ONLY_ARN)
        operations = OPERATIONS_POLICY_NAME
    regional = tuple(
        RegionalBaseline(
            region=region,
            is_home=region == client.home_region,
            recorder=RecorderSpec(
                name=RECORDER_NAME,
                role_name=CONFIG_ROLE_NAME,
                all_supported=True,
                # Global types (IAM) are recorded once, in the home region, to avoid duplicates.
                include_global_resource_types=region == client.home_region,
                adopt=client.inherited.action("config_recorder", region) == "adopt",
            ),
            delivery_channel=DeliveryChannelSpec(
                name=DELIVERY_CHANNEL_NAME,
                bucket_name=logs.bucket_name,
                s3_key_prefix=prefix,
                adopt=client.inherited.action("config_delivery_channel", region) == "adopt",
            ),
            rules=tuple(
                ConfigRuleSpec(
                    name=f"{RULE_PREFIX}{rule.name}",
                    identifier=rule.identifier,
                    parameters=tuple(sorted(rule.parameters.items())),
                )
                for rule in client.config_rules
                if (rule.scope == "every" or region == client.home_region)
                and rule.name not in waived_rules(client.exceptions, region)
                and not waiver(client.exceptions, "config-rules", region)
            ),
            tag_rules=() if waiver(client.exceptions, "tag-rules", region) else tag_rules(client),
            waived=frozenset(c for c in REGIONAL_CONTROLS if waiver(client.exceptions, c, region)),
            detector=DetectorSpec(
                enable=True,
                finding_publishing_frequency=client.finding_publishing_frequency,
                features=tuple((name, bool(getattr(features, key))) for key, name in GUARDDUTY_FEATURES.items()),
                adopt=client.inherited.action("guardduty_detector", region) == "adopt",
            ),
        )
        for region in client.regions
    )
    return ClientBaseline(
        client=client,
        trail=TrailSpec(
            name=TRAIL_NAME,
            bucket_name=logs.bucket_name,
            kms_key_arn=logs.kms_alias_arn,
            s3_key_prefix=prefix,
            s3_data_events=client.trail_s3_data_events,
            cloudwatch_logs_retention_days=client.trail_cloudwatch_logs_days,
            adopt=client.inherited.cloudtrail == "adopt",
        ),
        boundary=BoundarySpec(
            name=BOUNDARY_NAME,
            protected_role_names=(msp.role_name, CONFIG_ROLE_NAME)
            + ((TRAIL_LOGS_ROLE_NAME,) if client.trail_cloudwatch_logs_days else ()),
            trail_name=TRAIL_NAME,
            recorder_name=RECORDER_NAME,
            delivery_channel_name=DELIVERY_CHANNEL_NAME,
            rule_prefix=RULE_PREFIX,
        ),
        msp_role=MspRoleSpec(
            role_name=msp.role_name,
            msp_account_id=msp.account_id,
            principal_arns=tuple(msp.principal_arns),
            external_id=client.external_id,
            engagement=client.engagement,
            managed_policy_arns=policies,
            operations_policy_name=operations,
            boundary_name=BOUNDARY_NAME,
            max_session_seconds=msp.max_session_hours * 3600,
        ),
        config_role=ConfigRoleSpec(
            role_name=CONFIG_ROLE_NAME, managed_policy_arns=(CONFIG_ROLE_POLICY_ARN,), boundary_name=BOUNDARY_NAME
        ),
        budget=BudgetSpec(
            name=budget_name(client),
            limit_usd=client.budget_limit_usd,
            thresholds_pct=client.budget_thresholds_pct,
            emails=client.budget_notify,
            forecast_thresholds_pct=client.budget_forecast_thresholds_pct,
            anomaly_threshold_usd=client.anomaly_threshold_usd,
            adopted_anomaly_monitor_arn=client.inherited.anomaly_monitor,
        ),
        regional=regional,
        logs=logs,
    )


def global_stack_name(client: str) -> str:
    return f"vend-{client}-global"


def regional_stack_name(client: str, region: str) -> str:
    return f"vend-{client}-{region}"


LOG_ARCHIVE_STACK_NAME = "vend-msp-log-archive"
