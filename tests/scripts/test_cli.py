"""The command line's own options (the commands' behaviour is tested with their modules)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import scripts.cli as cli
from scripts.drift import DriftReport, Finding

REPO = Path(__file__).resolve().parents[2]


def test_drift_writes_every_format_from_one_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    calls: list[Any] = []

    def fake_drift(*args: Any, **kwargs: Any) -> DriftReport:
        calls.append(args)
        finding = Finding("acme-health", "111122223333", "us-east-1", "guardduty", "DRIFTED", {"a": 1}, {"a": 2})
        return DriftReport(findings=[finding])

    monkeypatch.setattr(cli, "drift_portfolio", fake_drift)
    code = cli.main(
        [
            "drift",
            "--all",
            "--overrides",
            str(REPO / "overrides"),
            "--assembly",
            str(tmp_path / "cdk.out"),
            "--format",
            "markdown",
            "--write",
            f"json={tmp_path / 'drift.json'}",
            "--write",
            f"html={tmp_path / 'drift.html'}",
        ]
    )
    assert code == 3  # the exit code is the run's, as without --write
    assert len(calls) == 1
    out = capsys.readouterr().out
    assert "guardduty" in out and "DRIFTED" in out
    written = json.loads((tmp_path / "drift.json").read_text())
    assert [(f["control"], f["status"]) for f in written["findings"]] == [("guardduty", "DRIFTED")]
    assert (tmp_path / "drift.html").read_text().lstrip().lower().startswith("<!doctype html")


def test_drift_write_needs_format_and_path(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["drift", "--all", "--write", "pdf=drift.pdf"])
    assert exc.value.code == 2
    assert (
        "argument --write: 'pdf=drift.pdf': write FORMAT=PATH with FORMAT one of table, json, markdown, html, "
        "e.g. json=drift.json" in capsys.readouterr().err
    )
