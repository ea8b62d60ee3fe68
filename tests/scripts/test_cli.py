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


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("VEND_TODAY", "tomorrow", "VEND_TODAY='tomorrow' is not a date: write it as YYYY-MM-DD"),
        ("VEND_CACHE_DIR", "FILE", "is not a directory: point it at a directory"),
    ],
)
def test_a_bad_vend_variable_stops_every_command_before_any_work(
    variable: str,
    value: str,
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    if value == "FILE":
        value = str(tmp_path / "a-file")
        Path(value).write_text("not a directory")
    monkeypatch.setenv(variable, value)
    out = tmp_path / "out"
    assert (
        cli.main(["synth", "--overrides", str(Path(cli.__file__).parents[1] / "overrides"), "--output", str(out)]) == 2
    )
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not out.exists()
