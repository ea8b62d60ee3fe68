"""CloudTrail: one multi-region trail delivering to the MSP's central log bucket.

Enforces: management events (read and write) in every region, global service events,
log file validation (digest files), SSE-KMS with the MSP's central key (of the client's
shard), delivery under the client's retention class, and logging on. Profiles add S3 data
events and delivery to an encrypted CloudWatch Logs group (for metric alarms)::

    # baseline/profiles/hipaa.yaml
    trail:
      s3_data_events: true
      cloudwatch_logs_retention_days: 365

The central bucket and key come from ``baseline/defaults.yaml`` (``log_archive``).
"""

from __future__ import annotations

from aws_cdk import Fn, RemovalPolicy
from aws_cdk import aws_cloudtrail as cloudtrail
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from constructs import Construct

from baseline._nag import acknowledge, acknowledge_in_packs
from baseline.spec import TrailSpec

# "arn:aws:s3" selects the object-level events of every bucket, present and future.
ALL_S3_OBJECTS = "arn:aws:s3"


class BaselineTrail(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        spec: TrailSpec,
        boundary_arn: str | None = None,
        log_key: kms.IKey | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        cw_group_arn = cw_role_arn = None
        if spec.cloudwatch_logs_retention_days:
            if boundary_arn is None or log_key is None:
                raise ValueError("CloudWatch Logs delivery needs the permission boundary and the client key")
            group = logs.CfnLogGroup(
                self,
                "LogGroup",
                log_group_name=spec.log_group_name,
                retention_in_days=spec.cloudwatch_logs_retention_days,
                kms_key_id=log_key.key_arn,
            )
            group.apply_removal_policy(RemovalPolicy.RETAIN)
            trail_arn = Fn.sub(
                f"arn:${{AWS::Partition}}:cloudtrail:${{AWS::Region}}:${{AWS::AccountId}}:trail/{spec.name}"
            )
            role = iam.CfnRole(
                self,
                "LogsRole",
                role_name=spec.logs_role_name,
                description="CloudTrail delivery to the trail's CloudWatch Logs group (vend baseline)",
                permissions_boundary=boundary_arn,
                assume_role_policy_document={
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "cloudtrail.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                            "Condition": {"StringEquals": {"aws:SourceArn": trail_arn}},
                        }
                    ],
                },
                policies=[
                    iam.CfnRole.PolicyProperty(
                        policy_name="deliver-to-log-group",
                        policy_document={
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Effect": "Allow",
                                    "Action": ["logs:CreateLogStream", "logs:PutLogEvents"],
                                    "Resource": Fn.sub(
                                        "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:"
                                        f"log-group:{spec.log_group_name}:log-stream:*"
                                    ),
                                }
                            ],
                        },
                    )
                ],
            )
            acknowledge(
                role,
                "AwsSolutions-IAM5",
                "CloudTrail names its log streams after the account and region at delivery time; the "
                "wildcard is limited to the streams of the trail's own log group.",
                findings=[
                    "Resource::arn:<AWS::Partition>:logs:<AWS::Region>:<AWS::AccountId>:"
                    f"log-group:{spec.log_group_name}:log-stream:*"
                ],
            )
            acknowledge_in_packs(
                role,
                "IAMNoInlinePolicy",
                "The delivery policy belongs to CloudTrail's log role alone (two actions on one log group); "
                "as a managed policy it could be attached to other principals.",
            )
            cw_group_arn = group.attr_arn
            cw_role_arn = role.attr_arn
            self.logs_role = role
        data_resources = (
            [cloudtrail.CfnTrail.DataResourceProperty(type="AWS::S3::Object", values=[ALL_S3_OBJECTS])]
            if spec.s3_data_events
            else None
        )
        self.trail = cloudtrail.CfnTrail(
            self,
            "Trail",
            trail_name=spec.name,
            is_logging=spec.is_logging,
            is_multi_region_trail=spec.is_multi_region,
            include_global_service_events=spec.include_global_service_events,
            enable_log_file_validation=spec.log_file_validation,
            s3_bucket_name=spec.bucket_name,
            s3_key_prefix=spec.s3_key_prefix,
            kms_key_id=spec.kms_key_arn,
            cloud_watch_logs_log_group_arn=cw_group_arn,
            cloud_watch_logs_role_arn=cw_role_arn,
            event_selectors=[
                cloudtrail.CfnTrail.EventSelectorProperty(
                    read_write_type="All", include_management_events=True, data_resources=data_resources
                )
            ],
        )
