"""The evaluator behind the guardrail tests follows AWS's documented evaluation logic."""

from __future__ import annotations

from tests.iam_eval import Request, evaluate, resolve

ROLE = "arn:aws:iam::111122223333:role/Ops"
ALLOW_ALL = {"Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}


def _policy(*statements: dict) -> dict:
    return {"Version": "2012-10-17", "Statement": list(statements)}


def test_explicit_deny_wins_and_nothing_is_allowed_by_default() -> None:
    req = Request("s3:GetObject", "arn:aws:s3:::b/k", principal_arn=ROLE)
    assert evaluate(req) == "ImplicitDeny"
    assert evaluate(req, identity=[ALLOW_ALL]) == "Allow"
    deny = _policy({"Effect": "Deny", "Action": "s3:Get*", "Resource": "arn:aws:s3:::b/*"})
    assert evaluate(req, identity=[ALLOW_ALL, deny]) == "ExplicitDeny"


def test_boundary_caps_but_never_grants() -> None:
    req = Request("ec2:StartInstances", "*", principal_arn=ROLE)
    boundary = _policy({"Effect": "Allow", "Action": "ec2:*", "Resource": "*"})
    assert evaluate(req, boundary=boundary) == "ImplicitDeny"  # boundary alone grants nothing
    assert evaluate(req, identity=[ALLOW_ALL], boundary=boundary) == "Allow"
    other = Request("iam:CreateUser", "*", principal_arn=ROLE)
    assert evaluate(other, identity=[ALLOW_ALL], boundary=boundary) == "ImplicitDeny"


def test_actions_ignore_case_and_resources_do_not() -> None:
    allow = _policy({"Effect": "Allow", "Action": "S3:getobject", "Resource": "arn:aws:s3:::Bucket/*"})
    assert evaluate(Request("s3:GetObject", "arn:aws:s3:::Bucket/k", principal_arn=ROLE), identity=[allow]) == "Allow"
    assert (
        evaluate(Request("s3:GetObject", "arn:aws:s3:::bucket/k", principal_arn=ROLE), identity=[allow])
        == "ImplicitDeny"
    )


def test_missing_key_fails_positive_operators_and_passes_negated_ones() -> None:
    req = Request("iam:CreateRole", "*", principal_arn=ROLE)  # no iam:PermissionsBoundary in context
    positive = _policy({"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"StringEquals": {"k": "v"}}})
    negated = _policy({"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"StringNotEquals": {"k": "v"}}})
    if_exists = _policy(
        {"Effect": "Deny", "Action": "*", "Resource": "*", "Condition": {"StringEqualsIfExists": {"k": "v"}}}
    )
    assert evaluate(req, identity=[ALLOW_ALL, positive]) == "Allow"
    assert evaluate(req, identity=[ALLOW_ALL, negated]) == "ExplicitDeny"
    assert evaluate(req, identity=[ALLOW_ALL, if_exists]) == "ExplicitDeny"


def test_null_and_like_operators() -> None:
    st = {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"StringLike": {"sts:SourceIdentity": "?*"}}}
    assert evaluate(Request("sts:AssumeRole", "*", principal_arn=ROLE), identity=[_policy(st)]) == "ImplicitDeny"
    named = Request("sts:AssumeRole", "*", principal_arn=ROLE, context={"sts:SourceIdentity": "alice"})
    assert evaluate(named, identity=[_policy(st)]) == "Allow"
    null = {"Effect": "Allow", "Action": "*", "Resource": "*", "Condition": {"Null": {"aws:TokenIssueTime": "true"}}}
    assert evaluate(named, identity=[_policy(null)]) == "Allow"


def test_policy_variables_in_resource_and_condition_values() -> None:
    st = {
        "Effect": "Allow",
        "Principal": {"Service": "cloudtrail.amazonaws.com"},
        "Action": "s3:PutObject",
        "Resource": "arn:aws:s3:::logs/AWSLogs/${aws:SourceAccount}/*",
        "Condition": {"ArnLike": {"aws:SourceArn": "arn:aws:cloudtrail:*:${aws:SourceAccount}:trail/*"}},
    }
    ctx = {"aws:SourceAccount": "111122223333", "aws:SourceArn": "arn:aws:cloudtrail:us-east-1:111122223333:trail/t"}
    own = Request(
        "s3:PutObject", "arn:aws:s3:::logs/AWSLogs/111122223333/x", service="cloudtrail.amazonaws.com", context=ctx
    )
    other = Request(
        "s3:PutObject", "arn:aws:s3:::logs/AWSLogs/444455556666/x", service="cloudtrail.amazonaws.com", context=ctx
    )
    no_var = Request("s3:PutObject", "arn:aws:s3:::logs/AWSLogs/111122223333/x", service="cloudtrail.amazonaws.com")
    assert evaluate(own, resource_policy=_policy(st)) == "Allow"
    assert evaluate(other, resource_policy=_policy(st)) == "ImplicitDeny"
    assert evaluate(no_var, resource_policy=_policy(st)) == "ImplicitDeny"


def test_cross_account_needs_the_resource_policy() -> None:
    caller = "arn:aws:iam::123456789012:role/VendAutomation"
    trust = _policy(
        {"Effect": "Allow", "Principal": {"AWS": "arn:aws:iam::123456789012:root"}, "Action": "sts:AssumeRole"}
    )
    req = Request("sts:AssumeRole", "arn:aws:iam::111122223333:role/R", principal_arn=caller)
    assert evaluate(req, identity=[ALLOW_ALL], resource_policy=trust, resource_account="111122223333") == "Allow"
    assert evaluate(req, identity=[ALLOW_ALL], resource_account="111122223333") == "ImplicitDeny"


def test_resolve_intrinsics() -> None:
    value = {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:policy/x"}
    assert resolve(value, {"AWS::Partition": "aws", "AWS::AccountId": "1"}) == "arn:aws:iam::1:policy/x"
    joined = {"Fn::Join": ["", [{"Fn::GetAtt": ["B", "Arn"]}, "/*"]]}
    assert resolve(joined, {}, {("B", "Arn"): "arn:aws:s3:::b"}) == "arn:aws:s3:::b/*"
