"""Shared pytest configuration: fixtures live in tests/fixtures/, one module per concern."""

from __future__ import annotations

import os

import pytest

pytest_plugins = [
    "tests.fixtures.sandbox",
    "tests.fixtures.setup",
]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests that restart the sandbox cluster run after every other test."""
    items.sort(key=lambda item: item.get_closest_marker("destructive") is not None)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """In CI ($CI set, as .ci/run does) a skipped test is a failure: it tested nothing."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if os.environ.get("CI") and skipped and exitstatus == 0:
        names = ", ".join(str(getattr(r, "nodeid", r)) for r in skipped[:10])
        reporter.ensure_newline()
        reporter.write_line(f"CI: {len(skipped)} skipped test(s) count as failed here: {names}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
