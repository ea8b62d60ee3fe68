"""Measuring helpers shared by the benchmarks: wall time, peak memory of a process tree, and
min/median/max over repeated runs."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


def _tree_rss_bytes(root: int, exclude: int | None = None) -> int:
    """Resident memory of ``root`` and all its descendants (Linux /proc), without the
    subtree of ``exclude`` (e.g. an emulator the benchmark started)."""
    parents: dict[int, int] = {}
    rss: dict[int, int] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            statm = (entry / "statm").read_text().split()
        except OSError:
            continue
        pid = int(entry.name)
        parents[pid] = int(stat.rsplit(")", 1)[1].split()[1])
        rss[pid] = int(statm[1]) * page
    total = 0
    for pid, size in rss.items():
        p = pid
        while p > 1:
            if p == exclude:
                break
            if p == root:
                total += size
                break
            p = parents.get(p, 0)
    return total


@dataclass
class Sample:
    seconds: float = 0.0
    peak_mb: float = 0.0


@dataclass
class _Sampler:
    interval: float = 0.05
    exclude: int | None = None
    peak: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        me = os.getpid()
        while not self._stop.is_set():
            self.peak = max(self.peak, _tree_rss_bytes(me, self.exclude))
            self._stop.wait(self.interval)


@contextmanager
def measured(interval: float = 0.05, exclude: int | None = None) -> Iterator[Sample]:
    """Time the block and sample the peak RSS of this process plus its children (the CDK
    runs in child processes, and several at once: their memory adds up), leaving out the
    process tree of ``exclude``."""
    sample = Sample()
    sampler = _Sampler(interval=interval, exclude=exclude)
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    start = time.monotonic()
    try:
        yield sample
    finally:
        sample.seconds = time.monotonic() - start
        sampler._stop.set()
        thread.join()
        sample.peak_mb = sampler.peak / 2**20


def spread(values: Sequence[float], unit: str = "s", digits: int = 2) -> str:
    """``median (min .. max, n runs)``: the machines are shared and noisy."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}{unit}"
    return (
        f"{statistics.median(values):.{digits}f}{unit} "
        f"(min {min(values):.{digits}f}, max {max(values):.{digits}f}, {len(values)} runs)"
    )


def table(rows: Sequence[tuple[str, str]]) -> str:
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"   {key:<{width}}  {value}" for key, value in rows)
