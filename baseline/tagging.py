"""Tag rules: the AWS managed ``REQUIRED_TAGS`` Config rule with the client's tag keys.

Tuned per client (at most 6 keys, the managed rule's limit)::

    tags:
      required: [Owner, CostCenter, Environment]
"""

from __future__ import annotations

from aws_cdk import CfnResource
from constructs import Construct

from baseline.config_rules import managed_rule
from baseline.spec import ConfigRuleSpec


class RequiredTags(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, spec: ConfigRuleSpec, recorder: CfnResource) -> None:
        super().__init__(scope, construct_id)
        self.rule = managed_rule(self, "Rule", spec, recorder)
