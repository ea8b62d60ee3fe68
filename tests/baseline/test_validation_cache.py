"""The validation cache: a file that passed is not checked again, anything that could
change its result (its bytes, the defaults, the profiles, the date) checks it again, and an
entry never supplies values the file does not hold."""

from __future__ import annotations

import json
import os
import shutil
import threading
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from baseline.portfolio import DEFAULTS_FILE, PROFILES_DIR, load_portfolio
from baseline.validation_cache import ValidationCache, context_key
from baseline.yamlsource import Problem, load_yaml

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


#: A warning added to remembered entries: a run that prints it read the cache.
MARK = ["remembered", 1, 1, "", "read from the cache", "warning"]


def _client_entries(cache: Path) -> list[tuple[Path, dict[str, Any]]]:
    entries = [(entry, json.loads(entry.read_text())) for entry in _entries(cache)]
    return [(entry, data) for entry, data in entries if "client" in data["doc"]["data"]]


def _mark(cache: Path) -> None:
    for entry, data in _client_entries(cache):
        data["problems"].append(MARK)
        entry.write_text(json.dumps(data))


def _read_the_cache(problems: list[Problem]) -> bool:
    return Problem(*MARK) in problems  # type: ignore[arg-type]


def test_a_second_run_reads_the_remembered_files_and_agrees(overrides: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    plain, plain_problems = load_portfolio(overrides, today=DAY)
    first, first_problems = load_portfolio(overrides, today=DAY, cache_dir=cache)
    second, second_problems = load_portfolio(overrides, today=DAY, cache_dir=cache)
    assert plain is not None and plain == first == second
    assert plain_problems == first_problems == second_problems == []
    assert len(_entries(cache)) == 1 + 1 + 2  # the client, the defaults, two profiles
    _mark(cache)
    third, third_problems = load_portfolio(overrides, today=DAY, cache_dir=cache)
    assert third == plain and _read_the_cache(third_problems)


def test_an_entry_never_supplies_values_the_file_does_not_hold(overrides: Path, tmp_path: Path) -> None:
    """A forged entry (a poisoned CI cache) cannot change the configuration: the values are
    always the file's own, and an entry that disagrees with them is a miss."""
    cache = tmp_path / "cache"
    assert load_portfolio(overrides, today=DAY, cache_dir=cache)[0] is not None
    _mark(cache)
    for entry, data in _client_entries(cache):
        data["doc"]["data"]["access"]["deploy_role_arn"] = "arn:aws:iam::999999999999:role/Elsewhere"
        entry.write_text(json.dumps(data))
    portfolio, problems = load_portfolio(overrides, today=DAY, cache_dir=cache)
    assert portfolio is not None and not _read_the_cache(problems)
    assert portfolio.client("acme-health").deploy_role_arn == "arn:aws:iam::111122223333:role/VendDeploy"


def test_an_entry_vouching_for_a_file_the_model_refuses_is_a_miss(overrides: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = overrides / "acme-health.yaml"
    path.write_text(path.read_text().replace("engagement: managed", "engagement: manged"))
    data = path.read_bytes()
    inputs = [(p, p.read_bytes()) for p in [DEFAULTS_FILE, *sorted(PROFILES_DIR.glob("*.yaml"))]]
    forged = ValidationCache(cache / "validated", context_key(inputs, DAY))
    checked, _ = load_portfolio(overrides, today=DAY)  # the real check fails; forge what it would have kept
    assert checked is None
    forged.store(path, forged.key(path, data), load_yaml(path, data)[0], [])  # type: ignore[arg-type]
    assert len(_entries(cache)) == 1
    portfolio, problems = load_portfolio(overrides, today=DAY, cache_dir=cache)
    assert portfolio is None and [(p.line, p.path) for p in problems] == [(6, "engagement")]


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
    kwargs: dict[str, Any] = {"today": DAY, "cache_dir": cache, "defaults_file": defaults, "profiles_dir": profiles}

    def read_the_cache() -> bool:
        portfolio, problems = load_portfolio(overrides, **kwargs)
        assert portfolio is not None
        hit = _read_the_cache(problems)
        _mark(cache)
        return hit

    read_the_cache()
    assert read_the_cache()  # nothing changed
    (profiles / "hipaa.yaml").write_text((profiles / "hipaa.yaml").read_text() + "\n")
    assert not read_the_cache()
    assert read_the_cache()
    defaults.write_text(defaults.read_text() + "\n")
    assert not read_the_cache()


def test_the_defaults_are_read_once_so_the_key_matches_what_was_checked(
    overrides: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read twice, a defaults file edited in between would be checked as one version and
    remembered under the other's key."""
    reads: list[Path] = []
    original = Path.read_bytes

    def counted(self: Path) -> bytes:
        reads.append(self)
        return original(self)

    monkeypatch.setattr(Path, "read_bytes", counted)
    assert load_portfolio(overrides, today=DAY, cache_dir=tmp_path / "cache")[0] is not None
    assert reads.count(DEFAULTS_FILE) == 1
    assert reads.count(PROFILES_DIR / "hipaa.yaml") == 1


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


def test_an_entry_that_is_not_a_regular_file_never_makes_vend_wait(overrides: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    assert load_portfolio(overrides, today=DAY, cache_dir=cache)[0] is not None
    for entry in _entries(cache):
        entry.unlink()
        os.mkfifo(entry)  # opened for reading without a writer, it would block forever
    result: list[Any] = []
    worker = threading.Thread(
        target=lambda: result.append(load_portfolio(overrides, today=DAY, cache_dir=cache)), daemon=True
    )
    worker.start()
    worker.join(timeout=10)
    assert not worker.is_alive() and result[0][0] is not None
