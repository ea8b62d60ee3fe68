"""MSP-side stack in the log-archive account: central buckets and keys, derived from the portfolio.

One shard (bucket + key) per ``log_archive.shards``; shard 0 keeps the original construct
ids (``CentralLogs/...``) so that adding shards never replaces the first bucket.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from baseline.central_logging import CentralLogArchive
from baseline.spec import CentralLogging


class LogArchiveStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        shards: Sequence[CentralLogging],
        accounts_by_shard: Mapping[int, Sequence[str]],
        retention_days: Sequence[int],
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.archives: list[CentralLogArchive] = []
        for logs in shards:
            archive = CentralLogArchive(
                self,
                "CentralLogs" if logs.shard == 0 else f"CentralLogs{logs.shard}",
                logs=logs,
                accounts=accounts_by_shard.get(logs.shard, ()),
                retention_days=retention_days,
                access_logs=self.archives[0].access_logs if self.archives else None,
            )
            self.archives.append(archive)
            suffix = "" if logs.shard == 0 else str(logs.shard)
            CfnOutput(self, f"BucketName{suffix}", value=archive.bucket.bucket_name)
            CfnOutput(self, f"KeyArn{suffix}", value=archive.key.key_arn)
