"""``vend deploy --engine stacksets``: the baseline through CloudFormation StackSets.

Self-managed permissions: the stack sets live in the MSP account (the credentials vend
runs with), in one region (``--stacksets-region``); CloudFormation assumes the
administration role there, and from it each client account's execution role (both created
by vend: ``vend-msp-stacksets-admin`` and the onboarding template). The layout comes from
``vend synth`` (scripts/stackset_layout.py): one stack set per baseline template, one
group of instances per client and stack set, the client's values as parameter overrides.

A run, after the MSP side (deployed as in direct mode, scripts/deploy.py):

1. the global stack sets, then the regional ones (a regional stack needs its client's
   global stack): each stack set is created, or its template updated (one operation
   that StackSets fans out to every instance with the operation preferences), or left
   as it is;
2. per client and stack set: instances created in the regions that lack them, parameter
   overrides updated where they changed (known from the deploy ledger, else read with
   DescribeStackInstance), nothing where all is current;
3. every operation is waited for and its per-account, per-region results become the same
   records as direct mode's (``TargetResult`` / ``StackResult``), so the summary, JSON,
   Markdown and JUnit reports are the same.

A client whose stacks would move to another stack set (its engagement, profiles or budget
thresholds changed the template its stacks run) is refused unless ``--move-stacks``:
StackSets cannot move a stack, so its instances are deleted from the old stack set and
created in the new one, which re-creates the client's baseline resources. Instances of
accounts that are no longer in the portfolio are reported, never deleted.

Never imports aws_cdk.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from baseline.stacksets import EXECUTION_ROLE_NAME
from scripts.aws import AwsAccess
from scripts.deploy import THROTTLING_CODES, Cancel, StackResult, TargetResult
from scripts.ledger import Ledger, LedgerError, fingerprint
from scripts.stackset_layout import InstanceSpec, Layout

CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"]
MAX_TEMPLATE_BODY_BYTES = 51_200
LEDGER_SECTION = "stacksets"
DONE = ("SUCCEEDED", "FAILED", "STOPPED")
Phase = Literal["global", "regional"]


@dataclass(frozen=True)
class StackSetOptions:
    region: str
    admin_role_arn: str
    execution_role_name: str = EXECUTION_ROLE_NAME
    max_concurrent_percentage: int = 25
    failure_tolerance_percentage: int = 10
    region_order: tuple[str, ...] = ()
    region_concurrency: Literal["PARALLEL", "SEQUENTIAL"] = "PARALLEL"
    move_stacks: bool = False
    refresh: bool = False  # ignore the ledger: read every instance's overrides
    max_operations: int = 8  # operations vend keeps in flight at once
    poll_s: float = 5.0
    timeout_s: float = 3600.0

    def preferences(self) -> dict[str, Any]:
        prefs: dict[str, Any] = {
            "RegionConcurrencyType": self.region_concurrency,
            "MaxConcurrentPercentage": self.max_concurrent_percentage,
            "FailureTolerancePercentage": self.failure_tolerance_percentage,
        }
        if self.region_order:
            prefs["RegionOrder"] = list(self.region_order)
        return prefs


class StackSetsError(Exception):
    """The run cannot start (no admin access, a stack set in a bad state): nothing was changed."""


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def _error_text(err: Exception) -> str:
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', err)}"
    return str(err)


@dataclass
class _Op:
    """One StackSets operation vend started, and which (client, region) stacks it covers."""

    stack_set: str
    operation_id: str
    action: str  # created | updated | template
    stacks: list[tuple[str, str, str]]  # (client, region, direct stack name)
    started: float = field(default_factory=time.monotonic)
    status: str = "RUNNING"
    results: dict[tuple[str, str], tuple[str, str]] = field(default_factory=dict)  # (account, region) -> status


class StackSetsEngine:
    """One run over a layout; :meth:`run` returns a TargetResult per client."""

    def __init__(
        self,
        access: AwsAccess,
        layout: Layout,
        options: StackSetOptions,
        *,
        ledger: Ledger | None = None,
        cancel: Cancel | None = None,
        progress: Callable[[str], None] | None = None,
        preflight: Callable[[str], str | None] | None = None,
    ) -> None:
        self.access = access
        #: Runs for a client before its first instance in any region (inherited recorders,
        #: channels, detectors, trails: scripts/preflight.py); a message fails that client.
        self.preflight = preflight
        self._preflighted: dict[str, str | None] = {}
        self.layout = layout
        self.options = options
        self.ledger = ledger
        self.cancel = cancel or Cancel()
        self.say = progress or (lambda _msg: None)
        self.cfn = access.client(access.base_session(), "cloudformation", options.region)
        self.stacks: dict[tuple[str, str], StackResult] = {}  # (client, direct stack name) -> result
        self.notes: list[str] = []

    # ---- API calls that survive throttling

    def _call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        deadline = time.monotonic() + self.options.timeout_s
        while True:
            try:
                return fn(**kwargs)
            except ClientError as err:
                if _code(err) not in THROTTLING_CODES or time.monotonic() >= deadline:
                    raise
                if self.cancel.wait(self.options.poll_s):
                    raise

    def _pages(self, fn: Callable[..., Any], key: str, **kwargs: Any) -> Iterator[Any]:
        token: str | None = None
        while True:
            page = self._call(fn, **kwargs, **({"NextToken": token} if token else {}))
            yield from page.get(key) or []
            token = page.get("NextToken")
            if not token:
                return

    # ---- stack sets

    def _describe(self, name: str) -> dict[str, Any] | None:
        try:
            found = self._call(self.cfn.describe_stack_set, StackSetName=name)["StackSet"]
        except ClientError as err:
            if _code(err) == "StackSetNotFoundException":
                return None
            raise
        return None if found.get("Status") == "DELETED" else dict(found)

    def _template_source(self, name: str) -> dict[str, str]:
        body = self.layout.templates[name]
        if len(body.encode()) > MAX_TEMPLATE_BODY_BYTES:
            raise StackSetsError(
                f"stack set {name}: template of {len(body.encode()):,} bytes is over the {MAX_TEMPLATE_BODY_BYTES:,} "
                "bytes of an inline template body; deploy in direct mode"
            )
        return {"TemplateBody": body}

    def _placeholders(self, name: str) -> list[dict[str, str]]:
        """Stack-set level values: every instance overrides every one of them."""
        spec = self.layout.stack_sets[name]
        declared = json.loads(self.layout.templates[name]).get("Parameters") or {}
        return [
            {"ParameterKey": p, "ParameterValue": "0" if declared.get(p, {}).get("Type") == "Number" else "-"}
            for p in spec.parameters
        ]

    def _ensure_stack_set(self, name: str, selected_accounts: set[str]) -> _Op | None:
        """Create the stack set, or update its template; returns the update's operation."""
        current = self._describe(name)
        common: dict[str, Any] = {
            "StackSetName": name,
            "Capabilities": CAPABILITIES,
            "AdministrationRoleARN": self.options.admin_role_arn,
            "ExecutionRoleName": self.options.execution_role_name,
            "Parameters": self._placeholders(name),
            **self._template_source(name),
        }
        if current is None:
            self._call(
                self.cfn.create_stack_set,
                Description=f"vend baseline: {self.layout.stack_sets[name].kind} stacks (one template, many clients)",
                PermissionModel="SELF_MANAGED",
                ManagedExecution={"Active": True},
                Tags=[{"Key": "vend:managed-by", "Value": "vend"}],
                **common,
            )
            self.say(f"stack set {name}: created")
            return None
        if current.get("TemplateBody") == self.layout.templates[name]:
            return None
        # A new template: one operation that StackSets fans out to the instances. When only
        # some clients are deployed, only their instances get it (the others turn OUTDATED).
        existing = self._instances(name)
        accounts = {a for a, _ in existing}
        scope: dict[str, Any] = {}
        if not accounts <= selected_accounts:
            ours = {(a, r) for a, r in existing if a in selected_accounts}
            if not ours:
                return None  # the selected clients have no instance there yet: created below
            scope = {"Accounts": sorted({a for a, _ in ours}), "Regions": sorted({r for _, r in ours})}
        op_id = _operation_id()
        self._call(
            self.cfn.update_stack_set,
            OperationPreferences=self.options.preferences(),
            OperationId=op_id,
            **scope,
            **common,
        )
        covered = [
            (i.client, r, s)
            for i in self.layout.instances
            if i.stack_set == name and (not scope or i.account_id in scope["Accounts"])
            for r, s in zip(i.regions, i.direct_stacks, strict=True)
            if (i.account_id, r) in existing
        ]
        self.say(f"stack set {name}: template updated for {len(covered)} stack(s) (operation {op_id})")
        return _Op(name, op_id, "updated", covered)

    def _instances(self, name: str) -> dict[tuple[str, str], dict[str, Any]]:
        return {
            (str(s["Account"]), str(s["Region"])): dict(s)
            for s in self._pages(self.cfn.list_stack_instances, "Summaries", StackSetName=name)
        }

    def _overrides_current(
        self, inst: InstanceSpec, region: str, summary: Mapping[str, Any], *, any_status: bool = False
    ) -> bool:
        """Whether the instance runs ``inst``'s parameter values (and, unless ``any_status``,
        is CURRENT: an OUTDATED or INOPERABLE instance gets its values applied again)."""
        wanted = fingerprint(dict(inst.parameters))
        if summary.get("Status") != "CURRENT" and not any_status:
            return False
        entry = (
            None
            if self.options.refresh or self.ledger is None
            else self.ledger.get(LEDGER_SECTION, f"{inst.stack_set}/{inst.account_id}/{region}")
        )
        if entry is not None and summary.get("LastOperationId") == entry.get("operation"):
            return bool(entry.get("parameters") == wanted)
        described = self._call(
            self.cfn.describe_stack_instance,
            StackSetName=inst.stack_set,
            StackInstanceAccount=inst.account_id,
            StackInstanceRegion=region,
        )["StackInstance"]
        deployed = {p["ParameterKey"]: p.get("ParameterValue") for p in described.get("ParameterOverrides") or []}
        return deployed == dict(inst.parameters)

    # ---- the run

    def run(self, clients: Sequence[str]) -> list[TargetResult]:
        selected = set(clients)
        instances = [i for i in self.layout.instances if i.client in selected]
        failed_clients: dict[str, str] = {}
        for client, reason in self.layout.unsupported.items():
            if client in selected:
                failed_clients[client] = reason
        self._check_moves(instances, failed_clients)
        for phase in ("global", "regional"):
            if self.cancel.is_set():
                break
            mine = [
                i
                for i in instances
                if self.layout.stack_sets[i.stack_set].kind == phase and i.client not in failed_clients
            ]
            self._phase(mine, {i.account_id for i in instances}, failed_clients)
            for inst in mine:  # a client whose global stack failed gets no regional stack
                for stack in inst.direct_stacks:
                    result = self.stacks.get((inst.client, stack))
                    if result is not None and result.outcome == "FAILED":
                        failed_clients.setdefault(inst.client, f"{stack} failed: {result.detail}")
        return self._results(clients, instances, failed_clients)

    def _check_moves(self, instances: Sequence[InstanceSpec], failed: dict[str, str]) -> None:
        """Stacks of a selected client in a vend stack set the layout no longer puts them in."""
        wanted = {(i.account_id, r, self.layout.stack_sets[i.stack_set].kind): i for i in instances for r in i.regions}
        by_account_kind: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for name in self._vend_stack_sets():
            kind = "global" if name.startswith("vend-global-") else "regional"
            for account, region in self._instances(name):
                inst = wanted.get((account, region, kind))
                if inst is not None and inst.stack_set != name:
                    by_account_kind.setdefault((inst.client, name), []).append((account, region))
        for (client, old), targets in sorted(by_account_kind.items()):
            regions = sorted({r for _, r in targets})
            if not self.options.move_stacks:
                failed[client] = (
                    f"its stacks in {', '.join(regions)} move from stack set {old} to another (its engagement, "
                    "profiles or budget thresholds changed their template); StackSets cannot move a stack, so "
                    "vend would delete and re-create its baseline resources there: rerun with --move-stacks to "
                    "do that, or deploy this client in direct mode"
                )
                continue
            op_id = _operation_id()
            self._call(
                self.cfn.delete_stack_instances,
                StackSetName=old,
                Accounts=sorted({a for a, _ in targets}),
                Regions=regions,
                RetainStacks=False,
                OperationPreferences=self.options.preferences(),
                OperationId=op_id,
            )
            op = _Op(old, op_id, "moved", [])
            self._wait([op])
            if op.status != "SUCCEEDED":
                failed[client] = f"could not remove its stacks from stack set {old} (operation {op.status})"
            else:
                self.notes.append(f"{client}: stacks in {', '.join(regions)} removed from {old} (--move-stacks)")

    def _vend_stack_sets(self) -> list[str]:
        return [
            str(s["StackSetName"])
            for s in self._pages(self.cfn.list_stack_sets, "Summaries", Status="ACTIVE")
            if str(s.get("StackSetName", "")).startswith(("vend-global-", "vend-regional-"))
        ]

    def _phase(self, instances: Sequence[InstanceSpec], selected_accounts: set[str], failed: dict[str, str]) -> None:
        ops: list[_Op] = []
        names = sorted({i.stack_set for i in instances})
        for name in names:
            if self.cancel.is_set():
                break
            op = self._ensure_stack_set(name, selected_accounts)
            if op is not None:
                ops.append(op)
        updated = {(c, s) for op in ops for c, _, s in op.stacks}
        existing = {name: self._instances(name) for name in names}
        pending: list[tuple[InstanceSpec, str, list[str]]] = []  # (instance, action, regions)
        for inst in instances:
            have = existing.get(inst.stack_set, {})
            missing = [r for r in inst.regions if (inst.account_id, r) not in have]
            present = [r for r in inst.regions if (inst.account_id, r) in have]
            # An instance the template update covers is OUTDATED until that operation is done;
            # its parameter values still have to be compared (both changes may come at once).
            stale = [
                r
                for r, stack in zip(inst.regions, inst.direct_stacks, strict=True)
                if r in present
                and not self._overrides_current(
                    inst, r, have[(inst.account_id, r)], any_status=(inst.client, stack) in updated
                )
            ]
            for r, stack in zip(inst.regions, inst.direct_stacks, strict=True):
                if r in present and r not in stale and (inst.client, stack) not in updated:
                    self.stacks[(inst.client, stack)] = StackResult(
                        stack, inst.account_id, r, "UNCHANGED", f"stack set {inst.stack_set}: current", 0.0
                    )
            if missing:
                pending.append((inst, "created", missing))
            if stale:
                pending.append((inst, "updated", stale))
        pending = self._after_preflight(pending, failed)
        ops += self._start_instance_ops(pending)
        self._wait(ops)
        self._record(ops, instances)

    def _after_preflight(
        self, pending: list[tuple[InstanceSpec, str, list[str]]], failed: dict[str, str]
    ) -> list[tuple[InstanceSpec, str, list[str]]]:
        """The pending operations of clients whose preflight passed (it runs once per client
        that gets a new instance); the others' stacks FAILED with the preflight's message."""
        if self.preflight is None:
            return pending
        new = sorted({inst.client for inst, action, _ in pending if action == "created"} - set(self._preflighted))
        if new:
            with ThreadPoolExecutor(max_workers=max(1, self.options.max_operations)) as pool:
                for client, problem in zip(new, pool.map(self.preflight, new), strict=True):
                    self._preflighted[client] = problem
        kept = []
        for inst, action, regions in pending:
            problem = self._preflighted.get(inst.client)
            if problem is None:
                kept.append((inst, action, regions))
                continue
            failed.setdefault(inst.client, problem)
            for region, stack in zip(inst.regions, inst.direct_stacks, strict=True):
                if region in regions:
                    self.stacks[(inst.client, stack)] = StackResult(
                        stack, inst.account_id, region, "FAILED", problem, 0.0
                    )
        return kept

    def _start_instance_ops(self, pending: Sequence[tuple[InstanceSpec, str, list[str]]]) -> list[_Op]:
        """Operations for instances, at most ``max_operations`` running at once."""
        started: list[_Op] = []
        running: list[_Op] = []
        for inst, action, regions in pending:
            stacks = [
                (inst.client, r, s) for r, s in zip(inst.regions, inst.direct_stacks, strict=True) if r in regions
            ]
            if self.cancel.is_set():
                for client, region, stack in stacks:
                    self.stacks[(client, stack)] = StackResult(
                        stack, inst.account_id, region, "SKIPPED", f"not started: {self.cancel.reason}", 0.0
                    )
                continue
            while len(running) >= self.options.max_operations:
                self._wait(running, until_one=True)
                running = [op for op in running if op.status not in DONE]
            op_id = _operation_id()
            call = self.cfn.create_stack_instances if action == "created" else self.cfn.update_stack_instances
            overrides = [{"ParameterKey": k, "ParameterValue": v} for k, v in sorted(inst.parameters.items())]
            try:
                self._call(
                    call,
                    StackSetName=inst.stack_set,
                    Accounts=[inst.account_id],
                    Regions=regions,
                    ParameterOverrides=overrides,
                    OperationPreferences=self.options.preferences(),
                    OperationId=op_id,
                )
            except (ClientError, BotoCoreError) as err:
                for client, region, stack in stacks:
                    self.stacks[(client, stack)] = StackResult(
                        stack, inst.account_id, region, "FAILED", f"stack set {inst.stack_set}: {_error_text(err)}", 0.0
                    )
                continue
            op = _Op(inst.stack_set, op_id, action, stacks)
            started.append(op)
            running.append(op)
        return started

    def _wait(self, ops: Sequence[_Op], *, until_one: bool = False) -> None:
        """Poll operations until they are done (or one is, with ``until_one``)."""
        deadline = time.monotonic() + self.options.timeout_s
        while True:
            open_ops = [op for op in ops if op.status not in DONE]
            if not open_ops:
                return
            for op in open_ops:
                described = self._call(
                    self.cfn.describe_stack_set_operation, StackSetName=op.stack_set, OperationId=op.operation_id
                )["StackSetOperation"]
                op.status = str(described.get("Status", "RUNNING"))
                if op.status in DONE:
                    op.results = {
                        (str(r["Account"]), str(r["Region"])): (str(r.get("Status")), str(r.get("StatusReason") or ""))
                        for r in self._pages(
                            self.cfn.list_stack_set_operation_results,
                            "Summaries",
                            StackSetName=op.stack_set,
                            OperationId=op.operation_id,
                        )
                    }
                    if until_one:
                        return
            if self.cancel.is_set() or time.monotonic() >= deadline:
                why = f"interrupted ({self.cancel.reason})" if self.cancel.is_set() else "timed out"
                for op in ops:
                    if op.status not in DONE:
                        op.status = "IN_FLIGHT"
                        op.results = {}
                        self.notes.append(f"{op.stack_set} operation {op.operation_id}: {why}, StackSets finishes it")
                return
            self.cancel.wait(self.options.poll_s)

    def _record(self, ops: Sequence[_Op], instances: Sequence[InstanceSpec]) -> None:
        by_client = {(i.client, i.stack_set): i for i in instances}
        for op in ops:
            for client, region, stack in op.stacks:
                inst = by_client[(client, op.stack_set)]
                status, reason = op.results.get((inst.account_id, region), ("", ""))
                where = f"stack set {op.stack_set} (operation {op.operation_id})"
                if op.status == "IN_FLIGHT":
                    result = StackResult(
                        stack, inst.account_id, region, "IN_FLIGHT", f"{where}: still running; StackSets finishes it", 0
                    )
                elif status == "SUCCEEDED":
                    outcome: Literal["CREATED", "UPDATED"] = "CREATED" if op.action == "created" else "UPDATED"
                    result = StackResult(
                        stack, inst.account_id, region, outcome, f"{where}: {op.action}", time.monotonic() - op.started
                    )
                    if self.ledger is not None:
                        self.ledger.record(
                            LEDGER_SECTION,
                            f"{inst.stack_set}/{inst.account_id}/{region}",
                            {"parameters": fingerprint(dict(inst.parameters)), "operation": op.operation_id},
                        )
                else:
                    detail = reason or f"the operation ended {op.status} before reaching this stack"
                    result = StackResult(stack, inst.account_id, region, "FAILED", f"{where}: {detail}", 0.0)
                self.stacks[(client, stack)] = result

    def _results(
        self, clients: Sequence[str], instances: Sequence[InstanceSpec], failed: Mapping[str, str]
    ) -> list[TargetResult]:
        out: list[TargetResult] = []
        accounts = {i.client: i.account_id for i in instances}
        for client in clients:
            mine = [i for i in instances if i.client == client]
            order = sorted(mine, key=lambda i: self.layout.stack_sets[i.stack_set].kind != "global")
            stacks: list[StackResult] = []
            for inst in order:
                for region, stack in zip(inst.regions, inst.direct_stacks, strict=True):
                    result = self.stacks.get((client, stack))
                    if result is None:
                        why = failed.get(client, f"not started: {self.cancel.reason}" if self.cancel.is_set() else "")
                        outcome: Literal["FAILED", "SKIPPED"] = "FAILED" if client in failed else "SKIPPED"
                        result = StackResult(stack, inst.account_id, region, outcome, why or "not attempted", 0.0)
                    stacks.append(result)
            out.append(_client_result(client, accounts.get(client, ""), stacks, failed.get(client)))
        return out


def _client_result(client: str, account: str, stacks: Sequence[StackResult], failure: str | None) -> TargetResult:
    bad = next((s for s in stacks if s.outcome == "FAILED"), None)
    if failure is not None or bad is not None:
        detail = failure if failure is not None else f"{bad.stack_name} ({bad.region}): {bad.detail}"  # type: ignore[union-attr]
        return TargetResult(client, account, "FAILED", detail, tuple(stacks))
    if any(s.outcome == "IN_FLIGHT" for s in stacks):
        return TargetResult(client, account, "IN_FLIGHT", "a StackSets operation is still running", tuple(stacks))
    if stacks and all(s.outcome == "SKIPPED" for s in stacks):
        return TargetResult(client, account, "SKIPPED", stacks[0].detail, tuple(stacks))
    counts: dict[str, int] = {}
    for s in stacks:
        counts[s.outcome.lower()] = counts.get(s.outcome.lower(), 0) + 1
    summary = ", ".join(f"{n} {o}" for o, n in counts.items())
    return TargetResult(client, account, "OK", f"{len(stacks)} stacks via StackSets: {summary}", tuple(stacks))


def _operation_id() -> str:
    return f"vend-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:12]}"


def save_ledger(ledger: Ledger | None) -> str | None:
    """Write the run's ledger entries; a message when that failed (the run itself did not)."""
    if ledger is None:
        return None
    try:
        ledger.save()
    except LedgerError as err:
        return f"the deploy ledger was not updated ({err}); the next run checks every instance"
    return None
