"""MSP role: the cross-account role MSP staff and automation use in the client account.

Enforces: trust only in the MSP account's principals listed in defaults (matched on
``aws:PrincipalArn``: Identity Center permission-set roles and the automation role), the
client's ``sts:ExternalId``, a ``sts:SourceIdentity`` on every session (the engineer's name
in the client's CloudTrail), a bounded session (``msp.max_session_hours``), and the
permission boundary. Permissions follow the engagement::

    engagement: monitoring   # SecurityAudit + ViewOnlyAccess, read-only
    engagement: managed      # the above + a scoped operations policy, never admin

The operations policy (:func:`baseline.policies.operations_policy`) sends only the AWS patch
document, only to instances the client tagged ``vend:managed=true``, and opens no shell
(Session Manager): a command or shell on a host acts with the host's instance profile, which
the permission boundary does not limit.
"""

from __future__ import annotations

from aws_cdk import Fn
from aws_cdk import aws_iam as iam
from constructs import Construct

from baseline._nag import acknowledge, acknowledge_in_packs
from baseline.policies import operations_policy, trust_policy
from baseline.spec import MANAGED_INSTANCE_TAG_KEY, MANAGED_INSTANCE_TAG_VALUE, PATCH_DOCUMENTS, MspRoleSpec


class MspRole(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, spec: MspRoleSpec, boundary_arn: str) -> None:
        super().__init__(scope, construct_id)
        policies = []
        if spec.operations_policy_name:
            policies.append(
                iam.CfnRole.PolicyProperty(policy_name=spec.operations_policy_name, policy_document=operations_policy())
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
            acknowledge(
                self.role,
                "AwsSolutions-IAM5",
                "ssm:SendCommand names its targets: the AWS-owned patch document by exact name in any "
                "region the client uses, and instances, which are the client's and unknown when the baseline "
                "is written; the statement's condition admits only instances the client tagged "
                f"{MANAGED_INSTANCE_TAG_KEY}={MANAGED_INSTANCE_TAG_VALUE}, and the MSP role cannot set that tag.",
                findings=[f"Resource::arn:aws:ssm:*::document/{name}" for name in PATCH_DOCUMENTS]
                + ["Resource::arn:aws:ec2:*:*:instance/*", "Resource::arn:aws:ssm:*:*:managed-instance/*"],
            )
            acknowledge_in_packs(
                self.role,
                "IAMNoInlinePolicy",
                "The operations policy belongs to this role alone and lives and dies with it; as a "
                "managed policy it could be attached to other principals, which is what the rule guards against.",
            )
