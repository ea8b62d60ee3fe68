"""CloudFormation handlers that make the emulator really create the baseline's resources.

moto's CloudFormation reports CREATE_COMPLETE for types it has no model for, and creates
nothing. A deployed baseline would then look empty to every drift check. The classes here
are moto ``CloudFormationModel`` handlers for those types; each one calls the service
backend that the ordinary boto3 APIs read, in the stack's account and region:

- ``AWS::CloudTrail::Trail``, ``AWS::S3::BucketPolicy``,
  ``AWS::Config::ConfigurationRecorder`` / ``DeliveryChannel`` / ``ConfigRule``,
  ``AWS::GuardDuty::Detector``, ``AWS::Budgets::Budget``: new handlers.
- ``AWS::IAM::Role``, ``AWS::IAM::ManagedPolicy``, ``AWS::KMS::Key``: replace moto's
  handlers, which ignore ``ManagedPolicyArns``, fail on key tags, and lose most updates.

moto finds handlers through ``CloudFormationModel.__subclasses__()`` (direct subclasses
only, cached): every class below names ``CloudFormationModel`` as a direct base, and
:func:`scripts.emulator.server.register_models` clears moto's caches after importing this
module. Property names and shapes follow the CloudFormation resource schemas; values may
arrive as strings ("true", "5000") because templates and parameters carry them so.

Updates follow CloudFormation's rules: a change to a create-only property (a name, the
budget's notifications) replaces the resource, and replacing a resource that keeps its
custom name fails with CloudFormation's own message. What moto cannot do (rollback,
resource-level failure events) stays undone: a failing handler fails the API call with a
``ValidationError`` that names the resource.

:func:`install_engine_patches` fixes the gaps in moto's change-set engine that a
change-set based driver hits, and adds one missing Budgets read API (see there).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import cache
from typing import Any

from moto.budgets.exceptions import NotFoundException as BudgetNotFound
from moto.budgets.models import budgets_backends
from moto.budgets.responses import BudgetsResponse
from moto.cloudformation import models as cfn_engine_models
from moto.cloudformation import parsing as cfn_parsing
from moto.cloudformation.exceptions import (
    CloudFormationError,
    UnformattedGetAttTemplateException,
    ValidationError,
)
from moto.cloudtrail.models import Trail, cloudtrail_backends
from moto.config.models import ConfigBackend, config_backends
from moto.core.common_models import CloudFormationModel
from moto.guardduty.models import guardduty_backends
from moto.iam.aws_managed_policies import aws_managed_policies_data
from moto.iam.models import (
    AWSManagedPolicy,
    IAMBackend,
    ManagedPolicy,
    Role,
    iam_backends,
)
from moto.iam.policy_validation import IAMPolicyDocumentValidator
from moto.kms.models import Key, kms_backends
from moto.moto_api._internal import mock_random
from moto.s3.models import s3_backends
from moto.utilities.utils import get_partition

# ---------------------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------------------

_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


class ResourceHandlerError(CloudFormationError):
    """A resource handler failed; surfaces as a CloudFormation ``ValidationError``.

    Service backends raise errors in their own protocol (JSON for Config, GuardDuty,
    Budgets); sent back on a CloudFormation (XML) call they would not parse. Real
    CloudFormation reports them as "Resource handler returned message: ...".
    """

    code = "ValidationError"


@contextmanager
def _handler(resource_type: str, name: str) -> Iterator[None]:
    """Re-raise a backend error as a CloudFormation error naming the resource."""
    try:
        yield
    except (CloudFormationError, UnformattedGetAttTemplateException):
        raise
    except KeyError as exc:
        raise ResourceHandlerError(
            f"Properties validation failed for resource {name} with message: "
            f"#: required key [{exc.args[0]}] not found [{resource_type}]"
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any backend error fails the resource
        code = getattr(exc, "error_type", None) or getattr(exc, "code", None)
        message = getattr(exc, "message", None) or str(exc)
        raise ResourceHandlerError(
            f'Resource handler returned message: "{message}" '
            f"(HandlerErrorCode: {code or type(exc).__name__}) [{resource_type} {name}]"
        ) from exc


def _props(cloudformation_json: dict[str, Any]) -> dict[str, Any]:
    return dict(cloudformation_json.get("Properties") or {})


def _as_bool(value: Any, default: bool) -> bool:
    """CloudFormation booleans arrive as bools or as strings ("true", "False")."""
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValidationError(message=f"Value '{value}' is not a valid boolean")


def _as_float(value: Any) -> float:
    return float(value)


def _as_json_text(value: Any) -> str:
    """Policy documents and rule parameters: a JSON object or its text, sent as text."""
    return value if isinstance(value, str) else json.dumps(value)


def _as_json_object(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _api_shape(value: Any, bool_keys: frozenset[str] = frozenset()) -> Any:
    """CloudFormation's UpperCamel keys to the lowerCamel keys of JSON service APIs.

    ``bool_keys`` (CloudFormation spelling) are coerced to booleans on the way.
    """
    if isinstance(value, dict):
        shaped: dict[str, Any] = {}
        for key, item in value.items():
            api_key = key[:1].lower() + key[1:]
            if key in bool_keys:
                shaped[api_key] = _as_bool(item, False)
            else:
                shaped[api_key] = _api_shape(item, bool_keys)
        return shaped
    if isinstance(value, list):
        return [_api_shape(item, bool_keys) for item in value]
    return value


def _tag_list(props: dict[str, Any], key: str = "Tags") -> list[dict[str, str]]:
    return [{"Key": str(t["Key"]), "Value": str(t.get("Value", ""))} for t in props.get(key) or []]


def _replacement_name(
    resource_type: str,
    original_name: str,
    new_props: dict[str, Any],
    name_key: str,
    generated_name: str,
) -> str:
    """Name of the replacement resource, or CloudFormation's error for a kept custom name."""
    custom = new_props.get(name_key)
    if custom is None:
        return generated_name
    if custom == original_name:
        raise ValidationError(
            message=(
                "CloudFormation cannot update a stack when a custom-named resource requires "
                f"replacing. Rename {original_name} and update the stack again. "
                f"[{resource_type}]"
            )
        )
    return str(custom)


def _not_found(resource_type: str, identifier: str) -> str:
    """CloudFormation's answer when a resource to import does not exist."""
    return f"Resource of type '{resource_type}' with identifier '{identifier}' was not found."


def _create_only_changed(old: dict[str, Any], new: dict[str, Any], keys: Iterable[str]) -> bool:
    return any(old.get(k) != new.get(k) for k in keys)


class _Handler:
    """State every emulated resource keeps: where it lives and what was last applied.

    A plain mixin (not a ``CloudFormationModel``): moto registers only *direct*
    subclasses of ``CloudFormationModel``, so each handler class names both.
    """

    def __init__(self, name: str, account_id: str, region_name: str, props: dict[str, Any]):
        self.name = name
        self.account_id = account_id
        self.region_name = region_name
        self.partition = get_partition(region_name)
        self.properties = props

    @property
    def physical_resource_id(self) -> str:
        return self.name

    def is_created(self) -> bool:
        return True


# ---------------------------------------------------------------------------------------
# AWS::CloudTrail::Trail
# ---------------------------------------------------------------------------------------


def _kms_key_arn(key: str | None, account_id: str, region_name: str) -> str | None:
    """CloudTrail stores a bare key id as the key's ARN; ARNs and aliases stay as given."""
    if not key or key.startswith("arn:") or key.startswith("alias/"):
        return key
    return f"arn:{get_partition(region_name)}:kms:{region_name}:{account_id}:key/{key}"


class CloudTrailTrail(_Handler, CloudFormationModel):
    """``AWS::CloudTrail::Trail``: trail, event selectors, and logging per ``IsLogging``."""

    @staticmethod
    def cloudformation_name_type() -> str:
        return "TrailName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CloudTrail::Trail"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in ("Arn", "SnsTopicArn")

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        trail = self._trail()
        if attribute_name == "Arn":
            return trail.arn
        if attribute_name == "SnsTopicArn":
            return trail.topic_arn
        raise UnformattedGetAttTemplateException()

    def _trail(self) -> Trail:
        return cloudtrail_backends[self.account_id][self.region_name].get_trail(self.name)

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> CloudTrailTrail:
        props = _props(cloudformation_json)
        backend = cloudtrail_backends[account_id][region_name]
        with _handler(cls.cloudformation_type(), resource_name):
            if resource_name in backend.trails:
                raise ResourceHandlerError(
                    f"Resource of type '{cls.cloudformation_type()}' with identifier '{resource_name}' already exists."
                )
            backend.create_trail(
                resource_name,
                props["S3BucketName"],
                props.get("S3KeyPrefix"),  # type: ignore[arg-type]
                props.get("SnsTopicName"),  # type: ignore[arg-type]
                _as_bool(props.get("IncludeGlobalServiceEvents"), True),
                _as_bool(props.get("IsMultiRegionTrail"), False),
                _as_bool(props.get("EnableLogFileValidation"), False),
                _as_bool(props.get("IsOrganizationTrail"), False),
                props.get("CloudWatchLogsLogGroupArn"),  # type: ignore[arg-type]
                props.get("CloudWatchLogsRoleArn"),  # type: ignore[arg-type]
                _kms_key_arn(props.get("KMSKeyId"), account_id, region_name),  # type: ignore[arg-type]
                _tag_list(props),
            )
            resource = cls(resource_name, account_id, region_name, props)
            resource._apply_selectors_and_logging(props)
        return resource

    def _apply_selectors_and_logging(self, props: dict[str, Any]) -> None:
        backend = cloudtrail_backends[self.account_id][self.region_name]
        trail = backend.get_trail(self.name)
        advanced = props.get("AdvancedEventSelectors") or []
        trail.event_selectors = []
        trail.advanced_event_selectors = []
        if props.get("EventSelectors") or advanced:
            backend.put_event_selectors(self.name, props.get("EventSelectors") or [], advanced)
        trail.insight_selectors = list(props.get("InsightSelectors") or [])
        if _as_bool(props.get("IsLogging"), False):
            backend.start_logging(self.name)
        else:
            backend.stop_logging(self.name)

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: CloudTrailTrail,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> CloudTrailTrail:
        props = _props(cloudformation_json)
        old = original_resource
        if _create_only_changed(old.properties, props, ["TrailName"]):
            name = _replacement_name(cls.cloudformation_type(), old.name, props, "TrailName", new_resource_name)
            replacement = cls.create_from_cloudformation_json(name, cloudformation_json, account_id, region_name)
            cls.delete_from_cloudformation_json(old.name, {}, account_id, region_name)
            return replacement
        with _handler(cls.cloudformation_type(), old.name):
            trail = old._trail()
            # Set every field, not only the given ones: a property removed from the
            # template goes back to its default, as in CloudFormation.
            trail.bucket_name = props["S3BucketName"]
            trail.check_bucket_exists()
            trail.s3_key_prefix = props.get("S3KeyPrefix")  # type: ignore[assignment]
            trail.sns_topic_name = props.get("SnsTopicName")  # type: ignore[assignment]
            trail.check_topic_exists()
            trail.include_global_service_events = _as_bool(props.get("IncludeGlobalServiceEvents"), True)
            trail.is_multi_region = _as_bool(props.get("IsMultiRegionTrail"), False)
            trail.log_validation = _as_bool(props.get("EnableLogFileValidation"), False)
            trail.is_org_trail = _as_bool(props.get("IsOrganizationTrail"), False)
            trail.cw_log_group_arn = props.get("CloudWatchLogsLogGroupArn")  # type: ignore[assignment]
            trail.cw_role_arn = props.get("CloudWatchLogsRoleArn")  # type: ignore[assignment]
            trail.kms_key_id = _kms_key_arn(  # type: ignore[assignment]
                props.get("KMSKeyId"), account_id, region_name
            )
            backend = cloudtrail_backends[account_id][region_name]
            current = backend.list_tags([trail.arn])[0]["TagsList"]
            backend.remove_tags(trail.arn, current)
            backend.add_tags(trail.arn, _tag_list(props))
            old._apply_selectors_and_logging(props)
        old.properties = props
        return old

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        cloudtrail_backends[account_id][region_name].delete_trail(resource_name)


# ---------------------------------------------------------------------------------------
# AWS::S3::BucketPolicy
# ---------------------------------------------------------------------------------------


class S3BucketPolicy(_Handler, CloudFormationModel):
    """``AWS::S3::BucketPolicy``: the policy on the named bucket (physical id: bucket)."""

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::S3::BucketPolicy"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return False

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        raise UnformattedGetAttTemplateException()

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> S3BucketPolicy:
        props = _props(cloudformation_json)
        bucket = str(props.get("Bucket", ""))
        with _handler(cls.cloudformation_type(), bucket):
            s3_backends[account_id][get_partition(region_name)].put_bucket_policy(
                bucket, _as_json_text(props["PolicyDocument"]).encode("utf-8")
            )
        return cls(bucket, account_id, region_name, props)

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: S3BucketPolicy,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> S3BucketPolicy:
        replacement = cls.create_from_cloudformation_json(
            new_resource_name, cloudformation_json, account_id, region_name
        )
        if replacement.name != original_resource.name:
            cls.delete_from_cloudformation_json(original_resource.name, {}, account_id, region_name)
        return replacement

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        backend = s3_backends[account_id][get_partition(region_name)]
        try:
            backend.get_bucket(resource_name)
        except Exception:  # noqa: BLE001 - the bucket went first: nothing left to delete
            return
        backend.delete_bucket_policy(resource_name)


# ---------------------------------------------------------------------------------------
# AWS::Config::*
# ---------------------------------------------------------------------------------------

_RECORDING_GROUP_BOOLS = frozenset({"AllSupported", "IncludeGlobalResourceTypes"})


def _config(account_id: str, region_name: str) -> ConfigBackend:
    return config_backends[account_id][region_name]


def _start_recorders(backend: ConfigBackend) -> None:
    """Start recorders once a delivery channel exists, as CloudFormation does."""
    if not backend.delivery_channels:
        return
    for recorder in backend.recorders.values():
        if getattr(recorder, "_vend_started_on_create", True) and not recorder.status.recording:
            backend.start_configuration_recorder(recorder.name)


class ConfigConfigurationRecorder(_Handler, CloudFormationModel):
    """``AWS::Config::ConfigurationRecorder``; recording starts when a channel exists."""

    def __init__(self, name: str, account_id: str, region_name: str, props: dict[str, Any]):
        super().__init__(name, account_id, region_name, props)
        suffix = mock_random.get_random_string(length=16, lower_case=True)
        self.resource_arn = (
            f"arn:{self.partition}:config:{region_name}:{account_id}:configuration-recorder/{name}/{suffix}"
        )

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Config::ConfigurationRecorder"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "ResourceARN"

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        if attribute_name == "ResourceARN":
            return self.resource_arn
        raise UnformattedGetAttTemplateException()

    @staticmethod
    def _api_recorder(name: str, props: dict[str, Any]) -> dict[str, Any]:
        recorder: dict[str, Any] = {"name": name, "roleARN": props["RoleARN"]}
        if props.get("RecordingGroup") is not None:
            recorder["recordingGroup"] = _api_shape(props["RecordingGroup"], _RECORDING_GROUP_BOOLS)
        return recorder

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> ConfigConfigurationRecorder:
        props = _props(cloudformation_json)
        backend = _config(account_id, region_name)
        with _handler(cls.cloudformation_type(), resource_name):
            if resource_name in backend.recorders:
                raise ResourceHandlerError(
                    f"Resource of type '{cls.cloudformation_type()}' with identifier '{resource_name}' already exists."
                )
            backend.put_configuration_recorder(cls._api_recorder(resource_name, props))
            recorder = backend.recorders[resource_name]
            # Underscore attributes stay out of moto's API serialization of the recorder.
            recorder._vend_started_on_create = _as_bool(  # type: ignore[attr-defined]
                props.get("StartedOnCreate"), True
            )
            _start_recorders(backend)
        return cls(resource_name, account_id, region_name, props)

    @classmethod
    def import_from_cloudformation_json(
        cls, identifier: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> ConfigConfigurationRecorder:
        """An IMPORT change set (scripts/emulator/resource_import.py): the account's recorder,
        as it is, under the stack; later updates change it in place."""
        if identifier not in _config(account_id, region_name).recorders:
            raise ResourceHandlerError(_not_found(cls.cloudformation_type(), identifier))
        return cls(identifier, account_id, region_name, _props(cloudformation_json))

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: ConfigConfigurationRecorder,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> ConfigConfigurationRecorder:
        props = _props(cloudformation_json)
        old = original_resource
        if _create_only_changed(old.properties, props, ["Name"]):
            name = _replacement_name(cls.cloudformation_type(), old.name, props, "Name", new_resource_name)
            replacement = cls.create_from_cloudformation_json(name, cloudformation_json, account_id, region_name)
            cls.delete_from_cloudformation_json(old.name, {}, account_id, region_name)
            return replacement
        with _handler(cls.cloudformation_type(), old.name):
            # put_configuration_recorder with the same name keeps the recording status.
            _config(account_id, region_name).put_configuration_recorder(cls._api_recorder(old.name, props))
        old.properties = props
        return old

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        backend = _config(account_id, region_name)
        if resource_name in backend.recorders:
            backend.stop_configuration_recorder(resource_name)
            backend.delete_configuration_recorder(resource_name)


class ConfigDeliveryChannel(_Handler, CloudFormationModel):
    """``AWS::Config::DeliveryChannel``; needs a recorder first (``DependsOn``)."""

    @staticmethod
    def cloudformation_name_type() -> str:
        return "Name"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Config::DeliveryChannel"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return False

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        raise UnformattedGetAttTemplateException()

    @staticmethod
    def _api_channel(name: str, props: dict[str, Any]) -> dict[str, Any]:
        channel = _api_shape({k: v for k, v in props.items() if k != "Name"})
        channel["name"] = name
        return dict(channel)

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> ConfigDeliveryChannel:
        props = _props(cloudformation_json)
        backend = _config(account_id, region_name)
        with _handler(cls.cloudformation_type(), resource_name):
            if resource_name in backend.delivery_channels:
                raise ResourceHandlerError(
                    f"Resource of type '{cls.cloudformation_type()}' with identifier '{resource_name}' already exists."
                )
            backend.put_delivery_channel(cls._api_channel(resource_name, props))
            _start_recorders(backend)
        return cls(resource_name, account_id, region_name, props)

    @classmethod
    def import_from_cloudformation_json(
        cls, identifier: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> ConfigDeliveryChannel:
        """An IMPORT change set: the account's delivery channel, as it is, under the stack."""
        if identifier not in _config(account_id, region_name).delivery_channels:
            raise ResourceHandlerError(_not_found(cls.cloudformation_type(), identifier))
        return cls(identifier, account_id, region_name, _props(cloudformation_json))

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: ConfigDeliveryChannel,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> ConfigDeliveryChannel:
        props = _props(cloudformation_json)
        old = original_resource
        if _create_only_changed(old.properties, props, ["Name"]):
            name = _replacement_name(cls.cloudformation_type(), old.name, props, "Name", new_resource_name)
            replacement = cls.create_from_cloudformation_json(name, cloudformation_json, account_id, region_name)
            cls.delete_from_cloudformation_json(old.name, {}, account_id, region_name)
            return replacement
        with _handler(cls.cloudformation_type(), old.name):
            _config(account_id, region_name).put_delivery_channel(cls._api_channel(old.name, props))
        old.properties = props
        return old

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        backend = _config(account_id, region_name)
        if resource_name not in backend.delivery_channels:
            return
        # Config refuses to delete the last channel while a recorder records.
        for recorder in backend.recorders.values():
            backend.stop_configuration_recorder(recorder.name)
        backend.delete_delivery_channel(resource_name)


class ConfigConfigRule(_Handler, CloudFormationModel):
    """``AWS::Config::ConfigRule`` (AWS managed and custom Lambda rules)."""

    @staticmethod
    def cloudformation_name_type() -> str:
        return "ConfigRuleName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Config::ConfigRule"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in ("Arn", "ConfigRuleId", "Compliance.Type")

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        rule = _config(self.account_id, self.region_name).config_rules[self.name]
        if attribute_name == "Arn":
            return rule.config_rule_arn
        if attribute_name == "ConfigRuleId":
            return rule.config_rule_id
        if attribute_name == "Compliance.Type":
            return "INSUFFICIENT_DATA"  # nothing is ever evaluated in the emulator
        raise UnformattedGetAttTemplateException()

    @staticmethod
    def _api_rule(name: str, props: dict[str, Any]) -> dict[str, Any]:
        source = props.get("Source") or {}
        # moto models Owner/SourceIdentifier/SourceDetails only.
        api_source = {k: source[k] for k in ("Owner", "SourceIdentifier", "SourceDetails") if k in source}
        rule: dict[str, Any] = {"ConfigRuleName": name, "Source": api_source}
        for key in ("Description", "Scope", "MaximumExecutionFrequency", "EvaluationModes"):
            if props.get(key) is not None:
                rule[key] = props[key]
        if props.get("InputParameters") is not None:
            rule["InputParameters"] = _as_json_text(props["InputParameters"])
        return rule

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> ConfigConfigRule:
        props = _props(cloudformation_json)
        backend = _config(account_id, region_name)
        with _handler(cls.cloudformation_type(), resource_name):
            if resource_name in backend.config_rules:
                raise ResourceHandlerError(
                    f"Resource of type '{cls.cloudformation_type()}' with identifier '{resource_name}' already exists."
                )
            backend.put_config_rule(cls._api_rule(resource_name, props))
        return cls(resource_name, account_id, region_name, props)

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: ConfigConfigRule,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> ConfigConfigRule:
        props = _props(cloudformation_json)
        old = original_resource
        if _create_only_changed(old.properties, props, ["ConfigRuleName"]):
            name = _replacement_name(cls.cloudformation_type(), old.name, props, "ConfigRuleName", new_resource_name)
            replacement = cls.create_from_cloudformation_json(name, cloudformation_json, account_id, region_name)
            cls.delete_from_cloudformation_json(old.name, {}, account_id, region_name)
            return replacement
        with _handler(cls.cloudformation_type(), old.name):
            _config(account_id, region_name).put_config_rule(cls._api_rule(old.name, props))
        old.properties = props
        return old

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        backend = _config(account_id, region_name)
        if resource_name in backend.config_rules:
            backend.delete_config_rule(resource_name)


# ---------------------------------------------------------------------------------------
# AWS::GuardDuty::Detector
# ---------------------------------------------------------------------------------------

_DETECTOR_BOOLS = frozenset({"Enable", "EbsVolumes"})


class GuardDutyDetector(_Handler, CloudFormationModel):
    """``AWS::GuardDuty::Detector`` (physical id: the detector id).

    Like GuardDuty, a second detector in one account and region fails; moto's own
    ``create_detector`` would silently add one.
    """

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::GuardDuty::Detector"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Id"

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        if attribute_name == "Id":
            return self.name
        raise UnformattedGetAttTemplateException()

    @staticmethod
    def _settings(props: dict[str, Any]) -> dict[str, Any]:
        return {
            "enable": _as_bool(props.get("Enable"), True),
            "finding_publishing_frequency": props.get("FindingPublishingFrequency") or "SIX_HOURS",
            "data_sources": _api_shape(props.get("DataSources") or {}, _DETECTOR_BOOLS),
            "features": _api_shape(props.get("Features") or [], _DETECTOR_BOOLS),
        }

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> GuardDutyDetector:
        props = _props(cloudformation_json)
        backend = guardduty_backends[account_id][region_name]
        with _handler(cls.cloudformation_type(), resource_name):
            if backend.detectors:
                raise ResourceHandlerError(
                    "The request is rejected because a detector already exists for the "
                    f"current account. [{cls.cloudformation_type()}]"
                )
            detector_id = backend.create_detector(
                tags={t["Key"]: t["Value"] for t in _tag_list(props)}, **cls._settings(props)
            )
        return cls(detector_id, account_id, region_name, props)

    @classmethod
    def import_from_cloudformation_json(
        cls, identifier: str, cloudformation_json: dict[str, Any], account_id: str, region_name: str
    ) -> GuardDutyDetector:
        """An IMPORT change set: the account's detector (by id), as it is, under the stack."""
        if identifier not in guardduty_backends[account_id][region_name].detectors:
            raise ResourceHandlerError(_not_found(cls.cloudformation_type(), identifier))
        return cls(identifier, account_id, region_name, _props(cloudformation_json))

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: GuardDutyDetector,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> GuardDutyDetector:
        props = _props(cloudformation_json)
        old = original_resource
        backend = guardduty_backends[account_id][region_name]
        with _handler(cls.cloudformation_type(), old.name):
            backend.update_detector(old.name, **cls._settings(props))
            backend.get_detector(old.name).tags = {t["Key"]: t["Value"] for t in _tag_list(props)}
        old.properties = props
        return old

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        guardduty_backends[account_id][region_name].delete_detector(resource_name)


# ---------------------------------------------------------------------------------------
# AWS::Budgets::Budget
# ---------------------------------------------------------------------------------------


def _amount(value: Any) -> str:
    """Budgets returns amounts as decimal strings ("5000.0")."""
    return str(float(value))


def _timestamp(value: Any) -> float:
    """``TimePeriod`` takes epoch seconds or ISO 8601; the API speaks epoch seconds."""
    text = str(value)
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _api_budget(name: str, data: dict[str, Any]) -> dict[str, Any]:
    budget: dict[str, Any] = {k: v for k, v in data.items() if k != "BudgetName"}
    budget["BudgetName"] = name
    if "BudgetLimit" in data:
        budget["BudgetLimit"] = {
            "Amount": _amount(data["BudgetLimit"]["Amount"]),
            "Unit": data["BudgetLimit"]["Unit"],
        }
    if "TimePeriod" in data:
        budget["TimePeriod"] = {k: _timestamp(v) for k, v in data["TimePeriod"].items()}
    if "CostTypes" in data:
        budget["CostTypes"] = {k: _as_bool(v, False) for k, v in data["CostTypes"].items()}
    if "CostFilters" in data:
        budget["CostFilters"] = _as_json_object(data["CostFilters"])
    if "PlannedBudgetLimits" in data:
        planned = _as_json_object(data["PlannedBudgetLimits"])
        budget["PlannedBudgetLimits"] = {
            period: {"Amount": _amount(spend["Amount"]), "Unit": spend["Unit"]} for period, spend in planned.items()
        }
    return budget


def _api_notifications(props: dict[str, Any]) -> list[dict[str, Any]]:
    notifications = []
    for item in props.get("NotificationsWithSubscribers") or []:
        notification = dict(item["Notification"])
        notification["Threshold"] = _as_float(notification["Threshold"])
        notifications.append(
            {
                "Notification": notification,
                "Subscribers": [dict(s) for s in item["Subscribers"]],
            }
        )
    return notifications


class BudgetsBudget(_Handler, CloudFormationModel):
    """``AWS::Budgets::Budget`` with ``NotificationsWithSubscribers`` (physical id: name).

    ``BudgetName`` and the notifications are create-only: changing them replaces the
    budget, and a replacement that keeps its custom name fails, as in CloudFormation.
    """

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""  # the name is nested: Budget.BudgetName

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::Budgets::Budget"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Id"

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        if attribute_name == "Id":
            return self.name
        raise UnformattedGetAttTemplateException()

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> BudgetsBudget:
        props = _props(cloudformation_json)
        name = str((props.get("Budget") or {}).get("BudgetName") or resource_name)
        with _handler(cls.cloudformation_type(), name):
            budgets_backends[account_id][get_partition(region_name)].create_budget(
                account_id=account_id,
                budget=_api_budget(name, props["Budget"]),
                notifications=_api_notifications(props),
            )
        return cls(name, account_id, region_name, props)

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: BudgetsBudget,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> BudgetsBudget:
        props = _props(cloudformation_json)
        old = original_resource
        old_name = old.properties["Budget"].get("BudgetName")
        new_name = props["Budget"].get("BudgetName")
        if old_name != new_name or _api_notifications(old.properties) != _api_notifications(props):
            name = _replacement_name(
                cls.cloudformation_type(),
                old.name,
                props["Budget"],
                "BudgetName",
                new_resource_name,
            )
            replacement = cls.create_from_cloudformation_json(
                name,
                {"Properties": {**props, "Budget": {**props["Budget"], "BudgetName": name}}},
                account_id,
                region_name,
            )
            replacement.properties = props
            cls.delete_from_cloudformation_json(old.name, {}, account_id, region_name)
            return replacement
        # UpdateBudget: same name, same notifications, new budget data.
        backend = budgets_backends[account_id][get_partition(region_name)]
        with _handler(cls.cloudformation_type(), old.name):
            backend.delete_budget(account_id=account_id, budget_name=old.name)
            backend.create_budget(
                account_id=account_id,
                budget=_api_budget(old.name, props["Budget"]),
                notifications=_api_notifications(props),
            )
        old.properties = props
        return old

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        backend = budgets_backends[account_id][get_partition(region_name)]
        if resource_name in backend.budgets[account_id]:
            backend.delete_budget(account_id=account_id, budget_name=resource_name)


# ---------------------------------------------------------------------------------------
# AWS::IAM::Role and AWS::IAM::ManagedPolicy
#
# These replace moto's handlers for the same types, not patch them: moto's Role handler
# ignores ManagedPolicyArns on create and almost everything on update, and moto's
# ManagedPolicy has no update (its stack entry turns into None) or delete handler. The
# subclasses win because they are registered after moto's classes (checked by
# server.register_models); deleting them restores moto's behaviour.
# ---------------------------------------------------------------------------------------


def _iam(account_id: str, region_name: str) -> IAMBackend:
    return iam_backends[account_id][get_partition(region_name)]


@cache
def _aws_managed_policy_data() -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(aws_managed_policies_data)
    return parsed


def _ensure_aws_managed_policy(backend: IAMBackend, policy_arn: str) -> None:
    """Make an AWS managed policy attachable without loading all ~1,600 into every account.

    moto loads AWS managed policies only with ``MOTO_IAM_LOAD_MANAGED_POLICIES`` (about
    80 ms per account); here only the attached ones are added, from moto's own copy.
    """
    if policy_arn in backend.managed_policies:
        return
    match = re.fullmatch(r"arn:[\w-]+:iam::aws:policy(/(?:.*/)?)([^/]+)", policy_arn)
    if not match:
        return
    path, name = match.groups()
    data = _aws_managed_policy_data().get(name)
    if data is None or data.get("Path", "/") != path:
        return  # unknown: attach_role_policy reports NoSuchEntity
    policy = AWSManagedPolicy.from_data(name, backend.account_id, backend.region_name, data)
    backend.aws_managed_policies.append(policy)
    backend.managed_policies[policy.arn] = policy


def _attach(backend: IAMBackend, role_name: str, policy_arn: str) -> None:
    _ensure_aws_managed_policy(backend, policy_arn)
    backend.attach_role_policy(policy_arn, role_name)


class IamRole(Role, CloudFormationModel):
    """``AWS::IAM::Role`` honouring ManagedPolicyArns, PermissionsBoundary and updates."""

    _STATE = "_vend_cfn_properties"  # last applied properties, kept on moto's Role

    @staticmethod
    def cloudformation_name_type() -> str:
        return "RoleName"

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::IAM::Role"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Role:
        props = _props(cloudformation_json)
        backend = _iam(account_id, region_name)
        with _handler(cls.cloudformation_type(), resource_name):
            role = backend.create_role(
                role_name=resource_name,
                assume_role_policy_document=_as_json_text(props["AssumeRolePolicyDocument"]),
                path=props.get("Path", "/"),
                permissions_boundary=props.get("PermissionsBoundary"),
                description=props.get("Description", ""),
                tags=_tag_list(props),
                max_session_duration=str(props.get("MaxSessionDuration", 3600)),
            )
            for policy in props.get("Policies") or []:
                backend.put_role_policy(role.name, policy["PolicyName"], _as_json_text(policy["PolicyDocument"]))
            for policy_arn in props.get("ManagedPolicyArns") or []:
                _attach(backend, role.name, policy_arn)
        setattr(role, cls._STATE, props)
        return role

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: Role,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> Role:
        props = _props(cloudformation_json)
        role = original_resource
        old: dict[str, Any] = getattr(role, cls._STATE, {})
        if _create_only_changed(old, props, ["RoleName", "Path"]):
            name = _replacement_name(cls.cloudformation_type(), role.name, props, "RoleName", new_resource_name)
            replacement = cls.create_from_cloudformation_json(name, cloudformation_json, account_id, region_name)
            cls.delete_from_cloudformation_json(role.name, {}, account_id, region_name)
            return replacement
        backend = _iam(account_id, region_name)
        with _handler(cls.cloudformation_type(), role.name):
            backend.update_assume_role_policy(role.name, _as_json_text(props["AssumeRolePolicyDocument"]))
            if props.get("PermissionsBoundary"):
                backend.put_role_permissions_boundary(role.name, props["PermissionsBoundary"])
            elif role.permissions_boundary_arn:
                backend.delete_role_permissions_boundary(role.name)
            backend.update_role(
                role.name,
                props.get("Description", ""),
                str(props.get("MaxSessionDuration", 3600)),
            )
            # Diff against the last applied template, not the live role: policies that
            # other resources attach (AWS::IAM::ManagedPolicy Roles, AWS::IAM::Policy)
            # are theirs to manage.
            old_arns = set(old.get("ManagedPolicyArns") or [])
            new_arns = list(props.get("ManagedPolicyArns") or [])
            for policy_arn in old_arns - set(new_arns):
                if policy_arn in role.managed_policies:
                    backend.detach_role_policy(policy_arn, role.name)
            for policy_arn in new_arns:
                if policy_arn not in role.managed_policies:
                    _attach(backend, role.name, policy_arn)
            new_policies = {p["PolicyName"]: p["PolicyDocument"] for p in props.get("Policies") or []}
            for policy_name in [p["PolicyName"] for p in old.get("Policies") or []]:
                if policy_name not in new_policies and policy_name in role.policies:
                    backend.delete_role_policy(role.name, policy_name)
            for policy_name, document in new_policies.items():
                backend.put_role_policy(role.name, policy_name, _as_json_text(document))
            backend.untag_role(role.name, [t["Key"] for t in role.tags])
            if props.get("Tags"):
                backend.tag_role(role.name, _tag_list(props))
        setattr(role, cls._STATE, props)
        return role

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        backend = _iam(account_id, region_name)
        role = next((r for r in backend.get_roles() if r.name == resource_name), None)
        if role is None:
            return
        # Remove what this resource declared; anything attached from elsewhere makes
        # DeleteRole fail (DeleteConflict) as in IAM, and moto's delete loop retries once
        # the other stack resources (AWS::IAM::Policy, ManagedPolicy Roles) are gone.
        props: dict[str, Any] = getattr(role, cls._STATE, {})
        for policy_arn in props.get("ManagedPolicyArns") or []:
            if policy_arn in role.managed_policies:
                backend.detach_role_policy(policy_arn, resource_name)
        for policy in props.get("Policies") or []:
            if policy["PolicyName"] in role.policies:
                backend.delete_role_policy(resource_name, policy["PolicyName"])
        backend.delete_role(resource_name)


class IamManagedPolicy(ManagedPolicy, CloudFormationModel):
    """``AWS::IAM::ManagedPolicy`` with updates (new default version, attachments) and delete.

    Instances are created as this class (not moto's) so ``Fn::GetAtt`` works on them;
    they are ordinary ``ManagedPolicy`` objects to the IAM backend.
    """

    _CREATE_ONLY = ("ManagedPolicyName", "Description", "Path")
    properties: dict[str, Any]  # last applied template properties

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""  # moto names it ManagedPolicyName or stack-logical-random

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::IAM::ManagedPolicy"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr in (
            "PolicyArn", "PolicyId", "AttachmentCount", "CreateDate", "DefaultVersionId",
            "IsAttachable", "PermissionsBoundaryUsageCount", "UpdateDate",
        )  # fmt: skip

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        values: dict[str, Any] = {
            "PolicyArn": self.arn,
            "PolicyId": self.id,
            "AttachmentCount": self.attachment_count,
            "CreateDate": self.create_date.isoformat(),
            "DefaultVersionId": self.default_version_id,
            "IsAttachable": True,
            "PermissionsBoundaryUsageCount": 0,
            "UpdateDate": self.update_date.isoformat(),
        }
        if attribute_name in values:
            return values[attribute_name]
        raise UnformattedGetAttTemplateException()

    def _attachments(self, props: dict[str, Any]) -> dict[str, set[str]]:
        return {k: set(props.get(k) or []) for k in ("Roles", "Users", "Groups")}

    def _sync_attachments(self, old: dict[str, Any], new: dict[str, Any]) -> None:
        backend = self.backend
        before, after = self._attachments(old), self._attachments(new)
        attach = {
            "Roles": backend.attach_role_policy,
            "Users": backend.attach_user_policy,
            "Groups": backend.attach_group_policy,
        }
        detach = {
            "Roles": backend.detach_role_policy,
            "Users": backend.detach_user_policy,
            "Groups": backend.detach_group_policy,
        }
        for kind in ("Roles", "Users", "Groups"):
            for name in sorted(before[kind] - after[kind]):
                detach[kind](self.arn, name)
            for name in sorted(after[kind] - before[kind]):
                attach[kind](self.arn, name)

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> IamManagedPolicy:
        props = _props(cloudformation_json)
        backend = _iam(account_id, region_name)
        name = str(props.get("ManagedPolicyName") or resource_name)
        with _handler(cls.cloudformation_type(), name):
            document = _as_json_text(props["PolicyDocument"])
            IAMPolicyDocumentValidator(document).validate()
            policy = cls(
                name,
                account_id=account_id,
                region=backend.region_name,
                description=props.get("Description"),
                document=document,
                path=props.get("Path"),
            )
            if policy.arn in backend.managed_policies:
                raise ResourceHandlerError(f"A policy called {name} already exists. Duplicate names are not allowed.")
            backend.managed_policies[policy.arn] = policy
            policy._sync_attachments({}, props)
        policy.properties = props
        return policy

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: IamManagedPolicy,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> IamManagedPolicy:
        props = _props(cloudformation_json)
        policy = original_resource
        old: dict[str, Any] = getattr(policy, "properties", {})
        if _create_only_changed(old, props, cls._CREATE_ONLY):
            name = _replacement_name(
                cls.cloudformation_type(),
                policy.name,
                props,
                "ManagedPolicyName",
                new_resource_name,
            )
            replacement = cls.create_from_cloudformation_json(name, cloudformation_json, account_id, region_name)
            cls.delete_from_cloudformation_json(policy.arn, {}, account_id, region_name)
            return replacement
        backend = _iam(account_id, region_name)
        with _handler(cls.cloudformation_type(), policy.name):
            if _as_json_object(old.get("PolicyDocument")) != _as_json_object(props["PolicyDocument"]):
                # Like CloudFormation: a new default version; the oldest goes at the limit.
                if len(policy.versions) >= 5:
                    oldest = next(v for v in policy.versions if not v.is_default)
                    backend.delete_policy_version(policy.arn, oldest.version_id)
                backend.create_policy_version(policy.arn, _as_json_text(props["PolicyDocument"]), set_as_default=True)
            policy._sync_attachments(old, props)
        policy.properties = props
        return policy

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        backend = _iam(account_id, region_name)
        policy = backend.managed_policies.get(resource_name)
        if policy is None:
            return
        for role in backend.get_roles():
            if resource_name in role.managed_policies:
                backend.detach_role_policy(resource_name, role.name)
        for user in backend.users.values():
            if resource_name in user.managed_policies:
                backend.detach_user_policy(resource_name, user.name)
        for group in backend.groups.values():
            if resource_name in group.managed_policies:
                backend.detach_group_policy(resource_name, group.name)
        backend.delete_policy(resource_name)


# ---------------------------------------------------------------------------------------
# AWS::KMS::Key
#
# Replaces moto's handler, which fails on any Tags (it expects KMS's TagKey/TagValue, not
# CloudFormation's Key/Value), stores the key policy as an object, and has no update: the
# central key's policy changes with every client added to the portfolio.
# ---------------------------------------------------------------------------------------


def _kms_tags(props: dict[str, Any]) -> list[dict[str, str]]:
    return [{"TagKey": t["Key"], "TagValue": t["Value"]} for t in _tag_list(props)]


class KmsKey(Key, CloudFormationModel):
    """``AWS::KMS::Key`` with Tags and in-place updates of policy, rotation, state, tags."""

    _STATE = "_vend_cfn_properties"
    _REPLACING = ("KeySpec", "KeyUsage", "MultiRegion", "Origin")

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::KMS::Key"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Key:
        props = _props(cloudformation_json)
        backend = kms_backends[account_id][region_name]
        with _handler(cls.cloudformation_type(), resource_name):
            key = backend.create_key(
                policy=_as_json_text(props["KeyPolicy"]),
                key_usage=props.get("KeyUsage", "ENCRYPT_DECRYPT"),
                key_spec=props.get("KeySpec", "SYMMETRIC_DEFAULT"),
                description=props.get("Description", ""),
                tags=_kms_tags(props),
                multi_region=_as_bool(props.get("MultiRegion"), False),
            )
            cls._apply_state(key, props)
        setattr(key, cls._STATE, props)
        return key

    @staticmethod
    def _apply_state(key: Key, props: dict[str, Any]) -> None:
        key.key_rotation_status = _as_bool(props.get("EnableKeyRotation"), False)
        enabled = _as_bool(props.get("Enabled"), True)
        key.enabled = enabled
        key.key_state = "Enabled" if enabled else "Disabled"

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: Key,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> Key:
        props = _props(cloudformation_json)
        key = original_resource
        old: dict[str, Any] = getattr(key, cls._STATE, {})
        backend = kms_backends[account_id][region_name]
        if _create_only_changed(old, props, cls._REPLACING):
            replacement = cls.create_from_cloudformation_json(
                new_resource_name, cloudformation_json, account_id, region_name
            )
            key.delete(account_id, region_name)
            return replacement
        with _handler(cls.cloudformation_type(), key.id):
            backend.put_key_policy(key.id, _as_json_text(props["KeyPolicy"]))
            backend.update_key_description(key.id, props.get("Description", ""))
            cls._apply_state(key, props)
            backend.tagger.delete_all_tags_for_resource(key.id)
            if props.get("Tags"):
                backend.tagger.tag_resource(key.id, _kms_tags(props))
        setattr(key, cls._STATE, props)
        return key


# ---------------------------------------------------------------------------------------
# Narrow patches of moto's change-set engine
# ---------------------------------------------------------------------------------------

_ORIGINALS: dict[str, Any] = {}


def _dependency_order(resources: dict[str, Any], names: list[str]) -> list[str]:
    """``names`` reordered so that each comes after the resources it ``DependsOn``."""
    wanted = set(names)
    ordered: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        depends = resources.get(name, {}).get("DependsOn") or []
        for dependency in [depends] if isinstance(depends, str) else depends:
            if dependency in wanted:
                visit(dependency)
        ordered.append(name)

    for name in names:
        visit(name)
    return ordered


def _build_resource_diff(
    self: cfn_parsing.ResourceMap, other_template: dict[str, Any], *args: Any, **kwargs: Any
) -> dict[str, Any]:
    diff: dict[str, Any] = _ORIGINALS["build_resource_diff"](self, other_template, *args, **kwargs)
    diff["Add"] = _dependency_order(other_template.get("Resources", {}), diff["Add"])
    return diff


def _roll_back_create(stack: Any, reason: str) -> None:
    """A failed create rolls back as in CloudFormation: what was created is deleted and the
    stack ends in ROLLBACK_COMPLETE, which the driver and the CDK CLI know how to handle."""
    stack._add_stack_event("ROLLBACK_IN_PROGRESS", resource_status_reason=f"The following resource(s) failed: {reason}")
    # Best effort: a partial create may be inconsistent.
    with contextlib.suppress(Exception):
        stack.resource_map.delete()
    stack.status = "ROLLBACK_COMPLETE"
    stack._add_stack_event("ROLLBACK_COMPLETE")


def _change_set_apply(self: cfn_engine_models.ChangeSet) -> None:
    stack = self.stack
    try:
        _ORIGINALS["apply"](self)
    except Exception as exc:
        # A failed create rolls back (ROLLBACK_COMPLETE); a failed update is not reverted,
        # so the stack says UPDATE_FAILED (as with --disable-rollback) instead of *_COMPLETE.
        stack.status = f"{self.change_set_type}_FAILED"
        stack._add_stack_event(stack.status, resource_status_reason=str(exc))
        if self.change_set_type == "CREATE":
            _roll_back_create(stack, str(exc))
        if not isinstance(stack.template, str):
            # moto creates a CREATE change set's stack with the dict {}; the next change set
            # would crash parsing it. An empty template lets a retry see every resource as new.
            stack.template = json.dumps(stack.template or {})
            stack._parse_template()
        raise
    stack.template = self.template
    stack._parse_template()
    stack.description = stack.template_dict.get("Description")
    if self.parameters:
        stack.parameters = self.parameters
    stack.output_map = stack._create_output_map()
    exports = cfn_engine_models.cloudformation_backends[stack.account_id][stack.region_name].exports
    for name in [n for n, e in exports.items() if e.exporting_stack_id == stack.stack_id]:
        del exports[name]
    for export in stack.exports:
        exports[export.name] = export


def _resource_map_update(self: cfn_parsing.ResourceMap, template: dict[str, Any], *args: Any, **kwargs: Any) -> None:
    """moto keeps a resource removed from the template in its cache, so adding it back under
    the same logical id later re-uses the deleted object instead of creating the resource
    (CloudFormation creates it). Removed resources are forgotten once the update is done."""
    removed = set(self._resource_json_map) - set(template.get("Resources") or {})
    _ORIGINALS["resource_map_update"](self, template, *args, **kwargs)
    for name in removed:
        self._parsed_resources.pop(name, None)


def _stack_resources(self: cfn_engine_models.Stack) -> Iterable[Any]:
    return [r for r in self.resource_map.values() if r is not None]


def _same_notification(stored: dict[str, Any], asked: dict[str, Any]) -> bool:
    keys = ("NotificationType", "ComparisonOperator")
    return (
        all(stored.get(k) == asked.get(k) for k in keys)
        and float(stored.get("Threshold", 0)) == float(asked.get("Threshold", 0))
        and stored.get("ThresholdType", "PERCENTAGE") == asked.get("ThresholdType", "PERCENTAGE")
    )


def _describe_subscribers_for_notification(self: BudgetsResponse) -> str:
    """Budgets ``DescribeSubscribersForNotification``, which moto 5.2.5 lacks.

    Drift checks read a budget's recipients through it; pagination is not implemented.
    """
    account_id = self._get_param("AccountId")
    budget_name = self._get_param("BudgetName")
    asked = self._get_param("Notification") or {}
    budget = self.backend.budgets[account_id].get(budget_name)
    if budget is None:
        raise BudgetNotFound(f"Unable to get budget: {budget_name} - the budget doesn't exist.")
    for notification in budget.notifications:
        if _same_notification(notification.details, asked):
            return json.dumps({"Subscribers": notification.subscribers})
    raise BudgetNotFound(f"Unable to get notification for budget: {budget_name} - the notification doesn't exist.")


class ChangeSetNotFound(CloudFormationError):
    """CloudFormation's answer for an unknown change set; moto says "Stack ... does not exist",
    which the CDK CLI does not recognise while it waits for a deleted change set to go."""

    code = "ChangeSetNotFound"

    def __init__(self, name: str) -> None:
        super().__init__(f"ChangeSet [{name}] does not exist")


def _describe_change_set(self: Any, change_set_name: str) -> Any:
    try:
        return _ORIGINALS["describe_change_set"](self, change_set_name)
    except ValidationError as exc:
        raise ChangeSetNotFound(change_set_name) from exc


def _delete_change_set(self: Any, change_set_name: str) -> None:
    known = change_set_name in self.change_sets or any(
        cs.change_set_name == change_set_name for cs in self.change_sets.values()
    )
    # CloudFormation answers an unknown change set name with success (moto: KeyError, HTTP
    # 500); the CDK CLI relies on that when it clears "cdk-deploy-change-set" before a deploy.
    if known:
        _ORIGINALS["delete_change_set"](self, change_set_name)


def install_engine_patches() -> None:
    """Fix what a change-set driver hits in moto 5.2.5's CloudFormation (idempotent).

    - Executing a change set creates new resources in template order, ignoring
      ``DependsOn`` (``create_stack`` honours it): a delivery channel before its recorder
      fails. New resources are now created in dependency order.
    - After executing a change set the stack keeps the outputs (none, for a new stack),
      parameters and exports of before. They are refreshed as ``update_stack`` would.
      A failing execution leaves the stack ``CREATE_FAILED`` / ``UPDATE_FAILED`` (what
      CloudFormation shows with rollback disabled), not ``REVIEW_IN_PROGRESS`` or the
      previous ``*_COMPLETE``; the API call itself still fails with the reason.
    - A resource whose ``Condition`` is false is listed by ``list_stack_resources`` as an
      empty entry. It is left out, as in CloudFormation.
    - Deleting an unknown change set succeeds, as in CloudFormation, instead of an HTTP 500;
      describing one is ``ChangeSetNotFound`` (what the CDK CLI waits for), not a stack error.
    - Budgets ``DescribeSubscribersForNotification`` is missing; it is added, so that the
      recipients a budget handler stored can be read back.
    - A resource removed by one update and added back by a later one is created again
      (moto re-used the deleted object): remediation re-creates resources deleted out of
      band this way.

    Each patch wraps or adds one function; :func:`uninstall_engine_patches` undoes them.
    """
    if _ORIGINALS:
        return
    _ORIGINALS["build_resource_diff"] = cfn_parsing.ResourceMap.build_resource_diff
    _ORIGINALS["resource_map_update"] = cfn_parsing.ResourceMap.update
    cfn_parsing.ResourceMap.update = _resource_map_update  # type: ignore[method-assign]
    _ORIGINALS["apply"] = cfn_engine_models.ChangeSet.apply
    _ORIGINALS["stack_resources"] = cfn_engine_models.Stack.stack_resources
    _ORIGINALS["delete_change_set"] = cfn_engine_models.CloudFormationBackend.delete_change_set
    _ORIGINALS["describe_change_set"] = cfn_engine_models.CloudFormationBackend.describe_change_set
    cfn_engine_models.CloudFormationBackend.describe_change_set = _describe_change_set  # type: ignore[method-assign]
    cfn_engine_models.CloudFormationBackend.delete_change_set = _delete_change_set  # type: ignore[method-assign]
    cfn_parsing.ResourceMap.build_resource_diff = _build_resource_diff  # type: ignore[method-assign]
    cfn_engine_models.ChangeSet.apply = _change_set_apply  # type: ignore[method-assign]
    cfn_engine_models.Stack.stack_resources = property(_stack_resources)  # type: ignore[assignment,method-assign]
    BudgetsResponse.describe_subscribers_for_notification = (  # type: ignore[attr-defined]
        _describe_subscribers_for_notification
    )


def uninstall_engine_patches() -> None:
    """Restore moto's own engine functions."""
    if not _ORIGINALS:
        return
    cfn_parsing.ResourceMap.build_resource_diff = _ORIGINALS.pop("build_resource_diff")  # type: ignore[method-assign]
    cfn_parsing.ResourceMap.update = _ORIGINALS.pop("resource_map_update")  # type: ignore[method-assign]
    cfn_engine_models.ChangeSet.apply = _ORIGINALS.pop("apply")  # type: ignore[method-assign]
    cfn_engine_models.Stack.stack_resources = _ORIGINALS.pop("stack_resources")  # type: ignore[method-assign]
    cfn_engine_models.CloudFormationBackend.delete_change_set = _ORIGINALS.pop("delete_change_set")  # type: ignore[method-assign]
    cfn_engine_models.CloudFormationBackend.describe_change_set = _ORIGINALS.pop("describe_change_set")  # type: ignore[method-assign]
    del BudgetsResponse.describe_subscribers_for_notification  # type: ignore[attr-defined]


#: The handlers this module provides, by CloudFormation type.
HANDLERS: dict[str, type[CloudFormationModel]] = {
    model.cloudformation_type(): model
    for model in (
        CloudTrailTrail,
        S3BucketPolicy,
        ConfigConfigurationRecorder,
        ConfigDeliveryChannel,
        ConfigConfigRule,
        GuardDutyDetector,
        BudgetsBudget,
        IamRole,
        IamManagedPolicy,
        KmsKey,
    )
}
