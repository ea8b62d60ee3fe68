"""Central logging (MSP side): the log-archive bucket and KMS key every client writes to.

Enforces: SSE-KMS with a rotating key and S3 bucket keys, versioning, TLS only, public
access blocked, bucket-owner-enforced object ownership, server access logs to a separate
bucket, retention per client (the longest its profiles ask for), and RETAIN on stack
deletion. The bucket and key policies are generated from the portfolio: each client's
CloudTrail and Config can write only under that client's own ``AWSLogs/<account>/``
prefix (``aws:SourceArn`` / ``aws:PrincipalArn`` conditions), and the key keeps the
log-archive account's admin statement so it can never be locked. Tuned in defaults::

    log_archive:
      retention_days: 400      # profiles (e.g. hipaa: 2190) may raise it per client
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from baseline._nag import acknowledge
from baseline.spec import CONFIG_ROLE_NAME, KMS_ALIAS_NAME, TRAIL_NAME, CentralLogging


@dataclass(frozen=True)
class LogWriter:
    """One client account that delivers logs to the central bucket."""

    client: str
    account_id: str
    home_region: str
    retention_days: int

    @property
    def trail_arn(self) -> str:
        return f"arn:aws:cloudtrail:{self.home_region}:{self.account_id}:trail/{TRAIL_NAME}"

    @property
    def config_role_arn(self) -> str:
        return f"arn:aws:iam::{self.account_id}:role/{CONFIG_ROLE_NAME}"


class CentralLogArchive(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        logs: CentralLogging,
        writers: Sequence[LogWriter],
        default_retention_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            alias=KMS_ALIAS_NAME,
            description="vend central log encryption (CloudTrail and Config of every client)",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            bucket_name=f"{logs.bucket_name}-access",
            # S3 server access logging cannot deliver to an SSE-KMS bucket.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[s3.LifecycleRule(id="expire", expiration=Duration.days(default_retention_days))],
        )
        acknowledge(
            self.access_logs,
            "AwsSolutions-S1",
            "This is the server access log bucket itself; logging it to itself would loop.",
        )
        self.bucket = s3.Bucket(
            self,
            "Logs",
            bucket_name=logs.bucket_name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="central-logs/",
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id=f"retain-{w.client}",
                    prefix=f"AWSLogs/{w.account_id}/",
                    expiration=Duration.days(w.retention_days),
                    noncurrent_version_expiration=Duration.days(30),
                )
                for w in writers
            ]
            or [s3.LifecycleRule(id="retain-default", expiration=Duration.days(default_retention_days))],
        )
        self._grant_writers(writers)

    def _grant_writers(self, writers: Sequence[LogWriter]) -> None:
        if not writers:
            return
        cloudtrail = iam.ServicePrincipal("cloudtrail.amazonaws.com")
        trail_arns = [w.trail_arn for w in writers]
        config_roles = [w.config_role_arn for w in writers]
        accounts = [iam.AccountPrincipal(w.account_id) for w in writers]
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailAclCheck",
                principals=[cloudtrail],
                actions=["s3:GetBucketAcl"],
                resources=[self.bucket.bucket_arn],
                conditions={"StringEquals": {"aws:SourceArn": trail_arns}},
            )
        )
        self.bucket.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ConfigBucketCheck",
                principals=accounts,
                actions=["s3:GetBucketAcl", "s3:ListBucket"],
                resources=[self.bucket.bucket_arn],
                conditions={"ArnEquals": {"aws:PrincipalArn": config_roles}},
            )
        )
        for w in writers:
            # One statement per client and service: the prefix and the writer are bound together.
            self.bucket.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=f"CloudTrailWrite{w.account_id}",
                    principals=[cloudtrail],
                    actions=["s3:PutObject"],
                    resources=[self.bucket.arn_for_objects(f"AWSLogs/{w.account_id}/*")],
                    conditions={
                        "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control", "aws:SourceArn": w.trail_arn}
                    },
                )
            )
            self.bucket.add_to_resource_policy(
                iam.PolicyStatement(
                    sid=f"ConfigWrite{w.account_id}",
                    principals=[iam.AccountPrincipal(w.account_id)],
                    actions=["s3:PutObject"],
                    resources=[self.bucket.arn_for_objects(f"AWSLogs/{w.account_id}/Config/*")],
                    conditions={
                        "StringEquals": {"s3:x-amz-acl": "bucket-owner-full-control"},
                        "ArnEquals": {"aws:PrincipalArn": w.config_role_arn},
                    },
                )
            )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailEncryptOwnTrailOnly",
                principals=[cloudtrail],
                actions=["kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringLike": {"kms:EncryptionContext:aws:cloudtrail:arn": trail_arns}},
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudTrailDescribeKey",
                principals=[cloudtrail],
                actions=["kms:DescribeKey"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceArn": trail_arns}},
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="ConfigRolesEncrypt",
                principals=accounts,
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resources=["*"],
                conditions={"ArnEquals": {"aws:PrincipalArn": config_roles}},
            )
        )
