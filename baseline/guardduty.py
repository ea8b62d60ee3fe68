"""GuardDuty: an enabled detector in every region the client uses, with its protection plans.

Tuned per client (unset keys keep ``client_defaults.guardduty_features``)::

    guardduty:
      finding_publishing_frequency: FIFTEEN_MINUTES   # or ONE_HOUR, SIX_HOURS (default)
      features:
        s3_data_events: true
        eks_audit_logs: true
        ebs_malware_protection: true
        rds_login_events: true
        runtime_monitoring: true      # GuardDuty manages the agents on EKS, ECS Fargate and EC2
"""

from __future__ import annotations

from aws_cdk import aws_guardduty as guardduty
from constructs import Construct

from baseline.spec import DetectorSpec

# With RUNTIME_MONITORING on, GuardDuty installs and updates its agents itself.
RUNTIME_AGENT_MANAGEMENT = ("EKS_ADDON_MANAGEMENT", "ECS_FARGATE_AGENT_MANAGEMENT", "EC2_AGENT_MANAGEMENT")


def _feature(name: str, enabled: bool) -> guardduty.CfnDetector.CFNFeatureConfigurationProperty:
    status = "ENABLED" if enabled else "DISABLED"
    additional = (
        [
            guardduty.CfnDetector.CFNFeatureAdditionalConfigurationProperty(name=a, status=status)
            for a in RUNTIME_AGENT_MANAGEMENT
        ]
        if name == "RUNTIME_MONITORING"
        else None
    )
    return guardduty.CfnDetector.CFNFeatureConfigurationProperty(
        name=name, status=status, additional_configuration=additional
    )


class Detector(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, spec: DetectorSpec) -> None:
        super().__init__(scope, construct_id)
        self.detector = guardduty.CfnDetector(
            self,
            "Detector",
            enable=spec.enable,
            finding_publishing_frequency=spec.finding_publishing_frequency,
            features=[_feature(name, enabled) for name, enabled in spec.features] or None,
        )
