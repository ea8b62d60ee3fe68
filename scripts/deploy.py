"""Deploy synthesized stacks into many accounts with change sets.

Library core of ``vend deploy``: the CLI and the reports call these functions and
render the result records; nothing here prints or exits.

The order is explicit (``ORDER``): the MSP side first (clients' trails and Config
deliver into its bucket and key), then each client: its global stack, then its
regional stacks (they depend on the global one and run in parallel, one per region).
Clients run with bounded concurrency; a canary group can go first; scheduling stops
after ``max_failures`` failures or on an interrupt. See :class:`Rollout`.

Rules that come from real-world failures (see DESIGN.md):
- Unchanged stacks (template, tags and parameters as deployed) are detected up front
  and never get a change set; an empty change set is success, and is deleted.
- ROLLBACK_COMPLETE is reported with the first failure reason; the stack is deleted
  and recreated only when the operator asked for it (``recreate_failed``).
  UPDATE_ROLLBACK_FAILED gets continue-update-rollback, never a deletion. A stack with
  an operation in progress is waited for, up to the stack timeout.
- Throttling is retried (adaptive retries on every client, plus polls that shrug off
  throttling), so a throttled poll is never a failed deploy.
- One client's failure (unassumable role, failed stack) never stops others; only a
  failure of the MSP-side stacks stops the client deploys.
- An interrupt starts nothing new; an operation CloudFormation is already running is
  reported IN_FLIGHT (CloudFormation finishes it); a change set not yet executed is deleted.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from scripts.assembly import TEMPLATE_HASH_OUTPUT, AssemblyError, StackArtifact, deployed_hash, deployment_order
from scripts.aws import AssumeRoleError, AwsAccess, SessionOnDemand, ensure_private_bucket, vend_bucket_name
from scripts.ledger import Ledger, fingerprint
from scripts.stack_protection import (
    Override,
    ProtectionError,
    ProtectionOptions,
    protect_stack,
    review_change_set,
    wanted_protection,
)

Outcome = Literal["CREATED", "UPDATED", "UNCHANGED", "FAILED", "SKIPPED", "IN_FLIGHT"]
TargetOutcome = Literal["OK", "FAILED", "SKIPPED", "IN_FLIGHT", "INTERRUPTED"]
PlanAction = Literal["create", "update", "unchanged", "recreate", "continue-rollback", "wait", "blocked"]

ORDER = (
    "1. MSP side (vend-msp-log-archive): alone, first; if it fails no client is deployed",
    "2. clients, N at a time (--concurrency), canary group first (--canary)",
    "2a. per client: its global stack (home region), then",
    "2b. its regional stacks, in parallel (each depends on the global stack)",
)
MAX_TEMPLATE_BODY_BYTES = 51_200  # CloudFormation's limit for an inline TemplateBody
MAX_TEMPLATE_URL_BYTES = 1_000_000  # ... and for a template in S3 (TemplateURL)
CAPABILITIES = ("CAPABILITY_IAM", "CAPABILITY_NAMED_IAM")
NO_CHANGES_MARKERS = ("didn't contain changes", "No updates are to be performed")
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "SlowDown",
    }
)
# Stack states from which a change set can be created and executed.
UPDATABLE = frozenset(
    {
        "CREATE_COMPLETE",
        "UPDATE_COMPLETE",
        "UPDATE_ROLLBACK_COMPLETE",
        "IMPORT_COMPLETE",
        "IMPORT_ROLLBACK_COMPLETE",
    }
)
DONE_OUTCOMES = frozenset({"CREATED", "UPDATED", "UNCHANGED"})
RECREATE_HINT = "rerun with --recreate-failed to delete and recreate it (vend never deletes a stack without it)"
# Stuck states: each needs an operator's decision, so the driver only explains.
STUCK_ADVICE = {
    "ROLLBACK_COMPLETE": (
        "stack is in ROLLBACK_COMPLETE (its creation failed and was rolled back); it cannot be "
        "updated and must be deleted and recreated; vend never deletes a stack automatically: "
        f"inspect it, then {RECREATE_HINT}"
    ),
    "UPDATE_ROLLBACK_FAILED": (
        "stack is in UPDATE_ROLLBACK_FAILED and needs continue-update-rollback: fix the resource "
        "that blocked the rollback (or skip it with `aws cloudformation continue-update-rollback "
        "--resources-to-skip`), then deploy again; vend never deletes a baseline stack"
    ),
    "IMPORT_ROLLBACK_FAILED": (
        "stack is in IMPORT_ROLLBACK_FAILED and needs continue-update-rollback before it can be deployed again"
    ),
    "ROLLBACK_FAILED": (
        "stack is in ROLLBACK_FAILED: its creation failed and the rollback failed too; clean up "
        "the remaining resources and delete the stack (with the operator's consent)"
    ),
    "DELETE_FAILED": (
        "stack is in DELETE_FAILED: someone tried to delete it; finish or abandon the deletion before deploying"
    ),
}


@dataclass(frozen=True)
class StackResult:
    """What happened to one stack; ``detail`` is meant for humans and reports.

    ``actions`` lists what the driver did besides the change set (continued a rollback,
    deleted a failed stack); ``status`` is the stack's last seen CloudFormation status.
    """

    stack_name: str
    account: str
    region: str
    outcome: Outcome
    detail: str
    seconds: float
    actions: tuple[str, ...] = ()
    status: str = ""


@dataclass(frozen=True)
class Target:
    """One deployment unit: the MSP side, or one client (all its stacks, one role)."""

    name: str
    role_arn: str | None
    external_id: str | None
    stacks: tuple[StackArtifact, ...]
    #: Runs with the target's session before any stack (issue 6: inherited resources,
    #: ``scripts/preflight.py``); a message stops this target, FAILED, with nothing changed.
    preflight: Callable[[AwsAccess, Any], str | None] | None = field(default=None, compare=False, repr=False)
    #: Runs before each stack's deploy with the session and the stack's CloudFormation client
    #: (issue 6: imports the resources the client adopts, ``scripts/resource_import.py``); a
    #: message fails the stack, with nothing else done to it.
    before_stack: Callable[[AwsAccess, Any, Any, StackArtifact], str | None] | None = field(
        default=None, compare=False, repr=False
    )


@dataclass(frozen=True)
class TargetResult:
    """What happened to one target; ``stacks`` has one record per stack, in deploy order."""

    name: str
    account: str
    outcome: TargetOutcome
    detail: str
    stacks: tuple[StackResult, ...]
    seconds: float = 0.0


class Cancel:
    """A stop signal shared by every worker: set once, with the reason reports show."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True (at once) when the run is being stopped."""
        return self._event.wait(seconds)


_NEVER = Cancel()


@dataclass(frozen=True)
class StackOptions:
    """How one stack is deployed."""

    timeout_s: float = 1800.0  # per stack: waits for busy stacks, change sets, execution
    poll_s: float = 2.0
    recreate_failed: bool = False  # delete and recreate ROLLBACK_COMPLETE stacks
    only_changed: bool = True  # skip stacks whose template, tags and parameters are deployed
    protection: ProtectionOptions = ProtectionOptions()  # scripts/stack_protection.py
    #: What the last runs deployed (scripts/ledger.py): a client whose stacks are all as
    #: recorded costs two calls (AssumeRole, DescribeStacks of its global stack).
    ledger: Ledger | None = field(default=None, compare=False, repr=False)
    refresh: bool = False  # ignore the ledger: check every stack live


class _Done(Exception):
    """Ends a stack deploy early with a final outcome (not an error of the driver)."""

    def __init__(self, outcome: Outcome, detail: str, status: str = "") -> None:
        super().__init__(detail)
        self.outcome: Outcome = outcome
        self.detail = detail
        self.status = status


# --------------------------------------------------------------------------- templates in S3


class TemplateStager:
    """Puts templates over the inline limit into S3 so CloudFormation can read them.

    They go to vend's own bucket of the account and region (``vend_bucket_name``, made on
    first use, private and encrypted) under ``templates/<stack>/<sha256>.json``, by the same
    role that deploys; a re-run uploads the same key again. Only the MSP side needs this: its
    policies name every client.
    """

    def __init__(self, access: AwsAccess, session: Any, account: str) -> None:
        self._access = access
        self._session = session
        self._account = account
        self._ready: set[str] = set()
        self._lock = threading.Lock()

    def bucket(self, region: str) -> str:
        return vend_bucket_name(self._account, region)

    def stage(self, stack: StackArtifact, body: str) -> str:
        region = stack.region
        s3 = self._access.client(self._session, "s3", region)
        bucket = self.bucket(region)
        with self._lock:
            if region not in self._ready:
                ensure_private_bucket(s3, bucket, region, self._account)
                self._ready.add(region)
        key = f"templates/{stack.stack_name}/{hashlib.sha256(body.encode()).hexdigest()}.json"
        s3.put_object(Bucket=bucket, Key=key, Body=body.encode(), ExpectedBucketOwner=self._account)
        return f"https://{bucket}.s3.{region}.amazonaws.com/{key}"


# --------------------------------------------------------------------------- one stack


def deploy_stack(
    cfn: Any,
    stack: StackArtifact,
    *,
    timeout_s: float = 1800,
    poll_s: float = 2.0,
    recreate_failed: bool = False,
    only_changed: bool = True,
    cancel: Cancel | None = None,
    stager: TemplateStager | None = None,
    protection: ProtectionOptions | None = None,
) -> StackResult:
    """Bring one stack to its synthesized template with a change set; never raises.

    ``cfn`` is a CloudFormation client for the stack's account and region. Every
    AWS error ends up as a FAILED result with the error code and message, so a
    caller deploying hundreds of stacks can report rather than crash.
    """
    start = time.monotonic()
    run = _StackRun(
        cfn,
        stack,
        deadline=start + timeout_s,
        poll_s=poll_s,
        recreate_failed=recreate_failed,
        only_changed=only_changed,
        cancel=cancel or _NEVER,
        stager=stager,
        protection=protection,
    )
    status = ""
    try:
        outcome, detail = run.deploy()
        status = run.status
    except _Done as done:
        outcome, detail, status = done.outcome, done.detail, done.status or run.status
    except ClientError as err:
        outcome, detail, status = "FAILED", _client_error_text(err), run.status
    except AssumeRoleError as err:
        outcome, detail = "FAILED", str(err)
    except BotoCoreError as err:
        outcome, detail = "FAILED", f"{type(err).__name__}: {err}"
    except Exception as err:  # a per-stack bug must not take down a fleet-wide run
        outcome, detail = "FAILED", f"unexpected error: {type(err).__name__}: {err}"
    return StackResult(
        stack_name=stack.stack_name,
        account=stack.account,
        region=stack.region,
        outcome=outcome,
        detail=detail,
        seconds=round(time.monotonic() - start, 3),
        actions=tuple(run.actions),
        status=status,
    )


class _StackRun:
    """The steps of one stack deploy, sharing its deadline, cancel signal and notes."""

    def __init__(
        self,
        cfn: Any,
        stack: StackArtifact,
        *,
        deadline: float,
        poll_s: float,
        recreate_failed: bool,
        only_changed: bool,
        cancel: Cancel,
        stager: TemplateStager | None,
        protection: ProtectionOptions | None = None,
    ) -> None:
        self.cfn = cfn
        self.stack = stack
        self.deadline = deadline
        self.poll_s = poll_s
        self.recreate_failed = recreate_failed
        self.only_changed = only_changed
        self.cancel = cancel
        self.stager = stager
        self.protection = protection or ProtectionOptions()
        self.actions: list[str] = []
        self.status = ""
        self.started = False  # vend started an operation (execute, delete, continue-rollback)

    # ---- the flow

    def deploy(self) -> tuple[Outcome, str]:
        self._not_started_if_cancelled()
        template, body = _template(self.stack)
        self._check_size(body)
        name = self.stack.stack_name
        current = self._describe(name)
        if current is not None and _in_progress(current["StackStatus"]):
            current = self._wait_settled(name, busy=True)
        recreated = ""
        if current is not None:
            status = current["StackStatus"]
            if status == "ROLLBACK_COMPLETE":
                recreated = self._recreate_or_fail(current)
                current = None
            elif status == "UPDATE_ROLLBACK_FAILED":
                current = self._continue_rollback(current)
        change_set_type = "UPDATE"
        if current is None or current["StackStatus"] == "REVIEW_IN_PROGRESS":
            # REVIEW_IN_PROGRESS: an earlier CREATE change set was never executed.
            change_set_type = "CREATE"
        else:
            status = current["StackStatus"]
            if status in STUCK_ADVICE:
                raise _Done("FAILED", STUCK_ADVICE[status], status)
            if status not in UPDATABLE:
                raise _Done("FAILED", f"stack is in {status}; resolve that in CloudFormation first", status)
            if (
                self.only_changed
                and _tags_of(current) == dict(self.stack.tags)
                and _same_parameters(current, template)
                and self._same_template(name, template)
            ):
                self._protect(template, current, deployed=False)
                return "UNCHANGED", self._with_actions("template, tags and parameters already deployed")

        self._not_started_if_cancelled()
        source = self._template_source(body)
        created = self.cfn.create_change_set(
            StackName=name,
            ChangeSetName=f"vend-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}",
            ChangeSetType=change_set_type,
            Capabilities=list(CAPABILITIES),
            Tags=[{"Key": k, "Value": v} for k, v in self.stack.tags.items()],
            Description="vend deploy",
            **source,
        )
        change_set_id, stack_id = created["Id"], created["StackId"]

        change_set = self._wait_change_set(change_set_id)
        if change_set["Status"] == "FAILED":
            reason = str(change_set.get("StatusReason", ""))
            _delete_change_set(self.cfn, change_set_id)
            if any(marker in reason for marker in NO_CHANGES_MARKERS):
                if current is not None:
                    self._protect(template, current, deployed=False)
                return "UNCHANGED", self._with_actions("no changes (empty change set deleted)")
            raise _Done("FAILED", f"change set failed: {reason or 'no reason given'}")
        execution = change_set.get("ExecutionStatus", "AVAILABLE")
        if execution != "AVAILABLE":
            raise _Done("FAILED", f"change set cannot be executed (ExecutionStatus {execution})")
        override = self._review(change_set, change_set_id) if change_set_type == "UPDATE" else None
        if self.cancel.is_set():
            _delete_change_set(self.cfn, change_set_id)
            raise _Done("SKIPPED", f"not executed: {self.cancel.reason} (its change set was deleted)")

        if override is None:
            self.cfn.execute_change_set(ChangeSetName=change_set_id)
        else:
            self._update_with_override(change_set_id, source, override)
        self.status = f"{change_set_type}_IN_PROGRESS"
        self.started = True
        final = self._wait_settled(stack_id, busy=False, in_flight_on_cancel=True)
        if final is None:
            raise _Done("FAILED", "stack disappeared while deploying")
        status = final["StackStatus"]
        if status in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
            self._protect(template, final, deployed=True)
        if status == "CREATE_COMPLETE":
            return "CREATED", self._with_actions(f"recreated ({recreated})" if recreated else "created")
        if status == "UPDATE_COMPLETE":
            return "UPDATED", self._with_actions("updated")
        detail = f"{status}: {self._first_failure(stack_id, final)}"
        if status in STUCK_ADVICE:
            detail += f"; {STUCK_ADVICE[status]}"
        raise _Done("FAILED", detail, status)

    def _with_actions(self, detail: str) -> str:
        notes = [a for a in self.actions if not a.startswith("deleted ")]
        return "; ".join([*notes, detail])

    def _not_started_if_cancelled(self) -> None:
        if self.cancel.is_set():
            raise _Done("SKIPPED", f"not started: {self.cancel.reason}")

    def _check_size(self, body: str) -> None:
        """Fail before touching CloudFormation when the template cannot be sent at all."""
        size = len(body.encode("utf-8"))
        if size > MAX_TEMPLATE_URL_BYTES or (size > MAX_TEMPLATE_BODY_BYTES and self.stager is None):
            limit = MAX_TEMPLATE_URL_BYTES if self.stager else MAX_TEMPLATE_BODY_BYTES
            where = "for a template in S3" if self.stager else "for an inline template body (and no S3 stager given)"
            raise _Done(
                "FAILED",
                f"template is {size:,} bytes, over CloudFormation's {limit:,}-byte limit {where}: split the stack",
            )

    def _template_source(self, body: str) -> dict[str, str]:
        size = len(body.encode("utf-8"))
        if size <= MAX_TEMPLATE_BODY_BYTES or self.stager is None:
            return {"TemplateBody": body}
        url = self.stager.stage(self.stack, body)
        self.actions.append(f"template ({size:,} bytes) staged in S3")
        return {"TemplateURL": url}

    # ---- protection (scripts/stack_protection.py)

    def _protect(self, template: Any, current: Mapping[str, Any], *, deployed: bool) -> None:
        """Termination protection and stack policy after a deploy; for an unchanged stack
        only when DescribeStacks shows termination protection missing (or --verify-protection)."""
        name, options = self.stack.stack_name, self.protection
        try:
            wanted = wanted_protection(self.stack.termination_protection, template)
            notes = protect_stack(self.cfn, name, wanted, current, deployed=deployed, options=options, call=self._call)
        except (ProtectionError, ClientError) as err:
            why = _client_error_text(err) if isinstance(err, ClientError) else str(err)
            done = "deployed, but its" if deployed else "unchanged, but its missing"
            detail = f"{done} protection could not be applied: {why}; retry with vend deploy --verify-protection"
            raise _Done("FAILED", detail, current["StackStatus"]) from err
        self.actions.extend(notes)

    def _review(self, change_set: Mapping[str, Any], change_set_id: str) -> Override | None:
        """Refuse a change set that replaces or deletes what the stack policy protects, unless
        the operator allowed exactly that (then: the override for UpdateStack)."""
        try:
            return review_change_set(
                self.cfn, self.stack.stack_name, change_set, options=self.protection, call=self._call
            )
        except ProtectionError as err:
            _delete_change_set(self.cfn, change_set_id)
            raise _Done("FAILED", str(err)) from err

    def _update_with_override(self, change_set_id: str, source: Mapping[str, str], override: Override) -> None:
        """ExecuteChangeSet takes no stack policy override: the reviewed template goes through
        UpdateStack with it, for this update only; the stack keeps its own policy."""
        _delete_change_set(self.cfn, change_set_id)
        self.cfn.update_stack(
            StackName=self.stack.stack_name,
            Capabilities=list(CAPABILITIES),
            Tags=[{"Key": k, "Value": v} for k, v in self.stack.tags.items()],
            StackPolicyDuringUpdateBody=override.body,
            **source,
        )
        self.actions.append(override.describe())

    # ---- stuck stacks

    def _recreate_or_fail(self, current: Mapping[str, Any]) -> str:
        stack_id = str(current.get("StackId") or self.stack.stack_name)
        reason = self._first_failure(stack_id, current)
        if not self.recreate_failed:
            raise _Done(
                "FAILED",
                f"stack is in ROLLBACK_COMPLETE: its creation failed: {reason}; it cannot be updated; {RECREATE_HINT}",
                "ROLLBACK_COMPLETE",
            )
        self._not_started_if_cancelled()
        self.cfn.delete_stack(StackName=stack_id)
        self.status = "DELETE_IN_PROGRESS"
        self.started = True
        gone = self._wait_settled(stack_id, busy=False, in_flight_on_cancel=True)
        if gone is not None:
            raise _Done(
                "FAILED", f"deleting the ROLLBACK_COMPLETE stack ended in {gone['StackStatus']}", gone["StackStatus"]
            )
        self.actions.append(
            f"deleted the ROLLBACK_COMPLETE stack (--recreate-failed; its creation had failed: {reason})"
        )
        return f"was ROLLBACK_COMPLETE: {reason}"

    def _continue_rollback(self, current: Mapping[str, Any]) -> dict[str, Any]:
        stack_id = str(current.get("StackId") or self.stack.stack_name)
        reason = self._first_failure(stack_id, current)
        self._not_started_if_cancelled()
        try:
            self.cfn.continue_update_rollback(StackName=stack_id)
        except ClientError as err:
            raise _Done(
                "FAILED",
                f"stack is in UPDATE_ROLLBACK_FAILED ({reason}); continue-update-rollback was refused: "
                f"{_client_error_text(err)}; {STUCK_ADVICE['UPDATE_ROLLBACK_FAILED']}",
                "UPDATE_ROLLBACK_FAILED",
            ) from err
        self.status = "UPDATE_ROLLBACK_IN_PROGRESS"
        self.started = True
        settled = self._wait_settled(stack_id, busy=False, in_flight_on_cancel=True)
        status = settled["StackStatus"] if settled else "gone"
        if settled is None or status != "UPDATE_ROLLBACK_COMPLETE":
            again = self._first_failure(stack_id, settled) if settled else reason
            raise _Done(
                "FAILED",
                f"continue-update-rollback ended in {status}: {again}; {STUCK_ADVICE['UPDATE_ROLLBACK_FAILED']}",
                status,
            )
        self.actions.append(f"continued the rollback of UPDATE_ROLLBACK_FAILED ({reason}) to UPDATE_ROLLBACK_COMPLETE")
        return settled

    # ---- reading CloudFormation

    def _same_template(self, name: str, template: Any) -> bool:
        deployed = self._call(self.cfn.get_template, StackName=name, TemplateStage="Original")["TemplateBody"]
        if isinstance(deployed, str):  # botocore decodes JSON bodies; YAML stays a string
            try:
                deployed = json.loads(deployed)
            except json.JSONDecodeError:
                return False
        return bool(deployed == template)

    def _call(self, fn: Callable[..., Any], **kwargs: Any) -> Any:
        """Call a read-only API, waiting out throttling beyond botocore's own retries.

        An interrupt ends the wait at once, never as FAILED: IN_FLIGHT while CloudFormation
        runs an operation vend started, else SKIPPED (a change set waited for is deleted
        unexecuted). Stack events only serve a failure's reason, which has a fallback: that
        read gives up, so the failure stays reported.
        """
        while True:
            try:
                return fn(**kwargs)
            except ClientError as err:
                timed_out = time.monotonic() >= self.deadline and not self.cancel.is_set()
                if _error_code(err) not in THROTTLING_CODES or timed_out:
                    raise
                if not self.cancel.wait(self.poll_s):
                    continue
                if fn == self.cfn.describe_stack_events:
                    raise
                why = f"{self.cancel.reason}; CloudFormation was throttling ({_error_code(err)})"
                if self.started and _in_progress(self.status):
                    raise _Done(
                        "IN_FLIGHT",
                        f"interrupted ({why}) while CloudFormation was at {self.status}; "
                        "CloudFormation finishes it on its own: check the stack, then deploy again",
                        self.status,
                    ) from err
                if "ChangeSetName" in kwargs:
                    _delete_change_set(self.cfn, kwargs["ChangeSetName"])
                    raise _Done("SKIPPED", f"not executed: {why} (its change set was deleted)") from err
                raise _Done("SKIPPED", f"not started: {why}", self.status) from err

    def _describe(self, name: str) -> dict[str, Any] | None:
        try:
            stacks = self._call(self.cfn.describe_stacks, StackName=name)["Stacks"]
        except ClientError as err:
            if _error_code(err) == "ValidationError" and "does not exist" in _error_message(err):
                return None
            raise
        if not stacks or stacks[0]["StackStatus"] == "DELETE_COMPLETE":
            return None
        self.status = str(stacks[0]["StackStatus"])
        return dict(stacks[0])

    def _wait_settled(self, name: str, *, busy: bool, in_flight_on_cancel: bool = False) -> dict[str, Any] | None:
        """Poll until the stack leaves every *_IN_PROGRESS state (or is gone)."""
        while True:
            current = self._describe(name)
            if current is None:
                self.status = "DELETE_COMPLETE"
                return None
            status = current["StackStatus"]
            if not _in_progress(status):
                return current
            if self.cancel.is_set():
                if in_flight_on_cancel:
                    raise _Done(
                        "IN_FLIGHT",
                        f"interrupted ({self.cancel.reason}) while CloudFormation was at {status}; "
                        "CloudFormation finishes it on its own: check the stack, then deploy again",
                        status,
                    )
                raise _Done("SKIPPED", f"not started: {self.cancel.reason} (the stack was busy: {status})", status)
            if time.monotonic() >= self.deadline:
                if busy:
                    raise _Done(
                        "FAILED",
                        f"stack is busy ({status}): another operation is running on it and did not finish in "
                        "time; wait for it (or find who started it), then deploy again",
                        status,
                    )
                raise _Done(
                    "FAILED",
                    f"timed out waiting for the stack (last status {status}); CloudFormation may "
                    "still finish it: check the stack before deploying again",
                    status,
                )
            self.cancel.wait(self.poll_s)

    def _wait_change_set(self, change_set_id: str) -> Any:
        while True:
            change_set = self._call(self.cfn.describe_change_set, ChangeSetName=change_set_id)
            if change_set["Status"] in ("CREATE_COMPLETE", "FAILED"):
                return change_set
            if self.cancel.is_set():
                _delete_change_set(self.cfn, change_set_id)
                raise _Done("SKIPPED", f"not executed: {self.cancel.reason} (its change set was deleted)")
            if time.monotonic() >= self.deadline:
                raise _Done("FAILED", f"timed out waiting for change set ({change_set['Status']})")
            self.cancel.wait(self.poll_s)

    def _first_failure(self, stack_id: str, final: Mapping[str, Any]) -> str:
        return first_failure(self.cfn, stack_id, final, call=self._call)


def _template(stack: StackArtifact) -> tuple[Any, str]:
    """Parsed template and the compact body to send (whitespace would eat the size limits)."""
    try:
        template = json.loads(stack.template_body())
    except OSError as err:
        raise _Done("FAILED", f"cannot read template {stack.template_file}: {err}") from err
    except json.JSONDecodeError as err:
        raise _Done("FAILED", f"template {stack.template_file} is not valid JSON: {err}") from err
    body = json.dumps(template, separators=(",", ":"), ensure_ascii=False)
    return template, body


def _same_parameters(current: Mapping[str, Any], template: Any) -> bool:
    """vend passes no parameters: the deployed ones must be the template's defaults."""
    declared = template.get("Parameters") or {} if isinstance(template, dict) else {}
    deployed = {p["ParameterKey"]: p.get("ParameterValue") for p in current.get("Parameters") or []}
    for key, value in deployed.items():
        spec = declared.get(key)
        if spec is None:
            return False
        if str(spec.get("Type", "")).startswith("AWS::SSM::Parameter::"):
            continue  # CloudFormation shows the resolved value, not the parameter name
        default = spec.get("Default")
        if default is None or str(default) != str(value):
            return False
    return set(declared) <= set(deployed)


def _tags_of(description: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in description.get("Tags") or []}


def _in_progress(status: str) -> bool:
    return status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS"


def _delete_change_set(cfn: Any, change_set_id: str) -> None:
    """Best effort: a leftover change set is clutter, not a reason to fail the stack."""
    with contextlib.suppress(ClientError, BotoCoreError):
        cfn.delete_change_set(ChangeSetName=change_set_id)


def first_failure(
    cfn: Any, stack_id: str, final: Mapping[str, Any] | None, *, call: Callable[..., Any] | None = None
) -> str:
    """The root cause: the earliest failed resource of the latest operation.

    Events come newest first; the latest operation starts at the stack's own
    CREATE_IN_PROGRESS / UPDATE_IN_PROGRESS event. "Resource creation cancelled"
    is a consequence, not a cause, so it is skipped.
    """
    fallback = str((final or {}).get("StackStatusReason") or "no reason given")
    failures: list[Mapping[str, Any]] = []
    token: str | None = None
    invoke = call or (lambda fn, **kwargs: fn(**kwargs))
    try:
        for _ in range(20):  # 20 pages of 100 events reach far enough back
            kwargs: dict[str, Any] = {"StackName": stack_id}
            if token:
                kwargs["NextToken"] = token
            page = invoke(cfn.describe_stack_events, **kwargs)
            for event in page.get("StackEvents", []):
                status = str(event.get("ResourceStatus", ""))
                is_stack = event.get("ResourceType") == "AWS::CloudFormation::Stack"
                if is_stack and status in ("CREATE_IN_PROGRESS", "UPDATE_IN_PROGRESS"):
                    return _describe_failure(failures, fallback)
                reason = str(event.get("ResourceStatusReason") or "")
                if not is_stack and status.endswith("_FAILED") and "cancelled" not in reason.lower():
                    failures.append(event)
            token = page.get("NextToken")
            if not token:
                break
    except (ClientError, BotoCoreError):
        pass  # the stack status already says it failed; the reason is a bonus
    return _describe_failure(failures, fallback)


def _describe_failure(failures: Sequence[Mapping[str, Any]], fallback: str) -> str:
    if not failures:
        return fallback
    first = failures[-1]
    return (
        f"{first.get('LogicalResourceId')} ({first.get('ResourceType')}): "
        f"{first.get('ResourceStatusReason') or first.get('ResourceStatus')}"
    )


def _error_code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", "Unknown"))


def _error_message(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Message", ""))


def _client_error_text(err: ClientError) -> str:
    operation = getattr(err, "operation_name", "") or "AWS call"
    return f"{operation}: {_error_code(err)}: {_error_message(err) or err}"


# --------------------------------------------------------------------------- one target


def stack_waves(stacks: Sequence[StackArtifact]) -> list[list[StackArtifact]]:
    """Stacks grouped by dependency depth: wave 0 depends on nothing in ``stacks``, wave n on
    stacks of earlier waves only. Stacks of one wave can run in parallel (a client's regional
    stacks); within a wave, deployment order is kept."""
    ordered = deployment_order(stacks)
    present = {s.artifact_id for s in ordered}
    depth: dict[str, int] = {}
    waves: list[list[StackArtifact]] = []
    for stack in ordered:
        level = 1 + max((depth[d] for d in stack.depends_on if d in present), default=-1)
        depth[stack.artifact_id] = level
        while len(waves) <= level:
            waves.append([])
        waves[level].append(stack)
    return waves


def _open_session(access: AwsAccess, target: Target, region: str) -> tuple[Any, str]:
    """A session in the target's account (assumed role or the base credentials) and the
    account it really acts in; raises AssumeRoleError, ClientError or BotoCoreError.
    An assumed role acts in the role's account (STS guarantees it): no extra call."""
    session, acting_in, _ = _open_credentials(access, target, region)
    return session, acting_in


def _open_credentials(access: AwsAccess, target: Target, region: str) -> tuple[Any, str, Any]:
    """:func:`_open_session` plus the assumed credentials (None for the base credentials):
    with them, clients come from the thread's own (``AwsAccess.credentials_client``) and the
    session is made only if something asks for it."""
    if target.role_arn:
        credentials = access.assumed_credentials(
            target.role_arn, external_id=target.external_id, session_name=f"vend-deploy-{target.name}", region=region
        )
        session = SessionOnDemand(lambda: access.session_with(credentials, region))
        if target.role_arn.count(":") >= 5 and target.role_arn.split(":")[4].isdigit():
            return session, target.role_arn.split(":")[4], credentials
    else:
        session, credentials = access.base_session(), None
    identity = access.client(session, "sts", region).get_caller_identity()
    return session, str(identity["Account"]), credentials


# --------------------------------------------------------------------------- the ledger

LEDGER_SECTION = "direct"
_HASH_VALUE = re.compile(r'"' + TEMPLATE_HASH_OUTPUT + r'"\s*:\s*\{[^{}]*"Value"\s*:\s*"([0-9a-f]{64})"')


def template_hash_of(stack: StackArtifact) -> str | None:
    """The template's own hash output (scripts/assembly.py), read without parsing the JSON."""
    match = _HASH_VALUE.search(stack.template_body())
    return match.group(1) if match else None


def target_fingerprint(target: Target) -> str | None:
    """What the ledger records for a target: every stack's place, template hash, tags and
    protection. None when a template has no hash output (then the ledger is not used)."""
    parts: dict[str, Any] = {}
    for stack in target.stacks:
        digest = template_hash_of(stack)
        if digest is None:
            return None
        parts[stack.stack_name] = [stack.account, stack.region, digest, dict(stack.tags), stack.termination_protection]
    return fingerprint(parts)


def _as_recorded(access: AwsAccess, target: Target, options: StackOptions) -> TargetResult | None:
    """All stacks UNCHANGED when the ledger says they are deployed as synthesized and the
    first stack (the global one) still is: two API calls. None: deploy the usual way."""
    if options.ledger is None or options.refresh or not options.only_changed or not target.stacks:
        return None
    entry = options.ledger.get(LEDGER_SECTION, target.name)
    wanted = target_fingerprint(target)
    if entry is None or wanted is None or entry.get("fingerprint") != wanted:
        return None
    first = stack_waves(target.stacks)[0][0]
    role_account = target.role_arn.split(":")[4] if target.role_arn and target.role_arn.count(":") >= 5 else None
    if role_account != first.account:
        return None  # only an assumed role says where it acts without a call
    try:
        assert target.role_arn is not None
        credentials = access.assumed_credentials(
            target.role_arn,
            external_id=target.external_id,
            session_name=f"vend-deploy-{target.name}",
            region=first.region,
        )
        cfn = access.credentials_client(credentials, "cloudformation", first.region)
        found = cfn.describe_stacks(StackName=first.stack_name)["Stacks"]
    except (AssumeRoleError, ClientError, BotoCoreError):
        return None  # the usual way reports it properly
    live = found[0] if found else {}
    if (
        live.get("StackStatus") not in UPDATABLE
        or deployed_hash(live) != template_hash_of(first)
        or _tags_of(live) != dict(first.tags)
        or (first.termination_protection and not live.get("EnableTerminationProtection"))
    ):
        return None
    recorded = str(entry.get("at", "an earlier run"))
    results = [
        StackResult(
            s.stack_name,
            s.account,
            s.region,
            "UNCHANGED",
            "template, tags and protection as deployed"
            if s is first
            else f"as deployed by the run of {recorded} (deploy ledger; --refresh checks it live)",
            0.0,
        )
        for s in target.stacks
    ]
    return _target_result(target, first.account, results)


def _deployed_before(options: StackOptions, target: Target) -> bool:
    """The ledger says every stack of ``target`` was deployed by vend: the preflight for
    inherited resources (scripts/preflight.py) ran then, and vend's own resources are there
    now; a new region (a stack not in the record) runs it again."""
    if options.ledger is None or options.refresh:
        return False
    entry = options.ledger.get(LEDGER_SECTION, target.name) or {}
    return {s.stack_name for s in target.stacks} <= set(entry.get("stacks") or ())


def _record(options: StackOptions, target: Target, result: TargetResult) -> None:
    if options.ledger is None:
        return
    wanted = target_fingerprint(target)
    if result.outcome == "OK" and wanted is not None:
        stacks = sorted(s.stack_name for s in target.stacks)
        options.ledger.record(
            LEDGER_SECTION, target.name, {"fingerprint": wanted, "account": result.account, "stacks": stacks}
        )
    elif result.outcome != "OK":
        options.ledger.forget(LEDGER_SECTION, target.name)


open_session = _open_session  # for scripts/deploy_cmd.py (the StackSets engine's preflight)


def _session_error(err: Exception) -> str:
    if isinstance(err, AssumeRoleError):
        return str(err)
    if isinstance(err, ClientError):
        return f"cannot use credentials: {_client_error_text(err)}"
    return f"cannot use credentials: {type(err).__name__}: {err}"


def _deploy_target(
    access: AwsAccess, target: Target, *, options: StackOptions, cancel: Cancel = _NEVER
) -> TargetResult:
    """Deploy one target's stacks wave by wave in its own session (thread-safe); never raises."""
    start = time.monotonic()
    try:
        result = None if cancel.is_set() else _as_recorded(access, target, options)
        if result is None:
            result = _deploy_target_stacks(access, target, options=options, cancel=cancel)
            _record(options, target, result)
    except AssemblyError as err:
        result = _skipped_target(target, str(err), outcome="FAILED")
    except Exception as err:  # one target's surprise must not stop the others
        result = _skipped_target(target, f"unexpected error: {type(err).__name__}: {err}", outcome="FAILED")
    return TargetResult(
        result.name, result.account, result.outcome, result.detail, result.stacks, round(time.monotonic() - start, 3)
    )


def _deploy_target_stacks(access: AwsAccess, target: Target, *, options: StackOptions, cancel: Cancel) -> TargetResult:
    account = _target_account(target)
    waves = stack_waves(target.stacks)
    if not waves:
        return TargetResult(target.name, account, "OK", "no stacks", ())
    if cancel.is_set():
        return _skipped_target(target, f"not started: {cancel.reason}")
    region = waves[0][0].region
    try:
        session, acting_in, credentials = _open_credentials(access, target, region)
    except (AssumeRoleError, ClientError, BotoCoreError) as err:
        return _skipped_target(target, _session_error(err), outcome="FAILED")
    if target.preflight is not None and not _deployed_before(options, target):
        problem = target.preflight(access, session)
        if problem:
            return _skipped_target(target, problem, outcome="FAILED")

    clients: dict[str, Any] = {}
    for wave in waves:  # clients are thread-safe, their session is not: make them all here
        for stack in wave:
            if stack.region not in clients:
                # This thread's client for the region, given the target's credentials: this
                # target is done with it before the thread takes the next target.
                clients[stack.region] = (
                    access.client(session, "cloudformation", stack.region)
                    if credentials is None
                    else access.credentials_client(credentials, "cloudformation", stack.region)
                )
    stager = TemplateStager(access, session, acting_in)

    def one(stack: StackArtifact) -> StackResult:
        if stack.account != acting_in:
            # Never deploy a client's template into whatever account the credentials reach.
            return StackResult(
                stack.stack_name,
                stack.account,
                stack.region,
                "FAILED",
                f"credentials act in account {acting_in}, but the stack belongs to account "
                f"{stack.account}; check the target's role",
                0.0,
            )
        failed = _before_stack(access, session, target, clients[stack.region], stack)
        if failed is not None:
            return failed
        return deploy_stack(
            clients[stack.region],
            stack,
            timeout_s=options.timeout_s,
            poll_s=options.poll_s,
            recreate_failed=options.recreate_failed,
            only_changed=options.only_changed,
            cancel=cancel,
            stager=stager,
            protection=options.protection,
        )

    results: list[StackResult] = []
    failed: StackResult | None = None
    for wave in waves:
        if failed is not None:
            results.extend(_skipped_stack(s, f"not attempted: {failed.stack_name} failed") for s in wave)
            continue
        if cancel.is_set():
            results.extend(_skipped_stack(s, f"not started: {cancel.reason}") for s in wave)
            continue
        if len(wave) == 1:
            done = [one(wave[0])]
        else:
            with ThreadPoolExecutor(max_workers=len(wave), thread_name_prefix=f"vend-{target.name}") as pool:
                done = list(pool.map(one, wave))
        results.extend(done)
        failed = failed or next((r for r in done if r.outcome == "FAILED"), None)
    return _target_result(target, account, results)


def _before_stack(
    access: AwsAccess, session: Any, target: Target, cfn: Any, stack: StackArtifact
) -> StackResult | None:
    """``target.before_stack`` for one stack (issue 6: import adopted resources); None: go on."""
    if target.before_stack is None:
        return None
    start = time.monotonic()
    try:
        problem = target.before_stack(access, session, cfn, stack)
    except Exception as err:  # like deploy_stack: one stack's surprise is that stack's failure
        problem = f"unexpected error before the deploy: {type(err).__name__}: {err}"
    if problem is None:
        return None
    seconds = round(time.monotonic() - start, 3)
    return StackResult(stack.stack_name, stack.account, stack.region, "FAILED", problem, seconds)


def _target_result(target: Target, account: str, results: Sequence[StackResult]) -> TargetResult:
    failed = next((r for r in results if r.outcome == "FAILED"), None)
    if failed is not None:
        detail = f"{failed.stack_name} ({failed.region}): {failed.detail}"
        return TargetResult(target.name, account, "FAILED", detail, tuple(results))
    in_flight = [r for r in results if r.outcome == "IN_FLIGHT"]
    if in_flight:
        names = ", ".join(r.stack_name for r in in_flight)
        return TargetResult(
            target.name, account, "IN_FLIGHT", f"{names} in flight: {in_flight[0].detail}", tuple(results)
        )
    skipped = [r for r in results if r.outcome == "SKIPPED"]
    if skipped and len(skipped) == len(results):
        return TargetResult(target.name, account, "SKIPPED", skipped[0].detail, tuple(results))
    if skipped:
        return TargetResult(
            target.name, account, "INTERRUPTED", f"{_summary(results)}; {skipped[0].detail}", tuple(results)
        )
    return TargetResult(target.name, account, "OK", _summary(results), tuple(results))


def _summary(results: Sequence[StackResult]) -> str:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome.lower()] = counts.get(result.outcome.lower(), 0) + 1
    parts = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
    notes = [a for r in results for a in r.actions]
    text = f"{len(results)} stack{'s' if len(results) != 1 else ''}: {parts}"
    return f"{text} ({'; '.join(notes)})" if notes else text


def _target_account(target: Target) -> str:
    if target.stacks:
        return target.stacks[0].account
    if target.role_arn and target.role_arn.count(":") >= 5:
        return target.role_arn.split(":")[4]
    return ""


def _skipped_stack(stack: StackArtifact, detail: str) -> StackResult:
    return StackResult(stack.stack_name, stack.account, stack.region, "SKIPPED", detail, 0.0)


def _skipped_target(target: Target, detail: str, *, outcome: TargetOutcome = "SKIPPED") -> TargetResult:
    """A target none of whose stacks ran; every stack is listed as SKIPPED for the report."""
    try:
        stacks = deployment_order(target.stacks)
    except AssemblyError:
        stacks = list(target.stacks)
    stack_detail = detail if detail.startswith("not started") else f"not attempted: {detail}"
    return TargetResult(
        name=target.name,
        account=_target_account(target),
        outcome=outcome,
        detail=detail,
        stacks=tuple(_skipped_stack(s, stack_detail) for s in stacks),
    )


# --------------------------------------------------------------------------- many targets


@dataclass(frozen=True)
class RolloutOptions:
    """How a fleet is rolled out (see ``ORDER``)."""

    concurrency: int = 8  # clients in parallel; each client's regions run in parallel too
    canary: int = 0  # deploy this many clients first, alone; stop if any fails
    max_failures: int | None = None  # stop scheduling new clients after this many failures
    stack: StackOptions = field(default_factory=StackOptions)


@dataclass(frozen=True)
class RolloutReport:
    """Everything a rollout did: results (MSP side first, then clients in input order), why it
    stopped early (if it did), and when."""

    results: tuple[TargetResult, ...]
    stop_reason: str = ""
    interrupted: bool = False
    started_at: float = 0.0  # epoch seconds
    seconds: float = 0.0
    canary: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.stop_reason and all(r.outcome == "OK" for r in self.results)


class Rollout:
    """Runs targets in ``ORDER`` and decides, after each result, whether to start more.

    ``on_start`` / ``on_result`` are called from the calling thread only (no locking needed
    in progress displays or incremental reports). ``before_clients`` runs after the MSP side
    succeeded and before any client starts; a non-empty answer stops the run with that reason
    (e.g. the deploy lock could not be taken).
    """

    def __init__(
        self,
        access: AwsAccess,
        *,
        first: Target | None,
        targets: Sequence[Target],
        options: RolloutOptions | None = None,
        cancel: Cancel | None = None,
        on_start: Callable[[Target], None] | None = None,
        on_result: Callable[[TargetResult], None] | None = None,
        before_clients: Callable[[], str | None] | None = None,
    ) -> None:
        self.access = access
        self.first = first
        self.targets = list(targets)
        self.options = options or RolloutOptions()
        self.cancel = cancel or Cancel()
        self.on_start = on_start
        self.on_result = on_result
        self.before_clients = before_clients
        self._finished: dict[int, TargetResult] = {}
        self._failures = 0
        self._stop = ""

    def run(self) -> RolloutReport:
        started_at, start = time.time(), time.monotonic()
        results: list[TargetResult] = []
        canary = self.targets[: max(0, self.options.canary)]
        if self.first is not None:
            msp = self._run_first(self.first)
            results.append(msp)
            if msp.outcome == "FAILED":
                self._stop = f"MSP-side stacks failed: {msp.detail}"
            elif msp.outcome != "OK":
                self._stop = f"not started: {self.cancel.reason or 'the MSP side did not finish'}"
        if not self._stop and self.targets and self.before_clients is not None:
            self._stop = self.before_clients() or ""
        if not self._stop and canary:
            self._schedule(list(range(len(canary))), max(1, min(self.options.concurrency, len(canary))))
            bad = [
                self._finished[i].name
                for i in range(len(canary))
                if self._finished.get(i) and self._finished[i].outcome != "OK"
            ]
            if bad and not self._stop:
                self._stop = f"canary failed ({', '.join(bad)}); the other clients were not started"
        if not self._stop:
            self._schedule(list(range(len(canary), len(self.targets))), max(1, self.options.concurrency))
        for index, target in enumerate(self.targets):
            if index not in self._finished:
                reason = self._stop or self._stop_reason() or "not started"
                detail = reason if reason.startswith(("not started", "MSP-side")) else f"not started: {reason}"
                self._finish(index, _skipped_target(target, detail))
        results.extend(self._finished[i] for i in range(len(self.targets)))
        return RolloutReport(
            results=tuple(results),
            stop_reason=self._stop or self._stop_reason() or "",
            interrupted=self.cancel.is_set(),
            started_at=started_at,
            seconds=round(time.monotonic() - start, 3),
            canary=tuple(t.name for t in canary),
        )

    def _stop_reason(self) -> str | None:
        if self._stop:
            return self._stop
        if self.cancel.is_set():
            return self.cancel.reason
        limit = self.options.max_failures
        if limit is not None and self._failures >= limit:
            return f"--max-failures {limit} reached ({self._failures} client(s) failed)"
        return None

    def _finish(self, index: int, result: TargetResult) -> None:
        self._finished[index] = result
        if self.on_result is not None:
            self.on_result(result)

    def _run_first(self, target: Target) -> TargetResult:
        """Run the MSP side in a worker thread, waiting in a way signals can interrupt."""
        if self.cancel.is_set():
            result = _skipped_target(target, f"not started: {self.cancel.reason}")
        else:
            if self.on_start is not None:
                self.on_start(target)
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vend-deploy") as pool:
                future = pool.submit(
                    _deploy_target, self.access, target, options=self.options.stack, cancel=self.cancel
                )
                while not wait([future], timeout=0.2).done:
                    pass
                result = future.result()
        if self.on_result is not None:
            self.on_result(result)
        return result

    def _schedule(self, indices: list[int], workers: int) -> None:
        queue = deque(indices)
        running: dict[Future[TargetResult], int] = {}
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vend-deploy") as pool:
            while queue or running:
                while queue and len(running) < workers and self._stop_reason() is None:
                    index = queue.popleft()
                    target = self.targets[index]
                    if self.on_start is not None:
                        self.on_start(target)
                    future = pool.submit(
                        _deploy_target, self.access, target, options=self.options.stack, cancel=self.cancel
                    )
                    running[future] = index
                if not running:
                    break
                done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    index = running.pop(future)
                    result = future.result()
                    if result.outcome == "FAILED":
                        self._failures += 1
                    self._finish(index, result)


def run_rollout(
    access: AwsAccess,
    *,
    first: Target | None,
    targets: Sequence[Target],
    options: RolloutOptions | None = None,
    cancel: Cancel | None = None,
    on_start: Callable[[Target], None] | None = None,
    on_result: Callable[[TargetResult], None] | None = None,
    before_clients: Callable[[], str | None] | None = None,
) -> RolloutReport:
    """Deploy ``first`` (the MSP side), then every target; see :class:`Rollout`."""
    return Rollout(
        access,
        first=first,
        targets=targets,
        options=options,
        cancel=cancel,
        on_start=on_start,
        on_result=on_result,
        before_clients=before_clients,
    ).run()


def deploy_targets(
    access: AwsAccess,
    *,
    first: Target | None,
    targets: Sequence[Target],
    concurrency: int = 8,
    on_result: Callable[[TargetResult], None] | None = None,
    stack_timeout_s: float = 1800,
    poll_s: float = 2.0,
) -> list[TargetResult]:
    """Deploy ``first`` (the MSP side), then every target with bounded concurrency.

    Results come back in input order (``first`` first). If ``first`` fails, every
    other target is SKIPPED. Per-target failures never raise. The short form of
    :func:`run_rollout`, for callers that need neither canaries nor interrupts.
    """
    options = RolloutOptions(concurrency=concurrency, stack=StackOptions(timeout_s=stack_timeout_s, poll_s=poll_s))
    report = run_rollout(access, first=first, targets=targets, options=options, on_result=on_result)
    return list(report.results)


# --------------------------------------------------------------------------- plan (dry run)


@dataclass(frozen=True)
class ResourceChange:
    action: Literal["Add", "Remove", "Modify"]
    logical_id: str
    resource_type: str


@dataclass(frozen=True)
class StackPlan:
    """What a deploy would do to one stack; ``step`` is its wave within the target."""

    stack_name: str
    account: str
    region: str
    step: int
    depends_on: tuple[str, ...]
    action: PlanAction
    detail: str
    changes: tuple[ResourceChange, ...] = ()


@dataclass(frozen=True)
class TargetPlan:
    name: str
    account: str
    ok: bool  # False: could not be planned (e.g. the role cannot be assumed)
    detail: str
    stacks: tuple[StackPlan, ...]

    @property
    def changes(self) -> bool:
        return any(s.action != "unchanged" for s in self.stacks)


def resource_changes(deployed: Any, template: Any) -> tuple[ResourceChange, ...]:
    """Resources added, removed or modified between two templates (by logical id)."""
    old = (deployed or {}).get("Resources") or {} if isinstance(deployed, dict) else {}
    new = (template or {}).get("Resources") or {} if isinstance(template, dict) else {}
    changes = [ResourceChange("Add", k, str(v.get("Type", ""))) for k, v in new.items() if k not in old]
    changes += [ResourceChange("Remove", k, str(v.get("Type", ""))) for k, v in old.items() if k not in new]
    changes += [ResourceChange("Modify", k, str(v.get("Type", ""))) for k, v in new.items() if k in old and old[k] != v]
    return tuple(sorted(changes, key=lambda c: (c.action, c.logical_id)))


def plan_stack(cfn: Any, stack: StackArtifact, *, step: int, options: StackOptions) -> StackPlan:
    """Read-only: describe the stack and compare templates; never creates a change set."""
    depends = tuple(stack.depends_on)

    def plan(action: PlanAction, detail: str, changes: tuple[ResourceChange, ...] = ()) -> StackPlan:
        return StackPlan(stack.stack_name, stack.account, stack.region, step, depends, action, detail, changes)

    run = _StackRun(
        cfn,
        stack,
        deadline=time.monotonic() + 60,
        poll_s=options.poll_s,
        recreate_failed=options.recreate_failed,
        only_changed=True,
        cancel=_NEVER,
        stager=None,
    )
    try:
        template, body = _template(stack)
        current = run._describe(stack.stack_name)
        if current is None or current["StackStatus"] == "REVIEW_IN_PROGRESS":
            return plan("create", "new stack", resource_changes({}, template))
        status = current["StackStatus"]
        if _in_progress(status):
            return plan("wait", f"{status}: vend waits for it (up to the stack timeout), then deploys")
        stack_id = str(current.get("StackId") or stack.stack_name)
        if status == "ROLLBACK_COMPLETE":
            reason = first_failure(cfn, stack_id, current, call=run._call)
            if options.recreate_failed:
                return plan(
                    "recreate", f"ROLLBACK_COMPLETE ({reason}): delete, then create", resource_changes({}, template)
                )
            return plan("blocked", f"ROLLBACK_COMPLETE ({reason}); {RECREATE_HINT}")
        deployed = run._call(cfn.get_template, StackName=stack.stack_name, TemplateStage="Original")["TemplateBody"]
        if isinstance(deployed, str):
            with contextlib.suppress(json.JSONDecodeError):
                deployed = json.loads(deployed)
        changes = resource_changes(deployed, template)
        if status == "UPDATE_ROLLBACK_FAILED":
            reason = first_failure(cfn, stack_id, current, call=run._call)
            return plan(
                "continue-rollback",
                f"UPDATE_ROLLBACK_FAILED ({reason}): continue-update-rollback, then update",
                changes,
            )
        if status in STUCK_ADVICE:
            return plan("blocked", STUCK_ADVICE[status])
        if status not in UPDATABLE:
            return plan("blocked", f"stack is in {status}; resolve that in CloudFormation first")
        size = len(body.encode())
        note = f"; template {size:,} bytes goes through S3" if size > MAX_TEMPLATE_BODY_BYTES else ""
        same_tags = _tags_of(current) == dict(stack.tags)
        if deployed == template and same_tags and _same_parameters(current, template):
            return plan("unchanged", "template, tags and parameters already deployed")
        what = ", ".join(f"{n} {a.lower()}" for a, n in _count(c.action for c in changes).items())
        tag_note = "" if same_tags else "stack tags change"
        detail = "; ".join(p for p in (what, tag_note) if p) or "template text changes"
        return plan("update", detail + note, changes)
    except _Done as done:
        return plan("blocked", done.detail)
    except ClientError as err:
        return plan("blocked", f"cannot read the stack: {_client_error_text(err)}")
    except BotoCoreError as err:
        return plan("blocked", f"cannot read the stack: {type(err).__name__}: {err}")


def _count(items: Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for item in items:
        counts[item] = counts.get(item, 0) + 1
    return counts


def plan_target(access: AwsAccess, target: Target, *, options: StackOptions) -> TargetPlan:
    account = _target_account(target)
    try:
        waves = stack_waves(target.stacks)
    except AssemblyError as err:
        return TargetPlan(target.name, account, False, str(err), ())
    if not waves:
        return TargetPlan(target.name, account, True, "no stacks", ())
    try:
        session, acting_in = _open_session(access, target, waves[0][0].region)
    except (AssumeRoleError, ClientError, BotoCoreError) as err:
        return TargetPlan(target.name, account, False, _session_error(err), ())
    plans: list[StackPlan] = []
    clients: dict[str, Any] = {}
    for step, wave in enumerate(waves, start=1):
        for stack in wave:
            if stack.account != acting_in:
                plans.append(
                    StackPlan(
                        stack.stack_name,
                        stack.account,
                        stack.region,
                        step,
                        tuple(stack.depends_on),
                        "blocked",
                        f"credentials act in account {acting_in}, not {stack.account}",
                    )
                )
                continue
            if stack.region not in clients:
                clients[stack.region] = access.client(session, "cloudformation", stack.region)
            plans.append(plan_stack(clients[stack.region], stack, step=step, options=options))
    counts = _count(p.action for p in plans)
    detail = ", ".join(f"{n} {a}" for a, n in counts.items())
    return TargetPlan(target.name, account, True, detail, tuple(plans))


def plan_targets(
    access: AwsAccess,
    *,
    first: Target | None,
    targets: Sequence[Target],
    concurrency: int = 8,
    options: StackOptions | None = None,
    cancel: Cancel | None = None,
) -> list[TargetPlan]:
    """The plan of every target (MSP side first), read-only, ``concurrency`` at a time."""
    opts = options or StackOptions()
    stop = cancel or _NEVER
    everyone = ([first] if first is not None else []) + list(targets)

    def one(target: Target) -> TargetPlan:
        if stop.is_set():
            return TargetPlan(target.name, _target_account(target), False, f"not planned: {stop.reason}", ())
        return plan_target(access, target, options=opts)

    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="vend-plan") as pool:
        return list(pool.map(one, everyone))
