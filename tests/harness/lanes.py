"""Sandbox tests side by side: `make test` runs two pytest processes on one sandbox cluster.

The main lane runs every sandbox test but bob's; the bob lane (marker `bob_lane`: tests that
touch only bob, his setup, sessions and files) runs beside it. A test marked `solo` changes what
every other test sees (a daemon stopped, the laptop's network cut, the package index off,
python hidden, both nodes filled) or asserts on the whole cluster: it runs alone.

One lock file does it: each sandbox test holds it shared for its whole protocol (setup, call and
teardown, so the module fixtures it brings up too), a solo test holds it exclusive. A solo test
that waits takes the turnstile first, so that the other lane's next tests wait behind it rather
than starve it. Tests in one process never contend (they run one at a time); a developer's lone
`pytest` takes the lock and never waits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

LOCK = Path(tempfile.gettempdir()) / "nodebook-tests-lanes.lock"
TURNSTILE = LOCK.with_suffix(".turnstile")


def _open(path: Path) -> int:
    return os.open(path, os.O_RDWR | os.O_CREAT, 0o600)


@contextlib.contextmanager
def hold(solo: bool) -> Iterator[None]:
    """The lanes' lock, shared or (solo) exclusive, for the block."""
    lock, turnstile = _open(LOCK), _open(TURNSTILE)
    try:
        fcntl.flock(turnstile, fcntl.LOCK_EX)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX if solo else fcntl.LOCK_SH)
        finally:
            fcntl.flock(turnstile, fcntl.LOCK_UN)
        yield
    finally:
        os.close(lock)  # closing drops the lock
        os.close(turnstile)


class Holder:
    """The lock across a test run: taken before each sandbox test, dropped after it, except
    between two solo tests (a module fixture of solo tests, the index off, spans them)."""

    def __init__(self) -> None:
        self._held: contextlib.ExitStack | None = None

    def before(self, solo: bool) -> None:
        if self._held is None:
            self._held = contextlib.ExitStack()
            self._held.enter_context(hold(solo))

    def after(self, solo: bool, next_solo: bool) -> None:
        if self._held is not None and not (solo and next_solo):
            self._held.close()
            self._held = None
