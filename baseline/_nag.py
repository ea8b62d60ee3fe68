"""Acknowledge a cdk-nag finding on the construct it concerns, with the reason next to it."""

from __future__ import annotations

from collections.abc import Sequence

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(construct: IConstruct, rule_id: str, reason: str, findings: Sequence[str] = ()) -> None:
    """Record why ``rule_id`` (e.g. ``AwsSolutions-IAM4``) does not apply here.

    ``findings`` narrows the acknowledgment to exact findings (``Policy::arn:...``,
    ``Resource::*``) so that a new wildcard or managed policy added later is still flagged.
    """
    pack = rule_id.split("-", 1)[0]
    ids = [f"{pack}::{rule_id}[{f}]" for f in findings] or [f"{pack}::{rule_id}"]
    Validations.of(construct).acknowledge(*(Acknowledgment(id=i, reason=reason) for i in ids))


COMPLIANCE_PACKS = ("HIPAA.Security", "NIST.800.53.R5", "PCI.DSS.321")


def acknowledge_in_packs(construct: IConstruct, rule: str, reason: str) -> None:
    """Acknowledge ``rule`` (e.g. ``IAMNoInlinePolicy``) in every compliance pack vend runs."""
    for pack in COMPLIANCE_PACKS:
        acknowledge(construct, f"{pack}-{rule}", reason)
