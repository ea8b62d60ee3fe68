"""The desired state of every control, derived once from a client's effective config.

The CDK constructs build resources from these specs and the drift checks compare live
state against the very same specs, so no expected value is ever written twice.
Names here are API: changing one replaces the resource in every client account.
This module must not import aws_cdk: the driver imports it.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from baseline.model import EffectiveClient, MspDefaults

TRAIL_NAME = "vend-baseline"
RECORDER_NAME = "vend-recorder"
DELIVERY_CHANNEL_NAME = "vend-delivery"
CONFIG_ROLE_NAME = "vend-config-recorder"
BOUNDARY_NAME = "vend-permission-boundary"
OPERATIONS_POLICY_NAME = "vend-msp-operations"
RULE_PREFIX = "vend-"
TAG_RULE_NAME = "vend-required-tags"
KMS_ALIAS_NAME = "alias/vend-central-logs"

SECURITY_AUDIT_ARN = "arn:aws:iam::aws:policy/SecurityAudit"
VIEW_ONLY_ARN = "arn:aws:iam::aws:policy/job-function/ViewOnlyAccess"
CONFIG_ROLE_POLICY_ARN = "arn:aws:iam::aws:policy/service-role/AWS_ConfigRole"


@dataclass(frozen=True)
class CentralLogging:
    """Where every client's trail and Config deliver: the MSP log-archive account."""

    account_id: str
    region: str
    bucket_name: str
    kms_alias_arn: str


@dataclass(frozen=True)
class TrailSpec:
    name: str
    bucket_name: str
    kms_key_arn: str
    is_multi_region: bool = True
    log_file_validation: bool = True
    include_global_service_events: bool = True
    is_logging: bool = True


@dataclass(frozen=True)
class BoundarySpec:
    """Permission boundary attached to every role the baseline creates."""

    name: str
    protected_role_names: tuple[str, ...]
    trail_name: str
    recorder_name: str
    delivery_channel_name: str
    rule_prefix: str


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


@dataclass(frozen=True)
class ConfigRoleSpec:
    role_name: str
    managed_policy_arns: tuple[str, ...]
    boundary_name: str


@dataclass(frozen=True)
class BudgetSpec:
    name: str
    limit_usd: float
    thresholds_pct: tuple[int, ...]
    emails: tuple[str, ...]


@dataclass(frozen=True)
class RecorderSpec:
    name: str
    role_name: str
    all_supported: bool
    include_global_resource_types: bool


@dataclass(frozen=True)
class DeliveryChannelSpec:
    name: str
    bucket_name: str
    frequency: str = "TwentyFour_Hours"


@dataclass(frozen=True)
class ConfigRuleSpec:
    name: str
    identifier: str
    parameters: tuple[tuple[str, str], ...]

    @property
    def parameters_dict(self) -> dict[str, str]:
        return dict(self.parameters)


@dataclass(frozen=True)
class DetectorSpec:
    enable: bool
    finding_publishing_frequency: str


@dataclass(frozen=True)
class RegionalBaseline:
    region: str
    is_home: bool
    recorder: RecorderSpec
    delivery_channel: DeliveryChannelSpec
    rules: tuple[ConfigRuleSpec, ...]
    tag_rule: ConfigRuleSpec
    detector: DetectorSpec


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

    def region(self, name: str) -> RegionalBaseline:
        return next(r for r in self.regional if r.region == name)


def central_logging(defaults: MspDefaults) -> CentralLogging:
    la = defaults.log_archive
    bucket = la.bucket_name or f"vend-logs-{la.account_id}-{la.region}"
    return CentralLogging(
        account_id=la.account_id,
        region=la.region,
        bucket_name=bucket,
        kms_alias_arn=f"arn:aws:kms:{la.region}:{la.account_id}:{KMS_ALIAS_NAME}",
    )


def budget_name(client: EffectiveClient) -> str:
    """Name carries a hash of the notifications: CloudFormation replaces a budget whose
    notifications change, and a fixed name would collide with the old one during replacement."""
    digest = hashlib.sha256(
        json.dumps([client.budget_thresholds_pct, sorted(client.budget_notify)]).encode()
    ).hexdigest()[:8]
    return f"vend-{client.client}-monthly-{digest}"


def tag_rule(client: EffectiveClient) -> ConfigRuleSpec:
    params = tuple((f"tag{i}Key", key) for i, key in enumerate(client.required_tags, start=1))
    return ConfigRuleSpec(name=TAG_RULE_NAME, identifier="REQUIRED_TAGS", parameters=params)


def client_baseline(client: EffectiveClient, defaults: MspDefaults) -> ClientBaseline:
    logs = central_logging(defaults)
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
            ),
            delivery_channel=DeliveryChannelSpec(name=DELIVERY_CHANNEL_NAME, bucket_name=logs.bucket_name),
            rules=tuple(
                ConfigRuleSpec(
                    name=f"{RULE_PREFIX}{rule.name}",
                    identifier=rule.identifier,
                    parameters=tuple(sorted(rule.parameters.items())),
                )
                for rule in client.config_rules
                if rule.scope == "every" or region == client.home_region
            ),
            tag_rule=tag_rule(client),
            detector=DetectorSpec(enable=True, finding_publishing_frequency=client.finding_publishing_frequency),
        )
        for region in client.regions
    )
    return ClientBaseline(
        client=client,
        trail=TrailSpec(name=TRAIL_NAME, bucket_name=logs.bucket_name, kms_key_arn=logs.kms_alias_arn),
        boundary=BoundarySpec(
            name=BOUNDARY_NAME,
            protected_role_names=(msp.role_name, CONFIG_ROLE_NAME),
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
        ),
        regional=regional,
    )


def global_stack_name(client: str) -> str:
    return f"vend-{client}-global"


def regional_stack_name(client: str, region: str) -> str:
    return f"vend-{client}-{region}"


LOG_ARCHIVE_STACK_NAME = "vend-msp-log-archive"
