"""Shared pytest configuration: fixtures live in tests/fixtures/, one module per concern."""

from __future__ import annotations

import os
import signal

import pytest

pytest_plugins = [
    "tests.fixtures.sandbox",
    "tests.fixtures.setup",
]


def pytest_configure(config: pytest.Config) -> None:
    """Started in the background by a non-interactive shell (`make test &`, nohup), pytest
    inherits SIGINT as ignored, and so would every driver a test starts: a test's Ctrl-C would
    do nothing. Handle SIGINT again, so children start with its default, as from a terminal."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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
