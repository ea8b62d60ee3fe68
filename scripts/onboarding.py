"""The onboarding template: what a client's administrator deploys once to let vend in.

``vend onboarding-template <client>`` writes a small CloudFormation template (JSON) that
creates the deploy role vend assumes (``access.deploy_role_arn``):

* trust: only the MSP's deployment principals (``msp.deploy_principal_arns``, matched on
  ``aws:PrincipalArn``), only with the client's ``sts:ExternalId``;
* permissions (:func:`deploy_policy`): what CloudFormation's resource handlers need to create,
  update and delete the baseline's resources (the handler permissions of each resource type in
  the CloudFormation resource schemas, minus :data:`NOT_GRANTED`), and what drift, remediation,
  the preflight and ``vend assess`` read, each on the baseline's own names. No
  AdministratorAccess. ``tests/scripts/test_onboarding.py`` checks both directions with the IAM
  evaluator: every action the synthesized templates' resources need is allowed, and every
  escalation path below is denied.

Escalation paths it closes:

* roles: created or changed only as ``vend-*`` (or the MSP role), only with the vend permission
  boundary (``iam:PermissionsBoundary``), with only the AWS managed policies the baseline
  attaches (``iam:PolicyARN``); never the boundary itself as a permission policy (it is an
  ``Allow *`` ceiling); never the deploy role itself; roles passed only to the service that
  uses them (``iam:PassedToService``);
* the boundary policy: created, versioned and deleted only through CloudFormation
  (``aws:CalledVia``), i.e. through the global stack that owns it, and only under its exact
  name and path; never ``SetDefaultPolicyVersion`` (rolling back to an older version), never
  tagged;
* KMS: key policies and key settings only on keys tagged ``vend:client=<client>``; a key gets
  that tag only when created with it, or from CloudFormation (which tags only keys its own
  stacks created: resource import is denied, but of an adopted Config recorder, delivery
  channel or GuardDuty detector); no key policy that bypasses the lockout check;
* no IAM users, access keys, login profiles or other long-lived credentials;
* Cost Anomaly Detection, Budgets, SNS, CloudTrail, CloudWatch Logs: only vend's own monitor,
  subscription, budgets, topic, trail and log group (by name or by the ``vend:client`` tag);
  Config and GuardDuty only the actions the baseline uses (no remediation configurations,
  filters or trusted IP lists that would hide findings).

Residual risk (also in the README): CloudFormation acts with this role's credentials, so the
role can do through a ``vend-*`` stack whatever the baseline's resources can be: it can change
the boundary's content, the MSP role's trust and inline policies and create bounded ``vend-*``
roles. The boundary still denies users, keys, unbounded roles and tampering with the controls;
CloudTrail in the client account records every change (invoked by CloudFormation), and
``vend drift`` compares the boundary's and the MSP role's live policy documents with the code.

After that stack exists nothing else needs admin rights in the client account. This
module must not import aws_cdk (the driver imports it).
"""

from __future__ import annotations

import json
from typing import Any

from baseline.adoption import IMPORT_IDENTIFIERS
from baseline.model import EffectiveClient, MspDefaults
from baseline.spec import (
    ALERTS_KEY_ALIAS,
    ALERTS_TOPIC_NAME,
    BASELINE_MANAGED_POLICY_ARNS,
    BOUNDARY_NAME,
    CLIENT_TAG,
    CONFIG_PRINCIPAL,
    CONFIG_ROLE_NAME,
    STACK_PREFIX,
    TRAIL_LOG_GROUP_NAME,
    TRAIL_LOGS_ROLE_NAME,
    TRAIL_NAME,
)
from baseline.stacksets import ADMIN_ROLE_NAME, EXECUTION_ROLE_NAME

P = "${AWS::Partition}"
A = "${AWS::AccountId}"
CLOUDFORMATION = "cloudformation.amazonaws.com"
#: CloudFormation made the call with this role's credentials (its resource handlers do).
VIA_CLOUDFORMATION = {"ForAnyValue:StringEquals": {"aws:CalledVia": [CLOUDFORMATION]}}
#: The StackSets execution role (``scripts/stacksets.py``), a ``vend-*`` name that is not a
#: baseline role: the deploy role may not change it any more than itself.
STACKSETS_EXECUTION_ROLE = EXECUTION_ROLE_NAME
#: The service-linked roles the baseline's services create on first use.
SERVICE_LINKED_ROLES = ("guardduty.amazonaws.com", "malware-protection.guardduty.amazonaws.com")

#: Handler permissions of the baseline's resource types (CloudFormation resource schemas) that
#: the deploy role does not get, with the reason; keyed by (resource type, action). Everything
#: else a handler lists is granted on the baseline's own resources.
NOT_GRANTED: dict[tuple[str, str], str] = {
    ("AWS::IAM::Role", "iam:DeleteRolePermissionsBoundary"): (
        "every baseline role keeps the vend boundary; removing it would unbound the role"
    ),
    ("AWS::IAM::ManagedPolicy", "iam:AttachRolePolicy"): (
        "the boundary is never attached as a permission policy (it is an Allow * ceiling)"
    ),
    ("AWS::IAM::ManagedPolicy", "iam:AttachUserPolicy"): "the baseline has no IAM users",
    ("AWS::IAM::ManagedPolicy", "iam:AttachGroupPolicy"): "the baseline has no IAM groups",
    ("AWS::IAM::ManagedPolicy", "iam:DetachUserPolicy"): "the baseline has no IAM users",
    ("AWS::IAM::ManagedPolicy", "iam:DetachGroupPolicy"): "the baseline has no IAM groups",
    ("AWS::CloudTrail::Trail", "CloudTrail:StopLogging"): "the template keeps the trail logging (IsLogging: true)",
    ("AWS::CloudTrail::Trail", "iam:CreateServiceLinkedRole"): (
        "only organization trails and CloudTrail Lake need CloudTrail's service-linked role"
    ),
    ("AWS::KMS::Key", "kms:DisableKey"): "the template keeps the client key enabled",
    ("AWS::KMS::Key", "kms:DisableKeyRotation"): "the template keeps key rotation on",
    ("AWS::Logs::LogGroup", "logs:DisassociateKmsKey"): "the trail's log group is always encrypted with the client key",
    ("AWS::Logs::LogGroup", "logs:DeleteRetentionPolicy"): "the trail's log group always has a retention",
    ("AWS::Logs::LogGroup", "logs:PutResourcePolicy"): (
        "an account-wide resource policy would let services write to any log group; the template sets none"
    ),
    ("AWS::Logs::LogGroup", "logs:DeleteResourcePolicy"): "the template sets no resource policy",
    ("AWS::Logs::LogGroup", "logs:CreateLogDelivery"): "the template configures no vended log delivery",
    ("AWS::Logs::LogGroup", "s3:REST.PUT.OBJECT"): "not an IAM action; the template delivers nothing to S3",
    ("AWS::Logs::LogGroup", "firehose:TagDeliveryStream"): "the template configures no Firehose delivery",
    ("AWS::Logs::LogGroup", "logs:PutIndexPolicy"): "the template sets no field index policy",
    ("AWS::Logs::LogGroup", "logs:DeleteIndexPolicy"): "the template sets no field index policy",
    ("AWS::Logs::LogGroup", "logs:PutBearerTokenAuthentication"): "the template sets no bearer token authentication",
    ("AWS::Logs::LogGroup", "logs:PutLogGroupDeletionProtection"): "the template sets no deletion protection",
    ("AWS::SNS::Topic", "iam:PassRole"): "the topic logs no delivery status (no role to pass)",
}


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def deploy_principals(defaults: MspDefaults) -> list[str]:
    return list(defaults.msp.deploy_principal_arns or defaults.msp.principal_arns)


def deploy_policy(msp_role_name: str, client: str, deploy_role_name: str) -> dict[str, Any]:
    """The deploy role's policy; ``client`` is the slug the client's resources are tagged with."""
    boundary = _sub(f"arn:{P}:iam::{A}:policy/{BOUNDARY_NAME}")
    roles = [_sub(f"arn:{P}:iam::{A}:role/{msp_role_name}"), _sub(f"arn:{P}:iam::{A}:role/{STACK_PREFIX}*")]
    keys = _sub(f"arn:{P}:kms:*:{A}:key/*")
    log_group = [
        _sub(f"arn:{P}:logs:*:{A}:log-group:{TRAIL_LOG_GROUP_NAME}"),
        _sub(f"arn:{P}:logs:*:{A}:log-group:{TRAIL_LOG_GROUP_NAME}:*"),
    ]
    ce_resources = [_sub(f"arn:{P}:ce::{A}:anomalymonitor/*"), _sub(f"arn:{P}:ce::{A}:anomalysubscription/*")]
    ours = {"StringEquals": {f"aws:ResourceTag/{CLIENT_TAG}": client}}
    tagged_ours = {"StringEquals": {f"aws:RequestTag/{CLIENT_TAG}": client}}
    return {
        "Version": "2012-10-17",
        "Statement": [
            # --- CloudFormation: the vend-* stacks only, and no resource import (it would hand
            # CloudFormation, and so the tag-based statements below, a resource vend did not create)
            # but of the recorder, channel and detector an override adopts (baseline/adoption.py):
            # one per account and region, none of them reached by a tag-based statement.
            {
                "Sid": "BaselineStacks",
                "Effect": "Allow",
                "Action": "cloudformation:*",
                "Resource": _sub(f"arn:{P}:cloudformation:*:{A}:stack/{STACK_PREFIX}*/*"),
            },
            {
                "Sid": "CloudFormationReads",
                "Effect": "Allow",
                "Action": [
                    "cloudformation:ValidateTemplate",
                    "cloudformation:GetTemplateSummary",
                    "cloudformation:ListStacks",
                    "cloudformation:DescribeStackDriftDetectionStatus",
                ],
                "Resource": "*",
            },
            {
                "Sid": "NoResourceImport",
                "Effect": "Deny",
                "Action": "cloudformation:CreateChangeSet",
                "Resource": "*",
                "Condition": {
                    "ForAnyValue:StringNotEquals": {"cloudformation:ImportResourceTypes": sorted(IMPORT_IDENTIFIERS)}
                },
            },
            # --- IAM roles: vend-* and the MSP role, always with the vend boundary
            {
                "Sid": "BoundedBaselineRoles",
                "Effect": "Allow",
                "Action": [
                    "iam:CreateRole",
                    "iam:PutRolePermissionsBoundary",
                    "iam:PutRolePolicy",
                    "iam:DeleteRolePolicy",
                    "iam:DetachRolePolicy",
                ],
                "Resource": roles,
                "Condition": {"StringEquals": {"iam:PermissionsBoundary": boundary}},
            },
            {
                "Sid": "AttachOnlyTheBaselinesManagedPolicies",
                "Effect": "Allow",
                "Action": "iam:AttachRolePolicy",
                "Resource": roles,
                "Condition": {
                    "StringEquals": {"iam:PermissionsBoundary": boundary},
                    "ArnEquals": {"iam:PolicyARN": list(BASELINE_MANAGED_POLICY_ARNS)},
                },
            },
            {
                "Sid": "BaselineRoles",
                "Effect": "Allow",
                "Action": [
                    "iam:DeleteRole",
                    "iam:UpdateRole",
                    "iam:UpdateRoleDescription",
                    "iam:UpdateAssumeRolePolicy",
                    "iam:TagRole",
                    "iam:UntagRole",
                ],
                "Resource": roles,
            },
            {
                "Sid": "PassTheConfigRoleToConfig",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": _sub(f"arn:{P}:iam::{A}:role/{CONFIG_ROLE_NAME}"),
                "Condition": {"StringEquals": {"iam:PassedToService": CONFIG_PRINCIPAL}},
            },
            {
                "Sid": "PassTheTrailLogsRoleToCloudTrail",
                "Effect": "Allow",
                "Action": "iam:PassRole",
                "Resource": _sub(f"arn:{P}:iam::{A}:role/{TRAIL_LOGS_ROLE_NAME}"),
                "Condition": {"StringEquals": {"iam:PassedToService": "cloudtrail.amazonaws.com"}},
            },
            {
                "Sid": "ServiceLinkedRoles",
                "Effect": "Allow",
                "Action": "iam:CreateServiceLinkedRole",
                "Resource": "*",
                "Condition": {"StringEquals": {"iam:AWSServiceName": list(SERVICE_LINKED_ROLES)}},
            },
            # --- the boundary policy: only through CloudFormation (its stack), exact name and path
            {
                "Sid": "BoundaryThroughCloudFormationOnly",
                "Effect": "Allow",
                "Action": [
                    "iam:CreatePolicy",
                    "iam:CreatePolicyVersion",
                    "iam:DeletePolicyVersion",
                    "iam:DeletePolicy",
                ],
                "Resource": boundary,
                "Condition": VIA_CLOUDFORMATION,
            },
            {
                "Sid": "NoDirectBoundaryChanges",
                "Effect": "Deny",
                "Action": [
                    "iam:CreatePolicyVersion",
                    "iam:DeletePolicyVersion",
                    "iam:DeletePolicy",
                    "iam:SetDefaultPolicyVersion",
                    "iam:TagPolicy",
                    "iam:UntagPolicy",
                ],
                "Resource": boundary,
                "Condition": {"ForAllValues:StringNotEquals": {"aws:CalledVia": [CLOUDFORMATION]}},
            },
            {
                "Sid": "NoBoundaryRollbackOrTags",
                "Effect": "Deny",
                "Action": ["iam:SetDefaultPolicyVersion", "iam:TagPolicy", "iam:UntagPolicy"],
                "Resource": boundary,
            },
            {
                "Sid": "NeverTheBoundaryAsAPermissionPolicy",
                "Effect": "Deny",
                "Action": ["iam:AttachRolePolicy", "iam:AttachUserPolicy", "iam:AttachGroupPolicy"],
                "Resource": "*",
                "Condition": {"ArnEquals": {"iam:PolicyARN": boundary}},
            },
            {
                "Sid": "NeverItselfOrTheStackSetsRole",
                "Effect": "Deny",
                "Action": [
                    "iam:PutRolePolicy",
                    "iam:DeleteRolePolicy",
                    "iam:AttachRolePolicy",
                    "iam:DetachRolePolicy",
                    "iam:PutRolePermissionsBoundary",
                    "iam:DeleteRolePermissionsBoundary",
                    "iam:UpdateAssumeRolePolicy",
                    "iam:UpdateRole",
                    "iam:DeleteRole",
                    "iam:TagRole",
                    "iam:UntagRole",
                ],
                "Resource": [
                    _sub(f"arn:{P}:iam::{A}:role/{deploy_role_name}"),
                    _sub(f"arn:{P}:iam::{A}:role/{STACKSETS_EXECUTION_ROLE}"),
                ],
            },
            {
                "Sid": "NoLongLivedCredentials",
                "Effect": "Deny",
                "Action": [
                    "iam:CreateUser",
                    "iam:CreateAccessKey",
                    "iam:UpdateAccessKey",
                    "iam:CreateLoginProfile",
                    "iam:UpdateLoginProfile",
                    "iam:CreateServiceSpecificCredential",
                    "iam:UploadSigningCertificate",
                    "iam:UploadSSHPublicKey",
                    "iam:AttachUserPolicy",
                    "iam:PutUserPolicy",
                    "iam:AddUserToGroup",
                ],
                "Resource": "*",
            },
            {
                # What drift, the preflight and `vend assess` read; metadata only, no data.
                "Sid": "Reads",
                "Effect": "Allow",
                "Action": [
                    "iam:GetRole",
                    "iam:GetRolePolicy",
                    "iam:ListRoles",
                    "iam:ListRolePolicies",
                    "iam:ListAttachedRolePolicies",
                    "iam:GetPolicy",
                    "iam:GetPolicyVersion",
                    "iam:ListPolicies",
                    "iam:ListPolicyVersions",
                    "iam:ListEntitiesForPolicy",
                    "iam:ListUsers",
                    "iam:GetLoginProfile",
                    "iam:ListMFADevices",
                    "iam:ListAccessKeys",
                    "iam:ListAttachedUserPolicies",
                    "iam:GetAccountSummary",
                    "cloudtrail:DescribeTrails",
                    "cloudtrail:ListTrails",
                    "cloudtrail:GetTrail",
                    "cloudtrail:GetTrailStatus",
                    "cloudtrail:GetEventSelectors",
                    "cloudtrail:GetInsightSelectors",
                    "cloudtrail:ListTags",
                    "organizations:DescribeOrganization",
                    "organizations:ListAWSServiceAccessForOrganization",
                    "config:Describe*",
                    "config:ListConfigurationRecorders",
                    "config:ListTagsForResource",
                    "guardduty:GetDetector",
                    "guardduty:ListDetectors",
                    "guardduty:ListTagsForResource",
                    "ce:GetAnomalyMonitors",
                    "ce:GetAnomalySubscriptions",
                    "ce:ListTagsForResource",
                    "budgets:ViewBudget",
                    "billing:GetBillingViewData",
                    "sns:ListTopics",
                    "kms:ListAliases",
                    "kms:ListKeys",
                    "logs:DescribeLogGroups",
                    "logs:DescribeResourcePolicies",
                    "logs:DescribeIndexPolicies",
                    "s3:ListAllMyBuckets",
                    "s3:GetAccountPublicAccessBlock",
                    "s3:GetBucketPublicAccessBlock",
                    "s3:GetBucketPolicyStatus",
                    "s3:GetBucketAcl",
                    "tag:GetResources",
                ],
                "Resource": "*",
            },
            # --- the regional controls: no resource-level permissions for most of these APIs
            {
                "Sid": "ConfigRecorderChannelRules",
                "Effect": "Allow",
                "Action": [
                    "config:PutConfigurationRecorder",
                    "config:StartConfigurationRecorder",
                    "config:StopConfigurationRecorder",
                    "config:DeleteConfigurationRecorder",
                    "config:PutDeliveryChannel",
                    "config:DeleteDeliveryChannel",
                    "config:PutConfigRule",
                    "config:DeleteConfigRule",
                ],
                "Resource": "*",
            },
            {
                "Sid": "GuardDutyDetector",
                "Effect": "Allow",
                "Action": [
                    "guardduty:CreateDetector",
                    "guardduty:UpdateDetector",
                    "guardduty:DeleteDetector",
                    "guardduty:TagResource",
                    "guardduty:UntagResource",
                ],
                "Resource": "*",
            },
            {
                "Sid": "Trail",
                "Effect": "Allow",
                "Action": [
                    "cloudtrail:CreateTrail",
                    "cloudtrail:UpdateTrail",
                    "cloudtrail:DeleteTrail",
                    "cloudtrail:StartLogging",
                    "cloudtrail:AddTags",
                    "cloudtrail:RemoveTags",
                    "cloudtrail:PutEventSelectors",
                    "cloudtrail:PutInsightSelectors",
                    "cloudtrail:PutEventConfiguration",
                    "cloudtrail:GetEventConfiguration",
                ],
                "Resource": _sub(f"arn:{P}:cloudtrail:*:{A}:trail/{TRAIL_NAME}"),
            },
            {
                "Sid": "TrailLogGroup",
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogGroup",
                    "logs:DeleteLogGroup",
                    "logs:PutRetentionPolicy",
                    "logs:AssociateKmsKey",
                    "logs:TagResource",
                    "logs:UntagResource",
                    "logs:ListTagsForResource",
                    "logs:GetDataProtectionPolicy",
                    "logs:PutDataProtectionPolicy",
                    "logs:DeleteDataProtectionPolicy",
                ],
                "Resource": log_group,
            },
            {
                "Sid": "AlertTopic",
                "Effect": "Allow",
                "Action": [
                    "sns:CreateTopic",
                    "sns:DeleteTopic",
                    "sns:GetTopicAttributes",
                    "sns:SetTopicAttributes",
                    "sns:Subscribe",
                    "sns:Unsubscribe",
                    "sns:ListSubscriptionsByTopic",
                    "sns:TagResource",
                    "sns:UntagResource",
                    "sns:ListTagsForResource",
                    "sns:GetDataProtectionPolicy",
                    "sns:PutDataProtectionPolicy",
                ],
                "Resource": _sub(f"arn:{P}:sns:*:{A}:{ALERTS_TOPIC_NAME}"),
            },
            {
                "Sid": "Budgets",
                "Effect": "Allow",
                "Action": [
                    "budgets:ModifyBudget",
                    "budgets:ViewBudget",
                    "budgets:TagResource",
                    "budgets:UntagResource",
                    "budgets:ListTagsForResource",
                ],
                "Resource": _sub(f"arn:{P}:budgets::{A}:budget/{STACK_PREFIX}*"),
            },
            # --- Cost Anomaly Detection: monitors and subscriptions tagged as this client's
            {
                "Sid": "AnomalyDetectionCreateTagged",
                "Effect": "Allow",
                "Action": ["ce:CreateAnomalyMonitor", "ce:CreateAnomalySubscription"],
                "Resource": "*",
                "Condition": tagged_ours,
            },
            {
                "Sid": "AnomalyDetectionOwnOnly",
                "Effect": "Allow",
                "Action": [
                    "ce:UpdateAnomalyMonitor",
                    "ce:DeleteAnomalyMonitor",
                    "ce:UpdateAnomalySubscription",
                    "ce:DeleteAnomalySubscription",
                    "ce:TagResource",
                    "ce:UntagResource",
                ],
                "Resource": ce_resources,
                "Condition": ours,
            },
            {
                # Tagging a monitor or subscription that CloudFormation is creating (not yet tagged).
                "Sid": "AnomalyDetectionTagOnCreate",
                "Effect": "Allow",
                "Action": "ce:TagResource",
                "Resource": "*",
                "Condition": {**VIA_CLOUDFORMATION, **tagged_ours},
            },
            # --- KMS: only keys tagged as this client's (the client key the stack creates)
            {
                "Sid": "CreateKeysTaggedAsOurs",
                "Effect": "Allow",
                "Action": "kms:CreateKey",
                "Resource": "*",
                "Condition": tagged_ours,
            },
            {
                # KMS asks for kms:TagResource on all keys when CreateKey carries tags.
                "Sid": "TagKeysCloudFormationCreates",
                "Effect": "Allow",
                "Action": "kms:TagResource",
                "Resource": "*",
                "Condition": {**VIA_CLOUDFORMATION, **tagged_ours},
            },
            {
                "Sid": "OurKeysOnly",
                "Effect": "Allow",
                "Action": [
                    "kms:DescribeKey",
                    "kms:GetKeyPolicy",
                    "kms:PutKeyPolicy",
                    "kms:EnableKey",
                    "kms:EnableKeyRotation",
                    "kms:GetKeyRotationStatus",
                    "kms:UpdateKeyDescription",
                    "kms:ListResourceTags",
                    "kms:TagResource",
                    "kms:UntagResource",
                    "kms:ScheduleKeyDeletion",
                    "kms:CreateAlias",
                    "kms:UpdateAlias",
                    "kms:DeleteAlias",
                ],
                "Resource": keys,
                "Condition": ours,
            },
            {
                "Sid": "OurAlias",
                "Effect": "Allow",
                "Action": ["kms:CreateAlias", "kms:UpdateAlias", "kms:DeleteAlias"],
                "Resource": _sub(f"arn:{P}:kms:*:{A}:{ALERTS_KEY_ALIAS}"),
            },
            {
                "Sid": "NoKeyLockout",
                "Effect": "Deny",
                "Action": ["kms:CreateKey", "kms:PutKeyPolicy"],
                "Resource": "*",
                "Condition": {"Bool": {"kms:BypassPolicyLockoutSafetyCheck": "true"}},
            },
        ],
    }


def stacksets_execution_role(client: EffectiveClient, defaults: MspDefaults) -> dict[str, Any]:
    """The role CloudFormation StackSets deploys with (``vend deploy --engine stacksets``): the
    deploy role's permissions, trusted only by the MSP's StackSets administration role
    (``vend-msp-stacksets-admin``, which CloudFormation alone may assume). StackSets cannot
    pass an ExternalId; the trust names that one role by ARN instead."""
    admin = f"arn:aws:iam::{defaults.msp.account_id}:role/{ADMIN_ROLE_NAME}"
    return {
        "Type": "AWS::IAM::Role",
        "Properties": {
            "RoleName": EXECUTION_ROLE_NAME,
            "Description": f"{defaults.msp.name} (vend) deploys the baseline through CloudFormation StackSets",
            "MaxSessionDuration": 3600,
            "AssumeRolePolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "MspStackSetsAdministrationRoleOnly",
                        "Effect": "Allow",
                        "Principal": {"AWS": admin},
                        "Action": "sts:AssumeRole",
                    }
                ],
            },
            "Policies": [
                {
                    "PolicyName": "vend-deploy-baseline",
                    # The same document as the deploy role's: it already denies changes to both roles.
                    "PolicyDocument": deploy_policy(
                        defaults.msp.role_name, client.client, client.deploy_role_arn.rsplit("/", 1)[-1]
                    ),
                }
            ],
            "Tags": [{"Key": "vend:client", "Value": client.client}],
        },
    }


def onboarding_template(client: EffectiveClient, defaults: MspDefaults, *, stacksets: bool = False) -> dict[str, Any]:
    """``stacksets``: also the StackSets execution role (only for MSPs that deploy with
    ``--engine stacksets``; a role nobody uses is left out)."""
    template = _onboarding_template(client, defaults)
    if stacksets:
        template["Resources"]["StackSetsExecutionRole"] = stacksets_execution_role(client, defaults)
        template["Outputs"]["StackSetsExecutionRoleArn"] = {
            "Description": "The role vend's StackSets deploy assumes (no need to send it: its name is fixed)",
            "Value": {"Fn::GetAtt": ["StackSetsExecutionRole", "Arn"]},
        }
    return template


def _onboarding_template(client: EffectiveClient, defaults: MspDefaults) -> dict[str, Any]:
    role_name = client.deploy_role_arn.rsplit("/", 1)[-1]
    msp_account = defaults.msp.account_id
    return {
        "AWSTemplateFormatVersion": "2010-09-09",
        "Description": (
            f"vend onboarding for {client.display_name}: the role {defaults.msp.name} uses to deploy and "
            "check the security baseline in this account. Deploy once; delete it to revoke all MSP access."
        ),
        "Resources": {
            "DeployRole": {
                "Type": "AWS::IAM::Role",
                "Properties": {
                    "RoleName": role_name,
                    "Description": f"{defaults.msp.name} (vend) deploys and checks the baseline",
                    "MaxSessionDuration": 3600,
                    "AssumeRolePolicyDocument": {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "MspDeploymentWithExternalId",
                                "Effect": "Allow",
                                "Principal": {"AWS": f"arn:aws:iam::{msp_account}:root"},
                                "Action": "sts:AssumeRole",
                                "Condition": {
                                    "StringEquals": {"sts:ExternalId": client.external_id},
                                    "ArnLike": {"aws:PrincipalArn": deploy_principals(defaults)},
                                },
                            }
                        ],
                    },
                    "Policies": [
                        {
                            "PolicyName": "vend-deploy-baseline",
                            "PolicyDocument": deploy_policy(defaults.msp.role_name, client.client, role_name),
                        }
                    ],
                    "Tags": [{"Key": "vend:client", "Value": client.client}],
                },
            }
        },
        "Outputs": {
            "DeployRoleArn": {
                "Description": "Send this to the MSP; it goes into access.deploy_role_arn",
                "Value": {"Fn::GetAtt": ["DeployRole", "Arn"]},
            }
        },
    }


def render(client: EffectiveClient, defaults: MspDefaults, *, stacksets: bool = False) -> str:
    return json.dumps(onboarding_template(client, defaults, stacksets=stacksets), indent=2) + "\n"
