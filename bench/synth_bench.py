"""Benchmark: synthesizing a large portfolio, naive layout against vend's shapes and cache.

    .venv/bin/python bench/synth_bench.py --clients 1000 --runs 3      # or: make bench-synth

In one run, on one generated portfolio (``bench/portfolio.py``, layout "scale": 1 to 17
regions per client, about 4 on average):

1. **naive**: the plain CDK app with one stack per client per region, in one process
   (``VEND_SYNTH=direct``: what ``cdk synth`` does);
2. **cold**: ``vend synth`` with an empty cache: one prototype per client shape through the
   CDK, in parallel processes, every client rendered from its shape's prototype;
3. **incremental**: one client's override changes, then ``vend synth`` again (a) with a
   value that keeps its shape (the budget), (b) with one that makes a new shape (the
   engagement); each against **one client alone**: ``vend synth`` of a portfolio of just
   that client through the plain CDK app (``cdk synth`` of one client).

Wall time and the peak memory of the whole process tree (the CDK child processes add up),
each as median (min, max) over ``--runs``; the ratios are computed within each run.
Every ``vend synth`` here is a separate ``python -m scripts.cli synth`` process, as a user
or CI runs it. Exit 0 when the targets of issue 7 hold (cold at least 5x faster than
naive, peak under 1.5 GB, incremental at most 1.5x one client alone), else 1.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.measure import Sample, measured, spread, table  # noqa: E402
from bench.portfolio import client_name, write_portfolio  # noqa: E402
from scripts.assembly import read_assembly  # noqa: E402

COLD_SPEEDUP = 5.0
PEAK_MB = 1536.0
INCREMENTAL_RATIO = 1.5


def vend_synth(overrides: Path, outdir: Path, cache: Path, *, direct: bool = False) -> tuple[Sample, str]:
    """``vend synth`` in its own process; the sample covers the whole process tree."""
    env = dict(os.environ, VEND_CACHE_DIR=str(cache))
    if direct:
        env["VEND_SYNTH"] = "direct"
    command = [sys.executable, "-m", "scripts.cli", "synth", "--overrides", str(overrides), "--output", str(outdir)]
    with measured() as sample:
        proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"vend synth failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return sample, proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""


def one_run(tmp: Path, clients: int, naive: bool) -> dict[str, float]:
    overrides = tmp / "overrides"
    write_portfolio(overrides, clients, regions="scale")
    cache = tmp / "cache"
    out: dict[str, float] = {}

    if naive:
        sample, _ = vend_synth(overrides, tmp / "naive.out", tmp / "unused-cache", direct=True)
        out |= {"naive_s": sample.seconds, "naive_mb": sample.peak_mb}
        shutil.rmtree(tmp / "naive.out")
    sample, line = vend_synth(overrides, tmp / "cdk.out", cache)
    out |= {"cold_s": sample.seconds, "cold_mb": sample.peak_mb, "stacks": len(read_assembly(tmp / "cdk.out"))}
    print(f"   cold:  {line}", flush=True)

    sample, line = vend_synth(overrides, tmp / "cdk.out", cache)
    out["warm_s"] = sample.seconds
    print(f"   warm:  {line}", flush=True)

    # One client changes: the middle one, in several regions.
    name = client_name(clients // 2 + 5 if clients > 10 else 0)
    path = overrides / f"{name}.yaml"
    alone = tmp / "alone"
    alone.mkdir()
    shutil.copy(path, alone / path.name)
    sample, _ = vend_synth(alone, tmp / "alone.out", tmp / "alone-cache", direct=True)
    out["alone_s"] = sample.seconds

    text = path.read_text()
    path.write_text(text.replace("monthly_limit_usd: ", "monthly_limit_usd: 1"))
    sample, line = vend_synth(overrides, tmp / "cdk.out", cache)
    out["same_shape_s"] = sample.seconds
    print(f"   value: {line}", flush=True)

    swapped = "managed" if "engagement: monitoring" in text else "monitoring"
    path.write_text(re.sub(r"engagement: \w+", f"engagement: {swapped}", path.read_text()))
    sample, line = vend_synth(overrides, tmp / "cdk.out", cache)
    out["new_shape_s"] = sample.seconds
    print(f"   shape: {line}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--no-naive", action="store_true", help="skip the naive layout (minutes at 1,000 clients)")
    args = p.parse_args(argv)

    runs: list[dict[str, float]] = []
    for i in range(args.runs):
        print(f"== run {i + 1}/{args.runs}: {args.clients} clients (1-17 regions, about 4 on average)", flush=True)
        with tempfile.TemporaryDirectory(prefix="vend-synth-bench-") as tmp:
            runs.append(one_run(Path(tmp), args.clients, not args.no_naive))

    def col(key: str) -> list[float]:
        return [r[key] for r in runs]

    rows = [("stacks", f"{int(runs[0]['stacks'])}")]
    ok = True
    if not args.no_naive:
        speedups = [r["naive_s"] / r["cold_s"] for r in runs]
        ok &= min(speedups) >= COLD_SPEEDUP
        rows += [
            ("naive (one CDK app, a stack per client-region)", spread(col("naive_s"))),
            ("naive peak memory", spread(col("naive_mb"), " MB", 0)),
            ("cold vend synth", spread(col("cold_s"))),
            (f"naive / cold (target >= {COLD_SPEEDUP:g})", spread(speedups, "x")),
        ]
    else:
        rows.append(("cold vend synth", spread(col("cold_s"))))
    ok &= max(col("cold_mb")) < PEAK_MB
    same = [r["same_shape_s"] / r["alone_s"] for r in runs]
    new = [r["new_shape_s"] / r["alone_s"] for r in runs]
    ok &= max(same) <= INCREMENTAL_RATIO and max(new) <= INCREMENTAL_RATIO
    rows += [
        (f"cold peak memory (target < {PEAK_MB:g} MB)", spread(col("cold_mb"), " MB", 0)),
        ("warm vend synth (nothing changed)", spread(col("warm_s"))),
        ("one client alone (plain CDK app)", spread(col("alone_s"))),
        ("incremental, same shape", spread(col("same_shape_s"))),
        (f"  / one client alone (target <= {INCREMENTAL_RATIO:g})", spread(same, "x")),
        ("incremental, new shape", spread(col("new_shape_s"))),
        (f"  / one client alone (target <= {INCREMENTAL_RATIO:g})", spread(new, "x")),
    ]
    print("== results")
    print(table(rows))
    print(f"== targets {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
