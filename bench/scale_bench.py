"""Benchmark: a fleet of client accounts on the emulator with real API latency: the no-op
deploy, a change that touches every client, and the drift scan, each against its ideal.

    .venv/bin/python bench/scale_bench.py --clients 1000 --latency-ms 50      # or: make bench-scale

One run, every ``vend`` command a separate process as CI runs it (``python -m scripts.cli``):

1. N generated clients (``bench/portfolio.py``, two regions each: a global stack and two
   regional stacks) are deployed once (setup, timed but not a target);
2. **no-op**: ``vend deploy --all`` again, nothing changed. Ideal = every API call the run
   made (counted by the emulator) x latency / concurrency. Also: calls per client, and
   whether any client was synthesized by the CDK (it must not be);
3. **change**: every client's budget changes (one update of each client's global stack),
   then ``vend deploy --all``. Ideal = the critical path of one client, measured alone in
   the same conditions just before, x ceil(N / concurrency). Peak memory of the deploy
   process, against a change run of N/4 clients (flat means the same);
4. **drift**: ``vend drift --all``. Ideal = calls x latency / concurrency; calls per
   client-region printed.

The emulator answers every call after ``--latency-ms`` (its fault layer), and its CPU time
is printed: moto runs CloudFormation in one Python process, so when it is busy the whole
time, it is the limit, not vend. Exit 0 when every target of issue 7 holds.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
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

from bench.measure import measured, spread, table  # noqa: E402
from bench.portfolio import account_id, write_portfolio  # noqa: E402
from scripts.emulator.faults import fetch_calls  # noqa: E402

RATIO = 1.25
NOOP_CALLS_PER_CLIENT = 3


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
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


class Fleet:
    def __init__(self, tmp: Path, url: str, emulator_pid: int, clients: int, concurrency: int) -> None:
        self.tmp, self.url, self.emulator_pid = tmp, url, emulator_pid
        self.clients, self.concurrency = clients, concurrency
        self.overrides = tmp / "overrides"
        self.env = dict(
            os.environ,
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",
            AWS_DEFAULT_REGION="us-east-1",
            VEND_CACHE_DIR=str(tmp / "cache"),
        )
        for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            self.env.pop(key, None)

    def calls(self) -> Counter[tuple[str, str]]:
        counts: Counter[tuple[str, str]] = Counter()
        for row in fetch_calls(self.url)["calls"]:
            counts[(row["account"], row["operation"])] += int(row["count"])
        return counts

    def vend(self, *args: str, names: list[str] | None = None) -> dict[str, Any]:
        """Run one vend command; its wall time, peak memory, API calls and output."""
        report = self.tmp / f"report-{time.monotonic_ns()}"
        command = [sys.executable, "-m", "scripts.cli", *args, "--overrides", str(self.overrides)]
        command += ["--endpoint-url", self.url, "--concurrency", str(self.concurrency)]
        if args[0] == "deploy":
            command += ["--report", str(report), "--progress", "quiet", "--poll", "0.2"]
            command += names if names is not None else ["--all"]
        else:
            command += ["--all"]
        before, cpu = self.calls(), _cpu_seconds(self.emulator_pid)
        with measured(interval=0.25, exclude=self.emulator_pid) as sample:
            proc = subprocess.run(command, cwd=REPO, env=self.env, capture_output=True, text=True)
        spent = self.calls() - before
        out = {
            "seconds": sample.seconds,
            "peak_mb": sample.peak_mb,
            "calls": spent,
            "emulator_cpu": _cpu_seconds(self.emulator_pid) - cpu,
            "code": proc.returncode,
            "stdout": proc.stdout,
            "stderr": proc.stderr,
        }
        if args[0] == "deploy":
            data = json.loads((report / "deploy-report.json").read_text())
            out["report"] = data
            bad = [t for t in data["targets"] if t["outcome"] != "OK"]
            if bad:
                raise SystemExit(f"{len(bad)} target(s) not OK, e.g. {bad[0]['name']}: {bad[0]['detail']}")
        return out


def _per_client(calls: Counter[tuple[str, str]], accounts: list[str]) -> list[int]:
    by_account: Counter[str] = Counter()
    for (account, _), n in calls.items():
        by_account[account] += n
    return [by_account[a] for a in accounts]


def _set_budgets(overrides: Path, bump: int) -> None:
    for path in overrides.glob("*.yaml"):
        text = path.read_text()
        path.write_text(re.sub(r"monthly_limit_usd: (\d+)", lambda m: f"monthly_limit_usd: {int(m[1]) + bump}", text))


def _noop(fleet: Fleet, accounts: list[str], latency: float) -> dict[str, Any]:
    run = fleet.vend("deploy")
    total = sum(run["calls"].values())
    per = _per_client(run["calls"], accounts)
    ideal = total * latency / fleet.concurrency
    outcomes = Counter(s["outcome"] for t in run["report"]["targets"] for s in t["stacks"])
    built = re.search(r"(\d+) prototype\(s\) built", run["stdout"] + run["stderr"])
    return {
        "wall": run["seconds"],
        "ideal": ideal,
        "ratio": run["seconds"] / ideal,
        "calls": total,
        "max_per_client": max(per),
        "mean_per_client": sum(per) / len(per),
        "unchanged": set(outcomes) == {"UNCHANGED"},
        "built": int(built.group(1)) if built else -1,
    }


def _change(fleet: Fleet, names: list[str], probe: int) -> dict[str, Any]:
    _set_budgets(fleet.overrides, 1)
    probes = [fleet.vend("deploy", names=[n]) for n in names[:probe]]
    critical = sorted(
        next(t["seconds"] for t in pr["report"]["targets"] if t["name"] == n)
        for pr, n in zip(probes, names, strict=False)
    )[len(probes) // 2]
    _set_budgets(fleet.overrides, 1)
    quarter = names[probe : probe + max(1, len(names) // 4)]
    small = fleet.vend("deploy", names=quarter)
    _set_budgets(fleet.overrides, 1)
    run = fleet.vend("deploy")
    rollout = run["report"]["run"]["seconds"]
    ideal = critical * math.ceil(len(names) / fleet.concurrency)
    updated = Counter(s["outcome"] for t in run["report"]["targets"] for s in t["stacks"])
    return {
        "critical": critical,
        "rollout": rollout,
        "wall": run["seconds"],
        "ideal": ideal,
        "ratio": rollout / ideal,
        "updated": updated.get("UPDATED", 0),
        "emulator_busy": run["emulator_cpu"] / run["seconds"],
        "peak_mb": run["peak_mb"],
        "small_peak_mb": small["peak_mb"],
        "memory_ratio": run["peak_mb"] / small["peak_mb"],
        "small_clients": len(quarter),
    }


def _drift(fleet: Fleet, accounts: list[str], latency: float) -> dict[str, Any]:
    run = fleet.vend("drift", "--format", "json")
    total = sum(run["calls"].values())
    per_region = [n / 2 for n in _per_client(run["calls"], accounts)]
    ideal = total * latency / fleet.concurrency
    findings = json.loads(run["stdout"])["findings"]
    return {
        "wall": run["seconds"],
        "ideal": ideal,
        "ratio": run["seconds"] / ideal,
        "calls": total,
        "per_region_mean": sum(per_region) / len(per_region),
        "per_region_max": max(per_region),
        "statuses": dict(Counter(f["status"] for f in findings)),
        "emulator_busy": run["emulator_cpu"] / run["seconds"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--probe", type=int, default=3, help="clients changed alone to measure the critical path")
    p.add_argument("--runs", type=int, default=1, help="no-op, change and drift runs after one setup deploy")
    args = p.parse_args(argv)
    latency = args.latency_ms / 1000
    noops: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    drifts: list[dict[str, Any]] = []

    with tempfile.TemporaryDirectory(prefix="vend-scale-bench-") as tmp_name:
        tmp = Path(tmp_name)
        names = write_portfolio(tmp / "overrides", args.clients, regions=2)
        accounts = [account_id(i) for i in range(args.clients)]
        emulator, url = _start_emulator(tmp, args.latency_ms)
        try:
            fleet = Fleet(tmp, url, emulator.pid, args.clients, args.concurrency)
            print(f"== {args.clients} clients x 2 regions, concurrency {args.concurrency}, {args.latency_ms:g} ms/call")
            setup = fleet.vend("deploy")
            print(f"   setup: first deploy in {setup['seconds']:.0f}s", flush=True)
            for i in range(args.runs):
                noops.append(_noop(fleet, accounts, latency))
                print(f"   run {i + 1}: no-op {noops[-1]['wall']:.1f}s (x{noops[-1]['ratio']:.2f})", flush=True)
                changes.append(_change(fleet, names, args.probe))
                print(f"   run {i + 1}: change {changes[-1]['rollout']:.1f}s (x{changes[-1]['ratio']:.2f})", flush=True)
                drifts.append(_drift(fleet, accounts, latency))
                print(f"   run {i + 1}: drift {drifts[-1]['wall']:.1f}s (x{drifts[-1]['ratio']:.2f})", flush=True)
        finally:
            emulator.send_signal(signal.SIGTERM)
            try:
                emulator.wait(timeout=20)
            except subprocess.TimeoutExpired:
                emulator.kill()
            shutil.rmtree(tmp / "cache", ignore_errors=True)

    def col(runs: list[dict[str, Any]], key: str) -> list[float]:
        return [float(r[key]) for r in runs]

    last_drift = drifts[-1]
    rows = [
        ("no-op: wall (whole command)", spread(col(noops, "wall"))),
        ("no-op: ideal (calls x latency / concurrency)", spread(col(noops, "ideal"))),
        (f"no-op: wall / ideal (target <= {RATIO})", spread(col(noops, "ratio"), "x")),
        (
            f"no-op: API calls per client (target <= {NOOP_CALLS_PER_CLIENT})",
            f"max {max(col(noops, 'max_per_client')):.0f}, mean {col(noops, 'mean_per_client')[-1]:.2f}",
        ),
        ("no-op: every stack UNCHANGED", str(all(r["unchanged"] for r in noops))),
        ("no-op: CDK prototypes built", ", ".join(str(r["built"]) for r in noops)),
        ("change: critical path of one client alone", spread(col(changes, "critical"))),
        ("change: rollout (every client's global stack updated)", spread(col(changes, "rollout"))),
        ("change: ideal (critical x ceil(N / concurrency))", spread(col(changes, "ideal"))),
        (f"change: rollout / ideal (target <= {RATIO})", spread(col(changes, "ratio"), "x")),
        ("change: emulator CPU busy", spread([100 * v for v in col(changes, "emulator_busy")], "%", 0)),
        (
            f"change: peak memory, {args.clients} clients vs {changes[-1]['small_clients']}",
            f"{spread(col(changes, 'peak_mb'), ' MB', 0)} vs {spread(col(changes, 'small_peak_mb'), ' MB', 0)}",
        ),
        ("change: memory ratio (flat: ~1)", spread(col(changes, "memory_ratio"), "x")),
        ("drift: wall (whole command)", spread(col(drifts, "wall"))),
        ("drift: ideal (calls x latency / concurrency)", spread(col(drifts, "ideal"))),
        (f"drift: wall / ideal (target <= {RATIO})", spread(col(drifts, "ratio"), "x")),
        (
            "drift: API calls per client-region",
            f"mean {last_drift['per_region_mean']:.1f}, max {last_drift['per_region_max']:.1f}",
        ),
        ("drift: findings", str(last_drift["statuses"])),
        ("drift: emulator CPU busy", spread([100 * v for v in col(drifts, "emulator_busy")], "%", 0)),
    ]
    ok = (
        all(r["max_per_client"] <= NOOP_CALLS_PER_CLIENT and r["unchanged"] and r["built"] == 0 for r in noops)
        and max(col(noops, "ratio")) <= RATIO
        and max(col(changes, "ratio")) <= RATIO
        and max(col(changes, "memory_ratio")) <= 1.25
        and max(col(drifts, "ratio")) <= RATIO
    )
    print("== results")
    print(table(rows))
    print(f"== targets {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
