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

Not tuned per client. The document itself is data (:func:`baseline.policies.boundary_document`):
the drift checks compare the live default version with it.
"""

from __future__ import annotations

from aws_cdk import Fn
from aws_cdk import aws_iam as iam
from constructs import Construct

from baseline._nag import acknowledge
from baseline.policies import boundary_document
from baseline.spec import BoundarySpec


def boundary_arn(name: str) -> str:
    return Fn.sub(f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:policy/{name}")


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
