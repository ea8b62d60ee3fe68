"""GuardDuty: an enabled detector in every region the client uses.

Tuned per client::

    guardduty:
      finding_publishing_frequency: FIFTEEN_MINUTES   # or ONE_HOUR, SIX_HOURS (default)
"""

from __future__ import annotations

from aws_cdk import aws_guardduty as guardduty
from constructs import Construct

from baseline.spec import DetectorSpec


class Detector(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, spec: DetectorSpec) -> None:
        super().__init__(scope, construct_id)
        self.detector = guardduty.CfnDetector(
            self,
            "Detector",
            enable=spec.enable,
            finding_publishing_frequency=spec.finding_publishing_frequency,
        )
