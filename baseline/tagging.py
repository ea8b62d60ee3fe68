"""Tag rules: the AWS managed ``REQUIRED_TAGS`` Config rule(s) with the client's tag keys.

The managed rule takes six keys; more keys are split over several rules
(``vend-required-tags``, ``vend-required-tags-2``, ...). Tuned per client::

    tags:
      required: [Owner, CostCenter, Environment]
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import CfnResource
from constructs import Construct

from baseline.config_rules import managed_rule
from baseline.spec import ConfigRuleSpec


class RequiredTags(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, specs: Sequence[ConfigRuleSpec], recorder: CfnResource
    ) -> None:
        if not specs:
            raise ValueError("RequiredTags needs at least one rule spec; leave it out when tag-rules is waived")
        super().__init__(scope, construct_id)
        # The first rule keeps construct id "Rule" (ids are API); the others are Rule2, Rule3, ...
        self.rules = [
            managed_rule(self, "Rule" if n == 1 else f"Rule{n}", spec, recorder)
            for n, spec in enumerate(specs, start=1)
        ]
        self.rule = self.rules[0]
