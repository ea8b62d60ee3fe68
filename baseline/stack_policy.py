"""The stack policy of vend's client stacks, as data (no aws_cdk).

Shared by the two sides of stack protection: ``stacks/protection.py`` writes the policy into
each template's ``Metadata`` under :data:`STACK_POLICY_METADATA_KEY` at synth, and
``scripts/stack_protection.py`` (the driver, which never imports aws_cdk) reads it from the
cloud assembly and applies it. Living in ``baseline/``, it is part of the code whose hash
keys the synthesis cache (``scripts/synth.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

STACK_POLICY_METADATA_KEY = "vend:StackPolicy"
#: What the policy denies on the protected resources; modifying them in place stays allowed.
PROTECTED_ACTIONS = ("Update:Replace", "Update:Delete")
RESOURCE_PREFIX = "LogicalResourceId/"


def stack_policy(logical_ids: Iterable[str]) -> dict[str, Any]:
    """Every update allowed, except replacing or deleting the resources ``logical_ids``."""
    ids = sorted(logical_ids)
    statements: list[dict[str, Any]] = [{"Effect": "Allow", "Principal": "*", "Action": "Update:*", "Resource": "*"}]
    if ids:
        statements.append(
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": list(PROTECTED_ACTIONS),
                "Resource": [f"{RESOURCE_PREFIX}{i}" for i in ids],
            }
        )
    return {"Statement": statements}
