"""Client key: the KMS key in the client account that encrypts the baseline's own data.

Encrypts the alert topic (budgets and Cost Anomaly Detection publish to it) and the trail's
CloudWatch Logs group when a profile turns that on. Rotates yearly; the account keeps the
admin statement so the key can never be locked; each service may use it only for this
account (``aws:SourceAccount``) or for the trail's log group (encryption context). Not
tuned per client.
"""

from __future__ import annotations

from aws_cdk import Fn, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import Construct

ALERT_PUBLISHERS = ["budgets.amazonaws.com", "costalerts.amazonaws.com"]


class ClientKey(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, alias: str, log_group_name: str) -> None:
        super().__init__(scope, construct_id)
        account = Fn.ref("AWS::AccountId")
        self.key = kms.Key(
            self,
            "Key",
            alias=alias,
            description="vend baseline: alert topic and trail log group encryption",
            enable_key_rotation=True,
            removal_policy=RemovalPolicy.RETAIN,
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlertPublishersForThisAccount",
                principals=[iam.ServicePrincipal(p) for p in ALERT_PUBLISHERS],
                actions=["kms:GenerateDataKey*", "kms:Decrypt"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": account}},
            )
        )
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="TrailLogGroupOnly",
                principals=[iam.ServicePrincipal(Fn.sub("logs.${AWS::Region}.amazonaws.com"))],
                actions=["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
                resources=["*"],
                conditions={
                    "ArnEquals": {
                        "kms:EncryptionContext:aws:logs:arn": Fn.sub(
                            f"arn:${{AWS::Partition}}:logs:${{AWS::Region}}:${{AWS::AccountId}}:log-group:{log_group_name}"
                        )
                    }
                },
            )
        )
