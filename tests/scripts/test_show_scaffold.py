"""`vend show` names the layer of every value; `vend new-client` writes a valid file."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from baseline.portfolio import SCHEMA_FILE, load_portfolio
from scripts.cli import main
from scripts.scaffold import schema_reference

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def overrides(tmp_path: Path) -> Path:
    dest = tmp_path / "overrides"
    shutil.copytree(REPO / "overrides", dest)
    return dest


def show(capsys: pytest.CaptureFixture[str], overrides: Path, client: str) -> dict:
    assert main(["show", client, "--format", "json", "--overrides", str(overrides)]) == 0
    return json.loads(capsys.readouterr().out)["fields"]


def test_show_names_the_layer_and_line_of_each_value(overrides: Path, capsys: pytest.CaptureFixture[str]) -> None:
    acme = show(capsys, overrides, "acme-health")
    f = str(overrides / "acme-health.yaml")
    # set by the client file
    assert acme["budget_thresholds_pct"] == {"value": [50, 80, 100], "layer": "client", "source": f"{f}:15"}
    assert acme["finding_publishing_frequency"]["layer"] == "client"
    # from the MSP defaults (acme has no forecast thresholds of its own)
    assert acme["budget_forecast_thresholds_pct"]["layer"] == "default"
    assert re.fullmatch(r".*baseline/defaults\.yaml:\d+", acme["budget_forecast_thresholds_pct"]["source"])
    # from the hipaa profile: the longer retention wins over the default
    assert acme["log_retention_days"]["layer"] == "profile:hipaa"
    assert acme["log_retention_days"]["source"].endswith("baseline/profiles/hipaa.yaml:4")
    rules = {r["value"]["name"]: r for r in acme["config_rules"]}
    assert rules["cloudtrail-enabled"]["layer"] == "default"
    assert rules["s3-bucket-ssl-requests-only"]["layer"] == "profile:hipaa"

    bm = show(capsys, overrides, "brightmart")  # no tags, no guardduty, no thresholds of its own
    assert bm["required_tags"]["layer"] == "default"
    assert bm["budget_thresholds_pct"]["layer"] == "default"
    assert bm["finding_publishing_frequency"]["layer"] == "default"
    assert bm["budget_limit_usd"] == {"value": 800.0, "layer": "client", "source": f"{overrides}/brightmart.yaml:13"}


def test_show_yaml_comments_every_value(overrides: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "ledgerly", "--overrides", str(overrides)]) == 0
    out = capsys.readouterr().out
    assert f"budget_limit_usd: 25000.0  # client {overrides}/ledgerly.yaml:" in out
    # A rule from a profile, with the profile's line; parameters shown only where a rule has them.
    assert re.search(
        r"^  - \{name: restricted-common-ports, identifier: RESTRICTED_INCOMING_TRAFFIC, scope: every\}"
        r"  # profile:pci baseline/profiles/pci.yaml:\d+$",
        out,
        re.M,
    )
    assert re.search(
        r"^  - \{name: iam-user-unused-credentials-check, .*parameters: \{maxCredentialUsageAge: '90'\}\}"
        r"  # profile:pci ",
        out,
        re.M,
    )
    assert main(["show", "nobody", "--overrides", str(overrides)]) == 2


GUARDDUTY_INHERITED_EXCEPTIONS = """  features: {runtime_monitoring: true}
inherited:
  config_recorder: {us-east-1: adopt}
  guardduty_detector: replace
exceptions:
  - control: config-rules
    rules: [restricted-ssh]
    reason: "bastion # hosts: behind the client VPN (SEC-140)"
    approver: security-lead@msp.example
    expires: 2026-12-31
"""


def test_show_yaml_is_valid_yaml_with_the_same_values_as_json(
    overrides: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rules with parameters, mappings, exceptions with `#` and `:` in text: `--format yaml`
    reads back (yaml.safe_load) as the effective config, provenance only in comments."""
    monkeypatch.setenv("VEND_TODAY", "2026-06-01")
    with (overrides / "acme-health.yaml").open("a") as f:
        f.write(GUARDDUTY_INHERITED_EXCEPTIONS)
    for name in ("acme-health", "brightmart", "ledgerly"):
        fields = show(capsys, overrides, name)
        assert main(["show", name, "--overrides", str(overrides)]) == 0
        out = capsys.readouterr().out
        loaded = yaml.safe_load(out)
        expected = {k: v["value"] for k, v in fields.items() if k != "config_rules"}
        assert {k: v for k, v in loaded.items() if k != "config_rules"} == expected
        assert loaded["config_rules"] == [
            {k: r["value"][k] for k in ("name", "identifier", "scope", "parameters") if r["value"].get(k)}
            for r in fields["config_rules"]
        ]
    assert main(["show", "acme-health", "--overrides", str(overrides)]) == 0
    out = capsys.readouterr().out
    assert re.search(
        r"^  - \{name: access-keys-rotated, identifier: ACCESS_KEYS_ROTATED, scope: home, parameters: "
        r"\{maxAccessKeyAge: '90'\}\}  # profile:hipaa .*hipaa\.yaml:\d+$",
        out,
        re.M,
    )


def test_show_names_the_layer_of_each_key_of_a_mapping(overrides: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """guardduty.features: {runtime_monitoring: true} sets one feature: the other four stay
    the defaults', and say so."""
    with (overrides / "acme-health.yaml").open("a") as f:
        f.write(GUARDDUTY_INHERITED_EXCEPTIONS.split("exceptions:")[0])
    f_client = str(overrides / "acme-health.yaml")
    features = show(capsys, overrides, "acme-health")["guardduty_features"]
    assert features["layer"] == "mixed"
    leaves = features["fields"]
    assert leaves["runtime_monitoring"] == {"value": True, "layer": "client", "source": f"{f_client}:21"}
    for name in ("s3_data_events", "eks_audit_logs", "ebs_malware_protection", "rds_login_events"):
        assert leaves[name]["layer"] == "default", name
        assert re.fullmatch(r".*baseline/defaults\.yaml:\d+", leaves[name]["source"])
    inherited = show(capsys, overrides, "acme-health")["inherited"]
    assert inherited["fields"]["config_recorder"]["fields"]["us-east-1"] == {
        "value": "adopt",
        "layer": "client",
        "source": f"{f_client}:23",
    }
    assert inherited["fields"]["guardduty_detector"]["layer"] == "client"
    assert inherited["fields"]["cloudtrail"] == {"value": None, "layer": "built-in", "source": ""}
    # a client without features of its own: every feature, and the mapping, from the defaults
    bm = show(capsys, overrides, "brightmart")["guardduty_features"]
    assert bm["layer"] == "default" and {e["layer"] for e in bm["fields"].values()} == {"default"}

    assert main(["show", "acme-health", "--overrides", str(overrides)]) == 0
    out = capsys.readouterr().out
    assert "guardduty_features:  # mixed\n" in out
    assert f"  runtime_monitoring: true  # client {f_client}:21\n" in out
    assert re.search(r"^  s3_data_events: true  # default .*defaults\.yaml:\d+$", out, re.M)


def test_new_client_writes_a_valid_commented_file(overrides: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["new-client", "northwind", "--account", "121212121212", "--region", "eu-west-1"]
    assert main([*args, "--regions", "eu-central-1", "--profile", "pci", "--overrides", str(overrides)]) == 0
    out = capsys.readouterr().out
    path = overrides / "northwind.yaml"
    text = path.read_text()
    # the editor schema line points from the file's folder to the schema, wherever the folder is
    first = text.splitlines()[0]
    assert first.startswith("# yaml-language-server: $schema=")
    assert (path.parent / first.split("=", 1)[1]).resolve() == SCHEMA_FILE
    portfolio, problems = load_portfolio(overrides)
    assert portfolio is not None and problems == []
    nw = portfolio.client("northwind")
    assert (nw.account_id, nw.home_region, nw.regions, nw.profiles) == (
        "121212121212",
        "eu-west-1",
        ("eu-west-1", "eu-central-1"),
        ("pci",),
    )
    assert nw.deploy_role_arn == "arn:aws:iam::121212121212:role/VendDeploy"
    assert re.fullmatch(r"northwind-[0-9a-f]{16}", nw.external_id)
    # the deploy role comes from the onboarding template (trusts only deploy_principal_arns),
    # not from a hand-made trust policy for the whole MSP account
    assert "vend onboarding-template northwind --output onboarding-northwind.json" in out
    assert ":root" not in out and "Principal" not in out
    assert nw.external_id in out
    assert "git checkout -b onboard-northwind" in out and "vend deploy northwind" in out
    # a second client gets a different ExternalId
    assert (
        main(
            [
                "new-client",
                "southwind",
                "--account",
                "131313131313",
                "--region",
                "us-east-1",
                "--overrides",
                str(overrides),
            ]
        )
        == 0
    )
    capsys.readouterr()
    portfolio, _ = load_portfolio(overrides)
    assert portfolio is not None
    assert portfolio.client("southwind").external_id != nw.external_id


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["brightmart", "--account", "999999999999"], "client brightmart already exists"),
        (["northwind", "--account", "444455556666"], "account 444455556666 already belongs to client brightmart"),
        (["northwind", "--account", "12345"], "account '12345' must be a 12-digit AWS account id"),
        (["North_Wind", "--account", "121212121212"], "slug 'North_Wind' must be 3-32 lowercase letters"),
        (["northwind", "--account", "121212121212", "--profile", "hipa"], "unknown profile 'hipa'"),
    ],
)
def test_new_client_refuses_duplicates_and_bad_input(
    overrides: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    before = sorted(p.name for p in overrides.iterdir())
    assert main(["new-client", *args, "--region", "eu-west-1", "--overrides", str(overrides)]) == 2
    assert message in capsys.readouterr().err
    assert sorted(p.name for p in overrides.iterdir()) == before


def test_new_client_schema_line_is_relative_to_its_folder(tmp_path: Path) -> None:
    assert schema_reference(REPO / "overrides") == "../baseline/override.schema.json"
    assert schema_reference(REPO / "overrides" / "eu") == "../../baseline/override.schema.json"
    nested = tmp_path / "clients" / "eu"
    nested.mkdir(parents=True)
    assert (
        main(
            [
                "new-client",
                "northwind",
                "--account",
                "121212121212",
                "--region",
                "eu-west-1",
                "--overrides",
                str(nested),
            ]
        )
        == 0
    )
    first = (nested / "northwind.yaml").read_text().splitlines()[0]
    assert (nested / first.split("=", 1)[1]).resolve() == SCHEMA_FILE


def test_new_client_is_not_blocked_by_another_clients_broken_file(
    overrides: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = overrides / "brightmart.yaml"
    broken.write_text(broken.read_text().replace("engagement: monitoring", "engagement: monitor"))
    args = ["new-client", "northwind", "--account", "121212121212", "--region", "eu-west-1"]
    assert main([*args, "--overrides", str(overrides)]) == 0
    captured = capsys.readouterr()
    assert f"wrote {overrides / 'northwind.yaml'}" in captured.out
    assert captured.err == (
        f"vend new-client: warning: {broken}, another client's file, does not validate (first problem: 8:13: "
        "engagement: 'monitor' is not one of: monitoring, managed (did you mean 'monitoring'?)); the portfolio "
        "cannot be synthesized or deployed until it is fixed (`vend validate`)\n"
    )
    portfolio, problems = load_portfolio([overrides / "northwind.yaml"])
    assert portfolio is not None and problems == []
    # the broken file still takes its slug and account
    assert (
        main(
            [
                "new-client",
                "brightmart",
                "--account",
                "121212121213",
                "--region",
                "eu-west-1",
                "--overrides",
                str(overrides),
            ]
        )
        == 2
    )
    assert "client brightmart already exists" in capsys.readouterr().err
    assert (
        main(
            [
                "new-client",
                "southwind",
                "--account",
                "444455556666",
                "--region",
                "eu-west-1",
                "--overrides",
                str(overrides),
            ]
        )
        == 2
    )
    assert "account 444455556666 already belongs to client brightmart" in capsys.readouterr().err


def test_show_names_the_profile_whose_value_wins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two profiles set the trail's data events and retention: the effective config takes the
    longest retention and data events on if any profile turns them on; vend show names that
    profile, not the last one listed."""
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "strict.yaml").write_text(
        "description: strict\nlog_retention_days: 2190\ntrail:\n  s3_data_events: true\n"
        "  cloudwatch_logs_retention_days: 365\n"
    )
    (profiles / "lite.yaml").write_text(
        "description: lite\nlog_retention_days: 30\ntrail:\n  s3_data_events: false\n"
        "  cloudwatch_logs_retention_days: 90\n"
    )
    over = tmp_path / "overrides"
    over.mkdir()
    text = (REPO / "tests" / "fixtures" / "good" / "acme-health.yaml").read_text()
    (over / "acme-health.yaml").write_text(text.replace("profiles: [hipaa]", "profiles: [strict, lite]"))
    portfolio, problems = load_portfolio(over, profiles_dir=profiles)
    assert portfolio is not None, problems
    acme = portfolio.client("acme-health")
    assert (acme.trail_s3_data_events, acme.trail_cloudwatch_logs_days, acme.log_retention_days) == (True, 365, 2190)

    from scripts.show import provenance

    fields = provenance(portfolio, "acme-health", profiles_dir=profiles)["fields"]
    strict = str(profiles / "strict.yaml")
    assert fields["trail_s3_data_events"] == {"value": True, "layer": "profile:strict", "source": f"{strict}:4"}
    assert fields["trail_cloudwatch_logs_days"] == {"value": 365, "layer": "profile:strict", "source": f"{strict}:5"}
    assert fields["log_retention_days"] == {"value": 2190, "layer": "profile:strict", "source": f"{strict}:2"}
    # the last layer still wins where the merge takes the last layer: the client's thresholds
    assert fields["budget_thresholds_pct"]["layer"] == "client"

    # lite turns data events off and strict on, in the other order: still strict, still on
    (over / "acme-health.yaml").write_text(text.replace("profiles: [hipaa]", "profiles: [lite, strict]"))
    portfolio, _ = load_portfolio(over, profiles_dir=profiles)
    assert portfolio is not None
    fields = provenance(portfolio, "acme-health", profiles_dir=profiles)["fields"]
    assert fields["trail_s3_data_events"]["layer"] == "profile:strict"
    # both off: the effective value (off) comes from the last profile that says so
    (profiles / "strict.yaml").write_text("description: strict\ntrail:\n  s3_data_events: false\n")
    portfolio, _ = load_portfolio(over, profiles_dir=profiles)
    assert portfolio is not None
    fields = provenance(portfolio, "acme-health", profiles_dir=profiles)["fields"]
    assert fields["trail_s3_data_events"] == {"value": False, "layer": "profile:strict", "source": f"{strict}:3"}


def test_show_with_an_expired_exception_says_what_show_does(
    overrides: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    acme = overrides / "acme-health.yaml"
    acme.write_text(
        acme.read_text()
        + "exceptions:\n  - control: budget\n    reason: finance owns it (FIN-7)\n"
        + "    approver: security-lead@msp.example\n    expires: 2030-01-01\n"
    )
    monkeypatch.setenv("VEND_TODAY", "2030-01-02")
    assert main(["show", "acme-health", "--format", "json", "--overrides", str(overrides)]) == 0
    err = capsys.readouterr().err
    assert "expired exception(s)" in err and "effective config" in err
    assert "assessment" not in err  # the message `vend assess` prints, not show's
