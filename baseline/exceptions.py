"""Exceptions: the only way a client may waive (part of) a control of the baseline.

Each entry names the control, why, who approved it and until when::

    exceptions:
      - control: guardduty                 # waive the detector ...
        regions: [eu-central-1]            # ... only here (default: every region)
        reason: the client's SOC runs its own detector there (SEC-123)
        approver: security-lead@msp.example
        expires: 2026-12-31
      - control: config-rules
        rules: [restricted-ssh]            # only these rules of the set
        reason: bastion hosts behind the client's VPN (SEC-140)
        approver: security-lead@msp.example
        expires: 2026-09-30

The synthesized stacks leave a waived control (or rule) out, the drift report shows it as
``EXCEPTED`` with the reason and expiry, `vend validate` warns 30 days before the expiry
and fails after it. The MSP role and the permission boundary are never waivable: they are
the MSP's access path and the guardrail on it.
This module must not import aws_cdk: the driver imports it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from datetime import date
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

WARN_DAYS = 30
REGIONAL_CONTROLS = ("guardduty", "config-rules", "tag-rules")
GLOBAL_CONTROLS = ("cloudtrail", "budget")
WaivableControl = Literal["cloudtrail", "budget", "guardduty", "config-rules", "tag-rules"]


class ControlException(BaseModel):
    """A waived control: reason, approver and expiry are required."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    control: WaivableControl = Field(
        description="The control to waive (as named in drift reports). msp-role and permission-boundary "
        "cannot be waived.",
        examples=["guardduty"],
    )
    regions: list[str] | None = Field(
        default=None,
        min_length=1,
        description="Only in these of the client's regions (regional controls only). Default: every region.",
        examples=[["eu-central-1"]],
    )
    rules: list[str] | None = Field(
        default=None,
        min_length=1,
        description="config-rules only: waive just these rules (names as in defaults.yaml or a profile).",
        examples=[["restricted-ssh"]],
    )
    reason: str = Field(
        min_length=10,
        max_length=500,
        description="Why the control is waived, with a ticket reference.",
        examples=["the client's SOC runs its own detector (SEC-123)"],
    )
    approver: str = Field(
        pattern=r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$",
        description="E-mail of the person who approved the exception.",
        examples=["security-lead@msp.example"],
        json_schema_extra={"x-error": "must be the approver's e-mail address"},
    )
    expires: date = Field(
        description="Last day the exception holds (YYYY-MM-DD); validation fails after it.",
        examples=["2026-12-31"],
    )

    def covers(self, control: str, region: str | None = None) -> bool:
        """True when this exception waives the whole ``control`` (in ``region``)."""
        if self.control != control or self.rules:
            return False
        return region is None or self.regions is None or region in self.regions

    def label(self) -> str:
        return f"waived until {self.expires.isoformat()} by {self.approver}: {self.reason}"


def waiver(exceptions: Iterable[ControlException], control: str, region: str | None = None) -> ControlException | None:
    """The exception that waives ``control`` (in ``region``), if any."""
    return next((e for e in exceptions if e.covers(control, region)), None)


def waived_rules(exceptions: Iterable[ControlException], region: str) -> dict[str, ControlException]:
    """Config rule name -> the exception that waives it in ``region``."""
    out: dict[str, ControlException] = {}
    for e in exceptions:
        if e.control == "config-rules" and e.rules and (e.regions is None or region in e.regions):
            out.update({name: e for name in e.rules})
    return out


def exception_problems(
    exceptions: Sequence[ControlException], regions: Sequence[str], rule_names: Iterable[str], today: date
) -> list[tuple[tuple[str | int, ...], str, str]]:
    """(path, message, severity) for each problem with the client's exceptions."""
    out: list[tuple[tuple[str | int, ...], str, str]] = []
    known_rules = sorted(set(rule_names))
    seen: set[tuple[str, str | None, str | None]] = set()
    for i, e in enumerate(exceptions):
        base: tuple[str | int, ...] = ("exceptions", i)
        days = (e.expires - today).days
        if days < 0:
            out.append(
                (
                    (*base, "expires"),
                    f"exception for {e.control} expired on {e.expires.isoformat()}; renew it (new expiry and "
                    "approval) or remove it to restore the control",
                    "error",
                )
            )
        elif days <= WARN_DAYS:
            out.append(
                (
                    (*base, "expires"),
                    f"exception for {e.control} expires on {e.expires.isoformat()} (in {days} day(s)); "
                    "renew it or plan to restore the control",
                    "warning",
                )
            )
        if e.regions is not None:
            if e.control in GLOBAL_CONTROLS:
                out.append(((*base, "regions"), f"{e.control} is a global control: remove regions", "error"))
            for j, region in enumerate(e.regions):
                if region not in regions:
                    out.append(
                        (
                            (*base, "regions", j),
                            f"{region} is not one of the client's regions ({', '.join(regions)})",
                            "error",
                        )
                    )
        if e.rules is not None:
            if e.control != "config-rules":
                out.append(((*base, "rules"), "rules only applies to control: config-rules", "error"))
            for j, rule in enumerate(e.rules):
                if rule not in known_rules:
                    close = difflib.get_close_matches(rule, known_rules, n=1, cutoff=0.6)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    out.append(((*base, "rules", j), f"unknown rule {rule!r}{hint}", "error"))
        scope_regions: list[str | None] = [*e.regions] if e.regions else [None]
        scope_rules: list[str | None] = [*e.rules] if e.rules else [None]
        for scope_region in scope_regions:
            for scope_rule in scope_rules:
                key = (e.control, scope_region, scope_rule)
                if key in seen:
                    out.append((base, f"{e.control} is waived twice for the same scope", "error"))
                seen.add(key)
    return out
