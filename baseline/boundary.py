"""Permission boundary: the ceiling on every role the baseline creates.

Denies privilege escalation and switching off the baseline's own controls; it grants
nothing by itself (a role's permissions are its policies, capped by this boundary):

* long-lived credentials: creating IAM users, access keys, login profiles;
* roles: creating a role, or changing a role's policies or boundary, unless that role
  carries this same boundary (``iam:PermissionsBoundary``); changing any role's trust;
  passing roles to services; editing, deleting or detaching this boundary;
* the protected roles (MSP role, Config role, trail log role): no change at all;
* the baseline's controls: stopping or changing the trail, the Config recorder, delivery
  channel and rules, the GuardDuty detector and its suppression lists, the alert topic,
  budgets and anomaly monitors, the trail's log group, and the ``vend-*`` stacks.

Not tuned per client.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Fn
from aws_cdk import aws_iam as iam
from constructs import Construct

from baseline._nag import acknowledge
from baseline.spec import BoundarySpec


def boundary_arn(name: str) -> str:
    return Fn.sub(f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:policy/{name}")


def _arn(resource: str) -> str:
    return Fn.sub(f"arn:${{AWS::Partition}}:{resource}")


def boundary_document(spec: BoundarySpec) -> dict[str, Any]:
    own_arn = boundary_arn(spec.name)
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


class PermissionBoundary(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, spec: BoundarySpec) -> None:
        super().__init__(scope, construct_id)
        self.policy = iam.CfnManagedPolicy(
            self,
            "Policy",
            managed_policy_name=spec.name,
            description="vend permission boundary: denies privilege escalation and baseline tampering",
            policy_document=boundary_document(spec),
        )
        self.arn = boundary_arn(spec.name)
        acknowledge(
            self.policy,
            "AwsSolutions-IAM5",
            "A permission boundary is a ceiling, not a grant: Allow * caps nothing by itself and "
            "the explicit Deny statements are the control. The role's own policies grant access.",
            findings=["Action::*", "Resource::*"],
        )
