"""MSP side: central buckets and keys, with policies generated from the portfolio.

What the policies allow is evaluated (tests/iam_eval.py); their sizes are measured for a
generated portfolio of 1,000 clients, synthesizing only the MSP-side stack.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

from baseline.portfolio import Portfolio, load_portfolio
from baseline.spec import (
    BUCKET_POLICY_LIMIT_BYTES,
    KEY_POLICY_LIMIT_BYTES,
    central_logging,
    log_shard,
)
from stacks.portfolio import build_app, build_log_archive
from tests.iam_eval import Request, evaluate, resolve

REPO = Path(__file__).resolve().parents[2]
FLAGS = json.loads((REPO / "cdk.json").read_text())["context"]
BUCKET = "vend-logs-210987654321-us-east-1"
CT = "cloudtrail.amazonaws.com"
CFG = "config.amazonaws.com"


@pytest.fixture(scope="module")
def portfolio() -> Portfolio:
    p, problems = load_portfolio(REPO / "overrides")
    assert p is not None, problems
    return p


@pytest.fixture(scope="module")
def template(portfolio: Portfolio, tmp_path_factory: pytest.TempPathFactory) -> Template:
    app = cdk.App(outdir=str(tmp_path_factory.mktemp("cdk")), context=FLAGS, analytics_reporting=False)
    build_app(app, portfolio, only_client="brightmart")
    stack = app.node.find_child("vend-msp-log-archive")
    assert isinstance(stack, cdk.Stack)
    return Template.from_stack(stack)


class _Attrs(dict):  # type: ignore[type-arg]
    """Fn::GetAtt of a bucket's Arn is its literal ARN; anything else a placeholder."""

    def __init__(self, resources: dict[str, Any]) -> None:
        super().__init__()
        self.names = {k: r["Properties"]["BucketName"] for k, r in resources.items() if r["Type"] == "AWS::S3::Bucket"}

    def __getitem__(self, key: tuple[str, str]) -> str:
        if key[1] == "Arn" and key[0] in self.names:
            return f"arn:aws:s3:::{self.names[key[0]]}"
        return f"<{key[0]}.{key[1]}>"


def policies(template: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """(bucket name -> bucket policy, key alias -> key policy), intrinsics resolved."""
    resources = template["Resources"]
    refs = {"AWS::Partition": "aws", "AWS::AccountId": "210987654321", "AWS::Region": "us-east-1"}
    attrs = _Attrs(resources)
    refs |= {k: attrs.names.get(k, k) for k in resources}
    buckets = {
        attrs.names[r["Properties"]["Bucket"]["Ref"]]: resolve(r["Properties"]["PolicyDocument"], refs, attrs)
        for r in resources.values()
        if r["Type"] == "AWS::S3::BucketPolicy"
    }
    aliases = {
        r["Properties"]["TargetKeyId"]["Fn::GetAtt"][0]: r["Properties"]["AliasName"]
        for r in resources.values()
        if r["Type"] == "AWS::KMS::Alias"
    }
    keys = {
        aliases[k]: resolve(r["Properties"]["KeyPolicy"], refs, attrs)
        for k, r in resources.items()
        if r["Type"] == "AWS::KMS::Key"
    }
    return buckets, keys


def size(policy: dict[str, Any]) -> int:
    """Bytes as S3/KMS store the document (CloudFormation sends it without whitespace)."""
    return len(json.dumps(policy, separators=(",", ":")).encode())


def _put(key: str, service: str, account: str, **extra: str) -> Request:
    ctx = {"aws:SourceAccount": account, "aws:SecureTransport": "true", **extra}
    return Request("s3:PutObject", f"arn:aws:s3:::{BUCKET}/{key}", service=service, context=ctx)


def _trail(account: str, region: str = "us-east-1", name: str = "vend-baseline") -> str:
    return f"arn:aws:cloudtrail:{region}:{account}:trail/{name}"


def test_central_bucket_is_encrypted_versioned_private_logged_and_retained(template: Template) -> None:
    template.has_resource(
        "AWS::S3::Bucket",
        {
            "Properties": {
                "BucketName": BUCKET,
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
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
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
    template.has_resource("AWS::KMS::Key", {"DeletionPolicy": "Retain", "Properties": {"EnableKeyRotation": True}})


def test_one_lifecycle_rule_per_retention_class(template: Template) -> None:
    (bucket,) = template.find_resources("AWS::S3::Bucket", {"Properties": {"BucketName": BUCKET}}).values()
    rules = {r["Id"]: r for r in bucket["Properties"]["LifecycleConfiguration"]["Rules"]}
    # The default (400 days) and every profile's (hipaa: 6 years; pci: 400), not one rule per client.
    assert set(rules) == {"retain-400d", "retain-2190d"}
    assert rules["retain-2190d"]["Prefix"] == "retain-2190d/"
    assert rules["retain-2190d"]["ExpirationInDays"] == 2190
    assert rules["retain-400d"]["ExpirationInDays"] == 400


def test_each_client_writes_only_its_own_prefix(template: Template) -> None:
    buckets, _ = policies(template.to_json())
    policy = buckets[BUCKET]
    acme, bright = "111122223333", "444455556666"
    ok = {"aws:SourceArn": _trail(acme)}
    assert (
        evaluate(
            _put(f"retain-2190d/AWSLogs/{acme}/CloudTrail/us-east-1/x.json.gz", CT, acme, **ok), resource_policy=policy
        )
        == "Allow"
    )
    assert (
        evaluate(_put(f"retain-2190d/AWSLogs/{acme}/Config/us-east-1/x.json.gz", CFG, acme), resource_policy=policy)
        == "Allow"
    )
    # Another client's prefix, whichever service writes:
    assert (
        evaluate(_put(f"retain-400d/AWSLogs/{bright}/CloudTrail/x", CT, acme, **ok), resource_policy=policy) != "Allow"
    )
    assert evaluate(_put(f"retain-400d/AWSLogs/{bright}/Config/x", CFG, acme), resource_policy=policy) != "Allow"
    # An account outside the portfolio, even into a prefix named after itself:
    stranger = "999999999999"
    assert (
        evaluate(
            _put(f"retain-400d/AWSLogs/{stranger}/CloudTrail/x", CT, stranger, **{"aws:SourceArn": _trail(stranger)}),
            resource_policy=policy,
        )
        != "Allow"
    )
    # Only the baseline trail, and Config only under Config/:
    other_trail = {"aws:SourceArn": _trail(acme, name="shadow")}
    assert (
        evaluate(_put(f"retain-2190d/AWSLogs/{acme}/CloudTrail/x", CT, acme, **other_trail), resource_policy=policy)
        == "ExplicitDeny"
    )
    assert (
        evaluate(_put(f"retain-2190d/AWSLogs/{acme}/CloudTrail/x", CFG, acme), resource_policy=policy) == "ExplicitDeny"
    )
    # Outside any retention class (no lifecycle rule would ever expire it):
    assert evaluate(_put(f"AWSLogs/{acme}/CloudTrail/x", CT, acme, **ok), resource_policy=policy) != "Allow"
    # TLS only:
    plain = _put(f"retain-2190d/AWSLogs/{acme}/Config/x", CFG, acme, **{"aws:SecureTransport": "false"})
    assert evaluate(plain, resource_policy=policy) == "ExplicitDeny"
    acl = Request("s3:GetBucketAcl", f"arn:aws:s3:::{BUCKET}", service=CT, context={"aws:SourceAccount": acme})
    assert evaluate(acl, resource_policy=policy) == "Allow"


def test_key_encrypts_only_for_each_clients_own_trail_and_keeps_its_admin(template: Template) -> None:
    _, keys = policies(template.to_json())
    policy = keys["alias/vend-central-logs"]
    admin = [s for s in policy["Statement"] if s.get("Action") == "kms:*"]
    assert admin == [
        {"Action": "kms:*", "Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::210987654321:root"}, "Resource": "*"}
    ], "the key must keep an admin statement so it can never be locked"
    acme = "111122223333"

    def gen(account: str, trail: str, service: str = CT) -> Request:
        ctx = {"aws:SourceAccount": account, "kms:EncryptionContext:aws:cloudtrail:arn": trail}
        return Request("kms:GenerateDataKey", "*", service=service, context=ctx)

    assert evaluate(gen(acme, _trail(acme)), resource_policy=policy) == "Allow"
    assert evaluate(gen(acme, _trail("444455556666")), resource_policy=policy) == "ExplicitDeny"
    assert evaluate(gen(acme, _trail(acme, name="shadow")), resource_policy=policy) == "ExplicitDeny"
    assert evaluate(gen("999999999999", _trail("999999999999")), resource_policy=policy) != "Allow"
    config = Request("kms:GenerateDataKey", "*", service=CFG, context={"aws:SourceAccount": acme})
    assert evaluate(config, resource_policy=policy) == "Allow"


def _generated(portfolio: Portfolio, n: int, shards: int = 1) -> Portfolio:
    base = portfolio.client("ledgerly")
    clients = tuple(
        base.model_copy(update={"client": f"client-{i:04d}", "account_id": f"{100000000000 + i * 7919:012d}"})
        for i in range(n)
    )
    defaults = portfolio.defaults.model_copy(
        update={"log_archive": portfolio.defaults.log_archive.model_copy(update={"shards": shards})}
    )
    return Portfolio(defaults=defaults, profiles=portfolio.profiles, clients=clients)


@pytest.mark.parametrize("shards", [1, 4])
def test_policies_stay_under_the_limits_at_1000_clients(portfolio: Portfolio, shards: int, tmp_path: Path) -> None:
    big = _generated(portfolio, 1000, shards)
    started = time.monotonic()
    app = cdk.App(outdir=str(tmp_path), context=FLAGS, analytics_reporting=False)
    stack = build_log_archive(app, big)
    raw = Template.from_stack(stack).to_json()
    seconds = time.monotonic() - started
    buckets, keys = policies(raw)
    per_shard = {k: 0 for k in range(shards)}
    for c in big.clients:
        per_shard[log_shard(c.account_id, shards)] += 1
    print(f"\n1,000 clients, {shards} shard(s) {sorted(per_shard.values())}; MSP stack synthesized in {seconds:.1f}s")
    for k in range(shards):
        logs = central_logging(big.defaults, k)
        b, key = size(buckets[logs.bucket_name]), size(keys[logs.kms_alias_name])
        print(
            f"  shard {k}: bucket policy {b:,} B (limit {BUCKET_POLICY_LIMIT_BYTES:,}), "
            f"key policy {key:,} B (limit {KEY_POLICY_LIMIT_BYTES:,})"
        )
        assert b < BUCKET_POLICY_LIMIT_BYTES
        assert key < KEY_POLICY_LIMIT_BYTES
        writers = next(s for s in buckets[logs.bucket_name]["Statement"] if s.get("Sid") == "PortfolioLogDelivery")
        assert len(writers["Condition"]["StringEquals"]["aws:SourceAccount"]) == per_shard[k]
    body = len(json.dumps(raw, separators=(",", ":")).encode())
    print(f"  MSP-side template: {body:,} B (CloudFormation inline limit 51,200)")
    assert body < 51_200


def test_growing_shards_moves_only_clients_to_the_new_shard() -> None:
    accounts = [f"{100000000000 + i * 7919:012d}" for i in range(2000)]
    for n in range(1, 8):
        before = {a: log_shard(a, n) for a in accounts}
        after = {a: log_shard(a, n + 1) for a in accounts}
        moved = [a for a in accounts if before[a] != after[a]]
        assert all(after[a] == n for a in moved)  # only to the new shard
        assert abs(len(moved) - len(accounts) / (n + 1)) < len(accounts) * 0.05  # about 1/(n+1) of them


def test_trail_and_delivery_channel_point_at_the_clients_shard(portfolio: Portfolio) -> None:
    from baseline.spec import client_baseline

    big = _generated(portfolio, 40, shards=3)
    for c in big.clients:
        b = client_baseline(c, big.defaults)
        logs = central_logging(big.defaults, log_shard(c.account_id, 3))
        assert b.trail.bucket_name == logs.bucket_name == b.regional[0].delivery_channel.bucket_name
        assert b.trail.kms_key_arn == logs.kms_alias_arn
    assert central_logging(big.defaults, 0).bucket_name == BUCKET  # shard 0 keeps the original name
    assert central_logging(big.defaults, 2).bucket_name == f"{BUCKET}-2"
