"""Benchmark: deploy a generated portfolio of N clients through the emulator with latency on
every call, and compare the wall time with the ideal.

    python bench/deploy_bench.py --clients 200 --concurrency 16 --latency-ms 50   # or: make bench

What it does:
1. writes N override files (``bench/portfolio.py``: the repository's MSP defaults, two
   regions per client, so every client is one global stack and then two regional stacks in
   parallel) into a temporary directory and synthesizes them once;
2. starts ``vend emulator`` as a separate process with a fault file that delays every call
   by ``--latency-ms`` (real AWS answers in tens to hundreds of milliseconds);
3. deploys the MSP side and ``--probe`` clients one at a time: the median client time is
   the per-client critical path, measured in the same conditions;
4. deploys the other clients ``--concurrency`` at a time and prints the wall time against
   the ideal (critical path x ceil(clients / concurrency)), the driver's peak memory (RSS;
   synthesis runs in a child process and is not counted), the emulator's CPU time (moto
   runs the CloudFormation engine in one Python process: when it is busy the whole time,
   the emulator, not the driver, is the limit), and API calls per client as the emulator
   counted them;
5. deploys everything again, unchanged, and prints that run's time and calls per client.

Exit code 0 when every client deployed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from baseline.portfolio import load_portfolio  # noqa: E402
from bench.portfolio import write_portfolio  # noqa: E402
from scripts.assembly import read_assembly  # noqa: E402
from scripts.aws import AwsAccess  # noqa: E402
from scripts.deploy import RolloutOptions, RolloutReport, StackOptions, run_rollout  # noqa: E402
from scripts.deploy_cmd import build_targets  # noqa: E402
from scripts.emulator.faults import fetch_calls  # noqa: E402
from scripts.synth import synthesize  # noqa: E402


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), 0 when unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def _peak_rss_mb(pid: int | None = None) -> float:
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _start_emulator(tmp: Path, latency_ms: float) -> tuple[subprocess.Popen[str], str]:
    faults = tmp / "latency.yaml"
    faults.write_text(f"faults:\n  - service: '*'\n    latency_ms: {latency_ms}\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.cli", "emulator", "--port", "0", "--faults", str(faults)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if "vend emulator ready at" in line:
            return proc, line.split("ready at ", 1)[1].split()[0]
        if not line and proc.poll() is not None:
            break
    proc.kill()
    raise SystemExit("the emulator did not start")


def _calls_per_account(url: str) -> Counter[str]:
    counts: Counter[str] = Counter()
    for row in fetch_calls(url)["calls"]:
        counts[row["account"]] += int(row["count"])
    return counts


def _per_client(before: Counter[str], after: Counter[str], accounts: list[str]) -> list[int]:
    return [after[a] - before[a] for a in accounts]


def _check(report: RolloutReport, what: str) -> bool:
    bad = [r for r in report.results if r.outcome != "OK"]
    for r in bad[:10]:
        print(f"   {what}: {r.name} {r.outcome}: {r.detail}")
    return not bad


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=200)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--probe", type=int, default=3, help="clients deployed alone to measure the critical path")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between status polls")
    args = p.parse_args(argv)
    if args.clients < args.probe + 1:
        raise SystemExit("--clients must be larger than --probe")

    for key, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench")):
        os.environ[key] = value
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        os.environ.pop(key, None)
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

    ok = True
    with tempfile.TemporaryDirectory(prefix="vend-bench-") as tmp_name:
        tmp = Path(tmp_name)
        overrides = tmp / "overrides"
        names = write_portfolio(overrides, args.clients)
        print(
            f"== {args.clients} clients, concurrency {args.concurrency}, latency {args.latency_ms:g} ms on every call"
        )
        start = time.monotonic()
        assembly = tmp / "cdk.out"
        if synthesize(overrides, assembly, validation=False, quiet=True) != 0:
            raise SystemExit("synthesis failed")
        stacks = read_assembly(assembly)
        print(f"   synthesized {len(stacks)} stacks once in {time.monotonic() - start:.1f}s")
        portfolio, problems = load_portfolio(overrides)
        if portfolio is None:
            raise SystemExit("\n".join(str(p) for p in problems))
        first, targets = build_targets(portfolio, stacks, names)
        accounts = [portfolio.client(n).account_id for n in names]

        emulator, url = _start_emulator(tmp, args.latency_ms)
        try:
            access = AwsAccess(endpoint_url=url)
            options = StackOptions(poll_s=args.poll)
            probe, rest = targets[: args.probe], targets[args.probe :]

            calls0 = _calls_per_account(url)
            probe_report = run_rollout(
                access, first=first, targets=probe, options=RolloutOptions(concurrency=1, stack=options)
            )
            ok &= _check(probe_report, "probe")
            critical = statistics.median(r.seconds for r in probe_report.results[1:])
            msp_seconds = probe_report.results[0].seconds
            print(
                f"   MSP side {msp_seconds:.1f}s; per-client critical path"
                f" (median of {args.probe} alone) {critical:.2f}s"
            )

            cpu0 = _cpu_seconds(emulator.pid)
            calls1 = _calls_per_account(url)
            start = time.monotonic()
            report = run_rollout(
                access, first=None, targets=rest, options=RolloutOptions(concurrency=args.concurrency, stack=options)
            )
            wall = time.monotonic() - start
            emulator_cpu = _cpu_seconds(emulator.pid) - cpu0
            ok &= _check(report, "deploy")
            calls2 = _calls_per_account(url)
            ideal = critical * math.ceil(len(rest) / args.concurrency)
            per_client = _per_client(calls1, calls2, accounts[args.probe :]) + _per_client(
                calls0, calls1, accounts[: args.probe]
            )
            stacks_done = Counter(s.outcome for r in report.results for s in r.stacks)

            start = time.monotonic()
            again = run_rollout(
                access,
                first=first,
                targets=targets,
                options=RolloutOptions(concurrency=args.concurrency, stack=options),
            )
            again_wall = time.monotonic() - start
            ok &= _check(again, "re-run")
            calls3 = _calls_per_account(url)
            again_per_client = _per_client(calls2, calls3, accounts)
            unchanged = Counter(s.outcome for r in again.results for s in r.stacks)
            emulator_rss = _peak_rss_mb(emulator.pid)
        finally:
            emulator.send_signal(signal.SIGTERM)
            try:
                emulator.wait(timeout=20)
            except subprocess.TimeoutExpired:
                emulator.kill()

    rows: list[tuple[str, Any]] = [
        ("clients deployed concurrently", f"{len(rest)} ({dict(stacks_done)})"),
        ("wall time", f"{wall:.1f}s"),
        ("ideal", f"{ideal:.1f}s = {critical:.2f}s x ceil({len(rest)}/{args.concurrency})"),
        ("wall / ideal", f"{wall / ideal:.2f}"),
        ("emulator CPU during the run", f"{emulator_cpu:.1f}s ({emulator_cpu / wall:.0%} of wall)"),
        ("driver peak RSS", f"{_peak_rss_mb():.0f} MB"),
        ("emulator peak RSS", f"{emulator_rss:.0f} MB"),
        (
            "API calls per client (first deploy)",
            f"mean {statistics.mean(per_client):.1f}, min {min(per_client)}, max {max(per_client)}",
        ),
        ("re-run, all unchanged: wall", f"{again_wall:.1f}s for {len(targets)} clients ({dict(unchanged)})"),
        (
            "API calls per client (re-run)",
            f"mean {statistics.mean(again_per_client):.1f}, min {min(again_per_client)}, max {max(again_per_client)}",
        ),
    ]
    width = max(len(k) for k, _ in rows)
    print("== results")
    for key, value in rows:
        print(f"   {key:<{width}}  {value}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
