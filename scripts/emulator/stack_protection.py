"""Termination protection in the emulator, as CloudFormation does it.

moto 5.2.5 stores ``EnableTerminationProtection`` from ``CreateStack`` and shows it in
``DescribeStacks``, and keeps stack policies (``SetStackPolicy`` / ``GetStackPolicy``), but:

- ``UpdateTerminationProtection`` is missing: moto answers HTTP 500 with an HTML page,
  which the CDK CLI reports as "XML parse error" (``cdk deploy`` calls it for every stack
  whose ``terminationProtection`` differs from the deployed one, vend after a deploy).
  It is added, for stacks in any state (the CDK CLI calls it while a new stack is still
  ``REVIEW_IN_PROGRESS``).
- ``DeleteStack`` deletes a protected stack. It now fails as CloudFormation does, with a
  ``ValidationError`` "Stack [name] cannot be deleted while TerminationProtection is
  enabled", and leaves the stack as it was. Deletes moto makes internally (nested stacks,
  stack sets) are not affected: the check is on the API call.
- ``SetStackPolicy`` stores any text. A body that is not a JSON object with a
  ``Statement`` list is now refused with CloudFormation's ``ValidationError``, so a driver
  bug shows up here rather than in a real account.

The stack policy itself is not enforced on updates (moto reports no replacements in change
sets either); vend's driver reads the change set and the policy before it executes
(:mod:`scripts.stack_protection`), which is tested with stubbed change sets.

Same pattern as :func:`scripts.emulator.cfn_models.install_engine_patches`: each patch adds
or wraps one function of moto's CloudFormation; :func:`uninstall_protection_patches`
undoes them. :func:`scripts.emulator.server.register_models` installs them.
"""

from __future__ import annotations

import json
from typing import Any

from moto.cloudformation.exceptions import ValidationError
from moto.cloudformation.responses import CloudFormationResponse
from moto.core.responses import ActionResult

_ORIGINALS: dict[str, Any] = {}


def _live_stack(response: CloudFormationResponse, name_or_id: str) -> Any | None:
    """The stack a DeleteStack/UpdateTerminationProtection call names (not a deleted one)."""
    backend = response.cloudformation_backend
    if name_or_id in backend.stacks:
        return backend.stacks[name_or_id]
    return next((s for s in backend.stacks.values() if s.name == name_or_id), None)


def _update_termination_protection(self: CloudFormationResponse) -> ActionResult:
    name = self._get_param("StackName")
    enable = self._get_bool_param("EnableTerminationProtection")
    if enable is None:
        raise ValidationError(message="1 validation error detected: EnableTerminationProtection must not be null")
    stack = _live_stack(self, name)
    if stack is None:
        raise ValidationError(message=f"Stack [{name}] does not exist")
    stack.enable_termination_protection = bool(enable)
    return ActionResult({"StackId": stack.stack_id})


def _delete_stack(self: CloudFormationResponse) -> Any:
    name = self._get_param("StackName")
    stack = _live_stack(self, name)
    if stack is not None and stack.enable_termination_protection:
        raise ValidationError(message=f"Stack [{stack.name}] cannot be deleted while TerminationProtection is enabled")
    return _ORIGINALS["delete_stack"](self)


def _set_stack_policy(self: CloudFormationResponse) -> Any:
    body = self._get_param("StackPolicyBody")
    if body is not None:
        try:
            policy = json.loads(body)
        except json.JSONDecodeError as exc:
            raise ValidationError(message=f"Error validating stack policy: Invalid JSON: {exc}") from exc
        if not isinstance(policy, dict) or not isinstance(policy.get("Statement"), list):
            raise ValidationError(message="Error validating stack policy: Statement must be a list")
    return _ORIGINALS["set_stack_policy"](self)


def install_protection_patches() -> None:
    """Add UpdateTerminationProtection; make DeleteStack and SetStackPolicy check (idempotent)."""
    if _ORIGINALS:
        return
    _ORIGINALS["delete_stack"] = CloudFormationResponse.delete_stack
    _ORIGINALS["set_stack_policy"] = CloudFormationResponse.set_stack_policy
    _ORIGINALS["update_termination_protection"] = getattr(CloudFormationResponse, "update_termination_protection", None)
    CloudFormationResponse.delete_stack = _delete_stack  # type: ignore[method-assign]
    CloudFormationResponse.set_stack_policy = _set_stack_policy  # type: ignore[method-assign]
    CloudFormationResponse.update_termination_protection = _update_termination_protection  # type: ignore[attr-defined]


def uninstall_protection_patches() -> None:
    """Restore moto's own functions."""
    if not _ORIGINALS:
        return
    CloudFormationResponse.delete_stack = _ORIGINALS.pop("delete_stack")  # type: ignore[method-assign]
    CloudFormationResponse.set_stack_policy = _ORIGINALS.pop("set_stack_policy")  # type: ignore[method-assign]
    original = _ORIGINALS.pop("update_termination_protection")
    if original is None:
        del CloudFormationResponse.update_termination_protection  # type: ignore[attr-defined]
    else:
        CloudFormationResponse.update_termination_protection = original  # type: ignore[attr-defined]
