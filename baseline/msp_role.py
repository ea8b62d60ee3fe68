"""MSP role: the cross-account role MSP staff and automation use in the client account.

Enforces: trust only in the MSP account's principals listed in defaults (matched on
``aws:PrincipalArn``: Identity Center permission-set roles and the automation role), the
client's ``sts:ExternalId``, a ``sts:SourceIdentity`` on every session (the engineer's name
in the client's CloudTrail), a bounded session (``msp.max_session_hours``), and the
permission boundary. Permissions follow the engagement::

    engagement: monitoring   # SecurityAudit + ViewOnlyAccess, read-only
    engagement: managed      # the above + a scoped operations policy, never admin
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Fn
from aws_cdk import aws_iam as iam
from constructs import Construct

from baseline._nag import acknowledge, acknowledge_in_packs
from baseline.spec import MspRoleSpec

# What the MSP's runbooks and automation do in a managed account: operate, not administer.
OPERATIONS_ACTIONS: tuple[str, ...] = (
    "ec2:StartInstances",
    "ec2:StopInstances",
    "ec2:RebootInstances",
    "ec2:CreateSnapshot",
    "ec2:CreateTags",
    "ssm:SendCommand",
    "ssm:StartSession",
    "ssm:TerminateSession",
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


class MspRole(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, spec: MspRoleSpec, boundary_arn: str) -> None:
        super().__init__(scope, construct_id)
        policies = []
        if spec.operations_policy_name:
            policies.append(
                iam.CfnRole.PolicyProperty(
                    policy_name=spec.operations_policy_name,
                    policy_document={
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Sid": "ManagedOperations",
                                "Effect": "Allow",
                                "Action": list(OPERATIONS_ACTIONS),
                                "Resource": "*",
                            }
                        ],
                    },
                )
            )
        self.role = iam.CfnRole(
            self,
            "Role",
            role_name=spec.role_name,
            description=f"MSP access ({spec.engagement}) - assumed by the MSP with the client's ExternalId",
            assume_role_policy_document=trust_policy(spec),
            managed_policy_arns=list(spec.managed_policy_arns),
            permissions_boundary=boundary_arn,
            max_session_duration=spec.max_session_seconds,
            policies=policies or None,
        )
        self.arn = Fn.get_att(self.role.logical_id, "Arn").to_string()
        acknowledge(
            self.role,
            "AwsSolutions-IAM4",
            "SecurityAudit and ViewOnlyAccess are the AWS-maintained read-only job-function "
            "policies; AWS keeps them current as services launch, which a copy would not.",
            findings=[f"Policy::{arn}" for arn in spec.managed_policy_arns],
        )
        if spec.operations_policy_name:
            acknowledge(
                self.role,
                "AwsSolutions-IAM5",
                "The operations policy lists exact actions; resources are the client's own "
                "instances, snapshots and alarms, unknown when the baseline is written, and the "
                "permission boundary denies every escalation path.",
                findings=["Resource::*"],
            )
            acknowledge_in_packs(
                self.role,
                "IAMNoInlinePolicy",
                "The operations policy belongs to this role alone and lives and dies with it; as a "
                "managed policy it could be attached to other principals, which is what the rule guards against.",
            )
