"""CloudFormation StackSets in the emulator, as AWS runs them (SELF_MANAGED permissions).

moto 5.2.5 has the StackSets API but not its behaviour: stack instances replace the stack
set's parameters with their overrides, their stacks are named ``StackSet:<name>`` (an
illegal name that breaks auto-named resources), one failing target fails the whole call
and leaves the others half done, an update stores the new template without touching a
stack, and every operation reports SUCCEEDED. :func:`install_stackset_patches` makes:

- ``CreateStackSet`` reject an active duplicate name and keep ``Capabilities`` and
  ``ManagedExecution``.
- ``CreateStackInstances`` / ``UpdateStackSet`` / ``UpdateStackInstances`` /
  ``DeleteStackInstances`` run an *operation*: the caller's ``OperationId`` (a reused one is
  ``OperationIdAlreadyExistsException``), its ``OperationPreferences`` (region order,
  sequential or parallel regions, concurrency and failure tolerance per region: past the
  tolerance the rest is CANCELLED), one result per target. Each target's stack is created
  (``StackSet-<set>-<uuid>``, stack set parameters merged with the instance's overrides,
  the stack set's tags), updated or deleted through moto's ordinary stack code, so the
  emulator's resource handlers really create, update and delete. A target that fails
  rolls its stack back and becomes OUTDATED / FAILED with a StatusReason naming the
  resource; the others go on. Operations complete before the call returns.
- Stack instances report their real StackId, Status, DetailedStatus, StatusReason,
  LastOperationId and ParameterOverrides; ``ListStackInstances`` filters; unknown
  instances and operations are the AWS errors, not HTTP 500.

A fault rule with ``operation: StackInstance`` fails one target (see ``faults.py``).
Service-managed stack sets keep moto's behaviour. Each patch wraps or replaces one moto
function; :func:`uninstall_stackset_patches` restores them.
"""

from __future__ import annotations

import contextlib
import math
import re
import threading
import warnings
from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any

from botocore import xform_name
from moto.cloudformation import models as cfn
from moto.cloudformation import parsing as cfn_parsing
from moto.cloudformation.exceptions import CloudFormationError, StackInstanceNotFound, ValidationError
from moto.cloudformation.responses import CloudFormationResponse, StackSetOperationDTO
from moto.core.responses import ActionResult
from moto.core.utils import utcnow
from moto.moto_api._internal import mock_random
from moto.utilities.utils import get_partition

from scripts.emulator import faults
from scripts.emulator.cfn_models import _dependency_order, _roll_back_create

SELF_MANAGED = "SELF_MANAGED"
CANCELLED_REASON = "Cancelled since failure tolerance has exceeded"
#: Stack states a retry cannot update: the stack is deleted and created again.
_DEAD_STACK = frozenset({"CREATE_FAILED", "ROLLBACK_COMPLETE", "ROLLBACK_FAILED", "DELETE_FAILED", "DELETE_COMPLETE"})


class NameAlreadyExists(CloudFormationError):
    code = "NameAlreadyExistsException"
    message = "The specified name is already in use."


class OperationIdAlreadyExists(CloudFormationError):
    code = "OperationIdAlreadyExistsException"
    message = "The specified operation ID already exists."


class OperationNotFound(CloudFormationError):
    code = "OperationNotFoundException"
    message = "The specified ID refers to an operation that doesn't exist."


class InvalidOperation(CloudFormationError):
    code = "InvalidOperationException"


# ---------------------------------------------------------------------------------------
# The request being answered: moto's responses drop OperationId, OperationPreferences,
# RetainStacks, Capabilities, ManagedExecution and the list filters on the way to the models.
# ---------------------------------------------------------------------------------------

_request = threading.local()


def _params() -> dict[str, Any]:
    return getattr(_request, "params", None) or {}


def _with_request(method: Callable[[Any], Any]) -> Callable[[Any], Any]:
    @wraps(method)
    def wrapper(self: CloudFormationResponse) -> Any:
        _request.params = self._get_params()
        try:
            return method(self)
        finally:
            _request.params = None

    return wrapper


def _truthy(value: Any) -> bool:
    return value is True or str(value).lower() == "true"


def _message(exc: BaseException) -> str:
    return str(getattr(exc, "message", None) or exc)


# ---------------------------------------------------------------------------------------
# Stack instances
# ---------------------------------------------------------------------------------------


class StackSetInstance(cfn.StackInstance):
    """A SELF_MANAGED stack instance: a record that may exist without a stack (its create
    failed or was cancelled), with the status AWS reports. moto's ``StackInstance`` creates
    its stack in ``__init__`` and reports CURRENT / SUCCEEDED forever."""

    def __init__(self, stackset: cfn.StackSet, account_id: str, region_name: str, overrides: list[dict[str, str]]):
        # Deliberately not calling moto's __init__: the operation creates the stack.
        self.account_id = account_id
        self.region_name = region_name
        self.stackset_id = stackset.id
        self.stack_name = stackset.instances.stack_name
        self.name = stackset.name
        self.template = stackset.template
        self.parameters = overrides
        self.permission_model = stackset.permission_model
        self.stack: Any = None
        self.status = "OUTDATED"
        self.detailed_status = "PENDING"
        self.status_reason: str | None = None
        self.last_operation_id: str | None = None

    def delete(self) -> None:
        if self.stack is not None:
            cfn.cloudformation_backends[self.account_id][self.region_name].delete_stack(self.stack.stack_id)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "StackSetId": self.stackset_id,
            "Region": self.region_name,
            "Account": self.account_id,
            "ParameterOverrides": self.parameters,
            "Status": self.status,
            "StackInstanceStatus": {"DetailedStatus": self.detailed_status},
            "DriftStatus": "NOT_CHECKED",
        }
        if self.stack is not None:
            data["StackId"] = self.stack.stack_id
        if self.status_reason:
            data["StatusReason"] = self.status_reason
        if self.last_operation_id:
            data["LastOperationId"] = self.last_operation_id
        return data


def _resolve_overrides(current: list[dict[str, str]], given: list[dict[str, Any]]) -> list[dict[str, str]]:
    """AWS's rules for ParameterOverrides: a value overrides, UsePreviousValue keeps the
    current override, and a parameter left out of the list goes back to the stack set's."""
    previous = {p["ParameterKey"]: p["ParameterValue"] for p in current}
    resolved = []
    for parameter in given:
        key = parameter["ParameterKey"]
        if _truthy(parameter.get("UsePreviousValue")):
            if key in previous:
                resolved.append({"ParameterKey": key, "ParameterValue": previous[key]})
        else:
            resolved.append({"ParameterKey": key, "ParameterValue": str(parameter.get("ParameterValue", ""))})
    return resolved


def _stack_parameters(stackset: cfn.StackSet, instance: StackSetInstance) -> dict[str, str]:
    # AWS merges the overrides into the stack set's parameters; moto replaces them.
    return {**(stackset.parameters or {}), **{p["ParameterKey"]: p["ParameterValue"] for p in instance.parameters}}


def _existing(stackset: cfn.StackSet, accounts: list[str], regions: list[str]) -> list[Any]:
    if bool(accounts) != bool(regions):
        raise ValidationError(message="Accounts and Regions must be specified together")
    found: list[Any] = []
    for region in regions:
        for account in accounts:
            instance = stackset.instances.get_instance(account, region)
            if instance is None:
                raise StackInstanceNotFound()
            found.append(instance)
    return found


# ---------------------------------------------------------------------------------------
# One target's stack: created, updated or deleted through moto's own stack code
# ---------------------------------------------------------------------------------------


def _stack_of(instance: StackSetInstance) -> Any:
    """The instance's stack, or None (moto types it as always there)."""
    return instance.stack


def _resource_event(stack: cfn.Stack, logical_id: str, resource_type: str, status: str, reason: str) -> None:
    stack.events.append(
        cfn.Event(
            stack_id=stack.stack_id,
            stack_name=stack.name,
            logical_resource_id=logical_id,
            physical_resource_id="",
            resource_type=resource_type,
            resource_status=status,
            resource_status_reason=reason,
            resource_properties=None,
        )
    )


def _failed_resource(stack: cfn.Stack) -> str | None:
    """The first resource, in creation order, that a failed create did not make."""
    resource_map = stack.resource_map
    resources = stack.template_dict.get("Resources") or {}
    for name in _dependency_order(resources, list(resources)):
        condition = resources[name].get("Condition")
        with contextlib.suppress(Exception):
            if condition and not resource_map.lazy_condition_map[condition]:
                continue
        if name not in resource_map._parsed_resources:
            return name
    return None


def _create_stack(backend: cfn.CloudFormationBackend, stackset: cfn.StackSet, instance: StackSetInstance) -> str | None:
    # AWS names the stack StackSet-<set name>-<uuid>; moto's "StackSet:<name>" is no legal
    # stack name, and resources named after their stack fail with it.
    name = f"StackSet-{stackset.name}-{mock_random.uuid4()}"
    try:
        instance.stack = backend.create_stack(
            name=name,
            template=stackset.template,
            parameters=_stack_parameters(stackset, instance),
            tags=dict(stackset.tags or {}),
        )
        return None
    except Exception as exc:
        message = _message(exc)
        stack: Any = next((s for s in backend.stacks.values() if s.name == name), None)
        instance.stack = stack
        if stack is None:
            return message  # template or parameters refused: no stack, as in AWS
        # A resource failed: CloudFormation rolls the stack back (ROLLBACK_COMPLETE).
        logical_id = _failed_resource(stack)
        resource_type = ((stack.template_dict.get("Resources") or {}).get(logical_id) or {}).get("Type", "")
        stack.status = "CREATE_FAILED"
        if logical_id:
            _resource_event(stack, logical_id, resource_type, "CREATE_FAILED", message)
        _roll_back_create(stack, f"[{logical_id}]" if logical_id else message)
        # moto's resource map is lazy: reading the rolled-back stack's resources would
        # create them again. Its template stays readable; it has no resources left.
        stack.resource_map._resource_json_map = {}
        stack.output_map = cfn_parsing.OutputMap(stack.resource_map, {}, stack.stack_id)
        if not logical_id:
            return message
        return f"ResourceLogicalId:{logical_id}, ResourceType:{resource_type}, ResourceStatusReason:{message}"


def _update_stack(backend: cfn.CloudFormationBackend, stackset: cfn.StackSet, instance: StackSetInstance) -> str | None:
    stack = _stack_of(instance)
    old_template, old_parameters = stack.template, dict(stack.parameters or {})
    old_resources = set(stack.template_dict.get("Resources") or {})
    parameters = _stack_parameters(stackset, instance)
    try:
        backend.update_stack(
            name=stack.stack_id,
            template=stackset.template,
            role_arn=stack.role_arn,
            parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
            tags=dict(stackset.tags or {}),
        )
        return None
    except Exception as exc:
        # CloudFormation rolls a failed update back to the previous template and parameters
        # (moto leaves the stack half updated); best effort, as in AWS.
        message = _message(exc)
        stack.status = "UPDATE_ROLLBACK_IN_PROGRESS"
        stack._add_stack_event(stack.status, resource_status_reason=message)
        try:
            resource_map = stack.resource_map
            # Resources the failed update deleted are still in moto's cache: forget them, so
            # that the rollback creates them again.
            for name in old_resources - set(resource_map._resource_json_map):
                resource_map._parsed_resources.pop(name, None)
            stack.template = old_template
            stack._parse_template()
            with warnings.catch_warnings():  # moto: "Unable to delete X, as it was never created"
                warnings.simplefilter("ignore")
                resource_map.update(stack.template_dict, old_parameters)
            stack.parameters = old_parameters
            stack.output_map = stack._create_output_map()
            stack.status = "UPDATE_ROLLBACK_COMPLETE"
        except Exception:  # noqa: BLE001 - what AWS calls a failed rollback
            stack.status = "UPDATE_ROLLBACK_FAILED"
        stack._add_stack_event(stack.status)
        return message


def _deploy(stackset: cfn.StackSet, instance: StackSetInstance) -> str | None:
    """Bring one instance's stack to the stack set's template and its parameters."""
    backend = cfn.cloudformation_backends[instance.account_id][instance.region_name]
    stack = _stack_of(instance)
    if stack is not None and stack.stack_id in backend.stacks:
        if stack.status not in _DEAD_STACK:
            return _update_stack(backend, stackset, instance)
        with contextlib.suppress(Exception):
            backend.delete_stack(stack.stack_id)  # a rolled-back create is replaced on a retry
    return _create_stack(backend, stackset, instance)


def _delete_stack(instance: StackSetInstance, retain: bool) -> str | None:
    stack = _stack_of(instance)
    if retain or stack is None:
        return None  # RetainStacks: the stack stays, no longer in the stack set
    backend = cfn.cloudformation_backends[instance.account_id][instance.region_name]
    if stack.stack_id not in backend.stacks:
        return None  # deleted out of band
    if getattr(stack, "enable_termination_protection", False):
        return f"Stack [{stack.name}] cannot be deleted while TerminationProtection is enabled"
    try:
        backend.delete_stack(stack.stack_id)
        return None
    except Exception as exc:
        # moto forgets a stack whose delete failed; CloudFormation keeps it as DELETE_FAILED.
        backend.stacks[stack.stack_id] = stack
        stack.status = "DELETE_FAILED"
        stack._add_stack_event(stack.status, resource_status_reason=_message(exc))
        return _message(exc)


# ---------------------------------------------------------------------------------------
# Operations
# ---------------------------------------------------------------------------------------


def _begin(stackset: cfn.StackSet, action: str) -> dict[str, Any]:
    request = _params()
    operation_id = request.get("OperationId") or str(mock_random.uuid4())
    # AWS: the operation id is an idempotency token; moto ignores the caller's.
    if any(op["OperationId"] == operation_id for op in stackset.operations):
        raise OperationIdAlreadyExists()
    preferences = dict(request.get("OperationPreferences") or {})
    for name in ("FailureTolerance", "MaxConcurrent"):
        if f"{name}Count" in preferences and f"{name}Percentage" in preferences:
            raise ValidationError(message=f"You can specify either {name}Count or {name}Percentage, but not both.")
    preferences.setdefault("RegionOrder", [])
    return {
        "OperationId": operation_id,
        "Action": action,
        "Status": "RUNNING",
        "CreationTimestamp": utcnow(),
        "OperationPreferences": preferences,
        "Instances": [],
        "Results": [],
    }


def _per_region(preferences: dict[str, Any], name: str, accounts: int, minimum: int) -> int:
    """FailureTolerance / MaxConcurrent as a number of accounts (percentages round down)."""
    if f"{name}Count" in preferences:
        return max(minimum, int(preferences[f"{name}Count"]))
    if f"{name}Percentage" in preferences:
        return max(minimum, math.floor(int(preferences[f"{name}Percentage"]) * accounts / 100))
    return minimum


def _region_order(targets: Iterable[StackSetInstance], first: list[str]) -> list[str]:
    regions = list(dict.fromkeys(t.region_name for t in targets))
    return [r for r in first if r in regions] + [r for r in regions if r not in first]


def _run(
    stackset: cfn.StackSet,
    operation: dict[str, Any],
    targets: list[StackSetInstance],
    apply: Callable[[StackSetInstance], str | None],
) -> dict[str, Any]:
    """Run ``apply`` on each target as AWS schedules it; a target's failure is its own.

    Regions go one after another in ``RegionOrder`` (or all at once with
    ``RegionConcurrencyType: PARALLEL``); within a region accounts go in batches of the
    allowed concurrency (STRICT_FAILURE_TOLERANCE: never more than tolerance + 1 - failures).
    Once a region's failures exceed its tolerance, its remaining targets are cancelled, and
    so are later regions unless regions run in parallel. EndTimestamp is when it ended.
    """
    preferences = operation["OperationPreferences"]
    parallel = preferences.get("RegionConcurrencyType") == "PARALLEL"
    strict = preferences.get("ConcurrencyMode") != "SOFT_FAILURE_TOLERANCE"
    stopped = False
    for region in _region_order(targets, preferences["RegionOrder"]):
        in_region = [t for t in targets if t.region_name == region]
        tolerance = _per_region(preferences, "FailureTolerance", len(in_region), 0)
        concurrency = _per_region(preferences, "MaxConcurrent", len(in_region), 1)
        failures = done = 0
        while done < len(in_region) and failures <= tolerance and not (stopped and not parallel):
            batch = min(concurrency, tolerance + 1 - failures) if strict else concurrency
            for instance in in_region[done : done + batch]:
                reason = _attempt(apply, instance)
                failures += reason is not None
                _record(stackset, operation, instance, "FAILED" if reason else "SUCCEEDED", reason)
            done += batch
        for instance in in_region[done:]:
            _record(stackset, operation, instance, "CANCELLED", CANCELLED_REASON)
        stopped = stopped or failures > tolerance
    failed = sum(r["Status"] == "FAILED" for r in operation["Results"])
    operation["Status"] = "FAILED" if stopped else "SUCCEEDED"
    operation["StatusDetails"] = {"FailedStackInstancesCount": failed}
    operation["EndTimestamp"] = utcnow()  # moto: now + 2 minutes
    stackset.operations.append(operation)
    return operation


def _attempt(apply: Callable[[StackSetInstance], str | None], instance: StackSetInstance) -> str | None:
    rule = faults.stack_instance_fault(instance.account_id, instance.region_name)
    if rule is not None:
        return rule.message or str(rule.error)
    try:
        return apply(instance)
    except Exception as exc:  # noqa: BLE001 - one target never fails the operation's call
        return _message(exc)


def _record(
    stackset: cfn.StackSet, operation: dict[str, Any], instance: StackSetInstance, status: str, reason: str | None
) -> None:
    account, region = instance.account_id, instance.region_name
    result: dict[str, Any] = {"Account": account, "Region": region, "Status": status}
    if reason:
        result["StatusReason"] = reason
    if status != "CANCELLED":
        # What AWS answers for a self-managed target without an account gate function.
        arn = f"arn:{get_partition(region)}:lambda:{region}:{account}:function:AWSCloudFormationStackSetAccountGate"
        result["AccountGateResult"] = {"Status": "SKIPPED", "StatusReason": f"Function not found: {arn}"}
    operation["Results"].append(result)
    operation["Instances"].append({account: region})
    instance.last_operation_id = operation["OperationId"]
    instance.status_reason = reason
    if operation["Action"] == "DELETE":
        if status == "SUCCEEDED":
            stackset.instances.stack_instances.remove(instance)
        elif status == "FAILED":
            instance.status = instance.detailed_status = "INOPERABLE"
        else:
            instance.detailed_status = "CANCELLED"
    elif status == "SUCCEEDED":
        instance.status, instance.detailed_status = "CURRENT", "SUCCEEDED"
    else:
        instance.status, instance.detailed_status = "OUTDATED", status


# ---------------------------------------------------------------------------------------
# The patched moto functions
# ---------------------------------------------------------------------------------------

_ORIGINALS: dict[str, Any] = {}


def _create_stack_set(self: cfn.CloudFormationBackend, name: str, *args: Any, **kwargs: Any) -> cfn.StackSet:
    # AWS refuses a second active stack set with the same name; moto creates it.
    if any(s.name == name and s.status != "DELETED" for s in self.stacksets.values()):
        raise NameAlreadyExists()
    stackset: cfn.StackSet = _ORIGINALS["CloudFormationBackend.create_stack_set"](self, name, *args, **kwargs)
    request = _params()
    stackset.capabilities = list(request.get("Capabilities") or [])  # type: ignore[attr-defined]
    stackset.managed_execution_active = _truthy((request.get("ManagedExecution") or {}).get("Active"))  # type: ignore[attr-defined]
    return stackset


def _managed_execution(self: cfn.StackSet) -> dict[str, Any]:
    # moto answers {"Active": false} whatever the stack set was created with.
    return {"Active": bool(getattr(self, "managed_execution_active", False))}


def _create_stack_instances(
    self: cfn.StackSet,
    accounts: list[str],
    regions: list[str],
    deployment_targets: dict[str, Any] | None,
    parameters: list[dict[str, Any]],
) -> str:
    if self.permission_model != SELF_MANAGED:
        return str(
            _ORIGINALS["StackSet.create_stack_instances"](self, accounts, regions, deployment_targets, parameters)
        )
    if deployment_targets and "OrganizationalUnitIds" in deployment_targets:
        raise ValidationError(message="StackSets with SELF_MANAGED permission model can only have accounts as target")
    operation = _begin(self, "CREATE")
    overrides = _resolve_overrides([], parameters or [])
    targets: list[Any] = []
    for region in regions:
        for account in accounts:
            instance = self.instances.get_instance(account, region)
            if instance is None:
                instance = StackSetInstance(self, account, region, overrides)
                self.instances.stack_instances.append(instance)
            targets.append(instance)

    def create(instance: StackSetInstance) -> str | None:
        # AWS accepts an existing target: a CURRENT instance is left as it is, an OUTDATED one
        # (failed or cancelled before) is tried again.
        if instance.status == "CURRENT" and instance.stack is not None:
            return None
        return _deploy(self, instance)

    return str(_run(self, operation, targets, create)["OperationId"])


def _update_stack_set(
    self: cfn.StackSet,
    template: str,
    description: str,
    parameters: dict[str, str],
    tags: dict[str, str],
    admin_role: str,
    execution_role: str,
    accounts: list[str],
    regions: list[str],
    operation_id: str,
) -> dict[str, Any]:
    if self.permission_model != SELF_MANAGED:
        original = _ORIGINALS["StackSet.update"]
        roles = (admin_role, execution_role)
        return dict(original(self, template, description, parameters, tags, *roles, accounts, regions, operation_id))
    # AWS updates the stacks (of the given accounts and regions, or of every instance);
    # moto stores the template and touches no stack.
    everyone = self.instances.stack_instances[:]
    targets: list[Any] = _existing(self, accounts, regions) if accounts or regions else everyone
    operation = _begin(self, "UPDATE")
    request = _params()
    self.template = template or self.template
    self.description = description if description is not None else self.description
    self.parameters = parameters or self.parameters
    self.tags = tags or self.tags
    self.administration_role_arn = admin_role or self.administration_role_arn
    self.execution_role_name = execution_role or self.execution_role_name
    # moto creates instances added later from the template the stack set was created with.
    self.instances.template, self.instances.parameters = self.template, self.parameters
    if "Capabilities" in request:
        self.capabilities = list(request["Capabilities"] or [])  # type: ignore[attr-defined]
    if "ManagedExecution" in request:
        self.managed_execution_active = _truthy((request["ManagedExecution"] or {}).get("Active"))  # type: ignore[attr-defined]
    if template or "Parameters" in request:
        for instance in self.instances.stack_instances:
            instance.status = "OUTDATED"  # type: ignore[attr-defined]  # until this operation updates it
    # INOPERABLE instances are left out of stack set updates, as in AWS.
    targets = [t for t in targets if t.status != "INOPERABLE"]
    return _run(self, operation, targets, lambda instance: _deploy(self, instance))


def _update_instances(
    self: cfn.StackSet, accounts: list[str], regions: list[str], parameters: list[dict[str, Any]]
) -> dict[str, Any]:
    if self.permission_model != SELF_MANAGED:
        return dict(_ORIGINALS["StackSet.update_instances"](self, accounts, regions, parameters))
    # AWS applies the new overrides to the stacks; moto only stores them.
    targets = _existing(self, accounts, regions)
    operation = _begin(self, "UPDATE")
    if "ParameterOverrides" in _params():  # absent: every override stays as it is
        for instance in targets:
            instance.parameters = _resolve_overrides(instance.parameters, parameters or [])
    return _run(self, operation, targets, lambda instance: _deploy(self, instance))


def _delete_stack_instances(self: cfn.StackSet, accounts: list[str], regions: list[str]) -> None:
    if self.permission_model != SELF_MANAGED:
        _ORIGINALS["StackSet.delete_stack_instances"](self, accounts, regions)
        return
    # AWS honours RetainStacks and the OperationId; results name the instances that existed.
    retain = _truthy(_params().get("RetainStacks"))
    operation = _begin(self, "DELETE")
    operation["RetainStacks"] = retain
    targets: list[Any] = [i for r in regions for a in accounts if (i := self.instances.get_instance(a, r)) is not None]
    _run(self, operation, targets, lambda instance: _delete_stack(instance, retain))


def _get_operation(self: cfn.StackSet, operation_id: str) -> dict[str, Any]:
    # moto: ValidationError "Stack with id ... does not exist".
    for operation in self.operations:
        if operation["OperationId"] == operation_id:
            return operation
    raise OperationNotFound()


def _stop_stack_set_operation(self: cfn.CloudFormationBackend, stackset_name: str, operation_id: str) -> None:
    # Operations here end before their call returns: AWS refuses to stop a finished one
    # (moto marks it STOPPED).
    operation = self.describe_stack_set(stackset_name).get_operation(operation_id)
    if operation["Status"] not in ("RUNNING", "QUEUED"):
        raise InvalidOperation(f"Operation {operation_id} is {operation['Status']} and cannot be stopped")
    _ORIGINALS["CloudFormationBackend.stop_stack_set_operation"](self, stackset_name, operation_id)


def _describe_stack_instance(
    self: cfn.CloudFormationBackend, stack_set_name: str, account_id: str, region: str
) -> dict[str, Any]:
    # moto: AttributeError on None, an HTTP 500.
    instance = self.describe_stack_set(stack_set_name).instances.get_instance(account_id, region)
    if instance is None:
        raise StackInstanceNotFound()
    return dict(instance.to_dict())


_INSTANCE_FILTERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "DETAILED_STATUS": lambda s: s.get("StackInstanceStatus", {}).get("DetailedStatus"),
    "LAST_OPERATION_ID": lambda s: s.get("LastOperationId"),
    "DRIFT_STATUS": lambda s: s.get("DriftStatus", "NOT_CHECKED"),
}


def _list_stack_instances(self: cfn.CloudFormationBackend, stackset_name: str) -> list[dict[str, Any]]:
    # moto ignores StackInstanceAccount, StackInstanceRegion and Filters.
    summaries: list[dict[str, Any]] = _ORIGINALS["CloudFormationBackend.list_stack_instances"](self, stackset_name)
    request = _params()
    account, region = request.get("StackInstanceAccount"), request.get("StackInstanceRegion")
    filters = [(f["Name"], f.get("Values")) for f in request.get("Filters") or [] if f.get("Name") in _INSTANCE_FILTERS]
    return [
        s
        for s in summaries
        if account in (None, s["Account"])
        and region in (None, s["Region"])
        and all(_INSTANCE_FILTERS[name](s) == value for name, value in filters)
    ]


def _list_stack_set_operation_results(self: CloudFormationResponse) -> ActionResult:
    # moto reports the operation's status for every target, with a made-up account gate.
    stackset = self.cloudformation_backend.describe_stack_set(self._get_param("StackSetName"))
    operation = stackset.get_operation(self._get_param("OperationId"))
    if "Results" not in operation:  # an operation of a service-managed stack set
        return _ORIGINALS["CloudFormationResponse.list_stack_set_operation_results"](self)  # type: ignore[no-any-return]
    return ActionResult({"Summaries": [dict(r) for r in operation["Results"]]})


def _operation_dto_init(self: StackSetOperationDTO, operation: dict[str, Any], stack_set: cfn.StackSet) -> None:
    # moto's DescribeStackSetOperation leaves out the preferences and the failure count.
    _ORIGINALS["StackSetOperationDTO.__init__"](self, operation, stack_set)
    for key in ("OperationPreferences", "RetainStacks", "StatusDetails"):
        setattr(self, xform_name(key), operation.get(key))


_SUB_NAME = re.compile(r"\$\{([^!}][^}]*)\}")


def _references(value: Any) -> set[str]:
    """Names a resource refers to with Ref and inside Fn::Sub strings."""
    if isinstance(value, list):
        return set().union(*(_references(v) for v in value)) if value else set()
    if not isinstance(value, dict):
        return set()
    names: set[str] = set()
    for key, item in value.items():
        if key == "Ref" and isinstance(item, str):
            names.add(item)
        elif key == "Fn::Sub":
            text = item[0] if isinstance(item, list) and item else item
            if isinstance(text, str):
                names.update(_SUB_NAME.findall(text))
            if isinstance(item, list) and len(item) > 1:
                names |= _references(item[1])
        else:
            names |= _references(item)
    return names


def _build_resource_diff(
    self: cfn_parsing.ResourceMap, other_template: dict[str, Any], parameters: dict[str, Any] | None = None
) -> dict[str, Any]:
    # A parameter change must update the resources using it; moto only sees ones that
    # Ref it, not Fn::Sub "${Param}", so an instance's new override would not reach them.
    diff: dict[str, Any] = _ORIGINALS["ResourceMap.build_resource_diff"](self, other_template, parameters)
    if parameters:
        changed = {k for k, v in parameters.items() if self.input_parameters.get(k) != v}
        old, new = self._resource_json_map, other_template.get("Resources") or {}
        for name, resource in new.items():
            if name in old and name not in diff["Modify"] and old[name] == resource and changed & _references(resource):
                diff["Modify"].append(name)
    return diff


_RESPONSES_WITH_REQUEST = (
    "create_stack_set",
    "create_stack_instances",
    "update_stack_set",
    "update_stack_instances",
    "delete_stack_instances",
    "list_stack_instances",
)


def _patches() -> list[tuple[type, str, Any]]:
    patches: list[tuple[type, str, Any]] = [
        (cfn.CloudFormationBackend, "create_stack_set", _create_stack_set),
        (cfn.CloudFormationBackend, "describe_stack_instance", _describe_stack_instance),
        (cfn.CloudFormationBackend, "list_stack_instances", _list_stack_instances),
        (cfn.CloudFormationBackend, "stop_stack_set_operation", _stop_stack_set_operation),
        (cfn.StackSet, "managed_execution", property(_managed_execution)),
        (cfn.StackSet, "create_stack_instances", _create_stack_instances),
        (cfn.StackSet, "update", _update_stack_set),
        (cfn.StackSet, "update_instances", _update_instances),
        (cfn.StackSet, "delete_stack_instances", _delete_stack_instances),
        (cfn.StackSet, "get_operation", _get_operation),
        (StackSetOperationDTO, "__init__", _operation_dto_init),
        (CloudFormationResponse, "list_stack_set_operation_results", _list_stack_set_operation_results),
        (cfn_parsing.ResourceMap, "build_resource_diff", _build_resource_diff),
    ]
    for name in _RESPONSES_WITH_REQUEST:
        patches.append((CloudFormationResponse, name, _with_request(getattr(CloudFormationResponse, name))))
    return patches


def install_stackset_patches() -> None:
    """Make moto's StackSets behave like AWS's (idempotent); see the module docstring."""
    if _ORIGINALS:
        return
    for owner, name, replacement in _patches():
        _ORIGINALS[f"{owner.__name__}.{name}"] = owner.__dict__[name]
        setattr(owner, name, replacement)


def uninstall_stackset_patches() -> None:
    """Restore the functions found at install (uninstall before ``cfn_models``' patches)."""
    owners: dict[str, type] = {owner.__name__: owner for owner, _, _ in _patches()}
    for key in list(_ORIGINALS):
        owner_name, name = key.split(".", 1)
        setattr(owners[owner_name], name, _ORIGINALS.pop(key))
