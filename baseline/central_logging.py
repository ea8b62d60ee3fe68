"""Central logging (MSP side): the log-archive buckets and KMS keys every client writes to.

Enforces: SSE-KMS with a rotating key and S3 bucket keys, versioning, TLS only, public
access blocked, bucket-owner-enforced object ownership (the MSP owns every object), server
access logs to a separate bucket, a lifecycle rule per retention class, and RETAIN on
stack deletion.

The bucket and key policies are generated from the portfolio and stay the same size
whatever a client's settings: each policy lists the portfolio's account ids exactly once.

* CloudTrail and Config (``cloudtrail.amazonaws.com``, ``config.amazonaws.com``) may write
  only ``<class>/AWSLogs/${aws:SourceAccount}/*``: the policy variable binds the prefix to
  the account the service acts for, and ``aws:SourceAccount`` must be a portfolio account.
* CloudTrail may write only for the baseline trail (``aws:SourceArn``), may encrypt only for
  it (``kms:EncryptionContext:aws:cloudtrail:arn``), and Config only under ``.../Config/``.
* The key keeps the log-archive account's admin statement, so it can never be locked.

Clients are spread over ``log_archive.shards`` buckets+keys by a consistent hash of their
account id (:func:`baseline.spec.log_shard`). Tuned in defaults::

    log_archive:
      retention_days: 400      # profiles (e.g. hipaa: 2190) add longer retention classes
      shards: 1                # one bucket fits ~1,300 clients under S3's 20 KB policy limit
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from baseline._nag import acknowledge, acknowledge_in_packs
from baseline.spec import CLOUDTRAIL_PRINCIPAL, CONFIG_PRINCIPAL, TRAIL_NAME, CentralLogging, retention_prefix

WRITERS = [CLOUDTRAIL_PRINCIPAL, CONFIG_PRINCIPAL]
SOURCE_ACCOUNT = "${aws:SourceAccount}"
OWN_TRAIL_ARN = f"arn:aws:cloudtrail:*:{SOURCE_ACCOUNT}:trail/{TRAIL_NAME}"
REPLICATION_REASON = (
    "Replicating the log archive to a second region or account is the MSP's disaster-recovery decision, "
    "made outside vend (it needs a destination the MSP owns); versioning, retention rules and RETAIN "
    "protect the logs here, and the README lists replication as open work."
)


def bucket_statements(logs: CentralLogging, accounts: Sequence[str], retention_days: Sequence[int]) -> list[Any]:
    """The writer statements of one shard's bucket policy (TLS-only comes from the bucket)."""
    if not accounts:
        return []
    bucket = logs.bucket_arn
    own_prefixes = [f"{bucket}/{retention_prefix(d)}/AWSLogs/{SOURCE_ACCOUNT}" for d in retention_days]
    return [
        {
            "Sid": "PortfolioLogDelivery",
            "Effect": "Allow",
            "Principal": {"Service": WRITERS},
            "Action": ["s3:GetBucketAcl", "s3:ListBucket", "s3:PutObject"],
            "Resource": [bucket, *(f"{p}/*" for p in own_prefixes)],
            "Condition": {"StringEquals": {"aws:SourceAccount": sorted(accounts)}},
        },
        {
            "Sid": "CloudTrailOnlyTheBaselineTrail",
            "Effect": "Deny",
            "Principal": {"Service": CLOUDTRAIL_PRINCIPAL},
            "Action": "s3:PutObject",
            "Resource": f"{bucket}/*",
            "Condition": {"ArnNotLike": {"aws:SourceArn": OWN_TRAIL_ARN}},
        },
        {
            "Sid": "ConfigOnlyUnderConfig",
            "Effect": "Deny",
            "Principal": {"Service": CONFIG_PRINCIPAL},
            "Action": "s3:PutObject",
            "NotResource": [f"{p}/Config/*" for p in own_prefixes],
        },
    ]


def key_statements(accounts: Sequence[str]) -> list[Any]:
    """The writer statements of one shard's key policy (the admin statement comes from CDK)."""
    if not accounts:
        return []
    return [
        {
            "Sid": "PortfolioLogEncryption",
            "Effect": "Allow",
            "Principal": {"Service": WRITERS},
            "Action": ["kms:GenerateDataKey*", "kms:Decrypt", "kms:DescribeKey"],
            "Resource": "*",
            "Condition": {"StringEquals": {"aws:SourceAccount": sorted(accounts)}},
        },
        {
            "Sid": "CloudTrailEncryptsOnlyForTheBaselineTrail",
            "Effect": "Deny",
            "Principal": {"Service": CLOUDTRAIL_PRINCIPAL},
            "Action": "kms:GenerateDataKey*",
            "Resource": "*",
            "Condition": {"StringNotLike": {"kms:EncryptionContext:aws:cloudtrail:arn": OWN_TRAIL_ARN}},
        },
    ]


class CentralLogArchive(Construct):
    """One shard: a central bucket and its key, writable by the shard's client accounts."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        logs: CentralLogging,
        accounts: Sequence[str],
        retention_days: Sequence[int],
        access_logs: s3.IBucket | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            alias=logs.kms_alias_name,
            description=f"vend central log encryption, shard {logs.shard} (CloudTrail and Config of clients)",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        if access_logs is None:
            # Shard 0 owns the access log bucket; construct id "AccessLogs" is API (a retained,
            # named bucket cannot be replaced).
            owned = s3.Bucket(
                self,
                "AccessLogs",
                bucket_name=f"{logs.bucket_name}-access",
                encryption=s3.BucketEncryption.S3_MANAGED,
                block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                enforce_ssl=True,
                versioned=True,
                object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
                removal_policy=RemovalPolicy.RETAIN,
                lifecycle_rules=[s3.LifecycleRule(id="expire", expiration=Duration.days(max(retention_days)))],
            )
            acknowledge(
                owned,
                "AwsSolutions-S1",
                "This is the server access log bucket itself; logging it to itself would loop.",
            )
            acknowledge_in_packs(
                owned,
                "S3DefaultEncryptionKMS",
                "S3 server access logging cannot deliver to a bucket whose default encryption is SSE-KMS; "
                "SSE-S3 is the strongest encryption it supports.",
            )
            acknowledge_in_packs(owned, "S3BucketReplicationEnabled", REPLICATION_REASON)
            access_logs = owned
        self.access_logs = access_logs
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
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="central-logs/" if logs.shard == 0 else f"central-logs-{logs.shard}/",
            removal_policy=RemovalPolicy.RETAIN,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id=retention_prefix(days),
                    prefix=f"{retention_prefix(days)}/",
                    expiration=Duration.days(days),
                    noncurrent_version_expiration=Duration.days(30),
                )
                for days in retention_days
            ],
        )
        acknowledge_in_packs(self.bucket, "S3BucketReplicationEnabled", REPLICATION_REASON)
        for statement in bucket_statements(logs, accounts, retention_days):
            self.bucket.add_to_resource_policy(iam.PolicyStatement.from_json(statement))
        for statement in key_statements(accounts):
            self.key.add_to_resource_policy(iam.PolicyStatement.from_json(statement))
