"""``vend deploy``: bring the resources a client adopts into its stack, with an IMPORT change set.

An override that adopts the account's Config recorder, delivery channel or GuardDuty detector
(``inherited.<setting>: adopt``) gets that resource in its regional stack, retained and marked
(:mod:`baseline.adoption`). CloudFormation cannot create it (one per account and region, and
the account has one), so before the stack's normal change set the deploy driver imports it:

1. the stack's template marks resources for import that the deployed stack does not hold;
2. each one's identifier (the recorder's or channel's name, the detector's id) is the
   account's own resource in that region, as the preflight found it
   (:func:`scripts.preflight.find_inherited`; looked up again when the preflight did not run);
3. one ``IMPORT`` change set adds exactly those resources to the stack as it is deployed (a
   stack that does not exist yet is created with them alone), is executed and waited for
   (``IMPORT_COMPLETE``);
4. then the usual change set brings the stack to its synthesized template.

An import changes nothing in the resource: the properties it had stay until the template
changes them, and the first ``vend drift`` after it shows the differences from the baseline
(``vend drift --remediate`` sets the baseline's values). A resource the override adopts but
the account does not have is not imported: the normal update creates it, as vend's own.

The deploy driver calls :class:`Importer` through ``Target.before_stack``
(:func:`scripts.deploy_cmd.build_targets`); remediation calls :func:`import_adopted` before
it deploys a stack. ``--engine stacksets`` cannot import into stack instances: there an
adopted resource is left out of the stack set template (:mod:`scripts.stackset_layout`).
"""

from __future__ import annotations

import contextlib
import copy
import json
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from baseline.adoption import IMPORT_IDENTIFIERS, imported
from baseline.spec import ClientBaseline
from scripts.assembly import StackArtifact
from scripts.aws import AwsAccess
from scripts.preflight import Inherited, find_inherited

#: The preflight's name for each importable type's control.
_CONTROLS = {
    "AWS::Config::ConfigurationRecorder": "config-recorder",
    "AWS::Config::DeliveryChannel": "config-delivery",
    "AWS::GuardDuty::Detector": "guardduty",
}
_WHAT = {
    "AWS::Config::ConfigurationRecorder": "Config recorder",
    "AWS::Config::DeliveryChannel": "Config delivery channel",
    "AWS::GuardDuty::Detector": "GuardDuty detector",
}
_NOT_DEPLOYED = ("REVIEW_IN_PROGRESS", "DELETE_COMPLETE")
MAX_TEMPLATE_BODY_BYTES = 51_200


class ImportFailed(Exception):
    """The import failed; the message says why (the stack is then reported FAILED)."""


def adopts(baseline: ClientBaseline) -> bool:
    """The client adopts a resource that is imported (a recorder, channel or detector somewhere)."""
    return any(r.recorder.adopt or r.delivery_channel.adopt or r.detector.adopt for r in baseline.regional)


def marked(template: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The resources of a synthesized template that are adopted (to be imported)."""
    return {lid: res for lid, res in (template.get("Resources") or {}).items() if imported(res)}


def import_template(
    deployed: Mapping[str, Any] | None, synthesized: Mapping[str, Any], logical_ids: set[str]
) -> dict[str, Any]:
    """What the IMPORT change set deploys: the stack as deployed plus exactly the resources to
    import (CloudFormation allows no other change in an import), or those alone for a new stack.
    A ``DependsOn`` on a resource the stack does not have yet is left for the normal update."""
    out: dict[str, Any] = (
        copy.deepcopy(dict(deployed)) if deployed else {"AWSTemplateFormatVersion": "2010-09-09", "Resources": {}}
    )
    resources: dict[str, Any] = out.setdefault("Resources", {})
    present = set(resources) | logical_ids
    for lid in sorted(logical_ids):
        res = copy.deepcopy(synthesized["Resources"][lid])
        deps = res.get("DependsOn")
        kept = [d for d in ([deps] if isinstance(deps, str) else deps or []) if d in present]
        res.pop("DependsOn", None)
        if kept:
            res["DependsOn"] = kept
        text = json.dumps(res)
        for other in set(synthesized["Resources"]) - present:
            if f'"Ref": "{other}"' in text or f'"Fn::GetAtt": ["{other}"' in text:
                raise ImportFailed(f"{lid} refers to {other}, which the stack does not hold yet: it cannot be imported")
        resources[lid] = res
    return out


class Importer:
    """``Target.before_stack`` of one client: imports its adopted resources into each stack.

    ``found``: what the preflight found (:meth:`remember`); without it (the deploy ledger let
    the preflight be skipped) the account is looked at again, once."""

    def __init__(self, baseline: ClientBaseline, *, poll_s: float = 2.0, timeout_s: float = 1800.0) -> None:
        self.baseline = baseline
        self.poll_s = poll_s
        self.timeout_s = timeout_s
        self.found: list[Inherited] | None = None
        self._lock = threading.Lock()  # regional stacks run in parallel; a session is not thread-safe

    def remember(self, found: list[Inherited]) -> None:
        self.found = list(found)

    def inherited(self, access: AwsAccess, session: Any) -> list[Inherited]:
        with self._lock:
            if self.found is None:
                self.found = find_inherited(access, session, self.baseline)
            return self.found

    def client(self, access: AwsAccess, session: Any, service: str, region: str) -> Any:
        with self._lock:
            return access.client(session, service, region)

    def __call__(self, access: AwsAccess, session: Any, cfn: Any, stack: StackArtifact) -> str | None:
        try:
            note = import_adopted(self, access, session, cfn, stack)
        except ImportFailed as exc:
            return f"import of adopted resources: {exc}"
        except ClientError as exc:
            err = exc.response.get("Error", {})
            return f"import of adopted resources: {err.get('Code')}: {err.get('Message')}"
        except BotoCoreError as exc:
            return f"import of adopted resources: {type(exc).__name__}: {exc}"
        if note:
            print(f"import {self.baseline.client.client}: {note}", file=sys.stderr, flush=True)
        return None


def _deployed(cfn: Any, name: str) -> tuple[dict[str, Any] | None, set[str], str]:
    """(deployed template, logical ids the stack holds, status) of a stack; (None, set(), "") if none."""
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None, set(), ""
        raise
    status = str(stacks[0]["StackStatus"]) if stacks else ""
    if not stacks or status in _NOT_DEPLOYED:
        return None, set(), status
    held: set[str] = set()
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=name):
        held.update(
            r["LogicalResourceId"]
            for r in page.get("StackResourceSummaries", [])
            if not str(r.get("ResourceStatus", "")).startswith("DELETE")
        )
    body = cfn.get_template(StackName=name, TemplateStage="Original")["TemplateBody"]
    return (json.loads(body) if isinstance(body, str) else dict(body)), held, status


def import_adopted(importer: Importer, access: AwsAccess, session: Any, cfn: Any, stack: StackArtifact) -> str | None:
    """Import the adopted resources ``stack``'s template holds and the deployed stack does not;
    returns what was imported (None: nothing to do). Raises ImportFailed or ClientError."""
    synthesized = json.loads(stack.template_body())
    wanted = marked(synthesized)
    if not wanted:
        return None
    deployed, held, status = _deployed(cfn, stack.stack_name)
    if status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS" or status == "ROLLBACK_COMPLETE":
        return None  # the deploy waits for it, or explains; an import now would fail
    todo = {lid: res for lid, res in wanted.items() if lid not in held}
    if not todo:
        return None
    found = {(i.region, i.control): i for i in importer.inherited(access, session) if i.action == "adopt"}
    imports: list[dict[str, Any]] = []
    named: list[str] = []
    order = list(IMPORT_IDENTIFIERS)
    for lid, res in sorted(todo.items(), key=lambda item: (order.index(item[1]["Type"]), item[0])):
        rtype = res["Type"]
        item = found.get((stack.region, _CONTROLS[rtype]))
        if item is None:
            continue  # nothing to adopt there: the normal update creates it
        imports.append(
            {
                "ResourceType": rtype,
                "LogicalResourceId": lid,
                "ResourceIdentifier": {IMPORT_IDENTIFIERS[rtype]: item.resource},
            }
        )
        named.append(f"{_WHAT[rtype]} {item.resource} as {lid} (inherited.{item.setting}: adopt)")
    if not imports:
        return None
    template = import_template(deployed, synthesized, {i["LogicalResourceId"] for i in imports})
    body = json.dumps(template, separators=(",", ":"))
    source: dict[str, str] = {"TemplateBody": body}
    if len(body.encode()) > MAX_TEMPLATE_BODY_BYTES:
        from scripts.deploy import TemplateStager  # the same staging as the deploy's own change sets

        source = {"TemplateURL": TemplateStager(access, session, stack.account).stage(stack, body)}
    extra: dict[str, Any] = {} if deployed else {"Tags": [{"Key": k, "Value": v} for k, v in stack.tags.items()]}
    created = cfn.create_change_set(
        StackName=stack.stack_name,
        ChangeSetName=f"vend-import-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}",
        ChangeSetType="IMPORT",
        ResourcesToImport=imports,
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        Description="vend deploy: import adopted resources",
        **source,
        **extra,
    )
    change_set_id, stack_id = created["Id"], created["StackId"]
    deadline = time.monotonic() + importer.timeout_s
    change_set = _poll(
        lambda: cfn.describe_change_set(ChangeSetName=change_set_id),
        lambda cs: cs["Status"] in ("CREATE_COMPLETE", "FAILED"),
        importer.poll_s,
        deadline,
    )
    if change_set["Status"] == "FAILED":
        with contextlib.suppress(ClientError, BotoCoreError):
            cfn.delete_change_set(ChangeSetName=change_set_id)
        raise ImportFailed(f"the IMPORT change set failed: {change_set.get('StatusReason') or 'no reason given'}")
    cfn.execute_change_set(ChangeSetName=change_set_id)
    final = _poll(
        lambda: cfn.describe_stacks(StackName=stack_id)["Stacks"][0],
        lambda s: not str(s["StackStatus"]).endswith("_IN_PROGRESS"),
        importer.poll_s,
        deadline,
    )
    if final["StackStatus"] != "IMPORT_COMPLETE":
        from scripts.deploy import first_failure

        raise ImportFailed(f"{final['StackStatus']}: {first_failure(cfn, stack_id, final)}")
    return f"{stack.stack_name}: imported {'; '.join(named)}"


def _poll(read: Callable[[], Any], done: Callable[[Any], bool], poll_s: float, deadline: float) -> Any:
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() >= deadline:
            raise ImportFailed("timed out waiting for CloudFormation")
        time.sleep(poll_s)
