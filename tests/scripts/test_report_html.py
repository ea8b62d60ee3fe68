"""The HTML drift report, rendered by a real browser (Debian's Chromium, headless).

`make install` puts Chromium on the machine when it is missing; without it this module
fails with that hint rather than skipping, so CI can never pass without the browser check.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from scripts.drift import DriftReport, Finding
from scripts.report import render_drift
from scripts.report_html import drift_html

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail("Chromium is not installed: run `make install` (it installs Debian's chromium package)")


def _report() -> DriftReport:
    f = Finding
    return DriftReport(
        findings=[
            f(
                "acme-health",
                "111122223333",
                "global",
                "cloudtrail",
                "DRIFTED",
                {"IsLogging": True},
                {"IsLogging": False},
                "trail vend-baseline: IsLogging differ",
                "run `vend drift acme-health --remediate` to start logging again",
            ),
            f("acme-health", "111122223333", "global", "budget", "IN_SYNC", detail="budget"),
            f(
                "acme-health",
                "111122223333",
                "us-west-2",
                "guardduty",
                "MISSING",
                {"Status": "ENABLED"},
                None,
                "no GuardDuty detector",
                "run `vend deploy acme-health`",
            ),
            f("acme-health", "111122223333", "us-east-1", "guardduty", "IN_SYNC", detail="detector"),
            f("brightmart", "444455556666", "global", "cloudtrail", "IN_SYNC", detail="trail"),
            f(
                "brightmart",
                "444455556666",
                "global",
                "budget",
                "OUTDATED",
                {"limit_usd": 900.0},
                {"limit_usd": 800.0},
                "deployed template differs: Budget changed",
                "run `vend deploy brightmart`",
            ),
            f(
                "brightmart",
                "444455556666",
                "eu-west-1",
                "guardduty",
                "NOT_CHECKED",
                detail="AccessDenied: <script>alert('x')</script>",
                signals={"cloudformation-drift": "NOT_CHECKED: the endpoint is the local emulator"},
            ),
            f(
                "brightmart",
                "444455556666",
                "eu-west-1",
                "config-rules",
                "EXCEPTED",
                detail="exception EX-12 until 2099-01-01",
            ),
        ],
        notes=["CloudFormation drift detection not checked: the endpoint is the local emulator"],
    )


class _Dom(HTMLParser):
    """Collects the rendered page's text and the cells/sections that carry a status."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self.cells: dict[tuple[str, str], str] = {}
        self.summary: dict[str, str] = {}
        self._stack: list[tuple[str, dict[str, str | None]]] = []
        self._summary_status: str | None = None
        self.scripts = 0
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts += 1
        for key in ("src", "href"):
            if a.get(key):
                self.external.append(str(a[key]))
        if tag == "td" and a.get("data-client"):
            self.cells[(str(a["data-client"]), str(a["data-control"]))] = str(a["data-status"])
        if tag == "tr" and a.get("data-status"):
            self._summary_status = str(a["data-status"])
        self._stack.append((tag, a))

    def handle_endtag(self, tag: str) -> None:
        if self._stack:
            self._stack.pop()
        if tag == "tr":
            self._summary_status = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._summary_status and self._stack and self._stack[-1][1].get("class") == "count":
            self.summary[self._summary_status] = data.strip()


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, _Dom]:
    tmp = tmp_path_factory.mktemp("html")
    page = tmp / "drift.html"
    page.write_text(drift_html(_report()), encoding="utf-8")
    proc = subprocess.run(
        [_chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp / 'profile'}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = _Dom()
    dom.feed(proc.stdout)
    return proc.stdout, dom


def test_summary_counts_every_status(rendered: tuple[str, _Dom]) -> None:
    _, dom = rendered
    assert dom.summary == {
        "DRIFTED": "1",
        "MISSING": "1",
        "OUTDATED": "1",
        "NOT_CHECKED": "1",
        "EXCEPTED": "1",
        "IN_SYNC": "3",
    }


def test_matrix_cell_shows_worst_status_per_client_and_control(rendered: tuple[str, _Dom]) -> None:
    _, dom = rendered
    assert dom.cells[("acme-health", "cloudtrail")] == "DRIFTED"
    assert dom.cells[("acme-health", "guardduty")] == "MISSING"  # us-west-2 missing, us-east-1 in sync
    assert dom.cells[("brightmart", "budget")] == "OUTDATED"
    assert dom.cells[("brightmart", "cloudtrail")] == "IN_SYNC"
    assert ("acme-health", "config-rules") not in dom.cells  # no such finding: an empty cell


def test_finding_details_show_expected_actual_and_fix(rendered: tuple[str, _Dom]) -> None:
    dom_html, dom = rendered
    text = " ".join(dom.text)
    section = re.search(r'<section[^>]*data-status="DRIFTED".*?</section>', dom_html, re.S)
    assert section is not None
    body = section.group(0)
    assert '"IsLogging": true' in body and '"IsLogging": false' in body
    assert "vend drift acme-health --remediate" in body
    assert "acme-health · global · cloudtrail" in text
    assert "Findings not in sync (5)" in text
    assert "CloudFormation drift detection not checked" in text


def test_page_is_self_contained_and_escapes_input(rendered: tuple[str, _Dom]) -> None:
    dom_html, dom = rendered
    assert dom.scripts == 0  # the AccessDenied text with <script> stayed text
    assert "<script>alert('x')</script>" in " ".join(dom.text)
    assert dom.external == []
    assert "http://" not in dom_html and "https://" not in dom_html


def test_render_drift_html_format() -> None:
    page = render_drift(_report(), "html")
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page


def test_all_in_sync_says_so() -> None:
    report = DriftReport(findings=[Finding("a", "1", "global", "budget", "IN_SYNC")])
    assert "Every control of every client is in sync." in drift_html(report)
