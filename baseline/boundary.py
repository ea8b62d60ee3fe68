"""Permission boundary: the ceiling on every role the baseline creates.

Denies privilege escalation (IAM users and access keys; roles created or changed without
this same boundary; removing or editing the boundary; changing the protected roles' trust
or policies) and switching off the baseline's own controls (trail, recorder, delivery
channel, Config rules, detector). It grants nothing by itself: a role's permissions are its
policies, capped by this boundary. Not tuned per client.
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
    protected_roles = [_arn(f"iam::${{AWS::AccountId}}:role/{name}") for name in spec.protected_role_names]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "CeilingOnly",
                "Effect": "Allow",
                "Action": "*",
                "Resource": "*",
            },
            {
                "Sid": "DenyLongLivedCredentials",
                "Effect": "Deny",
                "Action": [
                    "iam:CreateUser",
                    "iam:CreateAccessKey",
                    "iam:CreateLoginProfile",
                    "iam:UpdateLoginProfile",
                    "iam:AttachUserPolicy",
                    "iam:PutUserPolicy",
                    "iam:AddUserToGroup",
                ],
                "Resource": "*",
            },
            {
                "Sid": "DenyRolesWithoutThisBoundary",
                "Effect": "Deny",
                "Action": ["iam:CreateRole", "iam:PutRolePermissionsBoundary"],
                "Resource": "*",
                "Condition": {"StringNotEquals": {"iam:PermissionsBoundary": own_arn}},
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
                ],
                "Resource": own_arn,
            },
            {
                "Sid": "DenyProtectedRoleChanges",
                "Effect": "Deny",
                "Action": [
                    "iam:UpdateAssumeRolePolicy",
                    "iam:DeleteRole",
                    "iam:UpdateRole",
                    "iam:AttachRolePolicy",
                    "iam:DetachRolePolicy",
                    "iam:PutRolePolicy",
                    "iam:DeleteRolePolicy",
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
                "Resource": _arn(f"cloudtrail:*:${{AWS::AccountId}}:trail/{spec.trail_name}"),
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
                ],
                "Resource": "*",
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
