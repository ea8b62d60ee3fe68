"""The emulator parses JSON templates as JSON.

moto reads every template with PyYAML's pure-Python loader (JSON is YAML, so that works for
both), on each CreateStack, CreateChangeSet, ExecuteChangeSet and template comparison.
Measured on a change run of 24 clients at 8 at a time: half of the emulator's CPU went to
that parser, and the emulator, one Python process, became the limit of the run. vend's
templates are JSON: they are read with ``json.loads`` (C), and anything else (YAML, a JSON
text ``json`` refuses) still goes to moto's own parser.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from moto.cloudformation import models as cfn_models

_ORIGINALS: dict[str, Any] = {}


def _json_first(text: Any) -> dict[str, Any] | None:
    if isinstance(text, str) and text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None
    return None


def _parse_template(template: str) -> dict[str, Any]:
    parsed = _json_first(template)
    if parsed is not None:
        return parsed
    original: Callable[[str], dict[str, Any]] = _ORIGINALS["parse_template"]
    return original(template)


def _change_set_parse_template(self: Any) -> None:
    parsed = _json_first(self.template)
    if parsed is None:
        _ORIGINALS["change_set_parse_template"](self)
    else:
        self.template_dict = parsed


def install_fast_templates() -> None:
    """Idempotent: install the JSON-first parsers once."""
    if _ORIGINALS:
        return
    _ORIGINALS["parse_template"] = cfn_models.Stack.parse_template
    _ORIGINALS["change_set_parse_template"] = cfn_models.ChangeSet._parse_template
    cfn_models.Stack.parse_template = staticmethod(_parse_template)  # type: ignore[method-assign,assignment]
    cfn_models.ChangeSet._parse_template = _change_set_parse_template  # type: ignore[method-assign]


def uninstall_fast_templates() -> None:
    if not _ORIGINALS:
        return
    cfn_models.Stack.parse_template = staticmethod(_ORIGINALS.pop("parse_template"))  # type: ignore[method-assign]
    cfn_models.ChangeSet._parse_template = _ORIGINALS.pop("change_set_parse_template")  # type: ignore[method-assign]
