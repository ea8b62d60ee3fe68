"""Per-client stacks: one global stack (home region) and one stack per enabled region.

Global: permission boundary, MSP role, Config recorder role, client key, CloudTrail (and its
log group), budget with alert topic and anomaly detection.
Regional: Config recorder + delivery channel, Config rules, tag rules, GuardDuty detector.
Every client stack has termination protection and a stack policy (:mod:`stacks.protection`)
that keeps an update from replacing or deleting the trail, recorder, delivery channel,
detector, boundary and the baseline roles.
A recorder, delivery channel or detector the client adopts (``inherited.<setting>: adopt``) is
in the regional stack like vend's own, retained and marked for import (baseline/adoption.py);
an adopted trail stays out of the global stack.
Regional stacks depend on the global one (the recorder role is created there).
Stacks hand each construct only its own slice of the client's spec.
"""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnResource, RemovalPolicy, Stack
from constructs import Construct

from baseline.adoption import IMPORT_METADATA_KEY
from baseline.boundary import PermissionBoundary
from baseline.budgets import MonthlyBudget
from baseline.client_key import ClientKey
from baseline.config_recorder import ConfigRecorder, ConfigRecorderRole
from baseline.config_rules import ConfigRules
from baseline.exceptions import waiver
from baseline.guardduty import Detector
from baseline.msp_role import MspRole
from baseline.spec import CentralLogging, ClientBaseline, RegionalBaseline
from baseline.tagging import RequiredTags
from baseline.trail import BaselineTrail
from stacks.protection import protect


class ClientGlobalStack(Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, baseline: ClientBaseline, logs: CentralLogging, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        boundary = PermissionBoundary(self, "PermissionBoundary", spec=baseline.boundary)
        msp_role = MspRole(self, "MspRole", spec=baseline.msp_role, boundary_arn=boundary.arn)
        msp_role.role.add_resource_dependency(boundary.policy)
        config_role = ConfigRecorderRole(
            self, "ConfigRecorderRole", spec=baseline.config_role, boundary_arn=boundary.arn
        )
        config_role.role.add_resource_dependency(boundary.policy)
        key = ClientKey(
            self, "ClientKey", alias=baseline.budget.key_alias, log_group_name=baseline.trail.log_group_name
        )
        protected: list[CfnResource] = [boundary.policy, msp_role.role, config_role.role]
        # inherited.cloudtrail: adopt keeps the account's own trail; an exception waives it (issue 4)
        if not baseline.trail.adopt and not waiver(baseline.client.exceptions, "cloudtrail"):
            trail = BaselineTrail(self, "Trail", spec=baseline.trail, boundary_arn=boundary.arn, log_key=key.key)
            protected.append(trail.trail)
        if not waiver(baseline.client.exceptions, "budget"):  # issue 4: exception
            MonthlyBudget(self, "Budget", spec=baseline.budget, key=key.key)
        # Update:Replace/Delete of these needs an explicit stack policy override.
        protect(self, protected)


class ClientRegionalStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, *, regional: RegionalBaseline, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        recording = ConfigRecorder(self, "Config", recorder=regional.recorder, delivery=regional.delivery_channel)
        ConfigRules(self, "Rules", rules=regional.rules, recorder=recording.recorder)
        if regional.tag_rules:  # empty when a tag-rules exception waives them here (issue 4)
            RequiredTags(self, "TagRule", specs=regional.tag_rules, recorder=recording.recorder)
        protected: list[CfnResource] = [recording.recorder, recording.delivery_channel]
        if "guardduty" not in regional.waived:  # issue 4: exception
            detector = Detector(self, "GuardDuty", spec=regional.detector).detector
            protected.append(detector)
            if regional.detector.adopt:
                _adopted(detector, "guardduty_detector")
        # inherited.*: adopt keeps the account's own recorder/channel/detector (one per region is
        # allowed): in the stack like vend's own, imported by `vend deploy` (baseline/adoption.py).
        if regional.recorder.adopt:
            _adopted(recording.recorder, "config_recorder")
        if regional.delivery_channel.adopt:
            _adopted(recording.delivery_channel, "config_delivery_channel")
        protect(self, protected)


def _adopted(resource: CfnResource, setting: str) -> None:
    """The account's resource, imported into the stack: never deleted by CloudFormation (it was
    there before vend), and marked so that the deploy driver imports it."""
    resource.apply_removal_policy(RemovalPolicy.RETAIN)
    resource.add_metadata(IMPORT_METADATA_KEY, setting)
