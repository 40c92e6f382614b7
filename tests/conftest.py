"""Shared pytest configuration: fixtures live in tests/fixtures/, one module per concern."""

from __future__ import annotations

import pytest

pytest_plugins = [
    "tests.fixtures.sandbox",
    "tests.fixtures.setup",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that restart the sandbox cluster run after every other test."""
    items.sort(key=lambda item: item.get_closest_marker("destructive") is not None)
