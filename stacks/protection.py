"""Stack protection as data: which resources an update may never replace or delete.

Client stacks are synthesized with termination protection (``terminationProtection`` in
the cloud assembly, which ``cdk deploy`` and ``vend deploy`` apply) and carry their
CloudFormation stack policy in the template's ``Metadata`` under
:data:`STACK_POLICY_METADATA_KEY`. ``vend deploy`` sets that policy after every create or
update (:func:`scripts.stack_protection.apply_protection`); ``cdk deploy`` cannot, so after
it run ``vend deploy <client> --verify-protection``. By hand::

    aws cloudformation set-stack-policy --stack-name vend-acme-health-global \\
        --stack-policy-body "$(jq -c '.Metadata["vend:StackPolicy"]' cdk.out/vend-acme-health-global.template.json)"

An update that must replace or delete a protected resource needs an explicit, temporary
override from a person who means it (``vend deploy --allow-protected-change ID``).

The key and the policy's shape live in :mod:`baseline.stack_policy`, so that the driver
reads what the stacks write without importing aws_cdk.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import CfnResource, Stack

from baseline.stack_policy import STACK_POLICY_METADATA_KEY, stack_policy

__all__ = ["STACK_POLICY_METADATA_KEY", "protect", "stack_policy"]


def protect(stack: Stack, resources: Sequence[CfnResource]) -> dict[str, Any]:
    """Record the stack policy that keeps ``resources`` from being replaced or deleted."""
    ids = [str(stack.resolve(stack.get_logical_id(r))) for r in resources]
    policy = stack_policy(ids)
    stack.add_metadata(STACK_POLICY_METADATA_KEY, policy)
    return policy
