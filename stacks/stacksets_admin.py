"""MSP-side stack in the MSP account: the StackSets administration role.

``vend deploy --engine stacksets`` (scripts/stacksets.py) runs the baseline through
CloudFormation StackSets with self-managed permissions. CloudFormation assumes this role in
the MSP account, and from it the execution role the onboarding template creates in each
client account (``vend-stacksets-execution``, trusting only this role). Direct mode never
uses it. Deployed by the StackSets engine before any stack set, like the log archive.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from constructs import Construct

from baseline._nag import acknowledge, acknowledge_in_packs
from baseline.stacksets import ADMIN_ROLE_NAME, EXECUTION_ROLE_NAME, STACKSETS_ADMIN_STACK_NAME

__all__ = ["STACKSETS_ADMIN_STACK_NAME", "StackSetsAdminStack"]


class StackSetsAdminStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, msp_account: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        execution_roles = f"arn:{self.partition}:iam::*:role/{EXECUTION_ROLE_NAME}"
        self.role = iam.CfnRole(
            self,
            "AdminRole",
            role_name=ADMIN_ROLE_NAME,
            description="CloudFormation StackSets administration role of vend (self-managed permissions)",
            assume_role_policy_document={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "cloudformation.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                        # Only CloudFormation acting for this account's stack sets (confused deputy).
                        "Condition": {
                            "StringEquals": {"aws:SourceAccount": msp_account},
                            "ArnLike": {
                                "aws:SourceArn": f"arn:{self.partition}:cloudformation:*:{msp_account}:stackset/vend-*"
                            },
                        },
                    }
                ],
            },
            policies=[
                iam.CfnRole.PolicyProperty(
                    policy_name="assume-vend-execution-roles",
                    policy_document={
                        "Version": "2012-10-17",
                        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": execution_roles}],
                    },
                )
            ],
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM5",
            "StackSets needs the execution role in every client account, and the portfolio's account list "
            "would not fit an IAM policy at 1,000 clients; each execution role trusts only this role by ARN, "
            "so the wildcard reaches vend's execution roles and nothing else.",
            findings=[f"Resource::{execution_roles}"],
        )
        acknowledge_in_packs(
            self.role,
            "IAMNoInlinePolicy",
            "One statement that belongs to this role alone; as a managed policy it could be attached to other "
            "principals, which is what the rule guards against.",
        )
