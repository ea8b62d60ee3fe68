"""The drift report as one self-contained HTML file (inline CSS, no scripts, no external URLs).

Three parts, for the on-call engineer who opens it from a CI artifact or an e-mail:

1. a summary: how many findings per status;
2. a matrix of clients x controls, each cell coloured by the worst status of that control
   across the client's regions (the cell lists the regions that are not in sync);
3. a detail section per finding that is not in sync: client, account, region, control,
   status, what was checked, expected vs actual, the fix, and the extra signals.

Everything is escaped; the file opens offline and prints as it looks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from html import escape
from typing import Any

from scripts.drift import STATUSES, DriftReport, Finding

#: Background colours per status (text is dark on all of them, for contrast).
COLOURS = {
    "IN_SYNC": "#c8e6c9",
    "DRIFTED": "#ffab91",
    "MISSING": "#ef9a9a",
    "OUTDATED": "#ffe082",
    "EXCEPTED": "#b3e5fc",
    "NOT_CHECKED": "#e0e0e0",
    "ERROR": "#ce93d8",
}
_RANK = {status: i for i, status in enumerate(STATUSES)}  # lower = worse

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem; color: #212121; }
h1 { font-size: 1.5rem; margin-bottom: .2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.meta { color: #616161; margin-top: 0; }
table { border-collapse: collapse; margin: .5rem 0; }
th, td { border: 1px solid #bdbdbd; padding: .3rem .6rem; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
.summary td.count { text-align: right; font-weight: bold; }
.matrix td { text-align: center; font-size: .85rem; min-width: 6rem; }
.matrix td.client { text-align: left; font-weight: bold; }
.matrix td small { display: block; font-weight: normal; color: #424242; }
.finding { border: 1px solid #bdbdbd; border-left-width: .5rem; margin: 1rem 0; padding: .5rem 1rem; }
.finding h3 { margin: .2rem 0 .5rem; font-size: 1rem; }
.finding dl { display: grid; grid-template-columns: 8rem 1fr; gap: .2rem .8rem; margin: 0; }
.finding dt { font-weight: bold; } .finding dd { margin: 0; }
pre { margin: 0; white-space: pre-wrap; word-break: break-word; font-size: .8rem; background: #fafafa; }
.notes li { color: #616161; }
"""


def _status_style(status: str) -> str:
    return f"background:{COLOURS.get(status, '#ffffff')}"


def _pre(value: Any) -> str:
    if value is None:
        return "<pre>(none)</pre>"
    text = value if isinstance(value, str) else json.dumps(value, indent=2, sort_keys=True, default=str)
    return f"<pre>{escape(text)}</pre>"


def _worst(findings: Iterable[Finding]) -> str:
    return min((f.status for f in findings), key=lambda s: _RANK.get(s, 0), default="NOT_CHECKED")


def _controls(report: DriftReport) -> list[str]:
    """Controls in first-seen order (the checks' own order: global first, then regional)."""
    seen: dict[str, None] = {}
    for f in report.findings:
        seen.setdefault(f.control, None)
    return list(seen)


def drift_html(report: DriftReport, *, title: str = "vend drift report", generated: datetime | None = None) -> str:
    when = (generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    counts = report.counts()
    clients: dict[tuple[str, str], list[Finding]] = {}
    for f in report.findings:
        clients.setdefault((f.client, f.account_id), []).append(f)
    controls = _controls(report)

    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="meta">{len(clients)} client(s), {len(report.findings)} finding(s), generated {escape(when)}</p>',
    ]

    # 1. summary
    parts.append('<h2 id="summary">Summary</h2><table class="summary"><tr><th>status</th><th>findings</th></tr>')
    for status in STATUSES:
        if status in counts:
            parts.append(
                f'<tr data-status="{status}"><td style="{_status_style(status)}">{status}</td>'
                f'<td class="count">{counts[status]}</td></tr>'
            )
    parts.append("</table>")
    if report.notes:
        parts.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in report.notes) + "</ul>")

    # 2. matrix
    parts.append('<h2 id="matrix">Clients × controls</h2><table class="matrix"><tr><th>client</th>')
    parts += [f"<th>{escape(c)}</th>" for c in controls]
    parts.append("</tr>")
    for (client, account), items in sorted(clients.items()):
        parts.append(f'<tr><td class="client">{escape(client)}<small>{escape(account)}</small></td>')
        for control in controls:
            cell = [f for f in items if f.control == control]
            if not cell:
                parts.append("<td>–</td>")
                continue
            worst = _worst(cell)
            bad = sorted({f.region for f in cell if f.status != "IN_SYNC"})
            where = f"<small>{escape(', '.join(bad))}</small>" if bad else ""
            parts.append(
                f'<td style="{_status_style(worst)}" data-client="{escape(client)}" '
                f'data-control="{escape(control)}" data-status="{worst}">{worst}{where}</td>'
            )
        parts.append("</tr>")
    parts.append("</table>")

    if report.remediation:
        parts.append(
            '<h2 id="remediation">Remediation</h2><table class="remediation"><tr><th>client</th><th>region</th>'
            "<th>control</th><th>outcome</th><th>how</th><th>what</th></tr>"
        )
        for a in report.remediation:
            parts.append(
                "<tr>"
                + "".join(f"<td>{escape(str(a.get(k, '')))}</td>" for k in ("client", "region", "control", "outcome"))
                + f"<td>{escape(str(a.get('how', '')))}</td>"
                + f"<td>{escape(str(a.get('what', '')))} {escape(str(a.get('detail', '')))}</td></tr>"
            )
        parts.append("</table>")

    # 3. details
    bad_findings = sorted(
        (f for f in report.findings if f.status != "IN_SYNC"),
        key=lambda f: (_RANK.get(f.status, 0), f.client, f.region, f.control),
    )
    parts.append(f'<h2 id="findings">Findings not in sync ({len(bad_findings)})</h2>')
    if not bad_findings:
        parts.append("<p>Every control of every client is in sync.</p>")
    for i, f in enumerate(bad_findings, start=1):
        colour = COLOURS.get(f.status, "#ffffff")
        signals = "".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in f.signals.items())
        parts.append(
            f'<section class="finding" id="finding-{i}" style="border-left-color:{colour}" data-status="{f.status}">'
            f"<h3>{escape(f.client)} · {escape(f.region)} · {escape(f.control)} · "
            f'<span style="{_status_style(f.status)}">{f.status}</span></h3><dl>'
            f"<dt>account</dt><dd>{escape(f.account_id)}</dd>"
            f"<dt>what</dt><dd>{escape(f.detail)}</dd>"
            f'<dt>expected</dt><dd class="expected">{_pre(f.expected)}</dd>'
            f'<dt>actual</dt><dd class="actual">{_pre(f.actual)}</dd>'
            f'<dt>fix</dt><dd class="fix">{escape(f.fix) or "–"}</dd>'
            + (f"<dt>signals</dt><dd><ul>{signals}</ul></dd>" if signals else "")
            + "</dl></section>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
