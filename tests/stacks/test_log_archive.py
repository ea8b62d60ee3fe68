"""MSP side: the central bucket and key, with policies generated from the portfolio."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from baseline.portfolio import load_portfolio
from stacks.portfolio import build_app

REPO = Path(__file__).resolve().parents[2]
FLAGS = json.loads((REPO / "cdk.json").read_text())["context"]


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    portfolio, problems = load_portfolio(REPO / "overrides")
    assert portfolio is not None, problems
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk")), context=FLAGS, analytics_reporting=False)
    build_app(app, portfolio, only_client="brightmart")
    stack = app.node.find_child("vend-msp-log-archive")
    assert isinstance(stack, cdk.Stack)
    return Template.from_stack(stack)


def _bucket_policy(template: Template, bucket_name: str) -> list[dict]:
    buckets = template.find_resources("AWS::S3::Bucket", {"Properties": {"BucketName": bucket_name}})
    (logical_id,) = buckets
    for policy in template.find_resources("AWS::S3::BucketPolicy").values():
        if policy["Properties"]["Bucket"] == {"Ref": logical_id}:
            return policy["Properties"]["PolicyDocument"]["Statement"]
    raise AssertionError("no bucket policy")


def test_central_bucket_is_encrypted_versioned_private_logged_and_retained(template: Template) -> None:
    template.has_resource(
        "AWS::S3::Bucket",
        {
            "Properties": {
                "BucketName": "vend-logs-210987654321-us-east-1",
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {
                            "BucketKeyEnabled": True,
                            "ServerSideEncryptionByDefault": {
                                "SSEAlgorithm": "aws:kms",
                                "KMSMasterKeyID": Match.any_value(),
                            },
                        }
                    ]
                },
                "VersioningConfiguration": {"Status": "Enabled"},
                "PublicAccessBlockConfiguration": {
                    "BlockPublicAcls": True,
                    "BlockPublicPolicy": True,
                    "IgnorePublicAcls": True,
                    "RestrictPublicBuckets": True,
                },
                "LoggingConfiguration": {"DestinationBucketName": Match.any_value(), "LogFilePrefix": "central-logs/"},
            },
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )


def test_each_client_has_a_retention_rule_from_its_profiles(template: Template) -> None:
    (bucket,) = template.find_resources(
        "AWS::S3::Bucket", {"Properties": {"BucketName": "vend-logs-210987654321-us-east-1"}}
    ).values()
    rules = {r["Id"]: r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
    assert rules["retain-acme-health"]["ExpirationInDays"] == 2190  # hipaa: 6 years
    assert rules["retain-acme-health"]["Prefix"] == "AWSLogs/111122223333/"
    assert rules["retain-brightmart"]["ExpirationInDays"] == 400


def test_bucket_policy_lets_each_client_write_only_its_own_prefix(template: Template) -> None:
    statements = {s.get("Sid"): s for s in _bucket_policy(template, "vend-logs-210987654321-us-east-1")}
    trail = statements["CloudTrailWrite111122223333"]
    assert trail["Principal"] == {"Service": "cloudtrail.amazonaws.com"}
    assert json.dumps(trail["Resource"]).count("AWSLogs/111122223333/*") == 1
    assert (
        trail["Condition"]["StringEquals"]["aws:SourceArn"]
        == "arn:aws:cloudtrail:us-east-1:111122223333:trail/vend-baseline"
    )
    config = statements["ConfigWrite444455556666"]
    assert "AWSLogs/444455556666/Config/*" in json.dumps(config["Resource"])
    assert config["Condition"]["ArnEquals"]["aws:PrincipalArn"] == "arn:aws:iam::444455556666:role/vend-config-recorder"
    # TLS only, from enforce_ssl.
    deny = [s for s in statements.values() if s["Effect"] == "Deny"]
    assert any(s["Condition"] == {"Bool": {"aws:SecureTransport": "false"}} for s in deny)
    # No statement lets anyone write outside a client prefix.
    for s in statements.values():
        if (
            s["Effect"] == "Allow"
            and "s3:PutObject" in json.dumps(s["Action"])
            and s["Principal"] != {"Service": "logging.s3.amazonaws.com"}
        ):
            assert "AWSLogs/" in json.dumps(s["Resource"]), s


def test_key_rotates_keeps_admin_and_binds_cloudtrail_to_client_trails(template: Template) -> None:
    (key,) = template.find_resources("AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True
    statements = key["Properties"]["KeyPolicy"]["Statement"]
    admin = [s for s in statements if s.get("Action") == "kms:*"]
    assert admin, "the key must keep an admin statement so it can never be locked"
    (ct,) = [s for s in statements if s.get("Sid") == "CloudTrailEncryptOwnTrailOnly"]
    assert set(ct["Condition"]["StringLike"]["kms:EncryptionContext:aws:cloudtrail:arn"]) == {
        "arn:aws:cloudtrail:us-east-1:111122223333:trail/vend-baseline",
        "arn:aws:cloudtrail:eu-west-1:444455556666:trail/vend-baseline",
        "arn:aws:cloudtrail:us-east-2:777788889999:trail/vend-baseline",
    }
    template.has_resource_properties("AWS::KMS::Alias", {"AliasName": "alias/vend-central-logs"})
