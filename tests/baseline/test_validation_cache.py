"""The validation cache: a file that passed is not checked again, and anything that could
change its result (its bytes, the defaults, the profiles, the date) checks it again."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import pytest

from baseline.portfolio import load_portfolio

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXPIRING = (
    "exceptions:\n  - control: guardduty\n    reason: client SOC runs its own (SEC-1)\n"
    "    approver: sec@msp.example\n    expires: 2026-07-10\n"
)
DAY = date(2026, 6, 15)


@pytest.fixture
def overrides(tmp_path: Path) -> Path:
    dest = tmp_path / "overrides"
    dest.mkdir()
    shutil.copy(FIXTURES / "good" / "acme-health.yaml", dest)
    return dest


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "validated").glob("*.json"))


def _tamper(cache: Path, budget: int) -> None:
    """Change the remembered budget of every client entry: a run that reports it read the cache."""
    for entry in _entries(cache):
        data = json.loads(entry.read_text())
        if "budget" in data["doc"]["data"]:
            data["doc"]["data"]["budget"]["monthly_limit_usd"] = budget
            entry.write_text(json.dumps(data))


def test_a_second_run_reads_the_remembered_files_and_agrees(overrides: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    plain, plain_problems = load_portfolio(overrides, today=DAY)
    first, first_problems = load_portfolio(overrides, today=DAY, cache_dir=cache)
    second, second_problems = load_portfolio(overrides, today=DAY, cache_dir=cache)
    assert plain is not None and plain == first == second
    assert plain_problems == first_problems == second_problems == []
    assert len(_entries(cache)) == 1 + 1 + 2  # the client, the defaults, two profiles
    _tamper(cache, 4321)
    tampered, _ = load_portfolio(overrides, today=DAY, cache_dir=cache)
    assert tampered is not None and tampered.client("acme-health").budget_limit_usd == 4321


def test_an_edited_file_is_checked_again(overrides: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert load_portfolio(overrides, today=DAY, cache_dir=cache)[0] is not None
    path = overrides / "acme-health.yaml"
    path.write_text(path.read_text().replace("engagement: managed", "engagement: manged"))
    portfolio, problems = load_portfolio(overrides, today=DAY, cache_dir=cache)
    assert portfolio is None
    assert [(p.line, p.path) for p in problems] == [(6, "engagement")]


def test_warnings_are_remembered_and_the_date_is_part_of_the_key(overrides: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with (overrides / "acme-health.yaml").open("a") as f:
        f.write(EXPIRING)
    first = load_portfolio(overrides, today=DAY, cache_dir=cache)[1]
    assert [p.severity for p in first] == ["warning"]
    assert load_portfolio(overrides, today=DAY, cache_dir=cache)[1] == first
    # a later day: the exception has expired, whatever the cache remembers of the 15th
    portfolio, problems = load_portfolio(overrides, today=date(2026, 7, 11), cache_dir=cache)
    assert portfolio is None
    assert [(p.severity, p.path) for p in problems] == [("error", "exceptions[0].expires")]


def test_new_defaults_or_profiles_check_every_file_again(overrides: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    base = Path(__file__).resolve().parents[2] / "baseline"
    defaults, profiles = tmp_path / "defaults.yaml", tmp_path / "profiles"
    shutil.copy(base / "defaults.yaml", defaults)
    shutil.copytree(base / "profiles", profiles, ignore=shutil.ignore_patterns("*.md"))
    kwargs = {"today": DAY, "cache_dir": cache, "defaults_file": defaults, "profiles_dir": profiles}
    assert load_portfolio(overrides, **kwargs)[0] is not None  # type: ignore[arg-type]
    _tamper(cache, 4321)
    (profiles / "hipaa.yaml").write_text((profiles / "hipaa.yaml").read_text() + "\n")
    portfolio, _ = load_portfolio(overrides, **kwargs)  # type: ignore[arg-type]
    assert portfolio is not None and portfolio.client("acme-health").budget_limit_usd != 4321
    _tamper(cache, 4321)
    defaults.write_text(defaults.read_text() + "\n")
    portfolio, _ = load_portfolio(overrides, **kwargs)  # type: ignore[arg-type]
    assert portfolio is not None and portfolio.client("acme-health").budget_limit_usd != 4321


def test_files_with_errors_are_never_remembered(overrides: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = overrides / "acme-health.yaml"
    path.write_text(path.read_text().replace("engagement: managed", "engagement: manged"))
    for _ in range(2):
        portfolio, problems = load_portfolio(overrides, today=DAY, cache_dir=cache)
        assert portfolio is None and [p.path for p in problems] == ["engagement"]
    assert len(_entries(cache)) == 3  # the defaults and the two profiles only


def test_a_broken_or_unwritable_cache_only_costs_time(overrides: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert load_portfolio(overrides, today=DAY, cache_dir=cache)[0] is not None
    for entry in _entries(cache):
        entry.write_text("{not json")
    assert load_portfolio(overrides, today=DAY, cache_dir=cache)[0] is not None
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache directory should be")
    portfolio, problems = load_portfolio(overrides, today=DAY, cache_dir=blocked)
    assert portfolio is not None and problems == []
