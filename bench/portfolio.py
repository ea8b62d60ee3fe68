"""Generate a portfolio of N client override files (same MSP defaults as the real one).

Used by the benchmarks (``bench/``) and by tests that need more clients than the three
examples in ``overrides/``. Every client gets a unique account id and ExternalId; shapes
repeat in a fixed pattern so runs are reproducible.

Two layouts: ``regions=1`` or ``2`` (every client in that many regions: one shape of stack
fan-out, for deploy timings), and ``regions="scale"``: clients in 1 to 17 regions,
averaging about 4, one in twenty in all 17 regions that AWS enables by default.
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
#: The 17 regions enabled by default in every AWS account.
DEFAULT_REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "eu-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-north-1",
    "ap-south-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ap-southeast-1",
    "ap-southeast-2",
    "sa-east-1",
)
#: Region counts of the "scale" layout, by client index (mean 4.0: 19 clients of 3.3, one of 17).
_SCALE_COUNTS = (17, 1, 2, 3, 3, 4, 5, 2, 3, 4, 6, 1, 2, 3, 4, 3, 5, 2, 4, 6)
_THRESHOLDS = ("", "  thresholds_pct: [50, 80, 100]\n", "")
FIRST_ACCOUNT = 300_000_000_000


def client_name(index: int) -> str:
    return f"client-{index:04d}"


def account_id(index: int) -> str:
    return f"{FIRST_ACCOUNT + index:012d}"


def _scale_regions(index: int) -> list[str]:
    count = _SCALE_COUNTS[index % len(_SCALE_COUNTS)]
    start = (index * 7) % len(DEFAULT_REGIONS)
    return [DEFAULT_REGIONS[(start + i) % len(DEFAULT_REGIONS)] for i in range(count)]


def override_text(index: int, *, regions: int | str = 2) -> str:
    """One client's override file (``regions``: 1, 2 or "scale")."""
    name = client_name(index)
    account = account_id(index)
    if regions == "scale":
        region_list = _scale_regions(index)
        home = region_list[0]
    else:
        home, second = _REGION_PAIRS[index % len(_REGION_PAIRS)]
        region_list = [home, second][: max(1, min(int(regions), 2))]
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
    text = "\n".join(lines) + "\n"
    if regions == "scale":
        text += _THRESHOLDS[index % len(_THRESHOLDS)]
    return text


def write_portfolio(directory: Path, clients: int, *, regions: int | str = 2) -> list[str]:
    """Write ``clients`` override files into ``directory``; return the client names."""
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for index in range(clients):
        name = client_name(index)
        (directory / f"{name}.yaml").write_text(override_text(index, regions=regions), encoding="utf-8")
        names.append(name)
    return names
