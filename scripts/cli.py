"""The ``vend`` command line: a thin layer over the driver library.

Exit codes (DESIGN.md): 0 ok; 1 a deploy failed or a drift check could not run;
2 invalid input (nothing synthesized or deployed); 3 drift found.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from baseline.portfolio import Portfolio, current_date, load_portfolio, render_schema
from scripts.assembly import read_assembly
from scripts.aws import AssumeRoleError, AwsAccess
from scripts.deploy import RolloutOptions, StackOptions, TargetResult, run_rollout
from scripts.deploy_cmd import (
    DEFAULT_CONCURRENCY,
    add_deploy_arguments,
    add_faults_argument,
    build_targets,
    deploy_command,
    load_faults,
    positive_int,
)
from scripts.drift import drift_portfolio
from scripts.report import deploy_line, deploy_summary, render_drift
from scripts.synth import default_cache_dir, stale_clients, synthesize

CLIENT_TAG = "vend:client"
EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_DRIFT = 0, 1, 2, 3


def _err(message: str) -> None:
    print(f"vend: {message}", file=sys.stderr)


def _load(overrides: Path, *, quiet_ok: bool = True) -> Portfolio | None:
    # Files that passed before are not checked again (`vend validate` always checks all).
    portfolio, problems = load_portfolio(overrides, cache_dir=default_cache_dir())
    for p in problems:
        print(p, file=sys.stderr)
    if portfolio is None:
        errors = sum(1 for p in problems if p.severity == "error")
        _err(f"{errors} error(s) in the override files; nothing was synthesized or deployed")
    return portfolio


def _select(portfolio: Portfolio, clients: Sequence[str], all_: bool) -> list[str] | None:
    """Return the selected client names, or None (after printing why) when the selection is bad."""
    if all_ == bool(clients):
        _err("name one or more clients, or pass --all")
        return None
    known = {c.client for c in portfolio.clients}
    unknown = [c for c in clients if c not in known]
    if unknown:
        _err(f"unknown client(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        return None
    return sorted(known) if all_ else list(clients)


def _access(args: argparse.Namespace) -> AwsAccess:
    return AwsAccess(endpoint_url=args.endpoint_url)


# --- commands ---------------------------------------------------------------------------


def cmd_validate(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.paths] or [args.overrides]
    portfolio, problems = load_portfolio(paths)
    for p in problems:
        print(p)
    if portfolio is None:
        print(f"{sum(1 for p in problems if p.severity == 'error')} error(s)")
        return EXIT_INVALID
    print(f"{len(portfolio.clients)} client file(s) valid")
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    """Print the override file's JSON Schema (committed as baseline/override.schema.json)."""
    sys.stdout.write(render_schema())
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    portfolio = _load(args.overrides)
    if portfolio is None:
        return EXIT_INVALID
    rows = [
        {
            "client": c.client,
            "account_id": c.account_id,
            "home_region": c.home_region,
            "regions": list(c.regions),
            "engagement": c.engagement,
            "profiles": list(c.profiles),
        }
        for c in portfolio.clients
    ]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'client':<20} {'account':<13} {'home':<15} {'engagement':<11} regions")
        for r in rows:
            regions = ",".join(r["regions"])
            print(f"{r['client']:<20} {r['account_id']:<13} {r['home_region']:<15} {r['engagement']:<11} {regions}")
    return EXIT_OK


def cmd_synth(args: argparse.Namespace) -> int:
    # synthesize() validates first (exit 2, nothing written) and prints what it built:
    # stacks, shapes, prototypes the CDK built, and whether the MSP side came from the cache.
    return synthesize(args.overrides, args.output, client=args.client)


def run_deploy(
    access: AwsAccess,
    portfolio: Portfolio,
    assembly: Path,
    clients: Sequence[str],
    concurrency: int,
    *,
    poll_s: float = 2.0,
) -> list[TargetResult]:
    """Deploy with default rollout options, one status line per target (the demo's deploy)."""
    first, targets = build_targets(portfolio, read_assembly(assembly), clients)
    report = run_rollout(
        access,
        first=first,
        targets=targets,
        options=RolloutOptions(concurrency=concurrency, stack=StackOptions(poll_s=poll_s)),
        on_result=lambda r: print(deploy_line(r), flush=True),
    )
    return list(report.results)


def cmd_deploy(args: argparse.Namespace) -> int:
    portfolio = _load(args.overrides)
    if portfolio is None:
        return EXIT_INVALID
    clients = _select(portfolio, args.clients, args.all)
    if clients is None:
        return EXIT_INVALID
    if args.assembly is not None:
        return deploy_command(args, _access(args), portfolio, args.assembly, clients)

    def prepare() -> int:
        # Under vend deploy's signal handling: an interrupt here still writes a report.
        # Says what it built: "0 prototype(s) built by the CDK" when no client's inputs changed.
        return synthesize(args.overrides, args.output, portfolio=portfolio)

    return deploy_command(args, _access(args), portfolio, args.output, clients, prepare=prepare)


def cmd_drift(args: argparse.Namespace) -> int:
    portfolio = _load(args.overrides) or _load_despite_expired_exceptions(
        args.overrides, "drift checks the controls they waived (see the findings)"
    )
    if portfolio is None:
        return EXIT_INVALID
    clients = _select(portfolio, args.clients, args.all)
    if clients is None:
        return EXIT_INVALID
    access = _access(args)
    with tempfile.TemporaryDirectory(prefix="vend-drift-") as tmp:
        assembly = args.assembly
        stale_note = None
        if assembly is not None and (stale := stale_clients(assembly, portfolio, clients)):
            # OUTDATED means "not what the current code and overrides produce": an older assembly
            # would call an old deployment current (live drift) and a new one outdated, and
            # remediation would deploy it. Compared with a fresh synthesis instead.
            more = f" and {len(stale) - 5} more" if len(stale) > 5 else ""
            stale_note = (
                f"the given assembly {assembly} is not what the current code and overrides synthesize "
                f"(for {', '.join(stale[:5])}{more}): deployed templates were compared with a fresh synthesis"
            )
            _err(stale_note)
            assembly = None
        if assembly is None:
            # The current code and overrides, to tell OUTDATED stacks from drifted ones.
            assembly = Path(tmp) / "cdk.out"
            if synthesize(args.overrides, assembly, validation=False, quiet=True) != 0:
                _err("synthesis failed: deployed templates are not compared (OUTDATED not checked)")
                assembly = None
        report = drift_portfolio(access, portfolio, clients, concurrency=args.concurrency, assembly=assembly)
        if stale_note:
            report.notes.append(stale_note)
        if args.remediate:
            from scripts.remediate import actions_table, confirm, remediate_portfolio

            actions = remediate_portfolio(access, portfolio, report, assembly=assembly, concurrency=args.concurrency)
            report = drift_portfolio(access, portfolio, clients, concurrency=args.concurrency, assembly=assembly)
            # DONE only where the re-check is in sync.
            actions = confirm(actions, report)
            # The remediation log goes to stderr: stdout stays the (re-checked) report in --format.
            print(actions_table(actions), file=sys.stderr if args.format != "table" else sys.stdout, flush=True)
            report.remediation = [a.to_dict() for a in actions]
            if stale_note:
                report.notes.append(stale_note)
    print(render_drift(report, args.format))
    for fmt, path in args.write:  # the same run, in other formats (one live check, many reports)
        try:
            path.write_text(render_drift(report, fmt) + "\n", encoding="utf-8")
        except OSError as exc:
            _err(f"cannot write the {fmt} report to {path}: {exc.strerror or exc}")
            return EXIT_FAILED
    return report.exit_code()


DRIFT_FORMATS = ("table", "json", "markdown", "html")


DIFF_FORMATS = ("text", "markdown", "json")


def report_target(formats: Sequence[str], example: str) -> Callable[[str], tuple[str, Path]]:
    """The type of ``--write FORMAT=PATH`` (e.g. ``json=drift.json``) for a command's formats."""

    def parse(value: str) -> tuple[str, Path]:
        fmt, sep, path = value.partition("=")
        if not sep or fmt not in formats or not path:
            raise argparse.ArgumentTypeError(
                f"{value!r}: write FORMAT=PATH with FORMAT one of {', '.join(formats)}, e.g. {example}"
            )
        return fmt, Path(path)

    return parse


def _load_despite_expired_exceptions(overrides: Path, consequence: str) -> Portfolio | None:
    """An expired exception fails validation, so nothing is deployed with it; drift and assess
    still run (they only read), and check the controls it no longer waives (scripts/drift.py).
    Any other error stays fatal."""
    from datetime import date

    portfolio, _ = load_portfolio(overrides, today=date.min)  # no exception has expired on day one
    if portfolio is None:
        return None
    _err(f"expired exception(s): {consequence}")
    return portfolio


def cmd_assess(args: argparse.Namespace) -> int:
    """As-found report of an inherited account (issue 6; scripts/assess.py)."""
    from baseline.spec import client_baseline
    from scripts.assess import run_assess

    portfolio = _load(args.overrides) or _load_despite_expired_exceptions(
        args.overrides, "the assessment reports the account as found, whatever the exceptions waive"
    )
    if portfolio is None:
        return EXIT_INVALID
    if _select(portfolio, [args.client], False) is None:
        return EXIT_INVALID
    baseline = client_baseline(portfolio.client(args.client), portfolio.defaults)
    code, text, path = run_assess(_access(args), baseline, args.dir, compare_first=args.compare, fmt=args.format)
    if code:
        _err(text)
        return EXIT_FAILED
    print(text)
    print(f"saved {path}", file=sys.stderr)
    return EXIT_OK


LOG_ARCHIVE_TARGET = "log-archive"


def cmd_onboarding_template(args: argparse.Namespace) -> int:
    """Write the template that creates the client's deploy role (see scripts/onboarding.py)."""
    from scripts.onboarding import render

    portfolio = _load(args.overrides)
    if portfolio is None or _select(portfolio, [args.client], False) is None:
        return EXIT_INVALID
    client = portfolio.client(args.client)
    text = render(client, portfolio.defaults, stacksets=args.stacksets)
    if args.output:
        args.output.write_text(text)
        print(f"wrote {args.output}: deploy it once in account {client.account_id}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def cmd_credentials(args: argparse.Namespace) -> int:
    """Print shell exports for a deploy role, e.g. to run `cdk deploy` for one client."""
    portfolio = _load(args.overrides)
    if portfolio is None:
        return EXIT_INVALID
    if args.client == LOG_ARCHIVE_TARGET:
        la = portfolio.defaults.log_archive
        role_arn, external_id, region = la.deploy_role_arn, la.external_id, la.region
    else:
        if _select(portfolio, [args.client], False) is None:
            return EXIT_INVALID
        c = portfolio.client(args.client)
        role_arn, external_id, region = c.deploy_role_arn, c.external_id, c.home_region
    if role_arn is None:
        _err("the log-archive account has no deploy_role_arn in defaults: use its own credentials")
        return EXIT_INVALID
    try:
        session = _access(args).assume_role(
            role_arn, external_id=external_id, session_name=f"vend-{args.client}", region=region
        )
    except AssumeRoleError as exc:
        _err(str(exc))
        return EXIT_FAILED
    creds = session.get_credentials().get_frozen_credentials()
    print(f"export AWS_ACCESS_KEY_ID={creds.access_key}")
    print(f"export AWS_SECRET_ACCESS_KEY={creds.secret_key}")
    print(f"export AWS_SESSION_TOKEN={creds.token}")
    print(f"export AWS_REGION={region}")
    return EXIT_OK


def cmd_emulator(args: argparse.Namespace) -> int:
    from scripts.emulator.server import Emulator

    faults, code = load_faults(args.faults)
    if code != EXIT_OK:
        return code
    emulator = Emulator(faults)
    emulator.start(host=args.host, port=args.port, log_requests=args.verbose)
    if faults is not None:
        print(f"faults: {len(faults.rules)} rule(s), {len(faults.stacks)} preset stack(s) from {args.faults}")
    print(f"vend emulator ready at {emulator.url}  (export AWS_ENDPOINT_URL={emulator.url})", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    emulator.stop()
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from scripts.emulator.server import Emulator

    portfolio = _load(args.overrides)
    if portfolio is None:
        return EXIT_INVALID
    faults, code = load_faults(args.faults)
    if code != EXIT_OK:
        return code
    # The emulator accepts any credentials; set harmless ones so no real profile is touched.
    for key, value in (("AWS_ACCESS_KEY_ID", "vend-demo"), ("AWS_SECRET_ACCESS_KEY", "vend-demo")):
        os.environ[key] = value
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    clients = [c.client for c in portfolio.clients]
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="vend-demo-") as tmp, Emulator(faults).start(port=args.port) as emulator:
        access = AwsAccess(endpoint_url=emulator.url)
        print(f"== emulator at {emulator.url}" + (f" with faults from {args.faults}" if faults else ""))
        print(f"== 1/4 synthesize {len(clients)} clients")
        assembly = Path(tmp) / "cdk.out"
        code = synthesize(args.overrides, assembly, quiet=True)
        if code != 0:
            return code
        print(f"   {len(read_assembly(assembly))} stacks")
        print("== 2/4 deploy: MSP side first, then each client's account through its deploy role")
        results = run_deploy(access, portfolio, assembly, clients, args.concurrency)
        print(deploy_summary(results))
        if any(r.outcome != "OK" for r in results):
            return EXIT_FAILED
        print("== 3/4 deploy again with unchanged input: nothing should change")
        again = run_deploy(access, portfolio, assembly, clients, args.concurrency)
        print(deploy_summary(again))
        print("== 4/4 drift: live checks of every control in every client account")
        report = drift_portfolio(access, portfolio, clients, concurrency=args.concurrency, assembly=assembly)
        print(render_drift(report, "table"))
    print(f"== demo finished in {time.monotonic() - started:.1f}s")
    return report.exit_code()


# --- parser -----------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--overrides", type=Path, default=Path("overrides"), help="directory of client override files")
    common.add_argument(
        "--endpoint-url",
        default=None,
        help="AWS endpoint (e.g. the emulator's URL); default: boto3's own (AWS_ENDPOINT_URL, real AWS)",
    )
    p = argparse.ArgumentParser(prog="vend", description="Account vending machine for MSPs on AWS.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("validate", parents=[common], help="validate override files")
    s.add_argument("paths", nargs="*", help="files or directories (default: --overrides)")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("schema", help="print the override file's JSON Schema")
    s.set_defaults(func=cmd_schema)

    s = sub.add_parser("list", parents=[common], help="list the portfolio")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("synth", parents=[common], help="synthesize the portfolio into a cloud assembly")
    s.add_argument("--output", type=Path, default=Path("cdk.out"))
    s.add_argument("--client", help="only this client's stacks (plus the MSP side)")
    s.set_defaults(func=cmd_synth)

    for name, func, helptext in (
        ("deploy", cmd_deploy, "deploy the MSP side, then each client's stacks"),
        ("drift", cmd_drift, "live checks of every control against the baseline"),
    ):
        s = sub.add_parser(name, parents=[common], help=helptext)
        s.add_argument("clients", nargs="*")
        s.add_argument("--all", action="store_true", help="every client in the portfolio")
        s.add_argument(
            "--concurrency",
            type=positive_int,
            default=DEFAULT_CONCURRENCY,
            help=f"clients in parallel (default {DEFAULT_CONCURRENCY}; a client's regions run in parallel too)",
        )
        s.set_defaults(func=func)
        if name == "deploy":
            s.add_argument("--output", type=Path, default=Path("cdk.out"), help="where to synthesize")
            s.add_argument("--assembly", type=Path, help="deploy an existing cloud assembly instead of synthesizing")
            add_deploy_arguments(s)
        else:
            s.add_argument("--format", choices=DRIFT_FORMATS, default="table", help="format of stdout")
            s.add_argument(
                "--write",
                type=report_target(DRIFT_FORMATS, "json=drift.json"),
                action="append",
                default=[],
                metavar="FORMAT=PATH",
                help="also write the same report in FORMAT to PATH (repeatable), e.g. --write json=drift.json",
            )
            s.add_argument(
                "--assembly",
                type=Path,
                help="compare with this cloud assembly when it is the current code and overrides "
                "(default, or when it is not: synthesize the current code)",
            )
            s.add_argument(
                "--remediate",
                action="store_true",
                help="bring DRIFTED, MISSING and OUTDATED controls back (CloudFormation where possible), check again",
            )

    s = sub.add_parser("assess", parents=[common], help="as-found report of an account before its first deploy")
    s.add_argument("client")
    s.add_argument("--compare", action="store_true", help="show the progress since the first assessment")
    s.add_argument(
        "--dir", type=Path, default=Path("assessments"), help="where reports are saved (default assessments/)"
    )
    s.add_argument("--format", choices=["table", "json", "markdown"], default="table")
    s.set_defaults(func=cmd_assess)

    s = sub.add_parser(
        "onboarding-template", parents=[common], help="the CloudFormation template a client deploys to let vend in"
    )
    s.add_argument("client")
    s.add_argument("--output", type=Path, help="write the template here (default: stdout)")
    s.add_argument(
        "--stacksets",
        action="store_true",
        help="also the StackSets execution role (vend-stacksets-execution), for `vend deploy --engine stacksets`",
    )
    s.set_defaults(func=cmd_onboarding_template)

    s = sub.add_parser("credentials", parents=[common], help="print shell exports for a deploy role")
    s.add_argument("client", help=f"a client, or {LOG_ARCHIVE_TARGET} for the MSP log-archive account")
    s.set_defaults(func=cmd_credentials)

    s = sub.add_parser("emulator", parents=[common], help="run the local AWS emulator in the foreground")
    s.add_argument("--port", type=int, default=5000)
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    s.add_argument("--verbose", action="store_true", help="log every API request")
    add_faults_argument(s)
    s.set_defaults(func=cmd_emulator)

    s = sub.add_parser("demo", parents=[common], help="the main job end to end on the embedded emulator")
    s.add_argument("--port", type=int, default=0, help="emulator port (default: a free one)")
    s.add_argument("--concurrency", type=positive_int, default=DEFAULT_CONCURRENCY)
    add_faults_argument(s)
    s.set_defaults(func=cmd_demo)

    _review_commands(sub, common)
    return p


# --- review commands (issue 4: diff, show, new-client, reference) -----------------------


def cmd_diff(args: argparse.Namespace) -> int:
    from scripts.diff import main_diff

    return main_diff(args.project, args.overrides, args.base, args.format, args.exit_zero, args.write)


def cmd_show(args: argparse.Namespace) -> int:
    from scripts.show import provenance, render

    portfolio = _load(args.overrides) or _load_despite_expired_exceptions(
        args.overrides, "shown with the client's effective config; renew or remove them before the next deploy"
    )
    if portfolio is None:
        return EXIT_INVALID
    if _select(portfolio, [args.client], False) is None:
        return EXIT_INVALID
    sys.stdout.write(render(provenance(portfolio, args.client), args.format))
    return EXIT_OK


def cmd_new_client(args: argparse.Namespace) -> int:
    from scripts.scaffold import main_new_client

    return main_new_client(
        args.overrides,
        args.slug,
        args.account,
        args.region,
        args.regions,
        args.engagement,
        args.display_name,
        args.budget,
        args.notify,
        args.profile,
    )


def cmd_reference(args: argparse.Namespace) -> int:
    from scripts.fieldref import render

    sys.stdout.write(render())
    return EXIT_OK


def _review_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser], common: argparse.ArgumentParser) -> None:
    s = sub.add_parser(
        "diff", parents=[common], help="what the working tree changes in client accounts, compared with a git ref"
    )
    s.add_argument("--base", help="git ref to compare with (default: the merge base of HEAD and main)")
    s.add_argument("--format", choices=DIFF_FORMATS, default="text", help="format of stdout")
    s.add_argument(
        "--write",
        type=report_target(DIFF_FORMATS, "json=diff.json"),
        action="append",
        default=[],
        metavar="FORMAT=PATH",
        help="also write the same diff in FORMAT to PATH (repeatable), e.g. --write json=diff.json",
    )
    s.add_argument("--exit-zero", action="store_true", help="exit 0 even when something changes (default: 1)")
    s.add_argument("--project", type=Path, default=Path("."), help="project folder with app.py (default: .)")
    s.set_defaults(func=cmd_diff)

    s = sub.add_parser("show", parents=[common], help="a client's effective config and the layer that set each value")
    s.add_argument("client")
    s.add_argument("--format", choices=["yaml", "json"], default="yaml")
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("new-client", parents=[common], help="write a valid, commented override file for a new client")
    s.add_argument("slug", help="client slug, e.g. northwind (becomes overrides/<slug>.yaml)")
    s.add_argument("--account", required=True, help="the client's 12-digit AWS account id")
    s.add_argument("--region", required=True, help="home region (trail, MSP role, budget)")
    s.add_argument("--regions", nargs="+", help="further regions where Config and GuardDuty run")
    s.add_argument("--engagement", choices=["monitoring", "managed"], default="monitoring")
    s.add_argument("--display-name")
    s.add_argument("--budget", type=float, default=1000, help="monthly budget in USD (default 1000)")
    s.add_argument("--notify", nargs="+", help="budget e-mail recipients (default from defaults.yaml)")
    s.add_argument("--profile", nargs="+", help="rule packs from baseline/profiles/, e.g. hipaa")
    s.set_defaults(func=cmd_new_client)

    s = sub.add_parser("reference", help="print the override file's field reference (docs/override-reference.md)")
    s.set_defaults(func=cmd_reference)


def _environment_problem() -> str | None:
    """What is wrong with vend's own environment variables, before any work starts."""
    try:
        current_date()
    except ValueError:
        today = os.environ.get("VEND_TODAY")
        return f"VEND_TODAY={today!r} is not a date: write it as YYYY-MM-DD, or unset it to use today's date"
    cache = default_cache_dir()
    if cache.exists() and not cache.is_dir():
        return (
            f"the cache directory {str(cache)!r} is not a directory: point it at a directory "
            "with VEND_CACHE_DIR (it is made if missing)"
        )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    problem = _environment_problem()
    if problem is not None:
        _err(problem)
        return EXIT_INVALID
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        _err("interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
