"""The rule packs (baseline/profiles/) and what the README says about them and about tag keys.

Every rule is checked against the AWS managed rule catalogue moto ships (identifier exists,
parameters are the rule's, required parameters present), so a typo fails here rather than in
a client's CloudFormation deploy.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from moto.config.models import MANAGED_RULES_CONSTRAINTS

from baseline.model import MAX_REQUIRED_TAG_KEYS, MAX_TAG_KEYS_PER_RULE
from baseline.spec import RULE_PREFIX

REPO = Path(__file__).resolve().parents[2]
PROFILES = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((REPO / "baseline" / "profiles").glob("*.yaml"))}
STANDARD = yaml.safe_load((REPO / "baseline" / "defaults.yaml").read_text())["config_rules"]
#: What each pack's `why` must name: the HIPAA Security Rule section or the PCI DSS requirement.
REQUIREMENT = {"hipaa": re.compile(r"^164\.3\d\d\("), "pci": re.compile(r"^Req\. \d+\.")}


def _all_rules() -> list[tuple[str, dict[str, object]]]:
    return [("standard", r) for r in STANDARD] + [(n, r) for n, p in PROFILES.items() for r in p["config_rules"]]


@pytest.mark.parametrize(("pack", "rule"), _all_rules(), ids=[f"{p}:{r['name']}" for p, r in _all_rules()])
def test_every_rule_is_a_real_aws_managed_rule_with_its_parameters(pack: str, rule: dict[str, object]) -> None:
    identifier = str(rule["identifier"])
    assert identifier in MANAGED_RULES_CONSTRAINTS, f"{identifier} is not an AWS managed rule"
    known = {p["Name"]: p for p in MANAGED_RULES_CONSTRAINTS[identifier]["Parameters"]}
    given = set(rule.get("parameters") or {})  # type: ignore[arg-type]
    assert given <= set(known), f"{rule['name']}: unknown parameters {given - set(known)}"
    required = {n for n, p in known.items() if not p["Optional"]}
    assert required <= given, f"{rule['name']}: missing required parameters {required - given}"
    # Config rule names: at most 128 characters once prefixed; vend keeps them to 64 before.
    assert len(f"{RULE_PREFIX}{rule['name']}") <= 69


@pytest.mark.parametrize("pack", ["hipaa", "pci"])
def test_packs_extend_the_standard_set_with_reasons(pack: str) -> None:
    rules = PROFILES[pack]["config_rules"]
    assert len(rules) >= 40, f"{pack} should carry the conformance pack's account-level rules"
    names = [r["name"] for r in rules]
    assert len(names) == len(set(names))
    standard_ids = {r["identifier"] for r in STANDARD}
    for r in rules:
        assert r["identifier"] not in standard_ids, f"{r['name']} duplicates a rule of the standard set"
        assert REQUIREMENT[pack].match(r["why"]), f"{pack}:{r['name']}: `why` must name the requirement: {r['why']}"
        assert r.get("scope", "every") in ("home", "every")
        if r["identifier"].startswith(("IAM_", "ROOT_", "MFA_", "ACCESS_KEYS_")) or "CLOUD_TRAIL" in r["identifier"]:
            assert r.get("scope") == "home", f"{r['name']} checks global resources: scope home"


def test_a_rule_in_two_packs_is_the_same_rule() -> None:
    """Profiles merge by rule name: a shared name must mean the same rule in every pack, or the
    result would depend on the order of a client's profiles."""
    seen: dict[str, tuple[str, tuple[object, ...]]] = {}
    for pack, profile in PROFILES.items():
        for r in profile["config_rules"]:
            key = (r["identifier"], r.get("scope", "every"), tuple(sorted((r.get("parameters") or {}).items())))
            if r["name"] in seen:
                assert seen[r["name"]][1] == key, f"{r['name']} differs between {seen[r['name']][0]} and {pack}"
            seen[r["name"]] = (pack, key)


def test_readme_rule_set_section_matches_the_packs() -> None:
    readme = (REPO / "README.md").read_text()
    for pack, label in (("hipaa", "hipaa"), ("pci", "pci")):
        n = len(PROFILES[pack]["config_rules"])
        assert re.search(rf"`{label}` adds {n} rules", readme), f"README must say `{label}` adds {n} rules"


def test_readme_states_the_tag_key_limits_the_code_enforces() -> None:
    readme = (REPO / "README.md").read_text()
    assert not re.search(r"at most 6\b|more than 6 tag keys", readme)
    assert f"more than {MAX_REQUIRED_TAG_KEYS} tag keys" in readme
    assert f"takes {MAX_TAG_KEYS_PER_RULE} keys" in readme or f"takes {MAX_TAG_KEYS_PER_RULE} per rule" in readme
