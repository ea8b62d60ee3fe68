"""Deploy synthesized stacks into many accounts with change sets.

Library core of ``vend deploy``: the CLI and the reports call these functions
and render the result records; nothing here prints or exits.

Rules that come from real-world failures (see DESIGN.md):
- Unchanged stacks are detected up front (template + tags) and never get a
  change set; an empty change set is success, and is deleted.
- A stack in ROLLBACK_COMPLETE or UPDATE_ROLLBACK_FAILED is reported, never
  deleted or rolled back automatically: a baseline stack holds the client's
  audit trail.
- Throttling is retried (adaptive retries on every client, plus polls that
  shrug off throttling), so a throttled poll is never a failed deploy.
- One client's failure (unassumable role, failed stack) never stops others;
  only a failure of the MSP-side stacks stops the client deploys, because
  clients' trails and Config deliver into the MSP-side bucket and key.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Literal

from botocore.exceptions import BotoCoreError, ClientError

from scripts.assembly import AssemblyError, StackArtifact, deployment_order
from scripts.aws import AssumeRoleError, AwsAccess

Outcome = Literal["CREATED", "UPDATED", "UNCHANGED", "FAILED", "SKIPPED"]
TargetOutcome = Literal["OK", "FAILED", "SKIPPED"]

MAX_TEMPLATE_BODY_BYTES = 51_200  # CloudFormation's limit for an inline TemplateBody
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
# Stuck states: each needs an operator's decision, so the driver only explains.
STUCK_ADVICE = {
    "ROLLBACK_COMPLETE": (
        "stack is in ROLLBACK_COMPLETE (its creation failed and was rolled back); it cannot be "
        "updated and must be deleted and recreated; vend never deletes a stack automatically: "
        "inspect it, then delete it with the operator's consent and deploy again"
    ),
    "UPDATE_ROLLBACK_FAILED": (
        "stack is in UPDATE_ROLLBACK_FAILED and needs continue-update-rollback: fix the resource "
        "that blocked the rollback, run `aws cloudformation continue-update-rollback`, then "
        "deploy again"
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
    """What happened to one stack; ``detail`` is meant for humans and reports."""

    stack_name: str
    account: str
    region: str
    outcome: Outcome
    detail: str
    seconds: float


@dataclass(frozen=True)
class Target:
    """One deployment unit: the MSP side, or one client (all its stacks, one role)."""

    name: str
    role_arn: str | None
    external_id: str | None
    stacks: tuple[StackArtifact, ...]


@dataclass(frozen=True)
class TargetResult:
    """What happened to one target; ``stacks`` has one record per stack, in deploy order."""

    name: str
    account: str
    outcome: TargetOutcome
    detail: str
    stacks: tuple[StackResult, ...]


class _Done(Exception):
    """Ends a stack deploy early with a final outcome (not an error of the driver)."""

    def __init__(self, outcome: Outcome, detail: str) -> None:
        super().__init__(detail)
        self.outcome: Outcome = outcome
        self.detail = detail


# --------------------------------------------------------------------------- one stack


def deploy_stack(cfn: Any, stack: StackArtifact, *, timeout_s: float = 1800, poll_s: float = 2.0) -> StackResult:
    """Bring one stack to its synthesized template with a change set; never raises.

    ``cfn`` is a CloudFormation client for the stack's account and region. Every
    AWS error ends up as a FAILED result with the error code and message, so a
    caller deploying hundreds of stacks can report rather than crash.
    """
    start = time.monotonic()
    try:
        outcome, detail = _deploy(cfn, stack, deadline=start + timeout_s, poll_s=poll_s)
    except _Done as done:
        outcome, detail = done.outcome, done.detail
    except ClientError as err:
        outcome, detail = "FAILED", _client_error_text(err)
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
    )


def _deploy(cfn: Any, stack: StackArtifact, *, deadline: float, poll_s: float) -> tuple[Outcome, str]:
    template, body = _template(stack)
    name = stack.stack_name

    current = _describe(cfn, name, deadline, poll_s)
    if current is not None and _in_progress(current["StackStatus"]):
        current = _wait_settled(cfn, name, deadline, poll_s, busy=True)

    change_set_type = "UPDATE"
    if current is None or current["StackStatus"] == "REVIEW_IN_PROGRESS":
        # REVIEW_IN_PROGRESS: an earlier CREATE change set was never executed.
        change_set_type = "CREATE"
    else:
        status = current["StackStatus"]
        if status in STUCK_ADVICE:
            raise _Done("FAILED", STUCK_ADVICE[status])
        if status not in UPDATABLE:
            raise _Done("FAILED", f"stack is in {status}; resolve that in CloudFormation first")
        if _tags_of(current) == dict(stack.tags) and _same_template(cfn, name, template):
            return "UNCHANGED", "template and tags already deployed"

    created = cfn.create_change_set(
        StackName=name,
        ChangeSetName=f"vend-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:8]}",
        ChangeSetType=change_set_type,
        TemplateBody=body,
        Capabilities=list(CAPABILITIES),
        Tags=[{"Key": k, "Value": v} for k, v in stack.tags.items()],
        Description="vend deploy",
    )
    change_set_id, stack_id = created["Id"], created["StackId"]

    change_set = _wait_change_set(cfn, change_set_id, deadline, poll_s)
    if change_set["Status"] == "FAILED":
        reason = str(change_set.get("StatusReason", ""))
        _delete_change_set(cfn, change_set_id)
        if any(marker in reason for marker in NO_CHANGES_MARKERS):
            return "UNCHANGED", "no changes (empty change set deleted)"
        raise _Done("FAILED", f"change set failed: {reason or 'no reason given'}")
    execution = change_set.get("ExecutionStatus", "AVAILABLE")
    if execution != "AVAILABLE":
        raise _Done("FAILED", f"change set cannot be executed (ExecutionStatus {execution})")

    cfn.execute_change_set(ChangeSetName=change_set_id)
    final = _wait_settled(cfn, stack_id, deadline, poll_s, busy=False)
    if final is None:
        raise _Done("FAILED", "stack disappeared while deploying")
    status = final["StackStatus"]
    if status == "CREATE_COMPLETE":
        return "CREATED", "created"
    if status == "UPDATE_COMPLETE":
        return "UPDATED", "updated"
    detail = f"{status}: {_first_failure(cfn, stack_id, final, deadline, poll_s)}"
    if status in STUCK_ADVICE:
        detail += f"; {STUCK_ADVICE[status]}"
    raise _Done("FAILED", detail)


def _template(stack: StackArtifact) -> tuple[Any, str]:
    """Parsed template and the compact body to send (whitespace would eat the 51,200 limit)."""
    try:
        template = json.loads(stack.template_body())
    except OSError as err:
        raise _Done("FAILED", f"cannot read template {stack.template_file}: {err}") from err
    except json.JSONDecodeError as err:
        raise _Done("FAILED", f"template {stack.template_file} is not valid JSON: {err}") from err
    body = json.dumps(template, separators=(",", ":"), ensure_ascii=False)
    size = len(body.encode("utf-8"))
    if size > MAX_TEMPLATE_BODY_BYTES:
        raise _Done(
            "FAILED",
            f"template is {size:,} bytes, over CloudFormation's {MAX_TEMPLATE_BODY_BYTES:,}-byte "
            "limit for an inline template body; uploading templates to S3 is not supported yet: "
            "split the stack",
        )
    return template, body


def _same_template(cfn: Any, name: str, template: Any) -> bool:
    deployed = cfn.get_template(StackName=name, TemplateStage="Original")["TemplateBody"]
    if isinstance(deployed, str):  # botocore decodes JSON bodies; YAML stays a string
        try:
            deployed = json.loads(deployed)
        except json.JSONDecodeError:
            return False
    return bool(deployed == template)


def _tags_of(description: Mapping[str, Any]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in description.get("Tags") or []}


def _in_progress(status: str) -> bool:
    return status.endswith("_IN_PROGRESS") and status != "REVIEW_IN_PROGRESS"


def _call(fn: Callable[..., Any], deadline: float, poll_s: float, **kwargs: Any) -> Any:
    """Call a read-only API, waiting out throttling beyond botocore's own retries."""
    while True:
        try:
            return fn(**kwargs)
        except ClientError as err:
            if _error_code(err) not in THROTTLING_CODES or time.monotonic() >= deadline:
                raise
            time.sleep(poll_s)


def _describe(cfn: Any, name: str, deadline: float, poll_s: float) -> dict[str, Any] | None:
    try:
        stacks = _call(cfn.describe_stacks, deadline, poll_s, StackName=name)["Stacks"]
    except ClientError as err:
        if _error_code(err) == "ValidationError" and "does not exist" in _error_message(err):
            return None
        raise
    if not stacks or stacks[0]["StackStatus"] == "DELETE_COMPLETE":
        return None
    return dict(stacks[0])


def _wait_settled(cfn: Any, name: str, deadline: float, poll_s: float, *, busy: bool) -> dict[str, Any] | None:
    """Poll until the stack leaves every *_IN_PROGRESS state (or is gone)."""
    while True:
        current = _describe(cfn, name, deadline, poll_s)
        if current is None or not _in_progress(current["StackStatus"]):
            return current
        if time.monotonic() >= deadline:
            status = current["StackStatus"]
            if busy:
                raise _Done("FAILED", f"stack is busy ({status}): another deployment is running on it")
            raise _Done(
                "FAILED",
                f"timed out waiting for the stack (last status {status}); CloudFormation may "
                "still finish it: check the stack before deploying again",
            )
        time.sleep(poll_s)


def _wait_change_set(cfn: Any, change_set_id: str, deadline: float, poll_s: float) -> Any:
    while True:
        change_set = _call(cfn.describe_change_set, deadline, poll_s, ChangeSetName=change_set_id)
        if change_set["Status"] in ("CREATE_COMPLETE", "FAILED"):
            return change_set
        if time.monotonic() >= deadline:
            raise _Done("FAILED", f"timed out waiting for change set ({change_set['Status']})")
        time.sleep(poll_s)


def _delete_change_set(cfn: Any, change_set_id: str) -> None:
    """Best effort: a leftover change set is clutter, not a reason to fail the stack."""
    with contextlib.suppress(ClientError, BotoCoreError):
        cfn.delete_change_set(ChangeSetName=change_set_id)


def _first_failure(cfn: Any, stack_id: str, final: Mapping[str, Any], deadline: float, poll_s: float) -> str:
    """The root cause: the earliest failed resource of the latest operation.

    Events come newest first; the latest operation starts at the stack's own
    CREATE_IN_PROGRESS / UPDATE_IN_PROGRESS event. "Resource creation cancelled"
    is a consequence, not a cause, so it is skipped.
    """
    fallback = str(final.get("StackStatusReason") or "no reason given")
    failures: list[Mapping[str, Any]] = []
    token: str | None = None
    try:
        for _ in range(20):  # 20 pages of 100 events reach far enough back
            kwargs: dict[str, Any] = {"StackName": stack_id}
            if token:
                kwargs["NextToken"] = token
            page = _call(cfn.describe_stack_events, deadline, poll_s, **kwargs)
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


# --------------------------------------------------------------------------- many targets


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

    Results come back in input order (``first`` first). ``on_result`` is called
    once per target as it finishes, always from the calling thread, so it needs
    no locking (progress lines, incremental reports). If ``first`` fails, the
    clients would point at a bucket and key that are not ready, so every other
    target is SKIPPED. Per-target failures never raise.
    """
    results: list[TargetResult] = []

    def emit(result: TargetResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    if first is not None:
        msp = _deploy_target(access, first, stack_timeout_s=stack_timeout_s, poll_s=poll_s)
        emit(msp)
        if msp.outcome != "OK":
            for target in targets:
                emit(_skipped_target(target, f"MSP-side stacks failed: {msp.detail}"))
            return results

    finished: dict[int, TargetResult] = {}
    if targets:
        workers = max(1, min(concurrency, len(targets)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vend-deploy") as pool:
            futures = {
                pool.submit(_deploy_target, access, target, stack_timeout_s=stack_timeout_s, poll_s=poll_s): index
                for index, target in enumerate(targets)
            }
            for future in as_completed(futures):
                result = future.result()
                finished[futures[future]] = result
                if on_result is not None:
                    on_result(result)
    results.extend(finished[index] for index in range(len(targets)))
    return results


def _deploy_target(access: AwsAccess, target: Target, *, stack_timeout_s: float, poll_s: float) -> TargetResult:
    """Deploy one target's stacks in dependency order, in its own session (thread-safe)."""
    account = _target_account(target)
    try:
        stacks = deployment_order(target.stacks)
    except AssemblyError as err:
        return _skipped_target(target, str(err), outcome="FAILED")
    try:
        return _deploy_target_stacks(access, target, stacks, account, stack_timeout_s=stack_timeout_s, poll_s=poll_s)
    except Exception as err:  # one target's surprise must not stop the others
        return _skipped_target(target, f"unexpected error: {type(err).__name__}: {err}", outcome="FAILED")


def _deploy_target_stacks(
    access: AwsAccess,
    target: Target,
    stacks: Sequence[StackArtifact],
    account: str,
    *,
    stack_timeout_s: float,
    poll_s: float,
) -> TargetResult:
    if not stacks:
        return TargetResult(target.name, account, "OK", "no stacks", ())
    region = stacks[0].region
    try:
        if target.role_arn:
            session = access.assume_role(
                target.role_arn,
                external_id=target.external_id,
                session_name=f"vend-deploy-{target.name}",
                region=region,
            )
        else:
            session = access.base_session()
        identity = access.client(session, "sts", region).get_caller_identity()
    except AssumeRoleError as err:
        return _skipped_target(target, str(err), outcome="FAILED")
    except ClientError as err:
        return _skipped_target(target, f"cannot use credentials: {_client_error_text(err)}", outcome="FAILED")
    except BotoCoreError as err:
        return _skipped_target(target, f"cannot use credentials: {type(err).__name__}: {err}", outcome="FAILED")
    acting_in = str(identity["Account"])

    results: list[StackResult] = []
    clients: dict[str, Any] = {}
    failed: StackResult | None = None
    for stack in stacks:
        if failed is not None:
            results.append(_skipped_stack(stack, f"not attempted: {failed.stack_name} failed"))
            continue
        if stack.account != acting_in:
            # Never deploy a client's template into whatever account the credentials reach.
            result = StackResult(
                stack.stack_name,
                stack.account,
                stack.region,
                "FAILED",
                f"credentials act in account {acting_in}, but the stack belongs to account "
                f"{stack.account}; check the target's role",
                0.0,
            )
        else:
            if stack.region not in clients:
                clients[stack.region] = access.client(session, "cloudformation", stack.region)
            result = deploy_stack(clients[stack.region], stack, timeout_s=stack_timeout_s, poll_s=poll_s)
        results.append(result)
        if result.outcome == "FAILED":
            failed = result

    if failed is not None:
        detail = f"{failed.stack_name} ({failed.region}): {failed.detail}"
        return TargetResult(target.name, account, "FAILED", detail, tuple(results))
    return TargetResult(target.name, account, "OK", _summary(results), tuple(results))


def _summary(results: Sequence[StackResult]) -> str:
    counts: dict[str, int] = {}
    for result in results:
        counts[result.outcome.lower()] = counts.get(result.outcome.lower(), 0) + 1
    parts = ", ".join(f"{n} {outcome}" for outcome, n in counts.items())
    return f"{len(results)} stack{'s' if len(results) != 1 else ''}: {parts}"


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
    return TargetResult(
        name=target.name,
        account=_target_account(target),
        outcome=outcome,
        detail=detail,
        stacks=tuple(_skipped_stack(s, f"not attempted: {detail}") for s in stacks),
    )
