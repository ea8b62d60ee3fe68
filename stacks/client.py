"""Per-client stacks: one global stack (home region) and one stack per enabled region.

Global: permission boundary, MSP role, Config recorder role, CloudTrail, budget.
Regional: Config recorder + delivery channel, Config rules, tag rule, GuardDuty detector.
Regional stacks depend on the global one (the recorder role is created there).
Stacks hand each construct only its own slice of the client's spec.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import Stack
from constructs import Construct

from baseline.boundary import PermissionBoundary
from baseline.budgets import MonthlyBudget
from baseline.config_recorder import ConfigRecorder, ConfigRecorderRole
from baseline.config_rules import ConfigRules
from baseline.guardduty import Detector
from baseline.msp_role import MspRole
from baseline.spec import CentralLogging, ClientBaseline, RegionalBaseline
from baseline.tagging import RequiredTags
from baseline.trail import BaselineTrail


class ClientGlobalStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, baseline: ClientBaseline, logs: CentralLogging, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        boundary = PermissionBoundary(self, "PermissionBoundary", spec=baseline.boundary)
        msp_role = MspRole(self, "MspRole", spec=baseline.msp_role, boundary_arn=boundary.arn)
        msp_role.role.add_resource_dependency(boundary.policy)
        config_role = ConfigRecorderRole(
            self, "ConfigRecorderRole", spec=baseline.config_role, logs=logs, boundary_arn=boundary.arn
        )
        config_role.role.add_resource_dependency(boundary.policy)
        BaselineTrail(self, "Trail", spec=baseline.trail)
        MonthlyBudget(self, "Budget", spec=baseline.budget)


class ClientRegionalStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, regional: RegionalBaseline, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        recording = ConfigRecorder(self, "Config", recorder=regional.recorder, delivery=regional.delivery_channel)
        ConfigRules(self, "Rules", rules=regional.rules, recorder=recording.recorder)
        RequiredTags(self, "TagRule", spec=regional.tag_rule, recorder=recording.recorder)
        Detector(self, "GuardDuty", spec=regional.detector)
