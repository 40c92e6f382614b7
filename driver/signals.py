"""How the driver's signals unwind: SIGTERM and SIGHUP like Ctrl-C, and cleanups that finish."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType

from driver.errors import ExitCode, Stopped


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    if signum == signal.SIGHUP:
        raise Stopped(ExitCode.HANGUP, "SIGHUP")
    raise Stopped(ExitCode.TERMINATED, "SIGTERM")


@contextlib.contextmanager
def exit_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C does, into the cleanup."""
    old = {s: signal.signal(s, _raise_stopped) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Cleanup must finish: a second Ctrl-C, SIGTERM or SIGHUP does not interrupt it.

    Signals reach only the main thread, so elsewhere there is nothing to shield.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, signal.SIG_IGN) for s in sigs}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
