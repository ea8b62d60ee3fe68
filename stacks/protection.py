"""Stack protection as data: which resources an update may never replace or delete.

Client stacks are synthesized with termination protection (``terminationProtection`` in
the cloud assembly, which ``cdk deploy`` applies) and carry their CloudFormation stack
policy in the template's ``Metadata`` under :data:`STACK_POLICY_METADATA_KEY`. The driver
applies it after a deploy (:func:`scripts.stack_protection.apply_protection`); by hand::

    aws cloudformation set-stack-policy --stack-name vend-acme-health-global \\
        --stack-policy-body "$(jq -c '.Metadata["vend:StackPolicy"]' cdk.out/vend-acme-health-global.template.json)"

An update that must replace a protected resource needs an explicit, temporary override
(``--stack-policy-during-update-body``) from a person who means it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import CfnResource, Stack

STACK_POLICY_METADATA_KEY = "vend:StackPolicy"


def stack_policy(logical_ids: Sequence[str]) -> dict[str, Any]:
    statements: list[dict[str, Any]] = [{"Effect": "Allow", "Principal": "*", "Action": "Update:*", "Resource": "*"}]
    if logical_ids:
        statements.append(
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": ["Update:Replace", "Update:Delete"],
                "Resource": [f"LogicalResourceId/{i}" for i in sorted(logical_ids)],
            }
        )
    return {"Statement": statements}


def protect(stack: Stack, resources: Sequence[CfnResource]) -> dict[str, Any]:
    """Record the stack policy that keeps ``resources`` from being replaced or deleted."""
    ids = [str(stack.resolve(stack.get_logical_id(r))) for r in resources]
    policy = stack_policy(ids)
    stack.add_metadata(STACK_POLICY_METADATA_KEY, policy)
    return policy
