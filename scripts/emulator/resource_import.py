"""Resource import (``CreateChangeSet`` with ``ChangeSetType=IMPORT``) in the emulator.

moto 5.2.5 treats any change set type other than ``UPDATE`` as a new stack: an IMPORT change
set would make a second stack of the same name and *create* the resources, which for an
account's one Config recorder or GuardDuty detector fails (or, with moto's own GuardDuty,
silently makes a second detector). So ``vend deploy``'s import of adopted resources
(:mod:`scripts.resource_import`) needs this, as CloudFormation does it:

- ``CreateChangeSet`` with ``ChangeSetType=IMPORT`` and ``ResourcesToImport`` checks what
  CloudFormation checks: each resource to import is in the template with its type and a
  ``DeletionPolicy``; the identifier names the type's identifier property and an existing
  resource that no stack holds; an existing stack's template changes by exactly the imported
  resources; a new stack's template holds nothing else. Its changes are ``Import`` actions.
- ``ExecuteChangeSet`` of it attaches the existing resources to the stack: the handler's
  ``import_from_cloudformation_json`` (:mod:`scripts.emulator.cfn_models`) returns it as it
  is, nothing is created or changed. The stack ends ``IMPORT_COMPLETE`` (events
  ``IMPORT_IN_PROGRESS`` / ``IMPORT_COMPLETE``); later updates change the resource in place.
- Removing a resource whose ``DeletionPolicy`` is ``Retain`` from a stack (an update, or a
  resource left out) keeps it, as CloudFormation does; moto deleted it.

Only the types with an ``import_from_cloudformation_json`` handler can be imported (the ones
vend adopts); any other answers CloudFormation's "not supported for import". Same pattern as
the other patch modules: :func:`install_import_patches` (from
:func:`scripts.emulator.server.register_models`) and :func:`uninstall_import_patches`.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import yaml
from moto.cloudformation import models as cfn_models
from moto.cloudformation import parsing as cfn_parsing
from moto.cloudformation.exceptions import ValidationError
from moto.cloudformation.responses import CloudFormationResponse
from moto.core.responses import ActionResult

from baseline.adoption import IMPORT_IDENTIFIERS

_ORIGINALS: dict[str, Any] = {}
#: Per request thread: logical id -> identifier of the resources the executing IMPORT attaches.
_IMPORTING = threading.local()
_RETAINED = ("Retain", "RetainExceptOnCreate")


def _parse(body: str) -> dict[str, Any]:
    try:
        return dict(json.loads(body))
    except json.JSONDecodeError:
        return dict(yaml.safe_load(body))


def _identifier_key(resource_type: str) -> str | None:
    """The identifier property of a type the emulator imports (a handler that can), else None."""
    handler = cfn_parsing.get_model_map().get(resource_type)
    if handler is None or not hasattr(handler, "import_from_cloudformation_json"):
        return None
    return IMPORT_IDENTIFIERS.get(resource_type)


def _live_stack(backend: Any, name: str) -> Any | None:
    return next(
        (s for s in backend.stacks.values() if s.name == name and s.status not in ("REVIEW_IN_PROGRESS",)), None
    )


def _held_elsewhere(backend: Any, resource_type: str, identifier: str) -> str | None:
    """The stack that already holds the resource, if any (a resource belongs to one stack)."""
    for stack in backend.stacks.values():
        for res in stack.resource_map._parsed_resources.values():
            if getattr(res, "cf_resource_type", None) == resource_type and (
                getattr(res, "physical_resource_id", None) == identifier
            ):
                return str(stack.stack_id)
    return None


def _create_import_change_set(self: CloudFormationResponse) -> ActionResult:
    backend = self.cloudformation_backend
    stack_name = self._get_param("StackName")
    body = self._get_param("TemplateBody")
    if self._get_param("TemplateURL"):
        body = self._get_stack_from_s3_url(self._get_param("TemplateURL"))
    if not body:
        raise ValidationError(message="Either Template URL or Template Body must be specified.")
    template = _parse(body)
    resources = template.get("Resources") or {}
    to_import: list[dict[str, Any]] = self._get_param("ResourcesToImport", []) or []
    if not to_import:
        raise ValidationError(message="ResourcesToImport must be specified for an IMPORT change set")
    imports: dict[str, str] = {}
    for item in to_import:
        lid, rtype = str(item.get("LogicalResourceId")), str(item.get("ResourceType"))
        identifier = dict(item.get("ResourceIdentifier") or {})
        res = resources.get(lid)
        if res is None or res.get("Type") != rtype:
            raise ValidationError(message=f"Resource {lid} of type {rtype} to import is not in the template")
        if res.get("DeletionPolicy") is None:
            raise ValidationError(
                message=f"The following resources to import [{lid}] must have DeletionPolicy attribute specified"
            )
        key = _identifier_key(rtype)
        if key is None:
            raise ValidationError(message=f"ResourceType {rtype} is not supported for import")
        if set(identifier) != {key}:
            raise ValidationError(message=f"Invalid identifier {json.dumps(identifier)} for {rtype}: expected {key}")
        value = str(identifier[key])
        holder = _held_elsewhere(backend, rtype, value)
        if holder is not None:
            raise ValidationError(message=f"Resource {value} of type {rtype} already belongs to stack {holder}")
        imports[lid] = value

    stack = _live_stack(backend, stack_name)
    if stack is not None:
        deployed = stack.template_dict if isinstance(stack.template_dict, dict) else {}
        old = deployed.get("Resources") or {}
        if set(imports) & set(old):
            raise ValidationError(message=f"Resources {sorted(set(imports) & set(old))} already exist in the stack")
        changed = sorted(
            lid for lid in set(resources) | set(old) if lid not in imports and resources.get(lid) != old.get(lid)
        )
        others = sorted(
            k for k in set(template) | set(deployed) if k != "Resources" and template.get(k) != deployed.get(k)
        )
        if changed or others:
            raise ValidationError(
                message=f"As part of the import operation, you cannot modify or add [{', '.join(changed + others)}]"
            )
    else:
        extra = sorted(set(resources) - set(imports))
        if extra:
            raise ValidationError(
                message=f"When creating a stack by import, every resource must be imported: {', '.join(extra)} is not"
            )
    # Existence last: the handler knows where its resource lives.
    for lid, value in imports.items():
        handler: Any = cfn_parsing.get_model_map()[resources[lid]["Type"]]
        try:
            handler.import_from_cloudformation_json(value, {"Properties": {}}, backend.account_id, backend.region_name)
        except Exception as exc:  # noqa: BLE001 - the handler's "not found"
            raise ValidationError(message=getattr(exc, "message", None) or str(exc)) from exc

    tags = {item["Key"]: item["Value"] for item in self._get_param("Tags", []) or []}
    change_set_id, stack_id = backend.create_change_set(
        stack_name=stack_name,
        change_set_name=self._get_param("ChangeSetName"),
        template=body,
        parameters={},
        description=self._get_param("Description"),
        notification_arns=self._get_param("NotificationARNs", []),
        tags=tags or (stack.tags if stack is not None else None),
        role_arn=self._get_param("RoleARN"),
        change_set_type="UPDATE" if stack is not None else "CREATE",
    )
    change_set = backend.change_sets[change_set_id]
    change_set.change_set_type = "IMPORT"
    change_set.status, change_set.execution_status, change_set.status_reason = "CREATE_COMPLETE", "AVAILABLE", None
    change_set.changes = [cfn_models.Change("Import", lid, resources[lid]["Type"]) for lid in sorted(imports)]
    change_set._vend_imports = imports  # type: ignore[attr-defined]
    return ActionResult({"Id": change_set_id, "StackId": stack_id})


def _create_change_set(self: CloudFormationResponse) -> Any:
    if self._get_param("ChangeSetType") == "IMPORT":
        return _create_import_change_set(self)
    return _ORIGINALS["create_change_set"](self)


def _find_change_set(backend: Any, name: str) -> Any | None:
    if name in backend.change_sets:
        return backend.change_sets[name]
    return next((cs for cs in backend.change_sets.values() if cs.change_set_name == name), None)


def _execute_change_set(self: Any, change_set_name: str, stack_name: str | None = None) -> None:
    change_set = _find_change_set(self, change_set_name)
    imports = getattr(change_set, "_vend_imports", None)
    if change_set is None or imports is None:
        return _ORIGINALS["execute_change_set"](self, change_set_name, stack_name)  # type: ignore[no-any-return]
    stack = self.stacks[change_set.stack_id]
    stack._add_stack_event("IMPORT_IN_PROGRESS", resource_status_reason="User Initiated")
    _IMPORTING.resources = imports
    try:
        change_set.apply()
    except Exception:
        stack.status = "IMPORT_ROLLBACK_COMPLETE"
        stack._add_stack_event("IMPORT_ROLLBACK_COMPLETE")
        raise
    finally:
        _IMPORTING.resources = None
    for lid in sorted(imports):
        event = cfn_models.Event(
            stack_id=stack.stack_id,
            stack_name=stack.name,
            logical_resource_id=lid,
            physical_resource_id=imports[lid],
            resource_type=change_set.template_dict["Resources"][lid]["Type"],
            resource_status="IMPORT_COMPLETE",
            resource_status_reason="Resource import completed",
            resource_properties=None,
        )
        stack.events.append(event)
    change_set.execution_status = "EXECUTE_COMPLETE"
    stack.status = "IMPORT_COMPLETE"
    stack._add_stack_event("IMPORT_COMPLETE")
    return None


def _parse_and_create_resource(
    logical_id: str, resource_json: dict[str, Any], resources_map: Any, account_id: str, region_name: str
) -> Any:
    """Creating a resource of an executing IMPORT change set attaches the existing one instead."""
    imports = getattr(_IMPORTING, "resources", None) or {}
    if logical_id not in imports:
        return _ORIGINALS["parse_and_create_resource"](
            logical_id, resource_json, resources_map, account_id, region_name
        )
    resource_class, resolved, _ = cfn_parsing.parse_resource_and_generate_name(logical_id, resource_json, resources_map)
    resource = resource_class.import_from_cloudformation_json(  # type: ignore[attr-defined]
        imports[logical_id], resolved, account_id, region_name
    )
    resource.cf_resource_type = resource_json["Type"]
    resource.logical_resource_id = logical_id
    return resource


def _resource_map_update(self: Any, template: dict[str, Any], *args: Any, **kwargs: Any) -> None:
    """A resource with ``DeletionPolicy: Retain`` that leaves the template leaves the stack only:
    it is forgotten, never deleted (moto deleted it)."""
    new = template.get("Resources") or {}
    for lid in [lid for lid, res in self._resource_json_map.items() if lid not in new]:
        if self._resource_json_map[lid].get("DeletionPolicy") in _RETAINED:
            self._resource_json_map = {k: v for k, v in self._resource_json_map.items() if k != lid}
            self._parsed_resources.pop(lid, None)
    _ORIGINALS["resource_map_update"](self, template, *args, **kwargs)


def install_import_patches() -> None:
    """IMPORT change sets and retained resources (idempotent)."""
    if _ORIGINALS:
        return
    _ORIGINALS["create_change_set"] = CloudFormationResponse.create_change_set
    _ORIGINALS["execute_change_set"] = cfn_models.CloudFormationBackend.execute_change_set
    _ORIGINALS["parse_and_create_resource"] = cfn_parsing.parse_and_create_resource
    _ORIGINALS["resource_map_update"] = cfn_parsing.ResourceMap.update
    CloudFormationResponse.create_change_set = _create_change_set  # type: ignore[method-assign]
    cfn_models.CloudFormationBackend.execute_change_set = _execute_change_set  # type: ignore[method-assign]
    cfn_parsing.parse_and_create_resource = _parse_and_create_resource
    cfn_parsing.ResourceMap.update = _resource_map_update  # type: ignore[method-assign]


def uninstall_import_patches() -> None:
    """Restore moto's own functions."""
    if not _ORIGINALS:
        return
    CloudFormationResponse.create_change_set = _ORIGINALS.pop("create_change_set")  # type: ignore[method-assign]
    cfn_models.CloudFormationBackend.execute_change_set = _ORIGINALS.pop("execute_change_set")  # type: ignore[method-assign]
    cfn_parsing.parse_and_create_resource = _ORIGINALS.pop("parse_and_create_resource")
    cfn_parsing.ResourceMap.update = _ORIGINALS.pop("resource_map_update")  # type: ignore[method-assign]
