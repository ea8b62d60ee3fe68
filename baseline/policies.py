"""The baseline's IAM policy documents as data: the permission boundary, the MSP role's
trust policy and its operations policy.

The constructs (:mod:`baseline.boundary`, :mod:`baseline.msp_role`) put these documents in
the templates, and the drift checks (:mod:`scripts.drift`) compare the live policies with the
very same documents, so no expected statement is written twice. Account and partition are
CloudFormation intrinsics (``{"Fn::Sub": ...}``, exactly what ``Fn.sub`` synthesizes);
:func:`resolve_pseudo` turns them into the strings IAM stores for one account.
This module must not import aws_cdk: the driver imports it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

from baseline.spec import (
    MANAGED_INSTANCE_TAG_KEY,
    MANAGED_INSTANCE_TAG_VALUE,
    PATCH_DOCUMENTS,
    BoundarySpec,
    MspRoleSpec,
)

_PSEUDO = re.compile(r"\$\{(AWS::[A-Za-z]+)\}")


def sub(text: str) -> dict[str, str]:
    """``Fn::Sub`` with the pseudo parameters only, as ``Fn.sub`` writes it into a template."""
    return {"Fn::Sub": text}


def boundary_arn_sub(name: str) -> dict[str, str]:
    return sub(f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:policy/{name}")


def _arn(resource: str) -> dict[str, str]:
    return sub(f"arn:${{AWS::Partition}}:{resource}")


def trust_policy(spec: MspRoleSpec) -> dict[str, Any]:
    """Only the MSP's listed principals, with the client's ExternalId, naming the person.

    ``sts:SetSourceIdentity`` must be allowed for a caller that sets (or already carries,
    from an earlier hop) a source identity; requiring ``sts:SourceIdentity`` makes every
    session's CloudTrail events in the client account name the MSP engineer or automation.
    """
    condition: dict[str, Any] = {
        "StringEquals": {"sts:ExternalId": spec.external_id},
        "ArnLike": {"aws:PrincipalArn": list(spec.principal_arns)},
    }
    actions: Any = "sts:AssumeRole"
    if spec.require_source_identity:
        condition["StringLike"] = {"sts:SourceIdentity": "?*"}
        actions = ["sts:AssumeRole", "sts:SetSourceIdentity"]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "MspPrincipalsWithExternalId",
                "Effect": "Allow",
                "Principal": {"AWS": f"arn:aws:iam::{spec.msp_account_id}:root"},
                "Action": actions,
                "Condition": condition,
            }
        ],
    }


def boundary_document(spec: BoundarySpec) -> dict[str, Any]:
    """The permission boundary (see :mod:`baseline.boundary` for what each statement is for)."""
    own_arn = boundary_arn_sub(spec.name)
    account = "${AWS::AccountId}"
    protected_roles = [_arn(f"iam::{account}:role/{name}") for name in spec.protected_role_names]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "CeilingOnly", "Effect": "Allow", "Action": "*", "Resource": "*"},
            {
                "Sid": "DenyLongLivedCredentials",
                "Effect": "Deny",
                "Action": [
                    "iam:CreateUser",
                    "iam:CreateAccessKey",
                    "iam:UpdateAccessKey",
                    "iam:CreateLoginProfile",
                    "iam:UpdateLoginProfile",
                    "iam:CreateServiceSpecificCredential",
                    "iam:UploadSigningCertificate",
                    "iam:AttachUserPolicy",
                    "iam:PutUserPolicy",
                    "iam:AddUserToGroup",
                ],
                "Resource": "*",
            },
            {
                # iam:PermissionsBoundary is the boundary of the role being created or changed;
                # a role without one has no value, so StringNotEquals denies it too.
                "Sid": "DenyRoleChangesWithoutThisBoundary",
                "Effect": "Deny",
                "Action": [
                    "iam:CreateRole",
                    "iam:PutRolePermissionsBoundary",
                    "iam:AttachRolePolicy",
                    "iam:PutRolePolicy",
                    "iam:DetachRolePolicy",
                    "iam:DeleteRolePolicy",
                ],
                "Resource": "*",
                "Condition": {"StringNotEquals": {"iam:PermissionsBoundary": own_arn}},
            },
            {
                "Sid": "DenyTrustChangesAndPassRole",
                "Effect": "Deny",
                "Action": ["iam:UpdateAssumeRolePolicy", "iam:PassRole"],
                "Resource": "*",
            },
            {
                "Sid": "DenyBoundaryRemoval",
                "Effect": "Deny",
                "Action": ["iam:DeleteRolePermissionsBoundary", "iam:DeleteUserPermissionsBoundary"],
                "Resource": "*",
            },
            {
                "Sid": "DenyBoundaryEdits",
                "Effect": "Deny",
                "Action": [
                    "iam:CreatePolicyVersion",
                    "iam:DeletePolicy",
                    "iam:DeletePolicyVersion",
                    "iam:SetDefaultPolicyVersion",
                    "iam:TagPolicy",
                    "iam:UntagPolicy",
                ],
                "Resource": own_arn,
            },
            {
                "Sid": "DenyProtectedRoleChanges",
                "Effect": "Deny",
                "Action": [
                    "iam:DeleteRole",
                    "iam:UpdateRole",
                    "iam:UpdateRoleDescription",
                    "iam:AttachRolePolicy",
                    "iam:DetachRolePolicy",
                    "iam:PutRolePolicy",
                    "iam:DeleteRolePolicy",
                    "iam:TagRole",
                    "iam:UntagRole",
                ],
                "Resource": protected_roles,
            },
            {
                "Sid": "DenyTrailTampering",
                "Effect": "Deny",
                "Action": [
                    "cloudtrail:StopLogging",
                    "cloudtrail:DeleteTrail",
                    "cloudtrail:UpdateTrail",
                    "cloudtrail:PutEventSelectors",
                ],
                "Resource": _arn(f"cloudtrail:*:{account}:trail/{spec.trail_name}"),
            },
            {
                "Sid": "DenyTrailLogGroupTampering",
                "Effect": "Deny",
                "Action": ["logs:DeleteLogGroup", "logs:DeleteLogStream", "logs:PutRetentionPolicy"],
                "Resource": _arn(f"logs:*:{account}:log-group:{spec.stack_prefix}cloudtrail*"),
            },
            {
                # Config and GuardDuty have no resource-level permissions for these actions.
                "Sid": "DenyRecorderAndDetectorTampering",
                "Effect": "Deny",
                "Action": [
                    "config:StopConfigurationRecorder",
                    "config:DeleteConfigurationRecorder",
                    "config:PutConfigurationRecorder",
                    "config:DeleteDeliveryChannel",
                    "config:PutDeliveryChannel",
                    "config:DeleteConfigRule",
                    "guardduty:DeleteDetector",
                    "guardduty:UpdateDetector",
                    "guardduty:DisassociateFromAdministratorAccount",
                    "guardduty:CreateFilter",
                    "guardduty:UpdateFilter",
                    "guardduty:CreateIPSet",
                    "guardduty:UpdateIPSet",
                    "ce:DeleteAnomalyMonitor",
                    "ce:UpdateAnomalyMonitor",
                    "ce:DeleteAnomalySubscription",
                    "ce:UpdateAnomalySubscription",
                ],
                "Resource": "*",
            },
            {
                "Sid": "DenyAlertingTampering",
                "Effect": "Deny",
                "Action": [
                    "sns:DeleteTopic",
                    "sns:SetTopicAttributes",
                    "sns:RemovePermission",
                    "budgets:ModifyBudget",
                    "budgets:DeleteBudgetAction",
                ],
                "Resource": [
                    _arn(f"sns:*:{account}:{spec.alerts_topic_name}"),
                    _arn(f"budgets::{account}:budget/{spec.stack_prefix}*"),
                ],
            },
            {
                "Sid": "DenyBaselineStackChanges",
                "Effect": "Deny",
                "Action": [
                    "cloudformation:DeleteStack",
                    "cloudformation:UpdateStack",
                    "cloudformation:CreateChangeSet",
                    "cloudformation:ExecuteChangeSet",
                    "cloudformation:SetStackPolicy",
                    "cloudformation:UpdateTerminationProtection",
                ],
                "Resource": _arn(f"cloudformation:*:{account}:stack/{spec.stack_prefix}*/*"),
            },
        ],
    }


# What the MSP's runbooks and automation do in a managed account: operate, not administer.
# Run Command and Session Manager are not here: see operations_policy.
OPERATIONS_ACTIONS: tuple[str, ...] = (
    "ec2:StartInstances",
    "ec2:StopInstances",
    "ec2:RebootInstances",
    "ec2:CreateSnapshot",
    "ec2:CreateTags",
    "ssm:StartAutomationExecution",
    "ssm:GetCommandInvocation",
    "cloudwatch:PutMetricAlarm",
    "cloudwatch:DeleteAlarms",
    "cloudwatch:SetAlarmState",
    "logs:PutRetentionPolicy",
    "backup:StartBackupJob",
    "backup:StartRestoreJob",
    "rds:CreateDBSnapshot",
    "rds:RebootDBInstance",
    "support:CreateCase",
    "support:AddCommunicationToCase",
    "support:DescribeCases",
)


def operations_policy() -> dict[str, Any]:
    """The ``managed`` engagement's scoped operations policy.

    A command or a shell on an instance acts with that instance's profile credentials, which
    no permission boundary of the MSP role limits. So:

    * ``ssm:SendCommand`` runs only the patch documents (:data:`PATCH_DOCUMENTS`, owned by
      AWS, which take no script), and only on instances the client tagged
      ``vend:managed=true`` (both condition keys AWS documents for instance tags);
    * ``ssm:StartSession`` (an interactive shell) is not granted at all;
    * the MSP role cannot set or remove that tag itself, so the client's tag is the consent.
    """
    instances = [
        "arn:aws:ec2:*:*:instance/*",
        "arn:aws:ssm:*:*:managed-instance/*",
    ]
    documents = [f"arn:aws:ssm:*::document/{name}" for name in PATCH_DOCUMENTS]
    tag = {MANAGED_INSTANCE_TAG_KEY: MANAGED_INSTANCE_TAG_VALUE}
    return {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "ManagedOperations", "Effect": "Allow", "Action": list(OPERATIONS_ACTIONS), "Resource": "*"},
            {"Sid": "PatchDocumentsOnly", "Effect": "Allow", "Action": "ssm:SendCommand", "Resource": documents},
            {
                "Sid": "CommandsOnTaggedInstances",
                "Effect": "Allow",
                "Action": "ssm:SendCommand",
                "Resource": instances,
                "Condition": {"StringEquals": {f"aws:ResourceTag/{k}": v for k, v in tag.items()}},
            },
            {
                "Sid": "CommandsOnTaggedInstancesSsmKey",
                "Effect": "Allow",
                "Action": "ssm:SendCommand",
                "Resource": instances,
                "Condition": {"StringEquals": {f"ssm:resourceTag/{k}": v for k, v in tag.items()}},
            },
            {
                "Sid": "ClientGrantsManagementTag",
                "Effect": "Deny",
                "Action": ["ec2:CreateTags", "ec2:DeleteTags", "ssm:AddTagsToResource", "ssm:RemoveTagsFromResource"],
                "Resource": "*",
                "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": list(tag)}},
            },
        ],
    }


# --- the driver's side: from template intrinsics to what IAM stores ------------------------


def resolve_pseudo(value: Any, *, account: str, partition: str = "aws", region: str = "us-east-1") -> Any:
    """``value`` with every ``{"Fn::Sub": text}`` of pseudo parameters replaced by its string."""
    if isinstance(value, list):
        return [resolve_pseudo(v, account=account, partition=partition, region=region) for v in value]
    if isinstance(value, dict):
        if set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
            names = {"AWS::AccountId": account, "AWS::Partition": partition, "AWS::Region": region}
            return _PSEUDO.sub(lambda m: names[m.group(1)], value["Fn::Sub"])
        return {k: resolve_pseudo(v, account=account, partition=partition, region=region) for k, v in value.items()}
    return value


def _as_sorted_list(value: Any) -> list[Any]:
    items = value if isinstance(value, list) else [value]
    return sorted(items, key=lambda v: json.dumps(v, sort_keys=True))


def normalize_statement(statement: Mapping[str, Any]) -> dict[str, Any]:
    """One statement in a canonical form: a string or a list of one means the same to IAM,
    and so does the order of actions, resources and condition values."""
    out: dict[str, Any] = {}
    for key, value in statement.items():
        if key in ("Action", "NotAction", "Resource", "NotResource"):
            out[key] = _as_sorted_list(value)
        elif key == "Condition":
            out[key] = {
                op: {k: _as_sorted_list(v) for k, v in sorted(tests.items())} for op, tests in sorted(value.items())
            }
        elif key == "Principal" and isinstance(value, dict):
            out[key] = {k: _as_sorted_list(v) for k, v in sorted(value.items())}
        else:
            out[key] = value
    return out


def statement_diff(
    expected: Mapping[str, Any], actual: Mapping[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(statements only in ``expected``, statements only in ``actual``), compared normalized."""

    def statements(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
        raw = doc.get("Statement", [])
        return [normalize_statement(s) for s in (raw if isinstance(raw, list) else [raw])]

    def keys(items: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {json.dumps(s, sort_keys=True): s for s in items}

    want, have = keys(statements(expected)), keys(statements(actual))
    return [want[k] for k in want if k not in have], [have[k] for k in have if k not in want]
