"""A small IAM policy evaluator for the guardrail tests: real evaluation, not string matching.

Why not a library: no maintained PyPI package evaluates requests offline with permission
boundaries, resource policies, condition operators and policy variables. principalmapper
1.1.5 (2022) fails to import on Python >= 3.10 and does not expand variables in condition
values; moto's IAM authorization ignores permission boundaries and resource policies.

This module implements the documented evaluation logic (IAM User Guide, "Policy evaluation
logic" and "Condition operators"), and ``tests/test_iam_eval.py`` pins it to the documented
behaviour it relies on:

* an explicit Deny in any policy wins; otherwise an identity-policy Allow is needed, and a
  permissions boundary (if any) must also allow; for a service principal, or across
  accounts, the resource policy must allow;
* Action/NotAction match case-insensitively with ``*`` and ``?``; Resource/NotResource
  match case-sensitively after policy variables (``${aws:SourceAccount}``) are replaced
  from the request context (a missing variable makes the element not match);
* condition operators: String*, Arn*, Bool, Null, Numeric*, with ``IfExists`` and the
  ``ForAnyValue:``/``ForAllValues:`` set prefixes; a key missing from the request makes a
  positive operator false and a negated operator true; policy variables work in condition
  values too.

Also :func:`resolve`, which turns the CloudFormation intrinsics in a synthesized policy
into the strings AWS would see.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

Decision = Literal["Allow", "ExplicitDeny", "ImplicitDeny"]

_VAR = re.compile(r"\$\{([^}]+)\}")


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@dataclass(frozen=True)
class Request:
    """One API call: who (an IAM principal ARN or a service), what, on which resource, and context."""

    action: str
    resource: str
    principal_arn: str | None = None
    service: str | None = None
    context: Mapping[str, str | Sequence[str]] = field(default_factory=dict)

    def value(self, key: str) -> list[str] | None:
        for k, v in self.context.items():
            if k.lower() == key.lower():
                return [v] if isinstance(v, str) else list(v)
        return None

    @property
    def account(self) -> str | None:
        return self.principal_arn.split(":")[4] if self.principal_arn else None


def _substitute(text: str, req: Request) -> str | None:
    """Replace policy variables; None when a variable has no value in the request."""
    missing = False

    def one(m: re.Match[str]) -> str:
        nonlocal missing
        name = m.group(1)
        if name in ("*", "?", "$"):
            return "\0" + name  # literal, re-escaped below
        values = req.value(name)
        if not values or len(values) != 1:
            missing = True
            return ""
        return values[0]

    out = _VAR.sub(one, text)
    return None if missing else out


def _wildcard(pattern: str, value: str, *, case: bool) -> bool:
    regex = ""
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\0":  # ${*} etc.: the literal character
            regex += re.escape(pattern[i + 1])
            i += 2
            continue
        regex += ".*" if ch == "*" else "." if ch == "?" else re.escape(ch)
        i += 1
    return re.fullmatch(regex, value, 0 if case else re.IGNORECASE) is not None


def _action_matches(patterns: Iterable[str], action: str) -> bool:
    return any(_wildcard(p, action, case=False) for p in patterns)


def _resource_matches(patterns: Iterable[str], req: Request) -> bool:
    for p in patterns:
        expanded = _substitute(p, req)
        if expanded is not None and _wildcard(expanded, req.resource, case=True):
            return True
    return False


def _principal_matches(principal: Any, req: Request) -> bool:
    if principal == "*" or (isinstance(principal, dict) and principal.get("AWS") == "*"):
        return True
    if not isinstance(principal, dict):
        return False
    if req.service is not None:
        return req.service in _as_list(principal.get("Service", []))
    for p in _as_list(principal.get("AWS", [])):
        if p == req.principal_arn or p == req.account or p == f"arn:aws:iam::{req.account}:root":
            return True
    return False


_NEGATED = ("StringNotEquals", "StringNotEqualsIgnoreCase", "StringNotLike", "ArnNotEquals", "ArnNotLike")


def _compare(op: str, policy_value: str, context_value: str, req: Request) -> bool:
    expected = _substitute(policy_value, req) if "${" in policy_value else policy_value
    if expected is None:
        return False
    base = op.replace("Not", "")
    if base == "StringEquals":
        return expected == context_value
    if base == "StringEqualsIgnoreCase":
        return expected.lower() == context_value.lower()
    if base in ("StringLike", "ArnLike", "ArnEquals"):
        return _wildcard(expected, context_value, case=True)
    if base == "Bool":
        return expected.lower() == context_value.lower()
    if base.startswith("Numeric"):
        a, b = float(context_value), float(expected)
        return {
            "NumericEquals": a == b,
            "NumericLessThan": a < b,
            "NumericLessThanEquals": a <= b,
            "NumericGreaterThan": a > b,
            "NumericGreaterThanEquals": a >= b,
        }[base]
    raise NotImplementedError(f"condition operator {op}")


def _condition_matches(condition: Mapping[str, Mapping[str, Any]], req: Request) -> bool:
    for raw_op, tests in condition.items():
        set_op, _, op = raw_op.rpartition(":")
        if_exists = op.endswith("IfExists")
        op = op.removesuffix("IfExists")
        negated = op in _NEGATED or op == "NumericNotEquals"
        for key, policy_values in tests.items():
            values = [str(v).lower() if isinstance(v, bool) else str(v) for v in _as_list(policy_values)]
            context = req.value(key)
            if op == "Null":
                absent = not context
                if not any((v == "true") == absent for v in values):
                    return False
                continue
            if not context:
                if set_op == "ForAllValues":
                    continue  # vacuously true
                if set_op == "ForAnyValue":
                    return False  # no value to match, negated or not
                if if_exists or negated:
                    continue
                return False
            positive_op = op.replace("Not", "", 1) if negated else op

            def hit(cv: str, positive_op: str = positive_op, values: list[str] = values) -> bool:
                return any(_compare(positive_op, v, cv, req) for v in values)

            def test(cv: str, negated: bool = negated) -> bool:
                # A negated operator holds for one request value that matches no policy value.
                return not hit(cv) if negated else hit(cv)

            if set_op == "ForAllValues":
                ok = all(test(cv) for cv in context)
            elif set_op == "ForAnyValue":
                ok = any(test(cv) for cv in context)
            else:
                ok = test(context[0])
            if not ok:
                return False
    return True


def statement_matches(st: Mapping[str, Any], req: Request, *, resource_policy: bool = False) -> bool:
    if resource_policy:
        if "Principal" in st and not _principal_matches(st["Principal"], req):
            return False
        if "NotPrincipal" in st and _principal_matches(st["NotPrincipal"], req):
            return False
    if "Action" in st and not _action_matches(_as_list(st["Action"]), req.action):
        return False
    if "NotAction" in st and _action_matches(_as_list(st["NotAction"]), req.action):
        return False
    if "Resource" in st and not _resource_matches(_as_list(st["Resource"]), req):
        return False
    if "NotResource" in st and _resource_matches(_as_list(st["NotResource"]), req):
        return False
    return _condition_matches(st.get("Condition", {}), req)


def _effects(policy: Mapping[str, Any] | None, req: Request, *, resource_policy: bool = False) -> set[str]:
    if policy is None:
        return set()
    return {
        st["Effect"]
        for st in _as_list(policy["Statement"])
        if statement_matches(st, req, resource_policy=resource_policy)
    }


def evaluate(
    req: Request,
    *,
    identity: Sequence[Mapping[str, Any]] = (),
    boundary: Mapping[str, Any] | None = None,
    resource_policy: Mapping[str, Any] | None = None,
    resource_account: str | None = None,
) -> Decision:
    """The decision AWS would reach for ``req`` given these policies."""
    identity_effects = set().union(*(_effects(p, req) for p in identity)) if identity else set()
    boundary_effects = _effects(boundary, req)
    resource_effects = _effects(resource_policy, req, resource_policy=True)
    if "Deny" in identity_effects | boundary_effects | resource_effects:
        return "ExplicitDeny"
    if req.service is not None:  # a service principal has only the resource policy
        return "Allow" if "Allow" in resource_effects else "ImplicitDeny"
    same_account = resource_account is None or resource_account == req.account
    if not same_account and "Allow" not in resource_effects:
        return "ImplicitDeny"
    if same_account and "Allow" in resource_effects and boundary is None:
        return "Allow"
    if "Allow" not in identity_effects and not (same_account and "Allow" in resource_effects):
        return "ImplicitDeny"
    if boundary is not None and "Allow" not in boundary_effects:
        return "ImplicitDeny"
    return "Allow"


# --- CloudFormation intrinsics -------------------------------------------------------------


def resolve(value: Any, refs: Mapping[str, Any], attrs: Mapping[tuple[str, str], Any] | None = None) -> Any:
    """Resolve Ref, Fn::GetAtt, Fn::Sub and Fn::Join against ``refs`` (pseudo parameters
    and logical ids) and ``attrs`` ((logical id, attribute) -> value)."""
    attrs = {} if attrs is None else attrs
    if isinstance(value, list):
        return [resolve(v, refs, attrs) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"Ref"}:
        return refs[value["Ref"]]
    if set(value) == {"Fn::GetAtt"}:
        logical_id, attr = value["Fn::GetAtt"]
        return attrs[(logical_id, attr)]
    if set(value) == {"Fn::Join"}:
        sep, parts = value["Fn::Join"]
        return sep.join(str(resolve(p, refs, attrs)) for p in parts)
    if set(value) == {"Fn::Sub"}:
        text = value["Fn::Sub"]
        local: Mapping[str, Any] = {}
        if isinstance(text, list):
            text, local = text[0], {k: resolve(v, refs, attrs) for k, v in text[1].items()}

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in local:
                return str(local[name])
            if name in refs:
                return str(refs[name])
            if "." in name:
                logical_id, attr = name.split(".", 1)
                return str(attrs[(logical_id, attr)])
            raise KeyError(name)

        return _VAR.sub(sub, text)
    return {k: resolve(v, refs, attrs) for k, v in value.items()}
