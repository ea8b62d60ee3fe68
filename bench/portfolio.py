"""Generate a portfolio of N client override files (same MSP defaults as the real one).

Used by the benchmark (``bench/deploy_bench.py``) and by tests that need more clients
than the three examples in ``overrides/``. Every client gets a unique account id and
ExternalId; shapes repeat in a fixed pattern so runs are reproducible.
"""

from __future__ import annotations

from pathlib import Path

# (home region, second region) pairs; every generated client runs in two regions, so all
# clients have the same shape: one global stack, then two regional stacks in parallel.
_REGION_PAIRS = (
    ("us-east-1", "us-west-2"),
    ("eu-west-1", "eu-central-1"),
    ("us-east-2", "us-west-2"),
    ("ap-southeast-2", "ap-southeast-1"),
)
_PROFILES = ((), ("hipaa",), (), ("pci",))
FIRST_ACCOUNT = 300_000_000_000


def client_name(index: int) -> str:
    return f"client-{index:04d}"


def account_id(index: int) -> str:
    return f"{FIRST_ACCOUNT + index:012d}"


def override_text(index: int, *, regions: int = 2) -> str:
    """One client's override file (``regions``: 1 or 2)."""
    name = client_name(index)
    account = account_id(index)
    home, second = _REGION_PAIRS[index % len(_REGION_PAIRS)]
    region_list = [home, second][: max(1, min(regions, 2))]
    profiles = _PROFILES[index % len(_PROFILES)]
    engagement = "managed" if index % 2 else "monitoring"
    lines = [
        f"client: {name}",
        f"display_name: Generated Client {index}",
        f'account_id: "{account}"',
        f"home_region: {home}",
        f"regions: [{', '.join(region_list)}]",
        f"engagement: {engagement}",
        "access:",
        f"  deploy_role_arn: arn:aws:iam::{account}:role/VendDeploy",
        f"  external_id: {name}-{index * 7919 % 100000:05d}",
    ]
    if profiles:
        lines.append(f"profiles: [{', '.join(profiles)}]")
    lines += [
        "budget:",
        f"  monthly_limit_usd: {500 + (index % 20) * 250}",
        f"  notify: [ops@{name}.example]",
    ]
    return "\n".join(lines) + "\n"


def write_portfolio(directory: Path, clients: int, *, regions: int = 2) -> list[str]:
    """Write ``clients`` override files into ``directory``; return the client names."""
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(clients):
        name = client_name(index)
        (directory / f"{name}.yaml").write_text(override_text(index, regions=regions), encoding="utf-8")
        names.append(name)
    return names
