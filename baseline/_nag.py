"""Acknowledge a cdk-nag finding on the construct it concerns, with the reason next to it."""

from __future__ import annotations

from aws_cdk import Acknowledgment, Validations
from constructs import IConstruct


def acknowledge(construct: IConstruct, rule_id: str, reason: str) -> None:
    """Record why ``rule_id`` does not apply here; auditors read these reasons."""
    Validations.of(construct).acknowledge(Acknowledgment(id=rule_id, reason=reason))
