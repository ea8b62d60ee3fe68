"""Markers for the driver's tests."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: scenario tests on the emulator that take seconds each (deselect with -m 'not slow')"
    )
