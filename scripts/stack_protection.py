"""Stack protection, applied: termination protection and the stack policy a stack asks for.

What a stack asks for is in the cloud assembly, so the driver needs no aws_cdk:

- ``terminationProtection`` in the stack artifact's properties (``manifest.json``), set by
  ``Stack(termination_protection=True)`` (:attr:`StackArtifact.termination_protection`);
- its CloudFormation stack policy in the template's ``Metadata`` under
  ``STACK_POLICY_METADATA_KEY``, written by ``stacks/protection.py`` (both sides take the
  key and the policy's shape from ``baseline/stack_policy.py``).

``vend deploy`` calls :func:`protect_stack` for every stack it deploys:

- after a create or an update, :func:`apply_protection` sets the stack policy, then turns
  termination protection on (two calls for a new stack, one for an update). The order is
  the point: a stack vend protected has termination protection only once its policy is set.
- an unchanged stack costs nothing more: the ``DescribeStacks`` answer the driver already
  has says whether termination protection is on. Only when it is off (protection was never
  applied, or someone turned it off) is the policy read (``GetStackPolicy``) and repaired.
  ``--verify-protection`` reads the policy of every unchanged stack: needed after
  ``cdk deploy``, which turns termination protection on but cannot set a stack policy.
- vend never turns protection off and never removes a policy.

The policy denies ``Update:Replace`` and ``Update:Delete`` of the baseline's key resources
(trail, recorder, delivery channel, detector, boundary, MSP and Config roles). CloudFormation
would fail such an update half-way, so :func:`review_change_set` reads the change set first:
a change set that replaces or removes a protected resource is deleted and the stack FAILS
with the list, unless the operator allowed exactly those resources
(``--allow-protected-change PATTERN``). Then the same template goes through ``UpdateStack``
with a temporary ``StackPolicyDuringUpdateBody`` that lets only those changes through
(``ExecuteChangeSet`` takes no override), and the stack's own policy stays in place.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

from baseline.stack_policy import RESOURCE_PREFIX, STACK_POLICY_METADATA_KEY


class ProtectionError(Exception):
    """A change the stack policy forbids, or protection that cannot be read or applied."""


@dataclass(frozen=True)
class Protection:
    """What one stack asks for (from its artifact and template)."""

    termination_protection: bool = False
    stack_policy: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ProtectionOptions:
    """The operator's choices (``vend deploy --verify-protection / --allow-protected-change``)."""

    #: Unchanged stacks: read the stack policy even when termination protection is on.
    verify: bool = False
    #: Patterns (fnmatch) of logical ids or resource types an update may replace or delete
    #: although the stack policy protects them.
    allow: tuple[str, ...] = ()


Call = Callable[..., Any]


def _direct(fn: Callable[..., Any], **kwargs: Any) -> Any:
    return fn(**kwargs)


def wanted_protection(termination_protection: bool, template: Any) -> Protection:
    """The protection a stack asks for; raises ProtectionError on a malformed policy."""
    metadata = template.get("Metadata") if isinstance(template, Mapping) else None
    policy = metadata.get(STACK_POLICY_METADATA_KEY) if isinstance(metadata, Mapping) else None
    if policy is not None and not (isinstance(policy, Mapping) and isinstance(policy.get("Statement"), list)):
        raise ProtectionError(f"template Metadata[{STACK_POLICY_METADATA_KEY!r}] is not a stack policy")
    return Protection(termination_protection=termination_protection, stack_policy=policy)


def policy_body(policy: Mapping[str, Any]) -> str:
    return json.dumps(policy, separators=(",", ":"), sort_keys=True)


def read_stack_policy(cfn: Any, stack_name: str, *, call: Call = _direct) -> dict[str, Any] | None:
    """The stack policy in force (None: the stack has none, every update is allowed)."""
    body = call(cfn.get_stack_policy, StackName=stack_name).get("StackPolicyBody")
    if not body:
        return None
    try:
        policy = json.loads(body)
    except json.JSONDecodeError as err:
        raise ProtectionError(f"the stack policy of {stack_name} is not JSON: {err}") from err
    return policy if isinstance(policy, dict) else None


def apply_protection(
    cfn: Any,
    stack_name: str,
    *,
    termination_protection: bool = True,
    stack_policy: Mapping[str, Any] | None = None,
    current: Mapping[str, Any] | None = None,
    check_policy: bool = False,
    call: Call = _direct,
) -> tuple[str, ...]:
    """Set ``stack_policy`` (if given), then turn termination protection on (if asked).

    ``current`` is the stack's DescribeStacks entry: termination protection already on is
    left alone. ``check_policy`` reads the policy first and sets it only when it differs.
    Returns what was changed. Never turns protection off. ClientErrors propagate.
    """
    changed: list[str] = []
    if stack_policy is not None and (not check_policy or read_stack_policy(cfn, stack_name, call=call) != stack_policy):
        cfn.set_stack_policy(StackName=stack_name, StackPolicyBody=policy_body(stack_policy))
        changed.append("stack policy set")
    if termination_protection and not (current or {}).get("EnableTerminationProtection"):
        cfn.update_termination_protection(StackName=stack_name, EnableTerminationProtection=True)
        changed.append("termination protection enabled")
    return tuple(changed)


def protect_stack(
    cfn: Any,
    stack_name: str,
    wanted: Protection,
    current: Mapping[str, Any],
    *,
    deployed: bool,
    options: ProtectionOptions | None = None,
    call: Call = _direct,
) -> tuple[str, ...]:
    """The deploy driver's hook: protection after a deploy (``deployed``), or a cheap check of
    an unchanged stack (see the module docstring). Returns notes for the deploy report."""
    opts = options or ProtectionOptions()
    if wanted.stack_policy is None and not wanted.termination_protection:
        return ()
    if deployed:
        apply_protection(
            cfn,
            stack_name,
            termination_protection=wanted.termination_protection,
            stack_policy=wanted.stack_policy,
            current=current,
            call=call,
        )
        return ()
    missing = wanted.termination_protection and not current.get("EnableTerminationProtection")
    if not (missing or opts.verify):
        return ()
    changed = apply_protection(
        cfn,
        stack_name,
        termination_protection=wanted.termination_protection,
        stack_policy=wanted.stack_policy,
        current=current,
        check_policy=True,
        call=call,
    )
    return (f"protection restored ({', '.join(changed)})",) if changed else ()


# --------------------------------------------------------------------------- policy evaluation


@dataclass(frozen=True)
class ProtectedChange:
    """A change set entry that a stack policy governs."""

    logical_id: str
    resource_type: str
    action: str  # Update:Modify | Update:Replace | Update:Delete

    def describe(self) -> str:
        verb = {"Update:Replace": "replace", "Update:Delete": "delete", "Update:Modify": "modify"}[self.action]
        return f"{verb} {self.logical_id} ({self.resource_type})"


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _condition_holds(condition: Any, resource_type: str) -> bool | None:
    """True/False for ResourceType conditions; None for anything this does not understand."""
    if not condition:
        return True
    if not isinstance(condition, Mapping):
        return None
    for operator, tests in condition.items():
        if not isinstance(tests, Mapping) or set(tests) != {"ResourceType"}:
            return None
        values = _as_list(tests["ResourceType"])
        if operator == "StringEquals":
            ok = resource_type in values
        elif operator == "StringNotEquals":
            ok = resource_type not in values
        elif operator == "StringLike":
            ok = any(fnmatchcase(resource_type, v) for v in values)
        elif operator == "StringNotLike":
            ok = not any(fnmatchcase(resource_type, v) for v in values)
        else:
            return None
        if not ok:
            return False
    return True


def _matches(statement: Mapping[str, Any], change: ProtectedChange, *, unknown: bool) -> bool:
    """Whether ``statement`` applies to ``change``; ``unknown`` answers what it cannot judge."""
    if "NotAction" in statement:
        action_ok = not any(fnmatchcase(change.action, a) for a in _as_list(statement["NotAction"]))
    else:
        action_ok = any(fnmatchcase(change.action, a) for a in _as_list(statement.get("Action")))
    resource = f"{RESOURCE_PREFIX}{change.logical_id}"
    if "NotResource" in statement:
        resource_ok = not any(fnmatchcase(resource, r) for r in _as_list(statement["NotResource"]))
    else:
        resource_ok = any(r == "*" or fnmatchcase(resource, r) for r in _as_list(statement.get("Resource")))
    if not (action_ok and resource_ok):
        return False
    holds = _condition_holds(statement.get("Condition"), change.resource_type)
    return unknown if holds is None else holds


def policy_denies(policy: Mapping[str, Any] | None, change: ProtectedChange) -> bool:
    """CloudFormation's evaluation: no policy allows everything; with one, an explicit Deny
    wins and anything not explicitly allowed is denied. A condition this module cannot
    evaluate counts against the change (a Deny applies, an Allow does not)."""
    if policy is None:
        return False
    statements = [s for s in policy.get("Statement") or [] if isinstance(s, Mapping)]
    if any(s.get("Effect") == "Deny" and _matches(s, change, unknown=True) for s in statements):
        return True
    return not any(s.get("Effect") == "Allow" and _matches(s, change, unknown=False) for s in statements)


def governed_changes(changes: Iterable[Mapping[str, Any]]) -> list[ProtectedChange]:
    """The replacements and removals of a change set (``Changes`` of DescribeChangeSet).

    ``Replacement: Conditional`` counts as a replacement: CloudFormation decides during the
    update, when it is too late to ask. Modifications in place are not listed: vend's
    policies allow them (a hand-made policy that denies them fails the update in
    CloudFormation, with its reason in the stack events)."""
    found: list[ProtectedChange] = []
    for change in changes:
        rc = change.get("ResourceChange") or {}
        action, replacement = rc.get("Action"), str(rc.get("Replacement", "False"))
        lid, rtype = str(rc.get("LogicalResourceId", "")), str(rc.get("ResourceType", ""))
        if action == "Remove":
            found.append(ProtectedChange(lid, rtype, "Update:Delete"))
        elif action == "Modify" and replacement in ("True", "Conditional"):
            found.append(ProtectedChange(lid, rtype, "Update:Replace"))
    return found


def allowed_by(patterns: Sequence[str], change: ProtectedChange) -> bool:
    return any(fnmatchcase(change.logical_id, p) or fnmatchcase(change.resource_type, p) for p in patterns)


_UPDATE_ACTIONS = ("Update:Modify", "Update:Replace", "Update:Delete")


def override_policy(policy: Mapping[str, Any], allowed: Sequence[ProtectedChange]) -> dict[str, Any]:
    """The stack's policy, letting through exactly ``allowed`` and nothing else it denied.

    An allowed resource leaves the resource list of each Deny statement naming it; the
    actions that statement denied it, other than the allowed ones, stay denied by a Deny of
    their own; one Allow names the allowed changes. (Wildcards, NotResource and conditions
    are left as they are: :func:`review_change_set` checks the result.)"""
    wanted: dict[str, set[str]] = {}
    for c in allowed:
        wanted.setdefault(f"{RESOURCE_PREFIX}{c.logical_id}", set()).add(c.action)
    statements: list[dict[str, Any]] = []
    for statement in policy.get("Statement") or []:
        s = dict(statement)
        named = [r for r in s.get("Resource") or [] if r in wanted] if isinstance(s.get("Resource"), list) else []
        if s.get("Effect") != "Deny" or not named:
            statements.append(s)
            continue
        if "NotAction" in s:
            denied = {a for a in _UPDATE_ACTIONS if not any(fnmatchcase(a, p) for p in _as_list(s["NotAction"]))}
        else:
            denied = {a for a in _UPDATE_ACTIONS if any(fnmatchcase(a, p) for p in _as_list(s.get("Action")))}
        rest = [r for r in s["Resource"] if r not in wanted]
        if rest:
            statements.append({**s, "Resource": rest})
        for resource in named:
            still = sorted(denied - wanted[resource])
            if still:
                kept = {k: v for k, v in s.items() if k not in ("Action", "NotAction", "Resource")}
                statements.append({**kept, "Action": still, "Resource": [resource]})
    statements.append(
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": sorted({c.action for c in allowed}),
            "Resource": sorted(wanted),
        }
    )
    return {"Statement": statements}


def change_set_changes(cfn: Any, change_set: Mapping[str, Any], *, call: Call = _direct) -> list[dict[str, Any]]:
    """Every change of a described change set (DescribeChangeSet pages by NextToken)."""
    changes = list(change_set.get("Changes") or [])
    token = change_set.get("NextToken")
    while token:
        page = call(cfn.describe_change_set, ChangeSetName=change_set["ChangeSetId"], NextToken=token)
        changes += page.get("Changes") or []
        token = page.get("NextToken")
    return changes


@dataclass(frozen=True)
class Override:
    """A temporary stack policy for one update (``StackPolicyDuringUpdateBody``)."""

    body: str
    changes: tuple[ProtectedChange, ...]

    def describe(self) -> str:
        return "stack policy overridden for this update to " + "; ".join(c.describe() for c in self.changes)


def review_change_set(
    cfn: Any,
    stack_name: str,
    change_set: Mapping[str, Any],
    *,
    options: ProtectionOptions | None = None,
    call: Call = _direct,
) -> Override | None:
    """Check a described change set against the stack policy in force, before executing it.

    None: execute it as it is (nothing protected is replaced or removed; the stack policy is
    read only when something is replaced or removed). An :class:`Override`: every blocked
    change was allowed by the operator; its body goes to ``UpdateStack``. Raises
    ProtectionError, naming the changes, when a blocked change was not allowed.
    """
    opts = options or ProtectionOptions()
    risky = governed_changes(change_set_changes(cfn, change_set, call=call))
    if not risky:
        return None
    policy = read_stack_policy(cfn, stack_name, call=call)
    blocked = [c for c in risky if policy_denies(policy, c)]
    if not blocked or policy is None:
        return None
    refused = [c for c in blocked if not allowed_by(opts.allow, c)]
    if refused:
        raise ProtectionError(
            f"the update would {'; '.join(c.describe() for c in refused)}, which the stack policy protects; "
            "nothing was changed (the change set was deleted). If that is intended, deploy this client again with "
            + " ".join(f"--allow-protected-change {c.logical_id}" for c in refused)
            + " (a logical id or a resource type; a temporary stack policy override for that update only)"
        )
    override = override_policy(policy, blocked)
    still = [c for c in blocked if policy_denies(override, c)]
    if still:
        raise ProtectionError(
            f"the stack policy protects {', '.join(c.logical_id for c in still)} by a wildcard, NotResource or "
            "condition, so vend cannot override it for these resources alone; nothing was changed. Update the "
            "stack by hand with --stack-policy-during-update-body"
        )
    return Override(policy_body(override), tuple(blocked))
