"""AWS Config recording: a recorder and a delivery channel to the central bucket per region.

Enforces: all supported resource types recorded; global types (IAM) only in the home
region, so they are not recorded twice; snapshots delivered to the MSP's central bucket.
The recorder's IAM role is global and lives in the client's global stack
(:class:`ConfigRecorderRole`); regional stacks refer to it by name. Tuned per client by
``home_region`` and ``regions``.
"""

from __future__ import annotations

from aws_cdk import Fn
from aws_cdk import aws_config as config
from aws_cdk import aws_iam as iam
from constructs import Construct

from baseline._nag import acknowledge
from baseline.spec import ConfigRoleSpec, DeliveryChannelSpec, RecorderSpec


class ConfigRecorderRole(Construct):
    """The role AWS Config assumes to read the account's resources.

    It has no S3 or KMS permission: the central bucket lives in the MSP's log-archive
    account and grants ``config.amazonaws.com`` (with ``aws:SourceAccount``), which is how
    AWS Config delivers across accounts when its role is not granted.
    """

    def __init__(self, scope: Construct, construct_id: str, *, spec: ConfigRoleSpec, boundary_arn: str) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.CfnRole(
            self,
            "Role",
            role_name=spec.role_name,
            description="AWS Config recorder role (vend baseline)",
            assume_role_policy_document={
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "config.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                        # Confused-deputy guard: only Config acting for this account.
                        "Condition": {"StringEquals": {"aws:SourceAccount": Fn.ref("AWS::AccountId")}},
                    }
                ],
            },
            managed_policy_arns=list(spec.managed_policy_arns),
            permissions_boundary=boundary_arn,
        )
        acknowledge(
            self.role,
            "AwsSolutions-IAM4",
            "AWS_ConfigRole is the AWS-maintained policy for Config recorders; AWS adds "
            "new resource types to it, which a hand-written copy would miss.",
            findings=[f"Policy::{arn}" for arn in spec.managed_policy_arns],
        )


class ConfigRecorder(Construct):
    """Recorder + delivery channel in one region."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        recorder: RecorderSpec,
        delivery: DeliveryChannelSpec,
    ) -> None:
        super().__init__(scope, construct_id)
        self.recorder = config.CfnConfigurationRecorder(
            self,
            "Recorder",
            # An adopted recorder keeps the account's name (imported; baseline/adoption.py).
            name=None if recorder.adopt else recorder.name,
            role_arn=Fn.sub(f"arn:${{AWS::Partition}}:iam::${{AWS::AccountId}}:role/{recorder.role_name}"),
            recording_group=config.CfnConfigurationRecorder.RecordingGroupProperty(
                all_supported=recorder.all_supported,
                include_global_resource_types=recorder.include_global_resource_types,
            ),
        )
        self.delivery_channel = config.CfnDeliveryChannel(
            self,
            "DeliveryChannel",
            name=None if delivery.adopt else delivery.name,
            s3_bucket_name=delivery.bucket_name,
            # <retention class>/AWSLogs/<account>/Config/...: the central bucket's lifecycle
            # rule for the class keeps the snapshots as long as the client's profiles ask.
            s3_key_prefix=delivery.s3_key_prefix,
            config_snapshot_delivery_properties=config.CfnDeliveryChannel.ConfigSnapshotDeliveryPropertiesProperty(
                delivery_frequency=delivery.frequency
            ),
        )
        # The channel needs the recorder; CloudFormation starts recording once both exist.
        self.delivery_channel.add_resource_dependency(self.recorder)
