"""`vend show` names the layer of every value; `vend new-client` writes a valid file."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from baseline.portfolio import load_portfolio
from scripts.cli import main

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
    assert re.search(r"^  - restricted-common-ports \(RESTRICTED_INCOMING_TRAFFIC, every\)  # profile:pci ", out, re.M)
    assert main(["show", "nobody", "--overrides", str(overrides)]) == 2


def test_new_client_writes_a_valid_commented_file(overrides: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["new-client", "northwind", "--account", "121212121212", "--region", "eu-west-1"]
    assert main([*args, "--regions", "eu-central-1", "--profile", "pci", "--overrides", str(overrides)]) == 0
    out = capsys.readouterr().out
    path = overrides / "northwind.yaml"
    text = path.read_text()
    assert text.startswith("# yaml-language-server: $schema=../baseline/override.schema.json\n")
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
    assert f'"sts:ExternalId": "{nw.external_id}"' in out
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
