"""CloudTrail: one multi-region trail delivering to the MSP's central log bucket.

Enforces: management events (read and write) in every region, global service events,
log file validation (digest files), SSE-KMS with the MSP's central key, and logging on.
Tuned by nothing per client: the bucket and key come from ``baseline/defaults.yaml``::

    log_archive:
      account_id: "210987654321"
      region: us-east-1
"""

from __future__ import annotations

from aws_cdk import aws_cloudtrail as cloudtrail
from constructs import Construct

from baseline.spec import TrailSpec


class BaselineTrail(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, spec: TrailSpec) -> None:
        super().__init__(scope, construct_id)
        self.trail = cloudtrail.CfnTrail(
            self,
            "Trail",
            trail_name=spec.name,
            is_logging=spec.is_logging,
            is_multi_region_trail=spec.is_multi_region,
            include_global_service_events=spec.include_global_service_events,
            enable_log_file_validation=spec.log_file_validation,
            s3_bucket_name=spec.bucket_name,
            kms_key_id=spec.kms_key_arn,
            event_selectors=[
                cloudtrail.CfnTrail.EventSelectorProperty(read_write_type="All", include_management_events=True)
            ],
        )
