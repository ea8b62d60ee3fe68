"""``vend deploy`` (and the fault-file options of ``vend emulator`` / ``vend demo``).

The CLI glue around :mod:`scripts.deploy`: rollout options, the dry-run plan, the
deploy lock, signals, live progress and the report files. ``scripts/cli.py`` registers
these options and hands over; nothing here is needed to use the library.

Exit codes: 0 every target OK; 1 something failed, was skipped, or the lock is held;
2 invalid input (override files, cloud assembly, fault file); 130 interrupted
(SIGINT or SIGTERM: the report is still written).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from baseline.portfolio import Portfolio
from baseline.spec import LOG_ARCHIVE_STACK_NAME
from scripts.assembly import StackArtifact, read_assembly
from scripts.aws import AssumeRoleError, AwsAccess, ensure_private_bucket, vend_bucket_name
from scripts.deploy import (
    Cancel,
    RolloutOptions,
    RolloutReport,
    StackOptions,
    Target,
    TargetResult,
    _skipped_target,
    plan_targets,
    run_rollout,
)
from scripts.deploy_report import (
    Progress,
    blocked_stacks,
    render_plan,
    report_data,
    summary_table,
    write_plan,
    write_reports,
)
from scripts.lock import DEFAULT_STALE_AFTER_S, DeployLock, LockHeld, LockUnavailable
from scripts.stack_protection import ProtectionOptions

CLIENT_TAG = "vend:client"
MSP_TARGET = "msp-log-archive"
EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_CONCURRENCY = 8


def _err(message: str) -> None:
    print(f"vend: {message}", file=sys.stderr, flush=True)


def build_targets(
    portfolio: Portfolio, stacks: Sequence[StackArtifact], clients: Sequence[str]
) -> tuple[Target | None, list[Target]]:
    """Group the assembly's stacks into the MSP-side target and one target per client."""
    la = portfolio.defaults.log_archive
    msp_stacks = tuple(s for s in stacks if s.stack_name == LOG_ARCHIVE_STACK_NAME)
    first = (
        Target(name=MSP_TARGET, role_arn=la.deploy_role_arn, external_id=la.external_id, stacks=msp_stacks)
        if msp_stacks
        else None
    )
    from baseline.spec import client_baseline
    from scripts.preflight import deploy_hook  # issue 6: recorder/channel/detector/trail the account had

    targets = []
    for name in clients:
        c = portfolio.client(name)
        own = tuple(s for s in stacks if s.tags.get(CLIENT_TAG) == name)
        hook = deploy_hook(client_baseline(c, portfolio.defaults))
        targets.append(
            Target(name=name, role_arn=c.deploy_role_arn, external_id=c.external_id, stacks=own, preflight=hook)
        )
    return first, targets


# --------------------------------------------------------------------------- arguments


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, not {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, not {value}")
    return value


def add_deploy_arguments(s: argparse.ArgumentParser) -> None:
    """The rollout, plan, report and lock options of ``vend deploy``."""
    g = s.add_argument_group("rollout")
    g.add_argument(
        "--canary",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="deploy the first N clients first; stop if any of them fails (default 0: no canary)",
    )
    g.add_argument(
        "--max-failures",
        type=positive_int,
        default=None,
        metavar="K",
        help="stop starting new clients once K clients failed (default: never stop)",
    )
    g.add_argument(
        "--only-changed",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="skip stacks whose template, tags and parameters are already deployed (default); "
        "--no-only-changed always makes a change set (an empty one counts as unchanged)",
    )
    g.add_argument(
        "--recreate-failed",
        action="store_true",
        help="delete and recreate stacks in ROLLBACK_COMPLETE (their creation failed); never done without it",
    )
    g.add_argument(
        "--stack-timeout",
        type=positive_float,
        default=1800.0,
        metavar="SECONDS",
        help="per stack: how long to wait for a busy stack, a change set, an execution (default 1800)",
    )
    g.add_argument("--poll", type=positive_float, default=2.0, metavar="SECONDS", help=argparse.SUPPRESS)
    g.add_argument(
        "--plan",
        action="store_true",
        help="dry run: show what would change per client, in deploy order; touches nothing; exits 1 when a "
        "stack is blocked (e.g. ROLLBACK_COMPLETE without --recreate-failed, DELETE_FAILED) or a client "
        "cannot be planned, 0 otherwise",
    )
    g.add_argument("--format", choices=["text", "json", "markdown"], default="text", help="format of --plan output")
    g = s.add_argument_group("stack protection (termination protection and stack policy, see README)")
    g.add_argument(
        "--verify-protection",
        action="store_true",
        help="also read the stack policy of unchanged stacks (one call each) and restore what is missing; "
        "run it after `cdk deploy`, which cannot set stack policies",
    )
    g.add_argument(
        "--allow-protected-change",
        action="append",
        default=[],
        metavar="PATTERN",
        help="let an update replace or delete protected resources whose logical id or resource type matches "
        "PATTERN (repeatable; shell-style wildcards): a temporary stack policy override for that update only",
    )
    g = s.add_argument_group("reports")
    g.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="write deploy-report.json, deploy-report.md and deploy-junit.xml (with --plan: deploy-plan.*)",
    )
    g.add_argument(
        "--progress",
        choices=["auto", "tty", "plain", "quiet"],
        default="auto",
        help="live progress: a bar on a terminal, plain lines in CI or when piped (default auto)",
    )
    g = s.add_argument_group("lock")
    g.add_argument(
        "--no-lock",
        action="store_true",
        help="do not take the deploy lock (s3://vend-deploy-<account>-<region>/locks/deploy.lock, with the "
        "log-archive account and region); for one-off recovery only",
    )
    g.add_argument(
        "--lock-stale-after",
        type=positive_float,
        default=DEFAULT_STALE_AFTER_S,
        metavar="SECONDS",
        help="a lock not renewed for this long belongs to a dead run and is taken over "
        f"(default {DEFAULT_STALE_AFTER_S:g})",
    )


def add_faults_argument(s: argparse.ArgumentParser) -> None:
    s.add_argument(
        "--faults",
        type=Path,
        metavar="FILE",
        help="inject errors, latency and preset stack states from this YAML file (see README)",
    )


def load_faults(path: Path | None) -> tuple[Any, int]:
    """The validated fault plan (None without a file) and an exit code (2 when invalid)."""
    if path is None:
        return None, EXIT_OK
    from scripts.emulator.faults import load_fault_file

    plan, problems = load_fault_file(path)
    for problem in problems:
        print(problem, file=sys.stderr)
    if plan is None:
        _err(f"{len(problems)} problem(s) in the fault file; nothing was started")
        return None, EXIT_INVALID
    return plan, EXIT_OK


# --------------------------------------------------------------------------- deploy


class _Signals:
    """SIGINT/SIGTERM during a rollout: the first stops new work, the second quits at once."""

    def __init__(self, cancel: Cancel, progress: Progress, on_second: Callable[[str], None]) -> None:
        self.cancel = cancel
        self.progress = progress
        self.on_second = on_second
        self.received: str | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *_: object) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            self.on_second(name)
            return
        self.received = name
        self.cancel.set(f"interrupted by {name}")
        self.progress.note(
            f"vend: {name}: no new clients start; in-flight operations are reported as in flight "
            "(CloudFormation finishes them); writing the report. Send it again to quit at once."
        )


def _lock_for(access: AwsAccess, portfolio: Portfolio, first: Target | None, args: argparse.Namespace) -> DeployLock:
    """The portfolio's deploy lock, in vend's bucket of the log-archive account (made if missing)."""
    la = portfolio.defaults.log_archive
    if first is not None and first.role_arn:
        session = access.assume_role(
            first.role_arn, external_id=first.external_id, session_name="vend-deploy-lock", region=la.region
        )
    else:
        session = access.base_session()
    s3 = access.client(session, "s3", la.region)
    bucket = vend_bucket_name(la.account_id, la.region)
    try:
        ensure_private_bucket(s3, bucket, la.region, la.account_id)
    except (ClientError, BotoCoreError) as err:
        raise LockUnavailable(f"cannot make or reach the lock's bucket {bucket}: {err}") from err
    command = "vend " + " ".join(sys.argv[1:]) if sys.argv else "vend deploy"
    return DeployLock(s3, bucket, stale_after_s=args.lock_stale_after, command=command)


def _meta(args: argparse.Namespace, clients: Sequence[str], canary: Sequence[str]) -> dict[str, Any]:
    return {
        "command": "vend " + " ".join(sys.argv[1:]) if sys.argv else "vend deploy",
        "clients": len(clients),
        "options": {
            "concurrency": args.concurrency,
            "canary": args.canary,
            "max_failures": args.max_failures,
            "only_changed": args.only_changed,
            "recreate_failed": args.recreate_failed,
            "stack_timeout_s": args.stack_timeout,
            "verify_protection": args.verify_protection,
            "allow_protected_change": list(args.allow_protected_change),
        },
        "canary_clients": list(canary),
    }


def _exit_code(report: RolloutReport, signalled: bool) -> int:
    if signalled:
        return EXIT_INTERRUPTED
    return EXIT_OK if report.ok else EXIT_FAILED


def deploy_command(
    args: argparse.Namespace,
    access: AwsAccess,
    portfolio: Portfolio,
    assembly: Path,
    clients: Sequence[str],
    *,
    stream: Any = None,
) -> int:
    """Plan or deploy ``clients`` from ``assembly``; print progress and the table; write reports."""
    out = stream or sys.stdout
    try:
        stacks = read_assembly(assembly)
    except Exception as err:  # AssemblyError and friends: nothing was deployed
        _err(str(err))
        return EXIT_INVALID
    first, targets = build_targets(portfolio, stacks, clients)
    stack_options = StackOptions(
        timeout_s=args.stack_timeout,
        poll_s=args.poll,
        recreate_failed=args.recreate_failed,
        only_changed=args.only_changed,
        protection=ProtectionOptions(verify=args.verify_protection, allow=tuple(args.allow_protected_change)),
    )
    canary = [t.name for t in targets[: args.canary]]
    meta = _meta(args, clients, canary)
    if args.plan:
        plans = plan_targets(access, first=first, targets=targets, concurrency=args.concurrency, options=stack_options)
        print(render_plan(plans, args.format, meta=meta), file=out)
        if args.report:
            for path in write_plan(plans, args.report, meta=meta):
                print(f"wrote {path}", file=sys.stderr)
        return EXIT_OK if all(p.ok for p in plans) and not blocked_stacks(plans) else EXIT_FAILED

    cancel = Cancel()
    progress = Progress(len(targets) + (1 if first else 0), stream=out, mode=args.progress)
    finished: list[TargetResult] = []
    started: dict[str, Target] = {}
    lock: DeployLock | None = None
    lock_note: dict[str, Any] = {"url": None, "state": "not used" if args.no_lock else "not taken"}

    def on_start(target: Target) -> None:
        started[target.name] = target
        progress.start(target)

    def on_result(result: TargetResult) -> None:
        finished.append(result)
        progress.result(result)

    def write(report: RolloutReport, code: int) -> None:
        if args.report:
            data = report_data(report, meta={**meta, "lock": lock_note}, exit_code=code)
            for path in write_reports(data, args.report):
                print(f"wrote {path}", file=sys.stderr, flush=True)

    def second_signal(name: str) -> None:
        """Quit now: whatever is known goes into the report; running clients are unknown."""
        done = {r.name for r in finished}
        rest: list[TargetResult] = []
        for target in ([first] if first else []) + targets:
            if target.name in done:
                continue
            if target.name in started:
                result = _skipped_target(
                    target,
                    f"{name} again: vend quit while this target was deploying; "
                    "its stacks may still be changing: check them, then deploy again",
                )
                rest.append(TargetResult(result.name, result.account, "IN_FLIGHT", result.detail, result.stacks))
            else:
                rest.append(_skipped_target(target, f"not started: interrupted by {name}"))
        report = RolloutReport(tuple(finished + rest), f"interrupted by {name} twice", True)
        progress.close()
        write(report, EXIT_INTERRUPTED)
        _err(f"{name} again: quit without waiting for in-flight calls")
        os._exit(EXIT_INTERRUPTED)

    def take_lock() -> str | None:
        nonlocal lock
        try:
            if lock is None:
                lock = _lock_for(access, portfolio, first, args)
            lock.acquire()
        except LockHeld as err:
            lock_note["state"] = "held by another run"
            return f"deploy lock held: {err}"
        except AssumeRoleError as err:
            lock_note["state"] = "log-archive role not assumable"
            return f"cannot take the deploy lock: {err}"
        except LockUnavailable as err:
            lock_note["state"] = "unavailable"
            return f"cannot take the deploy lock: {err}"
        lock_note.update(lock.describe(), state="taken")
        lock.start_heartbeat(lambda reason: cancel.set(f"lost the deploy lock: {reason}"))
        progress.note(f"deploy lock taken: {lock.url} (run {lock.run_id})")
        if lock.took_over:
            progress.note(f"  took over a stale lock of run {lock.took_over.get('run_id')} ({lock.took_over})")
        return None

    before_clients: Callable[[], str | None] | None = None
    if not args.no_lock:
        refusal = take_lock()
        if refusal and lock_note["state"] == "log-archive role not assumable":
            before_clients = take_lock  # the MSP side fails with this same error first; no client starts
        elif refusal:
            progress.close()
            hint = "" if lock_note["state"] == "held by another run" else " (--no-lock skips the lock, for recovery)"
            _err(refusal + hint)
            reason = f"not started: {refusal}"
            everyone = ([first] if first else []) + targets
            write(RolloutReport(tuple(_skipped_target(t, reason) for t in everyone), refusal), EXIT_FAILED)
            return EXIT_FAILED

    options = RolloutOptions(
        concurrency=args.concurrency, canary=args.canary, max_failures=args.max_failures, stack=stack_options
    )
    signals = _Signals(cancel, progress, second_signal)
    try:
        with signals:
            report = run_rollout(
                access,
                first=first,
                targets=targets,
                options=options,
                cancel=cancel,
                on_start=on_start,
                on_result=on_result,
                before_clients=before_clients,
            )
    finally:
        if lock is not None:
            lock.release()
        progress.close()
    code = _exit_code(report, signals.received is not None)
    print(summary_table(report), file=out, flush=True)
    write(report, code)
    return code
