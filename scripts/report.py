"""Render drift and deploy results for people (table, Markdown) and machines (JSON)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from itertools import groupby
from typing import Any

from scripts.deploy import TargetResult
from scripts.drift import DriftReport, Finding

_ICON = {
    "IN_SYNC": "ok",
    "DRIFTED": "DRIFTED",
    "MISSING": "MISSING",
    "OUTDATED": "OUTDATED",
    "EXCEPTED": "excepted",
    "NOT_CHECKED": "not checked",
    "ERROR": "ERROR",
}
#: Statuses whose expected/actual/fix the table spells out.
_EXPLAIN = ("DRIFTED", "MISSING", "OUTDATED")


def _short(value: Any, limit: int = 70) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def drift_table(report: DriftReport) -> str:
    lines: list[str] = []
    key = lambda f: (f.client, f.account_id)  # noqa: E731
    for (client, account), group in groupby(sorted(report.findings, key=key), key=key):
        items = list(group)
        bad = [f for f in items if f.status != "IN_SYNC"]
        lines.append(f"{client} ({account}): {len(items) - len(bad)}/{len(items)} in sync")
        for f in items:
            lines.append(f"  {f.region:<15} {f.control:<20} {_ICON.get(f.status, f.status):<11} {_short(f.detail, 60)}")
            if f.status in _EXPLAIN:
                lines.append(f"  {'':<15} {'':<20} expected {_short(f.expected)}")
                lines.append(f"  {'':<15} {'':<20} actual   {_short(f.actual)}")
                lines.append(f"  {'':<15} {'':<20} fix      {f.fix}")
    lines += [f"note: {n}" for n in report.notes]
    summary = ", ".join(f"{n} {s}" for s, n in report.counts().items())
    lines.append(f"summary: {summary or 'nothing checked'}")
    return "\n".join(lines)


def drift_markdown(report: DriftReport) -> str:
    lines = ["## vend drift report", "", "| status | count |", "|---|---|"]
    lines += [f"| {s} | {n} |" for s, n in report.counts().items()]
    bad = [f for f in report.findings if f.status != "IN_SYNC"]
    lines += ["", "| client | account | region | control | status | detail | fix |", "|---|---|---|---|---|---|---|"]
    rows: Sequence[Finding] = bad or []
    lines += [
        f"| {f.client} | {f.account_id} | {f.region} | {f.control} | **{f.status}** | {_md(f.detail)} | {_md(f.fix)} |"
        for f in rows
    ]
    if not bad:
        lines.append("| | | | | | every control in sync | |")
    if report.notes:
        lines += [""] + [f"- {_md(n)}" for n in report.notes]
    return "\n".join(lines)


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_drift(report: DriftReport, fmt: str) -> str:
    if fmt == "json":
        return report.to_json()
    if fmt == "markdown":
        return drift_markdown(report)
    if fmt == "html":
        from scripts.report_html import drift_html

        return drift_html(report)
    return drift_table(report)


def deploy_line(result: TargetResult) -> str:
    stacks = ", ".join(f"{s.stack_name} {s.outcome}" for s in result.stacks)
    detail = f" - {result.detail}" if result.detail else ""
    return f"{result.name:<20} {result.account:<13} {result.outcome:<8} {stacks}{detail}"


def deploy_summary(results: Sequence[TargetResult]) -> str:
    counts: dict[str, int] = {}
    stack_counts: dict[str, int] = {}
    for r in results:
        counts[r.outcome] = counts.get(r.outcome, 0) + 1
        for s in r.stacks:
            stack_counts[s.outcome] = stack_counts.get(s.outcome, 0) + 1
    targets = ", ".join(f"{n} {o}" for o, n in sorted(counts.items()))
    stacks = ", ".join(f"{n} {o}" for o, n in sorted(stack_counts.items()))
    return f"deploy: targets {targets}; stacks {stacks}"
