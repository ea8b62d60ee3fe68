"""Adopted resources as data: what the stacks mark and the deploy driver imports (issue 6).

An inherited Config recorder, delivery channel or GuardDuty detector that a client's override
adopts (``inherited.<setting>: adopt``) is synthesized into the client's regional stack like
vend's own, with ``DeletionPolicy``/``UpdateReplacePolicy: Retain`` (it was the account's
before vend; removing it from a stack never deletes it) and :data:`IMPORT_METADATA_KEY` in its
``Metadata`` naming the setting. The recorder and channel carry no ``Name``: the account's own
names stay. ``vend deploy`` brings such a resource into the stack with an ``IMPORT`` change set
before the stack's normal update (:mod:`scripts.resource_import`); from then on CloudFormation
manages its properties, and drift and remediation treat it like vend's own.

The trail is not imported, although CloudFormation supports it: an adopted trail keeps the
account's own bucket (the central bucket accepts only vend's trail) and vend's deploy role may
only read it, so the template's values could never be applied to it.

No aws_cdk here: the driver and the emulator import it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

#: Resource metadata key of an adopted resource; the value is its ``inherited`` setting.
IMPORT_METADATA_KEY = "vend:Import"

#: The types an adopted resource is imported as, with the identifier property that
#: ``ResourcesToImport`` names (the resource schema's primary identifier).
IMPORT_IDENTIFIERS: dict[str, str] = {
    "AWS::Config::ConfigurationRecorder": "Name",
    "AWS::Config::DeliveryChannel": "Name",
    "AWS::GuardDuty::Detector": "Id",
}

#: The inherited setting of each importable type (``baseline.model.InheritedOverride``).
IMPORT_SETTINGS: dict[str, str] = {
    "AWS::Config::ConfigurationRecorder": "config_recorder",
    "AWS::Config::DeliveryChannel": "config_delivery_channel",
    "AWS::GuardDuty::Detector": "guardduty_detector",
}


def imported(resource: Mapping[str, Any]) -> bool:
    """The template resource is an adopted one, imported by the deploy driver."""
    return resource.get("Type") in IMPORT_IDENTIFIERS and IMPORT_METADATA_KEY in (resource.get("Metadata") or {})


def without_imported(template: Mapping[str, Any]) -> dict[str, Any]:
    """``template`` without its adopted resources (and every ``DependsOn`` on them): what a
    stack set runs. StackSets cannot import a resource into a stack instance, so there the
    account's resource stays outside the stack, as it was before import."""
    out = copy.deepcopy(dict(template))
    resources = out.get("Resources") or {}
    gone = {lid for lid, res in resources.items() if imported(res)}
    if not gone:
        return out
    out["Resources"] = {lid: res for lid, res in resources.items() if lid not in gone}
    for res in out["Resources"].values():
        deps = res.get("DependsOn")
        if deps is None:
            continue
        kept = [d for d in ([deps] if isinstance(deps, str) else deps) if d not in gone]
        if kept:
            res["DependsOn"] = kept if isinstance(deps, list) else kept[0]
        else:
            del res["DependsOn"]
    return out
