"""What a deploy run tells people and CI: live progress, the closing table, report files.

- :class:`Progress`: on a terminal a progress bar that stays at the bottom, with a status
  line per client as it finishes; in CI or when piped, plain lines plus a heartbeat line
  every ``heartbeat_s`` (what is done, what is running).
- :func:`summary_table`: the end-of-run table (outcomes per client and per stack, every
  client that is not OK with its reason).
- :func:`write_reports`: ``--report DIR`` writes ``deploy-report.json`` (everything,
  machine-readable), ``deploy-report.md`` (for a PR comment or job summary) and
  ``deploy-junit.xml`` (one test case per client x stack, for CI test tabs).
- :func:`render_plan`: the dry run (``vend deploy --plan``) as text, Markdown or JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

from scripts.deploy import ORDER, RolloutReport, Target, TargetPlan, TargetResult

REPORT_SCHEMA = "vend.deploy-report/1"
JSON_NAME, MARKDOWN_NAME, JUNIT_NAME = "deploy-report.json", "deploy-report.md", "deploy-junit.xml"
PLAN_JSON_NAME, PLAN_MARKDOWN_NAME = "deploy-plan.json", "deploy-plan.md"
ProgressMode = Literal["auto", "tty", "plain", "quiet"]


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def result_line(result: TargetResult) -> str:
    """One client's status line: name, account, outcome, seconds, what happened."""
    return f"{result.name:<24} {result.account:<13} {result.outcome:<11} {result.seconds:>7.1f}s  {result.detail}"


def _not_started(result: TargetResult) -> bool:
    return result.outcome == "SKIPPED" and result.detail.startswith(("not started", "MSP-side"))


# --------------------------------------------------------------------------- live progress


class Progress:
    """Live progress of a rollout; ``start``/``result`` come from the rollout's calling thread,
    ``note`` from anywhere (e.g. a signal handler)."""

    def __init__(
        self,
        total: int,
        *,
        stream: IO[str] | None = None,
        mode: ProgressMode = "auto",
        heartbeat_s: float = 30.0,
        width: int = 28,
    ) -> None:
        self.stream = stream or sys.stdout
        if mode == "auto":
            is_tty = hasattr(self.stream, "isatty") and self.stream.isatty()
            ci = bool(os.environ.get("CI")) or os.environ.get("TERM") == "dumb"
            mode = "tty" if is_tty and not ci else "plain"
        self.mode = mode
        self.total = total
        self.width = width
        self.heartbeat_s = heartbeat_s
        self.counts: Counter[str] = Counter()
        self.running: dict[str, float] = {}
        self.not_started: list[TargetResult] = []
        self._start = time.monotonic()
        # re-entrant: a signal handler (note) can run while the main thread is inside result()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._bar_shown = False
        self._closed = False
        self._thread: threading.Thread | None = None
        if mode in ("tty", "plain"):
            self._thread = threading.Thread(target=self._tick, name="vend-progress", daemon=True)
            self._thread.start()

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def start(self, target: Target) -> None:
        with self._lock:
            self.running[target.name] = time.monotonic()
            self._redraw()

    def result(self, result: TargetResult) -> None:
        with self._lock:
            self.running.pop(result.name, None)
            self.counts[result.outcome] += 1
            if _not_started(result):
                self.not_started.append(result)  # one summary line at the end, not 1,000 lines
                self._redraw()
                return
            if self.mode != "quiet":
                prefix = f"[{self.done:>{len(str(self.total))}}/{self.total}] "
                self._print(prefix + result_line(result))
            self._redraw()

    def note(self, text: str) -> None:
        with self._lock:
            if self.mode != "quiet":
                self._print(text)
            self._redraw()

    def close(self) -> None:
        """Stop the ticker, clear the bar, print the not-started summary; once (a signal
        handler that quits may close it again)."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            self._clear_bar()
            if self.not_started and self.mode != "quiet":
                reasons = Counter(r.detail for r in self.not_started)
                for reason, n in reasons.most_common():
                    self.stream.write(f"{n} target(s) {reason}\n")
            self.stream.flush()

    # ---- drawing (callers hold self._lock)

    def _print(self, line: str) -> None:
        self._clear_bar()
        self.stream.write(line + "\n")
        self.stream.flush()

    def _clear_bar(self) -> None:
        if self._bar_shown:
            self.stream.write("\r\x1b[2K")
            self._bar_shown = False

    def _status(self) -> str:
        parts = [f"{n} {o.lower()}" for o, n in sorted(self.counts.items())]
        return ", ".join(parts) if parts else "starting"

    def _redraw(self) -> None:
        if self.mode != "tty":
            return
        filled = int(self.width * self.done / self.total) if self.total else self.width
        bar = "#" * filled + "-" * (self.width - filled)
        running = ", ".join(list(self.running)[:3]) + (" ..." if len(self.running) > 3 else "")
        line = (
            f"[{bar}] {self.done}/{self.total}  {self._status()}  running {len(self.running)}"
            f"{': ' + running if running else ''}  {_clock(time.monotonic() - self._start)}"
        )
        columns = 120
        with contextlib.suppress(OSError, ValueError, AttributeError):
            columns = os.get_terminal_size(self.stream.fileno()).columns
        self.stream.write("\r\x1b[2K" + line[: max(20, columns - 1)])
        self.stream.flush()
        self._bar_shown = True

    def _tick(self) -> None:
        last_beat = time.monotonic()
        while not self._stop.wait(1.0):
            with self._lock:
                if self.mode == "tty":
                    self._redraw()
                elif time.monotonic() - last_beat >= self.heartbeat_s:
                    last_beat = time.monotonic()
                    now = time.monotonic()
                    oldest = sorted(self.running.items(), key=lambda item: item[1])[:5]
                    names = ", ".join(f"{n} ({_clock(now - t)})" for n, t in oldest)
                    more = " ..." if len(self.running) > 5 else ""
                    self.stream.write(
                        f"... {self.done}/{self.total} done ({self._status()}), {len(self.running)} running"
                        f"{': ' + names + more if names else ''}, {_clock(now - self._start)} elapsed\n"
                    )
                    self.stream.flush()


# --------------------------------------------------------------------------- the closing table


def _counts(report: RolloutReport) -> tuple[Counter[str], Counter[str]]:
    targets: Counter[str] = Counter(r.outcome for r in report.results)
    stacks: Counter[str] = Counter(s.outcome for r in report.results for s in r.stacks)
    return targets, stacks


def summary_table(report: RolloutReport) -> str:
    targets, stacks = _counts(report)
    lines = [
        f"{'outcome':<12} {'targets':>8} {'stacks':>8}",
    ]
    for outcome in sorted(set(targets) | set(stacks)):
        lines.append(f"{outcome:<12} {targets.get(outcome, 0):>8} {stacks.get(outcome, 0):>8}")
    lines.append(f"{'total':<12} {sum(targets.values()):>8} {sum(stacks.values()):>8}")
    bad = [r for r in report.results if r.outcome != "OK" and not _not_started(r)]
    if bad:
        lines.append("")
        lines.append("not OK:")
        lines += [f"  {result_line(r)}" for r in bad]
    if report.stop_reason:
        lines.append(f"stopped early: {report.stop_reason}")
    lines.append(f"finished in {_clock(report.seconds)}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- report files


def report_data(
    report: RolloutReport, *, meta: Mapping[str, Any] | None = None, exit_code: int | None = None
) -> dict[str, Any]:
    """Everything about the run as JSON-ready data (the ``deploy-report.json`` document)."""
    targets, stacks = _counts(report)
    started = datetime.fromtimestamp(report.started_at or time.time(), UTC)
    return {
        "schema": REPORT_SCHEMA,
        "run": {
            **dict(meta or {}),
            "started_at": started.isoformat(timespec="seconds"),
            "seconds": report.seconds,
            "interrupted": report.interrupted,
            "stop_reason": report.stop_reason,
            "canary": list(report.canary),
            "exit_code": exit_code,
            "order": list(ORDER),
        },
        "summary": {"targets": dict(sorted(targets.items())), "stacks": dict(sorted(stacks.items()))},
        "targets": [
            {
                "name": r.name,
                "account": r.account,
                "outcome": r.outcome,
                "detail": r.detail,
                "seconds": r.seconds,
                "stacks": [{**asdict(s), "actions": list(s.actions)} for s in r.stacks],
            }
            for r in report.results
        ],
    }


def _md(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def markdown_report(data: Mapping[str, Any]) -> str:
    run, summary = data["run"], data["summary"]
    state = "interrupted" if run.get("interrupted") else ("stopped early" if run.get("stop_reason") else "finished")
    lines = [
        "## vend deploy report",
        "",
        f"{state} after {_clock(float(run.get('seconds') or 0))} (started {run.get('started_at')}), "
        f"exit code {run.get('exit_code')}",
    ]
    if run.get("stop_reason"):
        lines.append(f"\n**Stopped:** {_md(run['stop_reason'])}")
    lines += ["", "| outcome | targets | stacks |", "|---|---|---|"]
    for outcome in sorted(set(summary["targets"]) | set(summary["stacks"])):
        lines.append(f"| {outcome} | {summary['targets'].get(outcome, 0)} | {summary['stacks'].get(outcome, 0)} |")
    bad = [t for t in data["targets"] if t["outcome"] != "OK"]
    if bad:
        lines += ["", "### Not OK", "", "| client | account | outcome | detail |", "|---|---|---|---|"]
        lines += [f"| {_md(t['name'])} | {t['account']} | **{t['outcome']}** | {_md(t['detail'])} |" for t in bad]
    lines += [
        "",
        "### Every stack",
        "",
        "| client | stack | region | outcome | seconds | detail |",
        "|---|---|---|---|---|---|",
    ]
    for t in data["targets"]:
        for s in t["stacks"]:
            lines.append(
                f"| {_md(t['name'])} | {s['stack_name']} | {s['region']} | {s['outcome']} | {s['seconds']} | "
                f"{_md(s['detail'])} |"
            )
    return "\n".join(lines) + "\n"


def junit_report(data: Mapping[str, Any]) -> str:
    """JUnit XML: one test case per client x stack (classname ``vend.deploy.<client>``).

    FAILED is a failure; IN_FLIGHT an error (the run could not tell how it ended); SKIPPED
    is skipped, except for the stacks of a client that failed before any stack ran (e.g. its
    role cannot be assumed): those are failures too, so CI never shows that client as green.
    """
    cases: list[ET.Element] = []
    totals = Counter[str]()
    for t in data["targets"]:
        failed_before_stacks = t["outcome"] == "FAILED" and all(s["outcome"] == "SKIPPED" for s in t["stacks"])
        for s in t["stacks"]:
            case = ET.Element(
                "testcase",
                classname=f"vend.deploy.{t['name']}",
                name=f"{s['stack_name']} ({s['region']})",
                time=f"{float(s['seconds']):.3f}",
            )
            outcome = s["outcome"]
            if outcome == "FAILED" or (outcome == "SKIPPED" and failed_before_stacks):
                element = ET.SubElement(
                    case, "failure", message=(t["detail"] if outcome == "SKIPPED" else s["detail"])[:500], type=outcome
                )
                element.text = t["detail"] if outcome == "SKIPPED" else s["detail"]
                totals["failures"] += 1
            elif outcome == "IN_FLIGHT":
                element = ET.SubElement(case, "error", message=s["detail"][:500], type=outcome)
                element.text = s["detail"]
                totals["errors"] += 1
            elif outcome == "SKIPPED":
                ET.SubElement(case, "skipped", message=s["detail"][:500])
                totals["skipped"] += 1
            out = ET.SubElement(case, "system-out")
            out.text = f"{outcome} in account {s['account']}: {s['detail']}"
            cases.append(case)
    seconds = f"{float(data['run'].get('seconds') or 0):.3f}"
    attrs = {
        "name": "vend deploy",
        "tests": str(len(cases)),
        "failures": str(totals["failures"]),
        "errors": str(totals["errors"]),
        "skipped": str(totals["skipped"]),
        "time": seconds,
    }
    root = ET.Element("testsuites", attrs)
    suite = ET.SubElement(root, "testsuite", {**attrs, "timestamp": str(data["run"].get("started_at", ""))})
    suite.extend(cases)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _write(path: Path, text: str) -> None:
    """Write through a temporary file, so a reader (or a second interrupt) never sees half a report."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_reports(data: Mapping[str, Any], directory: Path) -> list[Path]:
    """Write the JSON, Markdown and JUnit reports into ``directory``; return their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / JSON_NAME, directory / MARKDOWN_NAME, directory / JUNIT_NAME]
    _write(paths[0], json.dumps(data, indent=2, default=str) + "\n")
    _write(paths[1], markdown_report(data))
    _write(paths[2], junit_report(data))
    return paths


# --------------------------------------------------------------------------- the plan


def plan_data(plans: Sequence[TargetPlan], *, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
    actions = Counter(s.action for p in plans for s in p.stacks)
    return {
        "schema": "vend.deploy-plan/1",
        "run": {**dict(meta or {}), "order": list(ORDER)},
        "summary": {
            "targets": len(plans),
            "targets_with_changes": sum(1 for p in plans if p.changes),
            "targets_not_planned": sum(1 for p in plans if not p.ok),
            "stacks": dict(sorted(actions.items())),
        },
        "targets": [
            {
                "name": p.name,
                "account": p.account,
                "ok": p.ok,
                "detail": p.detail,
                "stacks": [{**asdict(s), "changes": [asdict(c) for c in s.changes]} for s in p.stacks],
            }
            for p in plans
        ],
    }


def _plan_lines(plans: Sequence[TargetPlan], meta: Mapping[str, Any]) -> list[str]:
    lines = ["order:"] + [f"  {step}" for step in ORDER]
    if meta.get("canary"):
        lines.append(f"  canary: {', '.join(meta['canary'])}")
    for p in plans:
        lines.append("")
        if not p.ok:
            lines.append(f"{p.name} ({p.account}): CANNOT PLAN: {p.detail}")
            continue
        lines.append(f"{p.name} ({p.account}): {p.detail}")
        for s in p.stacks:
            after = f" (after {', '.join(s.depends_on)})" if s.depends_on else ""
            lines.append(f"  step {s.step}: {s.stack_name} [{s.region}] {s.action.upper()}{after}: {s.detail}")
            for c in s.changes[:12]:
                lines.append(f"      {c.action:<6} {c.logical_id} ({c.resource_type})")
            if len(s.changes) > 12:
                lines.append(f"      ... {len(s.changes) - 12} more")
    return lines


def blocked_stacks(plans: Sequence[TargetPlan]) -> int:
    """Stacks a deploy would fail as they are (plan action ``blocked``): ``--plan`` exits 1."""
    return sum(1 for p in plans for s in p.stacks if s.action == "blocked")


def _plan_verdict(plans: Sequence[TargetPlan]) -> str:
    """The plan's last word: exit 1 and why, when a deploy could not go through as planned."""
    problems = []
    if blocked := blocked_stacks(plans):
        problems.append(f"{blocked} stack(s) BLOCKED (a deploy would fail them; see each one's reason)")
    if not_planned := sum(1 for p in plans if not p.ok):
        problems.append(f"{not_planned} target(s) could not be planned")
    return ("exit 1: " + "; ".join(problems)) if problems else ""


def render_plan(plans: Sequence[TargetPlan], fmt: str, *, meta: Mapping[str, Any] | None = None) -> str:
    meta = meta or {}
    data = plan_data(plans, meta=meta)
    if fmt == "json":
        return json.dumps(data, indent=2)
    s = data["summary"]
    headline = (
        f"plan: {s['targets']} target(s), {s['targets_with_changes']} with changes, "
        f"{s['targets_not_planned']} could not be planned; stacks: "
        + (", ".join(f"{n} {a}" for a, n in s["stacks"].items()) or "none")
    )
    verdict = _plan_verdict(plans)
    if fmt == "markdown":
        rows = ["## vend deploy plan", "", headline, *(["", f"**{verdict}**"] if verdict else [])]
        rows += ["", "| client | stack | region | step | action | detail |"]
        rows.append("|---|---|---|---|---|---|")
        for p in plans:
            if not p.ok:
                rows.append(f"| {_md(p.name)} | | | | **cannot plan** | {_md(p.detail)} |")
            for st in p.stacks:
                rows.append(
                    f"| {_md(p.name)} | {st.stack_name} | {st.region} | {st.step} | {st.action} | {_md(st.detail)} |"
                )
        return "\n".join(rows) + "\n"
    return "\n".join([*_plan_lines(plans, meta), "", headline, *([verdict] if verdict else [])])


def write_plan(plans: Sequence[TargetPlan], directory: Path, *, meta: Mapping[str, Any] | None = None) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / PLAN_JSON_NAME, directory / PLAN_MARKDOWN_NAME]
    _write(paths[0], render_plan(plans, "json", meta=meta) + "\n")
    _write(paths[1], render_plan(plans, "markdown", meta=meta))
    return paths
