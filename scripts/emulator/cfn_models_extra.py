"""CloudFormation handlers for the auditor-ready baseline's resource types moto lacks.

- ``AWS::SNS::TopicPolicy``: sets the topics' ``Policy`` attribute, so that
  ``sns.get_topic_attributes`` shows what the stack deployed.
- ``AWS::CE::AnomalyMonitor`` / ``AWS::CE::AnomalySubscription``: moto 5.2.5 has no Cost
  Anomaly Detection API at all. The handlers keep each resource in :data:`ANOMALY_STATE`
  (per account) with a real-looking ARN, so that ``Ref``/``Fn::GetAtt`` resolve and the
  stack completes; nothing can read them through boto3, so drift does not check them.

Same mechanism as :mod:`scripts.emulator.cfn_models`: each class names
``CloudFormationModel`` as a direct base; :func:`scripts.emulator.server.register_models`
clears moto's caches after importing this module.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from moto.cloudformation.exceptions import UnformattedGetAttTemplateException
from moto.core.common_models import CloudFormationModel
from moto.sns.models import sns_backends

from scripts.emulator.cfn_models import _Handler, _handler, _props
from scripts.emulator.faults import ON_RESET

# account id -> ARN -> properties, for tests that want to look.
ANOMALY_STATE: dict[str, dict[str, dict[str, Any]]] = {}
ON_RESET.append(ANOMALY_STATE.clear)  # moto's reset does not know it


def _topic_backend(arn: str) -> Any:
    _, _, _, region, account, _ = arn.split(":", 5)
    return sns_backends[account][region]


class SnsTopicPolicy(_Handler, CloudFormationModel):
    """``AWS::SNS::TopicPolicy`` (physical id: a generated id, as in CloudFormation)."""

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::SNS::TopicPolicy"

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == "Id"

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        if attribute_name == "Id":
            return self.name
        raise UnformattedGetAttTemplateException()

    @staticmethod
    def _apply(props: dict[str, Any]) -> None:
        document = props["PolicyDocument"]
        text = document if isinstance(document, str) else json.dumps(document)
        for topic_arn in props["Topics"]:
            _topic_backend(topic_arn).set_topic_attribute(topic_arn, "Policy", text)

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> SnsTopicPolicy:
        props = _props(cloudformation_json)
        with _handler(cls.cloudformation_type(), resource_name):
            cls._apply(props)
        return cls(f"{resource_name}-{uuid.uuid4().hex[:12]}", account_id, region_name, props)

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: SnsTopicPolicy,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> SnsTopicPolicy:
        props = _props(cloudformation_json)
        with _handler(cls.cloudformation_type(), original_resource.name):
            cls._apply(props)
        original_resource.properties = props
        return original_resource

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        return None  # deleting the policy leaves the topic's default policy; the topic goes anyway


class _AnomalyResource(_Handler):
    """Shared state handling: physical id and ``Ref`` are the ARN."""

    kind = ""
    arn_attr = ""

    @classmethod
    def has_cfn_attr(cls, attr: str) -> bool:
        return attr == cls.arn_attr

    def get_cfn_attribute(self, attribute_name: str) -> Any:
        if attribute_name == self.arn_attr:
            return self.name
        raise UnformattedGetAttTemplateException()

    @classmethod
    def _create(cls, account_id: str, region_name: str, props: dict[str, Any]) -> Any:
        arn = f"arn:aws:ce::{account_id}:{cls.kind}/{uuid.uuid4()}"
        ANOMALY_STATE.setdefault(account_id, {})[arn] = props
        return cls(arn, account_id, region_name, props)  # type: ignore[call-arg]

    @classmethod
    def _update(cls, original: Any, props: dict[str, Any]) -> Any:
        ANOMALY_STATE.setdefault(original.account_id, {})[original.name] = props
        original.properties = props
        return original

    @classmethod
    def _delete(cls, account_id: str, arn: str) -> None:
        ANOMALY_STATE.get(account_id, {}).pop(arn, None)


class CeAnomalyMonitor(_AnomalyResource, CloudFormationModel):
    """``AWS::CE::AnomalyMonitor`` (physical id and ``MonitorArn``: the monitor ARN)."""

    kind = "anomalymonitor"
    arn_attr = "MonitorArn"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CE::AnomalyMonitor"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> CeAnomalyMonitor:
        props = _props(cloudformation_json)
        with _handler(cls.cloudformation_type(), resource_name):
            for key in ("MonitorName", "MonitorType"):
                props[key]  # noqa: B018 - required keys; KeyError becomes CloudFormation's message
        return cls._create(account_id, region_name, props)  # type: ignore[no-any-return]

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: CeAnomalyMonitor,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> CeAnomalyMonitor:
        return cls._update(original_resource, _props(cloudformation_json))  # type: ignore[no-any-return]

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        cls._delete(account_id, resource_name)


class CeAnomalySubscription(_AnomalyResource, CloudFormationModel):
    """``AWS::CE::AnomalySubscription`` (physical id and ``SubscriptionArn``: its ARN)."""

    kind = "anomalysubscription"
    arn_attr = "SubscriptionArn"

    @staticmethod
    def cloudformation_name_type() -> str:
        return ""

    @staticmethod
    def cloudformation_type() -> str:
        return "AWS::CE::AnomalySubscription"

    @classmethod
    def create_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> CeAnomalySubscription:
        props = _props(cloudformation_json)
        with _handler(cls.cloudformation_type(), resource_name):
            for key in ("SubscriptionName", "Frequency", "MonitorArnList", "Subscribers"):
                props[key]  # noqa: B018
            unknown = [m for m in props["MonitorArnList"] if m not in ANOMALY_STATE.get(account_id, {})]
            if unknown:
                raise ValueError(f"Monitor(s) not found: {', '.join(unknown)}")
        return cls._create(account_id, region_name, props)  # type: ignore[no-any-return]

    @classmethod
    def update_from_cloudformation_json(  # type: ignore[misc]
        cls,
        original_resource: CeAnomalySubscription,
        new_resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> CeAnomalySubscription:
        return cls._update(original_resource, _props(cloudformation_json))  # type: ignore[no-any-return]

    @classmethod
    def delete_from_cloudformation_json(  # type: ignore[misc]
        cls,
        resource_name: str,
        cloudformation_json: dict[str, Any],
        account_id: str,
        region_name: str,
    ) -> None:
        cls._delete(account_id, resource_name)


HANDLERS: dict[str, type[CloudFormationModel]] = {
    model.cloudformation_type(): model for model in (SnsTopicPolicy, CeAnomalyMonitor, CeAnomalySubscription)
}
