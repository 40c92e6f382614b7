"""Waiting for a condition on the sandbox that follows an event by a moment (a heartbeat after
`ready`, a process after its files), with a bound: never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Return once ``predicate()`` holds; fail the test when ``timeout`` seconds pass first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)
