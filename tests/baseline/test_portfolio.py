"""Override validation: every YAML trap and rule gives file, line, path and a fix; exit 2."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from baseline.portfolio import load_portfolio
from scripts.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REPO = Path(__file__).resolve().parents[2]

# fixture dir -> (line, path, words the message must contain)
BAD = {
    "unquoted-octal-account": (
        3,
        "account_id",
        'read by YAML as the number 1402433619, not as written; put it in quotes: "012345670123"',
    ),
    "unquoted-account": (3, "account_id", 'read by YAML as a number; put it in quotes: "111122223333"'),
    "no-as-string": (2, "display_name", 'unquoted no is read by YAML as the boolean false; write "no" in quotes'),
    "off-as-string": (9, "access.external_id", "unquoted off is read by YAML as the boolean false"),
    "unknown-region": (5, "regions[1]", "unknown region us-west-9 (did you mean 'us-west-2'?)"),
    "too-many-tags": (16, "tags.required", "takes 1 to 6 tag keys"),
    "external-id-spaces": (9, "access.external_id", "(no spaces)"),
    "unknown-key": (7, "regoins", "unknown key 'regoins' (did you mean 'regions'?)"),
    "bad-engagement": (6, "engagement", "'manged' is not one of: monitoring, managed (did you mean 'managed'?)"),
    "client-not-filename": (1, "client", "must equal the file name"),
    "home-not-in-regions": (4, "home_region", "eu-west-1 must also be listed in regions"),
    "role-other-account": (
        8,
        "access.deploy_role_arn",
        "role is in account 999988887777 but account_id is 111122223333",
    ),
    "unknown-profile": (10, "profiles[0]", "unknown profile 'hipa' (known: hipaa, pci) (did you mean 'hipaa'?)"),
    "missing-budget": (1, "(document)", "missing required key 'budget'"),
    "bad-email": (14, "budget.notify[0]", "must be an e-mail address"),
    "not-yaml": (6, "(document)", "not valid YAML"),
}


def test_example_overrides_are_valid() -> None:
    portfolio, problems = load_portfolio(REPO / "overrides")
    assert problems == []
    assert portfolio is not None
    assert {c.client for c in portfolio.clients} == {"acme-health", "brightmart", "ledgerly"}


def test_every_bad_fixture_is_covered() -> None:
    assert sorted(p.name for p in (FIXTURES / "bad").iterdir()) == sorted(BAD)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_reports_file_line_path_and_fix(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    line, path, words = BAD[case]
    folder = FIXTURES / "bad" / case
    code = main(["validate", str(folder)])
    out = capsys.readouterr().out
    assert code == 2
    expected_prefix = f"{folder / 'acme-health.yaml'}:{line}: {path}: "
    matching = [row for row in out.splitlines() if row.startswith(expected_prefix)]
    assert matching, f"no line starting with {expected_prefix!r} in:\n{out}"
    assert words in matching[0]
    assert "Traceback" not in out


def test_all_errors_of_a_file_are_reported_at_once(tmp_path: Path) -> None:
    text = (FIXTURES / "good" / "acme-health.yaml").read_text()
    text = (
        text.replace('"111122223333"', "012345670123")
        .replace("managed", "manged")
        .replace("[hipaa]", "[hipaa]\nfoo: 1")
    )
    (tmp_path / "acme-health.yaml").write_text(text)
    portfolio, problems = load_portfolio(tmp_path)
    assert portfolio is None
    assert {p.path for p in problems} >= {"account_id", "engagement", "foo"}


def test_duplicates_across_files_are_errors(tmp_path: Path) -> None:
    good = (FIXTURES / "good" / "acme-health.yaml").read_text()
    (tmp_path / "acme-health.yaml").write_text(good)
    (tmp_path / "acme-two.yaml").write_text(good.replace("client: acme-health", "client: acme-two"))
    portfolio, problems = load_portfolio(tmp_path)
    assert portfolio is None
    messages = [str(p) for p in problems]
    assert any("acme-two.yaml:3: account_id: account id 111122223333 is already used by" in m for m in messages)
    assert any("access.external_id: ExternalId acme-health-4b1d9e is already used by" in m for m in messages)


def test_effective_config_layers_defaults_profiles_and_client(tmp_path: Path) -> None:
    shutil.copy(FIXTURES / "good" / "acme-health.yaml", tmp_path)
    portfolio, _ = load_portfolio(tmp_path)
    assert portfolio is not None
    acme = portfolio.client("acme-health")
    rule_names = {r.name for r in acme.config_rules}
    assert "cloudtrail-enabled" in rule_names  # MSP standard set
    assert "s3-bucket-ssl-requests-only" in rule_names  # hipaa profile
    assert acme.log_retention_days == 2190  # hipaa raises the default 400
    assert acme.budget_thresholds_pct == (50, 80, 100)  # client value
    assert acme.finding_publishing_frequency == "SIX_HOURS"  # default


def test_list_json_shows_the_portfolio(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    assert main(["list", "--format", "json", "--overrides", str(REPO / "overrides")]) == 0
    rows = json.loads(capsys.readouterr().out)
    ledgerly = next(r for r in rows if r["client"] == "ledgerly")
    assert ledgerly == {
        "client": "ledgerly",
        "account_id": "777788889999",
        "home_region": "us-east-2",
        "regions": ["us-east-2", "us-west-2", "eu-central-1"],
        "engagement": "managed",
        "profiles": ["pci"],
    }
