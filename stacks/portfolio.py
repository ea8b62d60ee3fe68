"""Compose the CDK app from a validated portfolio: the MSP side, then every client."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from aws_cdk import App, Environment, LegacyStackSynthesizer, Tags

from baseline.model import EffectiveClient, MspDefaults
from baseline.portfolio import Portfolio
from baseline.spec import (
    LOG_ARCHIVE_STACK_NAME,
    central_logging,
    client_baseline,
    global_stack_name,
    log_shard,
    log_shards,
    regional_stack_name,
    retention_classes,
)
from stacks.client import ClientGlobalStack, ClientRegionalStack
from stacks.log_archive import LogArchiveStack
from stacks.stacksets_admin import STACKSETS_ADMIN_STACK_NAME, StackSetsAdminStack

CLIENT_TAG = "vend:client"


def build_app(app: App, portfolio: Portfolio, *, only_client: str | Collection[str] | None = None) -> None:
    """Add the portfolio's stacks to ``app``. The MSP-side stack always covers every client,
    because its policies must let every client write, even when one client is selected.
    ``only_client`` is one client or a collection of them (empty: only the MSP side)."""
    selected = None if only_client is None else {only_client} if isinstance(only_client, str) else set(only_client)
    archive = build_log_archive(app, portfolio)
    Tags.of(archive).add("vend:managed-by", "vend")
    admin = StackSetsAdminStack(
        app,
        STACKSETS_ADMIN_STACK_NAME,
        msp_account=portfolio.defaults.msp.account_id,
        termination_protection=True,
        env=Environment(account=portfolio.defaults.msp.account_id, region=portfolio.defaults.log_archive.region),
        synthesizer=LegacyStackSynthesizer(),
        description="vend MSP side: the CloudFormation StackSets administration role (vend deploy --engine stacksets)",
    )
    Tags.of(admin).add("vend:managed-by", "vend")
    clients = [c for c in portfolio.clients if selected is None or c.client in selected]
    build_client_stacks(app, portfolio.defaults, clients)


def build_client_stacks(app: App, defaults: MspDefaults, clients: Iterable[EffectiveClient]) -> None:
    """Each client's global stack and its regional stacks (``scripts/synth.py`` also calls
    this for the prototypes of client shapes, without the MSP side)."""
    for client in clients:
        baseline = client_baseline(client, defaults)
        # Client accounts are never CDK-bootstrapped: no assets, no bootstrap roles.
        global_stack = ClientGlobalStack(
            app,
            global_stack_name(client.client),
            baseline=baseline,
            termination_protection=True,
            logs=baseline.logs,
            env=Environment(account=client.account_id, region=client.home_region),
            synthesizer=LegacyStackSynthesizer(),
            description=f"vend baseline (global) for {client.display_name}",
        )
        Tags.of(global_stack).add(CLIENT_TAG, client.client)
        for regional in baseline.regional:
            stack = ClientRegionalStack(
                app,
                regional_stack_name(client.client, regional.region),
                regional=regional,
                termination_protection=True,
                env=Environment(account=client.account_id, region=regional.region),
                synthesizer=LegacyStackSynthesizer(),
                description=f"vend baseline ({regional.region}) for {client.display_name}",
            )
            stack.add_stack_dependency(global_stack)
            Tags.of(stack).add(CLIENT_TAG, client.client)


def build_log_archive(app: App, portfolio: Portfolio) -> LogArchiveStack:
    """The MSP-side stack: every shard's bucket and key, each writable by its clients only."""
    defaults = portfolio.defaults
    logs = central_logging(defaults)
    accounts_by_shard: dict[int, list[str]] = {}
    for c in portfolio.clients:
        accounts_by_shard.setdefault(log_shard(c.account_id, defaults.log_archive.shards), []).append(c.account_id)
    return LogArchiveStack(
        app,
        LOG_ARCHIVE_STACK_NAME,
        shards=log_shards(defaults),
        accounts_by_shard=accounts_by_shard,
        # Every class a profile can ask for, not only the ones in use: the lifecycle rules
        # then never change when a client changes profile.
        retention_days=retention_classes(defaults, [p.log_retention_days for p in portfolio.profiles.values()]),
        env=Environment(account=logs.account_id, region=logs.region),
        synthesizer=LegacyStackSynthesizer(),
        description="vend MSP side: central log buckets and KMS keys for every client",
    )
