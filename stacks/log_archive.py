"""MSP-side stack in the log-archive account: central bucket and key, derived from the portfolio."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aws_cdk import CfnOutput, Stack
from constructs import Construct

from baseline.central_logging import CentralLogArchive, LogWriter
from baseline.spec import CentralLogging


class LogArchiveStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        logs: CentralLogging,
        writers: Sequence[LogWriter],
        default_retention_days: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        archive = CentralLogArchive(
            self, "CentralLogs", logs=logs, writers=writers, default_retention_days=default_retention_days
        )
        CfnOutput(self, "BucketName", value=archive.bucket.bucket_name)
        CfnOutput(self, "KeyArn", value=archive.key.key_arn)
