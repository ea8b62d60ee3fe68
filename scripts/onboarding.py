"""The onboarding template: what a client's administrator deploys once to let vend in.

``vend onboarding-template <client>`` writes a small CloudFormation template (JSON) that
creates the deploy role vend assumes (``access.deploy_role_arn``):

* trust: only the MSP's deployment principals (``msp.deploy_principal_arns``, matched on
  ``aws:PrincipalArn``), only with the client's ``sts:ExternalId``;
* permissions: what CloudFormation needs to create and update the baseline and what the
  drift checks read, scoped to the baseline's own names (``vend-*`` stacks, roles,
  policies, topic, key alias, log group); roles can only be created or given policies
  with the vend permission boundary attached, so the deploy role cannot mint an
  unbounded role either. No AdministratorAccess.

After that stack exists nothing else needs admin rights in the client account. This
module must not import aws_cdk (the driver imports it).
"""

from __future__ import annotations

import json
from typing import Any

from baseline.model import EffectiveClient, MspDefaults
from baseline.spec import (
    ALERTS_KEY_ALIAS,
    ALERTS_TOPIC_NAME,
    BOUNDARY_NAME,
    STACK_PREFIX,
    TRAIL_LOG_GROUP_NAME,
    TRAIL_NAME,
)

P = "${AWS::Partition}"
A = "${AWS::AccountId}"


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def deploy_principals(defaults: MspDefaults) -> list[str]:
    return list(defaults.msp.deploy_principal_arns or defaults.msp.principal_arns)


def deploy_policy(msp_role_name: str) -> dict[str, Any]:
    boundary = f"arn:{P}:iam::{A}:policy/{BOUNDARY_NAME}"
    roles = [_sub(f"arn:{P}:iam::{A}:role/{msp_role_name}"), _sub(f"arn:{P}:iam::{A}:role/{STACK_PREFIX}*")]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "BaselineStacks",
                "Effect": "Allow",
                "Action": "cloudformation:*",
                "Resource": _sub(f"arn:{P}:cloudformation:*:{A}:stack/{STACK_PREFIX}*/*"),
            },
            {
                "Sid": "CloudFormationReads",
                "Effect": "Allow",
                "Action": ["cloudformation:ValidateTemplate", "cloudformation:GetTemplateSummary"],
                "Resource": "*",
            },
            {
                # Roles only ever with the vend boundary: the deploy role cannot mint an unbounded role.
                "Sid": "BoundedRolesOnly",
                "Effect": "Allow",
                "Action": [
                    "iam:CreateRole",
                    "iam:PutRolePolicy",
                    "iam:AttachRolePolicy",
                    "iam:DetachRolePolicy",
                    "iam:DeleteRolePolicy",
                    "iam:PutRolePermissionsBoundary",
                ],
                "Resource": roles,
                "Condition": {"StringEquals": {"iam:PermissionsBoundary": _sub(boundary)}},
            },
            {
                "Sid": "BaselineRoles",
                "Effect": "Allow",
                "Action": [
                    "iam:DeleteRole",
                    "iam:GetRole",
                    "iam:GetRolePolicy",
                    "iam:ListRolePolicies",
                    "iam:ListAttachedRolePolicies",
                    "iam:UpdateRole",
                    "iam:UpdateRoleDescription",
                    "iam:UpdateAssumeRolePolicy",
                    "iam:TagRole",
                    "iam:UntagRole",
                    "iam:PassRole",
                ],
                "Resource": roles,
            },
            {
                "Sid": "BaselinePolicies",
                "Effect": "Allow",
                "Action": [
                    "iam:CreatePolicy",
                    "iam:DeletePolicy",
                    "iam:CreatePolicyVersion",
                    "iam:DeletePolicyVersion",
                    "iam:GetPolicy",
                    "iam:GetPolicyVersion",
                    "iam:ListPolicyVersions",
                    "iam:TagPolicy",
                ],
                "Resource": _sub(f"arn:{P}:iam::{A}:policy/{STACK_PREFIX}*"),
            },
            {
                "Sid": "ServiceLinkedRoles",
                "Effect": "Allow",
                "Action": "iam:CreateServiceLinkedRole",
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "iam:AWSServiceName": [
                            "guardduty.amazonaws.com",
                            "malware-protection.guardduty.amazonaws.com",
                            "config.amazonaws.com",
                        ]
                    }
                },
            },
            {
                "Sid": "Trail",
                "Effect": "Allow",
                "Action": "cloudtrail:*",
                "Resource": _sub(f"arn:{P}:cloudtrail:*:{A}:trail/{TRAIL_NAME}"),
            },
            {
                # These services have no resource-level permissions for most of their APIs.
                "Sid": "RegionalControls",
                "Effect": "Allow",
                "Action": [
                    "config:*",
                    "guardduty:*",
                    "ce:*Anomaly*",
                    "ce:TagResource",
                    "kms:CreateKey",
                    "cloudtrail:DescribeTrails",
                    "cloudtrail:GetTrailStatus",
                    "cloudtrail:ListTrails",
                    "cloudtrail:GetEventSelectors",
                    "iam:ListRoles",
                    "iam:ListPolicies",
                    "logs:DescribeLogGroups",
                    "sns:ListTopics",
                ],
                "Resource": "*",
            },
            {
                "Sid": "BudgetsAndAlerts",
                "Effect": "Allow",
                "Action": ["budgets:*", "sns:*"],
                "Resource": [
                    _sub(f"arn:{P}:budgets::{A}:budget/{STACK_PREFIX}*"),
                    _sub(f"arn:{P}:sns:*:{A}:{ALERTS_TOPIC_NAME}"),
                ],
            },
            {
                "Sid": "ClientKey",
                "Effect": "Allow",
                "Action": [
                    "kms:CreateAlias",
                    "kms:DeleteAlias",
                    "kms:UpdateAlias",
                    "kms:DescribeKey",
                    "kms:GetKeyPolicy",
                    "kms:PutKeyPolicy",
                    "kms:EnableKeyRotation",
                    "kms:GetKeyRotationStatus",
                    "kms:TagResource",
                    "kms:ListResourceTags",
                ],
                "Resource": [_sub(f"arn:{P}:kms:*:{A}:key/*"), _sub(f"arn:{P}:kms:*:{A}:{ALERTS_KEY_ALIAS}")],
            },
            {
                "Sid": "TrailLogGroup",
                "Effect": "Allow",
                "Action": "logs:*",
                "Resource": _sub(f"arn:{P}:logs:*:{A}:log-group:{TRAIL_LOG_GROUP_NAME}*"),
            },
        ],
    }


def onboarding_template(client: EffectiveClient, defaults: MspDefaults) -> dict[str, Any]:
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
                        {"PolicyName": "vend-deploy-baseline", "PolicyDocument": deploy_policy(defaults.msp.role_name)}
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


def render(client: EffectiveClient, defaults: MspDefaults) -> str:
    return json.dumps(onboarding_template(client, defaults), indent=2) + "\n"
