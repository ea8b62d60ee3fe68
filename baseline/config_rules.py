"""AWS Config rules: the MSP standard rule set plus the client's profile packs.

The rule list lives in ``baseline/defaults.yaml`` (``config_rules``) and
``baseline/profiles/<name>.yaml``; a client picks packs with::

    profiles: [hipaa]

Rules about global resources (``scope: home``) run only in the home region.
"""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import CfnResource
from aws_cdk import aws_config as config
from constructs import Construct

from baseline.spec import ConfigRuleSpec


def managed_rule(
    scope: Construct, construct_id: str, spec: ConfigRuleSpec, recorder: CfnResource
) -> config.CfnConfigRule:
    """One AWS managed rule; it needs the recorder of its region to evaluate anything."""
    rule = config.CfnConfigRule(
        scope,
        construct_id,
        config_rule_name=spec.name,
        source=config.CfnConfigRule.SourceProperty(owner="AWS", source_identifier=spec.identifier),
        input_parameters=spec.parameters_dict or None,
    )
    rule.add_resource_dependency(recorder)
    return rule


class ConfigRules(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, rules: Sequence[ConfigRuleSpec], recorder: CfnResource
    ) -> None:
        super().__init__(scope, construct_id)
        # Construct ids follow the rule name: renaming a rule replaces only that rule.
        self.rules = [managed_rule(self, spec.name, spec, recorder) for spec in rules]
