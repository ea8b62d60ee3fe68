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
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from botocore.exceptions import BotoCoreError, ClientError

from baseline.portfolio import Portfolio
from baseline.spec import LOG_ARCHIVE_STACK_NAME
from baseline.stacksets import ADMIN_ROLE_NAME, STACKSETS_ADMIN_STACK_NAME
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
    open_session,
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
from scripts.ledger import Ledger, LedgerError
from scripts.lock import DEFAULT_STALE_AFTER_S, DeployLock, LockHeld, LockUnavailable
from scripts.stack_protection import ProtectionOptions
from scripts.stackset_layout import Layout, read_layout
from scripts.stacksets import StackSetOptions, StackSetsEngine, StackSetsError

CLIENT_TAG = "vend:client"
MSP_TARGET = "msp-log-archive"
ADMIN_TARGET = "msp-stacksets-admin"
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
    by_client: dict[str, list[StackArtifact]] = {}
    for s in stacks:
        by_client.setdefault(s.tags.get(CLIENT_TAG, ""), []).append(s)
    targets = []
    for name in clients:
        c = portfolio.client(name)
        hooks = _ClientHooks(portfolio, name)
        targets.append(
            Target(
                name=name,
                role_arn=c.deploy_role_arn,
                external_id=c.external_id,
                stacks=tuple(by_client.get(name, ())),
                preflight=hooks.preflight,
                before_stack=hooks.before_stack,
            )
        )
    return first, targets


class _ClientHooks:
    """A client's preflight and imports (issue 6: what the account had before vend), made from
    its baseline on first use: a client the deploy ledger finds unchanged never needs them, and
    the baselines of 1,000 clients cost half a second before the rollout could start."""

    def __init__(self, portfolio: Portfolio, client: str) -> None:
        self._portfolio, self._client = portfolio, client
        self._lock = threading.Lock()  # regional stacks run in parallel
        self._made: tuple[Callable[..., str | None], Any] | None = None

    def _hooks(self) -> tuple[Callable[..., str | None], Any]:
        with self._lock:
            if self._made is None:
                from baseline.spec import client_baseline
                from scripts.preflight import deploy_hook
                from scripts.resource_import import Importer, adopts

                baseline = client_baseline(self._portfolio.client(self._client), self._portfolio.defaults)
                # What the client adopts is imported into its stacks before their update.
                importer = Importer(baseline) if adopts(baseline) else None
                self._made = (deploy_hook(baseline, importer), importer)
            return self._made

    def preflight(self, access: AwsAccess, session: Any) -> str | None:
        return self._hooks()[0](access, session)

    def before_stack(self, access: AwsAccess, session: Any, cfn: Any, stack: StackArtifact) -> str | None:
        importer = self._hooks()[1]
        return None if importer is None else importer(access, session, cfn, stack)


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
        "--refresh",
        action="store_true",
        help="check every stack live instead of trusting the deploy ledger for clients whose templates did not "
        "change (the ledger is vend's record of its last successful deploys; without this flag such a client "
        "costs two API calls: AssumeRole and DescribeStacks of its global stack)",
    )
    g = s.add_argument_group("engine (see README: direct mode or StackSets)")
    g.add_argument(
        "--engine",
        choices=["direct", "stacksets"],
        default="direct",
        help="direct (default): change sets in each client account with the client's deploy role; stacksets: "
        "CloudFormation StackSets from the MSP account, one stack set per baseline template",
    )
    g.add_argument(
        "--stacksets-region",
        metavar="REGION",
        help="where the stack sets live in the MSP account (default: the log-archive region)",
    )
    g.add_argument(
        "--max-concurrent-percent",
        type=positive_int,
        default=25,
        metavar="P",
        help="stacksets: accounts an operation deploys to at once, in percent (default 25)",
    )
    g.add_argument(
        "--failure-tolerance-percent",
        type=non_negative_int,
        default=10,
        metavar="P",
        help="stacksets: failed accounts, in percent, before an operation stops in a region (default 10)",
    )
    g.add_argument(
        "--region-order",
        type=lambda text: tuple(r.strip() for r in text.split(",") if r.strip()),
        default=(),
        metavar="R1,R2",
        help="stacksets: regions first, in this order (with --region-concurrency sequential)",
    )
    g.add_argument(
        "--region-concurrency",
        choices=["parallel", "sequential"],
        default="parallel",
        help="stacksets: regions of an operation at once (default) or one after the other",
    )
    g.add_argument(
        "--move-stacks",
        action="store_true",
        help="stacksets: let a client whose template changed kind (engagement, profiles, budget thresholds) move "
        "to another stack set; its baseline resources are deleted and created again there",
    )
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
    prepare: Callable[[], int] | None = None,
) -> int:
    """Plan or deploy ``clients`` from ``assembly``; print progress and the table; write reports.

    ``prepare`` (e.g. synthesizing ``assembly``) runs first; a non-zero result is returned as
    is. For a deploy it runs under vend's signal handling: an interrupt there still exits 130
    with a report that nothing was started.
    """
    out = stream or sys.stdout
    if args.plan and getattr(args, "engine", "direct") == "stacksets":
        _err(
            "--plan shows direct mode's change sets; with --engine stacksets, see what would change with "
            "`vend diff` (the same templates) and the stack sets' state in the MSP account"
        )
        return EXIT_INVALID
    if not args.plan:
        return _DeployRun(args, access, portfolio, clients, out).run(assembly, prepare)
    if prepare is not None and (code := prepare()) != EXIT_OK:
        return code
    try:
        stacks = read_assembly(assembly)
    except Exception as err:  # AssemblyError and friends: nothing was deployed
        _err(str(err))
        return EXIT_INVALID
    first, targets = build_targets(portfolio, stacks, clients)
    meta = _meta(args, clients, clients[: args.canary])
    plans = plan_targets(
        access, first=first, targets=targets, concurrency=args.concurrency, options=_stack_options(args)
    )
    print(render_plan(plans, args.format, meta=meta), file=out)
    if args.report:
        for path in write_plan(plans, args.report, meta=meta):
            print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK if all(p.ok for p in plans) and not blocked_stacks(plans) else EXIT_FAILED


def _stack_options(args: argparse.Namespace, ledger: Ledger | None = None) -> StackOptions:
    return StackOptions(
        timeout_s=args.stack_timeout,
        poll_s=args.poll,
        recreate_failed=args.recreate_failed,
        only_changed=args.only_changed,
        protection=ProtectionOptions(verify=args.verify_protection, allow=tuple(args.allow_protected_change)),
        ledger=ledger,
        refresh=getattr(args, "refresh", False),
    )


def _ledger_for(
    access: AwsAccess, portfolio: Portfolio, first: Target | None, lock: DeployLock | None = None
) -> tuple[Ledger | None, str]:
    """The deploy ledger next to the lock (scripts/ledger.py), or None and why not. With the
    lock taken, through the lock's client: its bucket is made and the role assumed already."""
    la = portfolio.defaults.log_archive
    try:
        if lock is not None:
            return Ledger(lock.s3, lock.bucket, owner=la.account_id).load(), ""
        if first is not None and first.role_arn:
            session = access.assume_role(
                first.role_arn, external_id=first.external_id, session_name="vend-deploy-ledger", region=la.region
            )
        else:
            session = access.base_session()
        s3 = access.client(session, "s3", la.region)
        bucket = vend_bucket_name(la.account_id, la.region)
        ensure_private_bucket(s3, bucket, la.region, la.account_id)
        return Ledger(s3, bucket, owner=la.account_id).load(), ""
    except (AssumeRoleError, ClientError, BotoCoreError, LedgerError) as err:
        return None, f"deploy ledger not available ({err}): every stack is checked live"


QUIT_LOCK_TIMEOUT_S = 2.0  # after a second signal: how long vend still tries to give the lock back


def _quit_now(code: int) -> NoReturn:
    """Leave at once: worker threads may be inside AWS calls that nobody waits for."""
    os._exit(code)


class _Interrupted(KeyboardInterrupt):
    """The first signal while vend prepares (e.g. synthesizes): stop that work; nothing started."""


_FIRST_SIGNAL = {
    "preparing": "nothing was deployed; stopping before anything starts",
    "deploying": "no new clients start; in-flight operations are reported as in flight (CloudFormation finishes them)",
    "finishing": "the rollout is over; giving the deploy lock back",
}


class _DeployRun:
    """One ``vend deploy`` (not ``--plan``), with what a signal handler needs for an honest report.

    SIGINT and SIGTERM are vend's from the start until the report is written and the lock given
    back, through ``phase``: preparing (synthesis, the assembly) -> deploying (the lock, the
    rollout) -> finishing (lock release, summary, report). The first signal stops new work
    (while preparing, at once: nothing has started); the second quits at once, and still writes
    the report with whatever is known and tries to give the lock back (QUIT_LOCK_TIMEOUT_S).
    """

    def __init__(
        self, args: argparse.Namespace, access: AwsAccess, portfolio: Portfolio, clients: Sequence[str], out: Any
    ) -> None:
        self.args = args
        self.access = access
        self.portfolio = portfolio
        self.clients = list(clients)
        self.out = out
        self.meta = _meta(args, clients, clients[: args.canary])
        self.cancel = Cancel()
        self.phase = "preparing"
        self.received: str | None = None  # the first signal
        self.first: Target | None = None
        self.targets: list[Target] = []
        self.progress: Progress | None = None
        self.finished: list[TargetResult] = []
        self.started: dict[str, Target] = {}
        self.lock: DeployLock | None = None
        self.ledger: Ledger | None = None
        self.layout = Layout()
        self.admin: tuple[StackArtifact, ...] = ()
        self.lock_note: dict[str, Any] = {"url": None, "state": "not used" if args.no_lock else "not taken"}
        self.report: RolloutReport | None = None
        self.written = False
        self._quitting = False
        self._old_handlers: dict[int, Any] = {}

    # ---- the run

    def run(self, assembly: Path, prepare: Callable[[], int] | None) -> int:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            code = self._prepare(assembly, prepare)
            if self.phase == "preparing":
                return self._stopped_before_start() if self.received else (code or EXIT_OK)
            return self._deploy()
        finally:
            for signum, old in self._old_handlers.items():
                signal.signal(signum, old)

    def _prepare(self, assembly: Path, prepare: Callable[[], int] | None) -> int | None:
        """Synthesis, the assembly and the targets; an exit code when the run ends here."""
        try:
            if prepare is not None and (code := prepare()) != EXIT_OK:
                return code
            try:
                stacks = read_assembly(assembly)
                if self.args.engine == "stacksets":
                    self.layout = read_layout(assembly)
            except Exception as err:  # AssemblyError, LayoutError and friends: nothing was deployed
                _err(str(err))
                return EXIT_INVALID
            self.first, self.targets = build_targets(self.portfolio, stacks, self.clients)
            self.admin = tuple(s for s in stacks if s.stack_name == STACKSETS_ADMIN_STACK_NAME)
            self.phase = "deploying"
        except _Interrupted:
            pass
        return None

    def _stopped_before_start(self) -> int:
        reason = self.cancel.reason
        _err(f"{reason} before anything was deployed; nothing was started")
        skipped = tuple(_skipped_target(t, f"not started: {reason}") for t in self._everyone())
        self._write(RolloutReport(skipped, f"{reason} before the rollout started", True), EXIT_INTERRUPTED)
        return EXIT_INTERRUPTED

    def _deploy(self) -> int:
        args = self.args
        self.progress = Progress(len(self._everyone()), stream=self.out, mode=args.progress)
        before_clients: Callable[[], str | None] | None = None
        if not args.no_lock:
            refusal = self._take_lock()
            if refusal and self.lock_note["state"] == "log-archive role not assumable":
                before_clients = self._take_lock  # the MSP side fails with this same error first; no client starts
            elif refusal:
                self.phase = "finishing"
                self.progress.close()
                held = self.lock_note["state"] == "held by another run"
                _err(refusal + ("" if held else " (--no-lock skips the lock, for recovery)"))
                code = EXIT_INTERRUPTED if self.received else EXIT_FAILED
                skipped = tuple(_skipped_target(t, f"not started: {refusal}") for t in self._everyone())
                self.report = RolloutReport(skipped, refusal, self.cancel.is_set())
                self._write(self.report, code)
                return code
        if args.only_changed and not args.refresh:
            taken = self.lock if self.lock_note["state"] == "taken" else None
            self.ledger, why = _ledger_for(self.access, self.portfolio, self.first, taken)
            if why:
                self._say(f"vend: {why}", err=True)
        options = RolloutOptions(
            concurrency=args.concurrency,
            canary=args.canary,
            max_failures=args.max_failures,
            stack=_stack_options(args, self.ledger),
        )
        try:
            if args.engine == "stacksets":
                self.report = self._stacksets(options, before_clients)
            else:
                self.report = run_rollout(
                    self.access,
                    first=self.first,
                    targets=self.targets,
                    options=options,
                    cancel=self.cancel,
                    on_start=self._on_start,
                    on_result=self._on_result,
                    before_clients=before_clients,
                )
        finally:
            self.phase = "finishing"
            self.progress.close()
            self._save_ledger()
            if self.lock is not None:
                self.lock_note["released"] = self.lock.release()
        code = _exit_code(self.report, self.received is not None)
        print(summary_table(self.report), file=self.out, flush=True)
        self._write(self.report, code)
        return code

    def _stacksets(self, options: RolloutOptions, before_clients: Callable[[], str | None] | None) -> RolloutReport:
        """The MSP side (log archive, then the StackSets admin role) as in direct mode, then
        every client through StackSets (scripts/stacksets.py)."""
        args = self.args
        start = time.time()
        admin = [Target(ADMIN_TARGET, None, None, self.admin)] if self.admin else []
        msp = run_rollout(
            self.access,
            first=self.first,
            targets=admin,
            options=options,
            cancel=self.cancel,
            on_start=self._on_start,
            on_result=self._on_result,
            before_clients=before_clients,
        )
        names = [t.name for t in self.targets]
        if not msp.ok or self.cancel.is_set():
            reason = msp.stop_reason or self.cancel.reason or "the MSP side failed: no client was deployed"
            skipped = [_skipped_target(t, f"not started: {reason}") for t in self.targets]
            return RolloutReport((*msp.results, *skipped), reason, self.cancel.is_set(), start, time.time() - start)
        msp_account = self.portfolio.defaults.msp.account_id
        region = args.stacksets_region or self.portfolio.defaults.log_archive.region
        engine = StackSetsEngine(
            self.access,
            self.layout,
            StackSetOptions(
                region=region,
                admin_role_arn=f"arn:aws:iam::{msp_account}:role/{ADMIN_ROLE_NAME}",
                max_concurrent_percentage=args.max_concurrent_percent,
                failure_tolerance_percentage=args.failure_tolerance_percent,
                region_order=args.region_order,
                region_concurrency="SEQUENTIAL" if args.region_concurrency == "sequential" else "PARALLEL",
                move_stacks=args.move_stacks,
                refresh=args.refresh,
                max_operations=args.concurrency,
                poll_s=args.poll,
                timeout_s=args.stack_timeout,
            ),
            ledger=self.ledger,
            cancel=self.cancel,
            progress=lambda text: self._say(f"  {text}"),
            preflight=self._preflight_for,
        )
        for target in self.targets:
            self._on_start(target)
        try:
            results = engine.run(names)
        except (ClientError, BotoCoreError, StackSetsError) as err:
            detail = f"StackSets: {err}"
            results = [_skipped_target(t, detail, outcome="FAILED") for t in self.targets]
        for result in results:
            self._on_result(result)
        for note in engine.notes:
            self._say(f"  {note}")
        stop = f"interrupted ({self.cancel.reason})" if self.cancel.is_set() else ""
        return RolloutReport((*msp.results, *results), stop, self.cancel.is_set(), start, time.time() - start)

    def _preflight_for(self, client: str) -> str | None:
        """A client's preflight with its deploy role (StackSets creates its stacks with the
        execution role; inherited resources must be found before, as in direct mode)."""
        target = next((t for t in self.targets if t.name == client), None)
        if target is None or target.preflight is None or not target.stacks:
            return None
        try:
            session, _ = open_session(self.access, target, target.stacks[0].region)
        except (AssumeRoleError, ClientError, BotoCoreError) as err:
            return f"preflight could not reach the account: {err}"
        return target.preflight(self.access, session)

    def _save_ledger(self) -> None:
        if self.ledger is None:
            return
        try:
            self.ledger.save()
        except LedgerError as err:
            self._say(
                f"vend: the deploy ledger was not updated ({err}); the next run checks every stack live", err=True
            )

    def _everyone(self) -> list[Target]:
        """The targets in deploy order; before the assembly is read, the portfolio's (no stacks)."""
        if self.first is not None or self.targets:
            return ([self.first] if self.first else []) + self.targets
        la = self.portfolio.defaults.log_archive
        clients = [Target(c, self.portfolio.client(c).deploy_role_arn, None, ()) for c in self.clients]
        return [Target(MSP_TARGET, la.deploy_role_arn, None, ()), *clients]

    def _on_start(self, target: Target) -> None:
        self.started[target.name] = target
        if self.progress is not None:
            self.progress.start(target)

    def _on_result(self, result: TargetResult) -> None:
        self.finished.append(result)
        if self.progress is not None:
            self.progress.result(result)

    def _take_lock(self) -> str | None:
        try:
            if self.lock is None:
                self.lock = _lock_for(self.access, self.portfolio, self.first, self.args)
            self.lock.acquire()
        except LockHeld as err:
            self.lock_note["state"] = "held by another run"
            return f"deploy lock held: {err}"
        except AssumeRoleError as err:
            self.lock_note["state"] = "log-archive role not assumable"
            return f"cannot take the deploy lock: {err}"
        except LockUnavailable as err:
            self.lock_note["state"] = "unavailable"
            return f"cannot take the deploy lock: {err}"
        lock = self.lock
        self.lock_note.update(lock.describe(), state="taken")
        lock.start_heartbeat(lambda reason: self.cancel.set(f"lost the deploy lock: {reason}"))
        self._say(f"deploy lock taken: {lock.url} (run {lock.run_id})")
        if lock.took_over:
            self._say(f"  took over a stale lock of run {lock.took_over.get('run_id')} ({lock.took_over})")
        return None

    def _write(self, report: RolloutReport, code: int) -> None:
        paths: list[Path] = []
        if self.args.report:
            data = report_data(report, meta={**self.meta, "lock": self.lock_note}, exit_code=code)
            paths = write_reports(data, self.args.report)
        self.written = True
        for path in paths:
            self._say(f"wrote {path}", err=True)

    # ---- signals (the handler runs in the main thread, between any two of its bytecodes)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            self._quit(name)
            return
        self.received = name
        self.cancel.set(f"interrupted by {name}")
        self._say(f"vend: {name}: {_FIRST_SIGNAL[self.phase]}; writing the report. Send it again to quit at once.")
        if self.phase == "preparing":
            raise _Interrupted(name)

    def _quit(self, name: str) -> None:
        """The second signal: write what is known, give the lock back (bounded), leave now."""
        if self._quitting:
            return
        self._quitting = True
        try:
            with contextlib.suppress(Exception):
                if self.progress is not None:
                    self.progress.close()
            if not self.written:
                try:
                    self._write(self._report_so_far(name), EXIT_INTERRUPTED)
                except Exception as err:  # a full disk must not keep vend from quitting
                    self._say(f"vend: could not write the report: {err}", err=True)
            lock = self.lock
            if lock is not None and lock.held:
                if lock.release(timeout_s=QUIT_LOCK_TIMEOUT_S):
                    self._say(f"vend: deploy lock released ({lock.url})", err=True)
                else:
                    self._say(
                        f"vend: could not release the deploy lock {lock.url}; it goes stale "
                        f"{lock.stale_after_s:g}s after its last renewal (or delete it once no vend deploy runs)",
                        err=True,
                    )
            self._say(f"vend: {name} again: quit without waiting for in-flight calls", err=True)
        finally:
            _quit_now(EXIT_INTERRUPTED)

    def _report_so_far(self, name: str) -> RolloutReport:
        """The report of a run that quits now: what finished, what was running, what never started."""
        if self.report is not None:
            return self.report
        twice = "twice" if name == self.received else f"then {name}"
        done = {r.name for r in self.finished}
        rest: list[TargetResult] = []
        for target in self._everyone():
            if target.name in done:
                continue
            if target.name in self.started:
                result = _skipped_target(
                    target,
                    f"{name} again: vend quit while this target was deploying; "
                    "its stacks may still be changing: check them, then deploy again",
                )
                rest.append(TargetResult(result.name, result.account, "IN_FLIGHT", result.detail, result.stacks))
            else:
                rest.append(_skipped_target(target, f"not started: interrupted by {self.received}"))
        return RolloutReport(tuple(self.finished + rest), f"interrupted by {self.received} {twice}", True)

    def _say(self, text: str, *, err: bool = False) -> None:
        """Print, also from the signal handler, which may have interrupted a write to the same stream."""
        stream = sys.stderr if err else self.out
        try:
            if self.progress is not None and not err and self.phase != "finishing":
                self.progress.note(text)
            else:
                print(text, file=stream, flush=True)
        except (RuntimeError, OSError, ValueError):  # "reentrant call": write around the buffer
            with contextlib.suppress(OSError, ValueError, AttributeError):
                os.write(stream.fileno(), (text + "\n").encode())
