"""Preflight before a client's deploy: resources the account had before vend.

AWS allows one Config recorder and one delivery channel per account and region, and one
GuardDuty detector; a deploy next to an existing one fails halfway with
``MaxNumberOfConfigurationRecordersExceededException`` or "a detector already exists".
The preflight finds them first (and the account's own trails), in the client's account
with the deploy role, and does what the client's override says, per control::

    inherited:
      config_recorder: adopt            # keep it: imported into the stack (scripts/resource_import.py)
      config_delivery_channel: adopt
      guardduty_detector: replace       # delete it now; the stack creates vend's
      cloudtrail: adopt                 # keep the account's trail (outside the stack); drift checks it

Unset, the client's deploy stops before any stack changes, with a message naming the
setting. ``replace`` deletes only what the override names, so the consent is in the
reviewed override file. Resources the client's own stacks created (or imported) are never
"inherited". Trails are found account-wide (:func:`account_trails`).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from baseline.spec import ClientBaseline
from scripts.aws import AwsAccess
from scripts.stack_signals import stack_region, stacks_of, stackset_stacks

#: control -> (override setting, what it is called in messages)
SETTINGS = {
    "config-recorder": ("config_recorder", "Config recorder"),
    "config-delivery": ("config_delivery_channel", "Config delivery channel"),
    "guardduty": ("guardduty_detector", "GuardDuty detector"),
    "cloudtrail": ("cloudtrail", "CloudTrail trail"),
}
_OWN_TYPES = {
    "AWS::Config::ConfigurationRecorder",
    "AWS::Config::DeliveryChannel",
    "AWS::GuardDuty::Detector",
    "AWS::CloudTrail::Trail",
}


@dataclass(frozen=True)
class Inherited:
    """One resource the account already had."""

    region: str
    control: str
    resource: str  # name, detector id or trail ARN
    state: str  # e.g. "recording", "ENABLED", "logging"
    action: str | None  # the override's setting: adopt, replace, or None (stop)

    @property
    def setting(self) -> str:
        return SETTINGS[self.control][0]

    def describe(self) -> str:
        return f"{SETTINGS[self.control][1]} {self.resource} in {self.region} ({self.state})"


@dataclass
class Preflight:
    client: str
    found: list[Inherited] = field(default_factory=list)
    done: list[str] = field(default_factory=list)  # what `replace` deleted
    problem: str | None = None  # why the deploy must stop

    @property
    def ok(self) -> bool:
        return self.problem is None


def owned_resources(access: AwsAccess, session: Any, baseline: ClientBaseline) -> set[str]:
    """Physical ids of the recorders, channels, detectors and trails the client's stacks own."""
    owned: set[str] = set()
    looked: set[str] = set()  # regions searched for StackSets instances
    for stack_name, region in stacks_of(baseline):
        where = stack_region(baseline, region)
        cfn = access.client(session, "cloudformation", where)
        try:
            owned |= _own_resources(cfn, stack_name)
        except ClientError as exc:
            if "does not exist" not in str(exc):
                raise
            # Not deployed directly: maybe through StackSets (``vend deploy --engine stacksets``).
            if where not in looked:
                looked.add(where)
                for stack in stackset_stacks(cfn, baseline.client.client):
                    owned |= _own_resources(cfn, str(stack["StackId"]))
    return owned


def _own_resources(cfn: Any, stack: str) -> set[str]:
    owned: set[str] = set()
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack):
        owned.update(
            r.get("PhysicalResourceId", "")
            for r in page.get("StackResourceSummaries", [])
            if r.get("ResourceType") in _OWN_TYPES and not r.get("ResourceStatus", "").startswith("DELETE")
        )
    return owned


def account_trails(
    access: AwsAccess, session: Any, home_region: str, regions: Sequence[str]
) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """Every trail that records in the account's regions, once each: (trail, its status).

    A multi-region trail is homed in one region, maybe one the client does not use; in any
    other region ``DescribeTrails`` with shadow trails lists it too, so the home region's call
    finds every multi-region trail of the account. Single-region trails are looked for in each
    of the client's regions. Deduplicated by ARN; the status is read in the trail's home region."""
    found: dict[str, dict[str, Any]] = {}
    for region, shadows in [(home_region, True), *((r, False) for r in regions if r != home_region)]:
        ct = access.client(session, "cloudtrail", region)
        for trail in ct.describe_trails(includeShadowTrails=shadows).get("trailList", []):
            arn = str(trail.get("TrailARN") or trail.get("Name", ""))
            if arn and arn not in found:
                found[arn] = {**trail, "HomeRegion": trail.get("HomeRegion") or _arn_region(arn) or region}
    out = []
    for arn, trail in found.items():
        status = access.client(session, "cloudtrail", trail["HomeRegion"]).get_trail_status(Name=arn)
        out.append((trail, dict(status)))
    return out


def _arn_region(arn: str) -> str | None:
    parts = arn.split(":")
    return parts[3] if len(parts) > 5 and parts[3] else None


def find_inherited(access: AwsAccess, session: Any, baseline: ClientBaseline) -> list[Inherited]:
    """Every recorder, delivery channel, detector and trail the client's stacks did not create."""
    c = baseline.client
    inherited = c.inherited
    owned = owned_resources(access, session, baseline)
    found: list[Inherited] = []
    trails: dict[str, Inherited] = {}
    for region in c.regions:
        cfg = access.client(session, "config", region)
        statuses = {
            s["name"]: s for s in cfg.describe_configuration_recorder_status().get("ConfigurationRecordersStatus", [])
        }
        for rec in cfg.describe_configuration_recorders().get("ConfigurationRecorders", []):
            if rec["name"] not in owned:
                state = "recording" if statuses.get(rec["name"], {}).get("recording") else "not recording"
                found.append(
                    Inherited(
                        region, "config-recorder", rec["name"], state, inherited.action("config_recorder", region)
                    )
                )
        for ch in cfg.describe_delivery_channels().get("DeliveryChannels", []):
            if ch["name"] not in owned:
                state = f"to s3://{ch.get('s3BucketName', '?')}"
                found.append(
                    Inherited(
                        region,
                        "config-delivery",
                        ch["name"],
                        state,
                        inherited.action("config_delivery_channel", region),
                    )
                )
        gd = access.client(session, "guardduty", region)
        for detector_id in gd.list_detectors().get("DetectorIds", []):
            if detector_id not in owned:
                status = gd.get_detector(DetectorId=detector_id).get("Status", "?")
                found.append(
                    Inherited(region, "guardduty", detector_id, status, inherited.action("guardduty_detector", region))
                )
    # Account-wide: a multi-region trail homed in a region the client does not use counts too.
    for trail, status in account_trails(access, session, c.home_region, c.regions):
        arn = str(trail.get("TrailARN", trail.get("Name", "")))
        if trail.get("Name") in owned or arn in owned:
            continue
        scope = "multi-region" if trail.get("IsMultiRegionTrail") else "single-region"
        state = f"{scope}, {'logging' if status.get('IsLogging') else 'not logging'}"
        trails[arn] = Inherited(trail["HomeRegion"], "cloudtrail", arn, state, inherited.cloudtrail)
    return found + list(trails.values())


def _stop_message(baseline: ClientBaseline, blocked: Iterable[Inherited]) -> str:
    c = baseline.client
    items = list(blocked)
    regions: dict[str, list[str]] = {}
    for i in items:
        regions.setdefault(i.setting, [])
        if i.region not in regions[i.setting]:
            regions[i.setting].append(i.region)
    example = ", ".join(
        f"{s}: adopt" if s == "cloudtrail" else f"{s}: {{{', '.join(f'{r}: adopt' for r in rs)}}}"
        for s, rs in sorted(regions.items())
    )
    return (
        f"the account already has {'; '.join(i.describe() for i in items)}. "
        f"AWS allows one recorder, one delivery channel and one detector per region, so vend stops here. "
        f"Set `inherited: {{{example}}}` in {c.source_file or f'overrides/{c.client}.yaml'} to keep them "
        f"(drift then checks them against the baseline), or `replace` to delete them and deploy vend's own "
        f"(explicit consent); nothing was changed"
    )


def _replace(access: AwsAccess, session: Any, items: list[Inherited]) -> list[str]:
    """Delete what the override says to replace, in an order AWS accepts."""
    done: list[str] = []
    by_region: dict[str, list[Inherited]] = {}
    for i in items:
        by_region.setdefault(i.region, []).append(i)
    for region, todo in by_region.items():
        cfg = access.client(session, "config", region)
        recorders = [i for i in todo if i.control == "config-recorder"]
        channels = [i for i in todo if i.control == "config-delivery"]
        replaced = {i.resource for i in recorders}
        for rec in cfg.describe_configuration_recorders().get("ConfigurationRecorders", []):
            if rec["name"] in replaced or channels:
                # Config refuses to delete the last channel while a recorder records.
                cfg.stop_configuration_recorder(ConfigurationRecorderName=rec["name"])
                if rec["name"] not in replaced:
                    done.append(
                        f"stopped recorder {rec['name']} in {region} to replace the channel "
                        "(`vend drift --remediate` starts it again once vend's channel exists)"
                    )
        for ch in channels:
            cfg.delete_delivery_channel(DeliveryChannelName=ch.resource)
            done.append(f"deleted {ch.describe()}")
        for rec in recorders:
            cfg.delete_configuration_recorder(ConfigurationRecorderName=rec.resource)
            done.append(f"deleted {rec.describe()}")
        for det in (i for i in todo if i.control == "guardduty"):
            access.client(session, "guardduty", region).delete_detector(DetectorId=det.resource)
            done.append(f"deleted {det.describe()}")
        for trail in (i for i in todo if i.control == "cloudtrail"):
            # By name, in the trail's home region (the emulator does not take the ARN here).
            access.client(session, "cloudtrail", region).delete_trail(Name=trail.resource.rsplit("/", 1)[-1])
            done.append(f"deleted {trail.describe()}")
    return done


def preflight(access: AwsAccess, session: Any, baseline: ClientBaseline, *, apply: bool = True) -> Preflight:
    """Find inherited resources and act on the override's settings (``apply=False``: only look)."""
    result = Preflight(baseline.client.client)
    try:
        result.found = find_inherited(access, session, baseline)
        blocked = [i for i in result.found if i.action is None]
        if blocked:
            result.problem = _stop_message(baseline, blocked)
            return result
        if apply:
            result.done = _replace(access, session, [i for i in result.found if i.action == "replace"])
    except (ClientError, BotoCoreError) as exc:
        err = exc.response.get("Error", {}) if isinstance(exc, ClientError) else {}
        text = f"{err.get('Code')}: {err.get('Message')}" if err else f"{type(exc).__name__}: {exc}"
        result.problem = f"preflight could not check the account for inherited resources: {text}"
    return result


def deploy_hook(baseline: ClientBaseline, importer: Any = None) -> Any:
    """The callable a deploy target runs with its session before its stacks (None = go on).
    ``importer`` (:class:`scripts.resource_import.Importer`) is told what was found: the
    identifiers of the resources the client adopts."""

    def hook(access: AwsAccess, session: Any) -> str | None:
        result = preflight(access, session, baseline)
        if importer is not None and result.ok:
            importer.remember(result.found)
        for line in result.done:
            print(f"preflight {baseline.client.client}: {line}", file=sys.stderr, flush=True)
        if not result.ok:
            return f"preflight: {result.problem}"
        return None

    return hook
