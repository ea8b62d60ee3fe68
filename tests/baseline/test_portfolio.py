"""Override validation: every YAML trap and rule gives file, line, path and a fix; exit 2."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from baseline.portfolio import load_portfolio
from scripts.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
REPO = Path(__file__).resolve().parents[2]

# fixture dir -> the exact line `vend validate` prints for it, after "<file>:"
BAD = {
    "unquoted-octal-account": "3:13: account_id: unquoted 012345670123 is read by YAML as the number 1402433619, "
    'not as written; put it in quotes: "012345670123"',
    "unquoted-account": "3:13: account_id: unquoted 111122223333 is read by YAML as a number; "
    'put it in quotes: "111122223333"',
    "no-as-string": '2:15: display_name: unquoted no is read by YAML as the boolean false; write "no" in quotes '
    "if you mean the text, or true/false if you mean a boolean",
    "off-as-string": '9:16: access.external_id: unquoted off is read by YAML as the boolean false; write "off" in '
    "quotes if you mean the text, or true/false if you mean a boolean",
    "unknown-region": "5:22: regions[1]: unknown region us-west-9 (did you mean 'us-west-2'?)",
    "too-many-tags": "16:3: tags.required: takes 1 to 30 tag keys",
    "external-id-spaces": "9:16: access.external_id: 'acme health 4b1d9e' must be 2-1224 characters of letters, "
    "digits and _+=,.@:/- (no spaces)",
    "unknown-key": "7:1: regoins: unknown key 'regoins' (did you mean 'regions'?); allowed keys: access, account_id, "
    "budget, client, display_name, engagement, exceptions, guardduty, home_region, inherited, profiles, regions, tags",
    "bad-engagement": "6:13: engagement: 'manged' is not one of: monitoring, managed (did you mean 'managed'?)",
    "client-not-filename": "1:9: client: must equal the file name: the file is acme-health.yaml, "
    "so client: acme-health",
    "home-not-in-regions": "4:14: home_region: eu-west-1 must also be listed in regions",
    "role-other-account": "8:20: access.deploy_role_arn: role is in account 999988887777 but account_id is "
    "111122223333; use the role in the client's account",
    "unknown-profile": "10:12: profiles[0]: unknown profile 'hipa' (known: hipaa, pci) (did you mean 'hipaa'?)",
    "missing-budget": "1:1: (document): missing required key 'budget'",
    "bad-email": "14:12: budget.notify[0]: 'cloud-ops' must be an e-mail address such as ops@example.com",
    "not-yaml": "6:11: (document): not valid YAML: expected ',' or ']', but got ':'",
    "duplicate-key": "17:1: display_name: duplicate key; YAML would silently keep only the last one",
    "too-many-recipients": "14:3: budget.notify: takes at most 10 items",
    "bad-role-arn": "8:20: access.deploy_role_arn: 'arn:aws:iam::111122223333:user/VendDeploy' must be an IAM role "
    "ARN: arn:aws:iam::<12 digits>:role/<name>",
    "external-id-short": "9:16: access.external_id: must be 2-1224 characters of letters, digits and _+=,.@:/- "
    "(no spaces)",
    # exceptions, validated as of TODAY
    "exception-expired": "21:14: exceptions[0].expires: exception for guardduty expired on 2026-05-31; renew it "
    "(new expiry and approval) or remove it to restore the control",
    "exception-unknown-rule": "19:13: exceptions[0].rules[0]: unknown rule 'restricted-shh' "
    "(did you mean 'restricted-ssh'?)",
    "exception-other-region": "19:15: exceptions[0].regions[0]: eu-west-1 is not one of the client's regions "
    "(us-east-1, us-west-2)",
    "exception-boundary": "18:14: exceptions[0].control: 'permission-boundary' is not one of: cloudtrail, budget, "
    "guardduty, config-rules, tag-rules",
    # dates: a day that does not exist is a problem with the file, never a traceback
    "date-no-such-day": "21:14: exceptions[0].expires: unquoted 2027-02-30 is read by YAML as a date, but it is not "
    "a valid one (day is out of range for month); write a real date as YYYY-MM-DD, or put it in quotes if you mean "
    'the text: "2027-02-30"',
    "date-no-such-month": "21:14: exceptions[0].expires: unquoted 2026-13-01 is read by YAML as a date, but it is "
    "not a valid one (month must be in 1..12); write a real date as YYYY-MM-DD, or put it in quotes if you mean "
    'the text: "2026-13-01"',
    "date-as-display-name": "2:15: display_name: unquoted 2026-02-30 is read by YAML as a date, but it is not a "
    "valid one (day is out of range for month); write a real date as YYYY-MM-DD, or put it in quotes if you mean "
    'the text: "2026-02-30"',
    "date-quoted-no-such-day": "21:14: exceptions[0].expires: '2027-02-30' is not a valid date (day is out of range "
    "for month); write it as YYYY-MM-DD, e.g. 2026-12-31",
    "date-not-yyyy-mm-dd": "21:14: exceptions[0].expires: '2026-12' is not a valid date; write it as YYYY-MM-DD, "
    "e.g. 2026-12-31",
    # AWS::Budgets::Budget takes at most 5 notifications: actual + forecast thresholds, effective
    "too-many-notifications": "11:1: budget: 4 actual and 2 forecast threshold(s) make 6 budget notifications; AWS "
    "allows at most 5 notifications per budget (AWS::Budgets::Budget NotificationsWithSubscribers): list at most 5 "
    "in thresholds_pct and forecast_thresholds_pct together",
    "too-many-notifications-with-default": "13:3: budget.thresholds_pct: 5 actual and 1 forecast "
    "(forecast_thresholds_pct from defaults.yaml: [100]) threshold(s) make 6 budget notifications; AWS allows at "
    "most 5 notifications per budget (AWS::Budgets::Budget NotificationsWithSubscribers): list at most 5 in "
    "thresholds_pct and forecast_thresholds_pct together",
    # hostile YAML: refused before it is built (no RecursionError, no memory exhaustion)
    "deep-nesting": "2:34: (document): nested more than 20 levels deep; an override file needs only a few levels "
    "(mappings and lists)",
    "alias-bomb": "20:9: (document): aliases expand this document to more than 10,000 values (*d alone stands for "
    "7,381); write the values out instead of nesting aliases",
    "nul-byte": "2:19: (document): contains a NUL byte, which YAML does not allow; remove it",
    # YAML's words replaced by what to do
    "tab-indent": "12:1: (document): YAML does not allow tabs for indentation; use spaces",
    "octal-budget": "12:22: budget.monthly_limit_usd: unquoted 017 is read by YAML as the octal number 15 (a leading "
    "0 means octal), not 17; write 17",
    "nan-budget": "12:22: budget.monthly_limit_usd: unquoted .nan is read by YAML as not-a-number (NaN); write the "
    "number itself, e.g. 100",
    "expires-as-number": "21:14: exceptions[0].expires: unquoted 20261231 is read by YAML as a number, not a date; "
    "write the date as YYYY-MM-DD: 2026-12-31",
    "trailing-newline": '3:13: account_id: "111122223333\\n" ends with a line break; remove it (in double quotes '
    "\\n is a line break; a | or > block keeps one unless written |- or >-)",
    "binary-tag": "2:15: display_name: the YAML tag !!binary is not allowed in an override file; remove it and write "
    "the value itself (text in quotes, a number, true/false, a list or a mapping)",
    "on-as-key": "7:1: on: the key on is read by YAML 1.1 as the boolean true (so are on, off, yes, no, y, n), not as "
    'text; put it in quotes if you mean the key: "on"',
    "empty-display-name": "2:15: display_name: is empty (~ means no value); display_name is required: give it a value",
    # a schema error does not hide a semantic one: both in one round
    "errors-at-once": (
        "4:14: home_region: eu-west-1 must also be listed in regions",
        "6:13: engagement: 'manged' is not one of: monitoring, managed (did you mean 'managed'?)",
    ),
}
TODAY = "2026-06-15"


def test_example_overrides_are_valid() -> None:
    portfolio, problems = load_portfolio(REPO / "overrides")
    assert problems == []
    assert portfolio is not None
    assert {c.client for c in portfolio.clients} == {"acme-health", "brightmart", "ledgerly"}


def test_every_bad_fixture_is_covered() -> None:
    assert sorted(p.name for p in (FIXTURES / "bad").iterdir()) == sorted(BAD)


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_file_reports_file_line_col_path_and_message(
    case: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VEND_TODAY", TODAY)
    folder = FIXTURES / "bad" / case
    code = main(["validate", str(folder)])
    out = capsys.readouterr().out
    assert code == 2
    errors = [row for row in out.splitlines() if row.startswith(str(folder))]
    expected = BAD[case] if isinstance(BAD[case], tuple) else (BAD[case],)
    assert errors == [f"{folder / 'acme-health.yaml'}:{line}" for line in expected], out
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


def test_semantic_and_cross_file_checks_run_despite_schema_errors(tmp_path: Path) -> None:
    """Every independent problem in one round: a schema error in one field does not hide a
    semantic error in another, an expired exception, or a duplicate account in another file."""
    good = (FIXTURES / "good" / "acme-health.yaml").read_text()
    broken = (
        good.replace("engagement: managed", "engagement: manged")
        .replace("role/VendDeploy", "role/VendDeploy\n  foo: 1")
        .replace("[us-east-1, us-west-2]", "[us-east-1, us-west-2, us-west-2]")
        + "exceptions:\n  - control: guardduty\n    reason: client SOC runs its own (SEC-1)\n"
        "    approver: sec@msp.example\n    expires: 2026-01-31\n"
    )
    (tmp_path / "acme-health.yaml").write_text(broken)
    (tmp_path / "acme-two.yaml").write_text(
        good.replace("client: acme-health", "client: acme-two").replace("acme-health-4b1d9e", "acme-two-1")
    )
    portfolio, problems = load_portfolio(tmp_path, today=date(2026, 6, 15))
    assert portfolio is None
    got = {(Path(p.file).name, p.path, p.message.split(";")[0]) for p in problems}
    assert got == {
        ("acme-health.yaml", "engagement", "'manged' is not one of: monitoring, managed (did you mean 'managed'?)"),
        ("acme-health.yaml", "access.foo", "unknown key 'foo'"),
        ("acme-health.yaml", "regions", "lists a region twice"),
        ("acme-health.yaml", "exceptions[0].expires", "exception for guardduty expired on 2026-01-31"),
        (
            "acme-two.yaml",
            "account_id",
            f"account id 111122223333 is already used by {tmp_path / 'acme-health.yaml'}:3",
        ),
    }


def test_duplicates_across_files_are_errors(tmp_path: Path) -> None:
    good = (FIXTURES / "good" / "acme-health.yaml").read_text()
    (tmp_path / "acme-health.yaml").write_text(good)
    (tmp_path / "acme-two.yaml").write_text(good.replace("client: acme-health", "client: acme-two"))
    portfolio, problems = load_portfolio(tmp_path)
    assert portfolio is None
    first, second = tmp_path / "acme-health.yaml", tmp_path / "acme-two.yaml"
    assert [str(p) for p in problems] == [
        f"{second}:3:13: account_id: account id 111122223333 is already used by {first}:3; each client needs its own",
        f"{second}:9:16: access.external_id: ExternalId acme-health-4b1d9e is already used by {first}:9; "
        "each client needs its own",
    ]


def test_duplicate_client_slugs_across_files_are_errors(tmp_path: Path) -> None:
    """The same slug in two folders (the file name matches the slug in both)."""
    good = (FIXTURES / "good" / "acme-health.yaml").read_text()
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = tmp_path / "a" / "acme-health.yaml", tmp_path / "b" / "acme-health.yaml"
    first.write_text(good)
    second.write_text(good.replace("111122223333", "222233334444").replace("acme-health-4b1d9e", "acme-health-2"))
    portfolio, problems = load_portfolio([tmp_path / "a", tmp_path / "b"])
    assert portfolio is None
    assert [str(p) for p in problems] == [
        f"{second}:1:9: client: client slug acme-health is already used by {first}:1; each client needs its own"
    ]


def test_a_file_named_twice_is_read_once(capsys: pytest.CaptureFixture[str]) -> None:
    overrides = REPO / "overrides"
    assert main(["validate", str(overrides), str(overrides / "acme-health.yaml")]) == 0
    assert capsys.readouterr().out == "3 client file(s) valid\n"
    same = overrides / ".." / "overrides" / "acme-health.yaml"
    assert main(["validate", str(same), str(overrides / "acme-health.yaml")]) == 0
    assert capsys.readouterr().out == "1 client file(s) valid\n"


def test_a_folder_is_not_an_override_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    named = tmp_path / "d1" / "acme-health.yaml"
    named.mkdir(parents=True)
    assert main(["validate", str(named)]) == 2
    assert capsys.readouterr().out == f"{named}:1:1: (document): is a directory, not an override file\n1 error(s)\n"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["validate", str(empty)]) == 2
    assert capsys.readouterr().out == (
        f"{empty}:1:1: (document): no override files (*.yaml) in this directory\n1 error(s)\n"
    )


def test_a_number_field_is_never_told_to_use_quotes(tmp_path: Path) -> None:
    good = (FIXTURES / "good" / "acme-health.yaml").read_text()
    cases = {
        "5_000": "unquoted 5_000 is read by YAML as 5000 (YAML 1.1 drops the underscores); write 5000",
        "1:30": "unquoted 1:30 is read by YAML as the base-60 number 90; write the number itself, e.g. 90",
        ".inf": "unquoted .inf is read by YAML as infinity; write the number itself, e.g. 100",
        "yes": "must be a number, not yes (YAML 1.1 reads unquoted yes as the boolean true)",
    }
    for raw, message in cases.items():
        (tmp_path / "acme-health.yaml").write_text(good.replace("monthly_limit_usd: 5000", f"monthly_limit_usd: {raw}"))
        _, problems = load_portfolio(tmp_path)
        assert [(p.path, p.message) for p in problems] == [("budget.monthly_limit_usd", message)], raw
    # a text field still is: quoting keeps the digits as written
    (tmp_path / "acme-health.yaml").write_text(good.replace("display_name: Acme Health", "display_name: 0755"))
    _, problems = load_portfolio(tmp_path)
    assert [p.message for p in problems] == [
        'unquoted 0755 is read by YAML as the number 493, not as written; put it in quotes: "0755"'
    ]


def test_other_yaml_surprises_have_clear_messages(tmp_path: Path) -> None:
    good = (FIXTURES / "good" / "acme-health.yaml").read_text()
    cases = {
        "display_name: !!python/object:os.system x": (
            "display_name",
            "the YAML tag !!python/object:os.system is not allowed in an override file; remove it and write the "
            "value itself (text in quotes, a number, true/false, a list or a mapping)",
        ),
        'display_name: "Acme\\nHealth"': (
            "display_name",
            '"Acme\\nHealth" contains a line break; write the value on one line',
        ),
        "display_name: Acme Health\n~: x": (
            "~",
            'the key ~ is read by YAML as null (no value), not as text; put it in quotes if you mean the key: "~"',
        ),
        "display_name: Acme Health\nyes: x": (
            "yes",
            "the key yes is read by YAML 1.1 as the boolean true (so are on, off, yes, no, y, n), not as text; put "
            'it in quotes if you mean the key: "yes"',
        ),
        "display_name: Acme Health\nx: &x {a: 1}\ny:\n  <<: *x": None,
    }
    for text, expected in cases.items():
        (tmp_path / "acme-health.yaml").write_text(good.replace("display_name: Acme Health", text))
        _, problems = load_portfolio(tmp_path)
        if expected is None:  # merge keys
            assert ("y.<<", "merge keys (<<) are not supported in an override file; write the keys out") in {
                (p.path, p.message) for p in problems
            }
        else:
            assert [(p.path, p.message) for p in problems] == [expected], text
    # a multi-line reason (a folded block ends with a line break) is fine
    (tmp_path / "acme-health.yaml").write_text(
        good + "exceptions:\n  - control: budget\n    reason: >\n      billing runs through the client's\n"
        "      FinOps tool (FIN-7)\n    approver: finance-lead@msp.example\n    expires: 2026-12-31\n"
    )
    assert load_portfolio(tmp_path, today=date(2026, 6, 1))[1] == []


def test_the_defaults_must_fit_a_budget(tmp_path: Path) -> None:
    defaults = (REPO / "baseline" / "defaults.yaml").read_text()
    import re

    too_many = re.sub(r"budget_thresholds_pct: \[[^\]]*\]", "budget_thresholds_pct: [50, 60, 70, 80, 90]", defaults)
    assert too_many != defaults
    (tmp_path / "defaults.yaml").write_text(too_many)
    portfolio, problems = load_portfolio(REPO / "overrides", defaults_file=tmp_path / "defaults.yaml")
    assert portfolio is None
    # Problems are sorted by file: the defaults file's place depends on where tmp_path is.
    in_defaults = [p for p in problems if p.file == str(tmp_path / "defaults.yaml")]
    assert [p.path for p in in_defaults] == ["client_defaults.budget_thresholds_pct"]
    assert "make 6 notifications of every client's budget" in in_defaults[0].message


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
