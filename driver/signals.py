"""How the driver's signals unwind: SIGTERM and SIGHUP like Ctrl-C, and cleanups that finish."""

from __future__ import annotations

import contextlib
import signal
import sys
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
def shielded(final: bool = False) -> Iterator[None]:
    """Cleanup must finish: Ctrl-C, SIGTERM or SIGHUP do not interrupt it, and are not lost.

    A signal that comes during the block is held, and takes effect as soon as the block is
    done, so a Ctrl-C as a play ends (its temp dir being removed) still ends the session.
    It is dropped only when the driver is on its way out already: an exception is unwinding
    through the block, or ``final`` (the last cleanup before the exit). Signals reach only the
    main thread, so elsewhere there is nothing to shield.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    leaving = final or sys.exc_info()[1] is not None

    def hold(signum: int, _frame: FrameType | None) -> None:
        held.append(signum)

    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, hold) for s in sigs}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if held and not leaving and sys.exc_info()[1] is None:
            signal.raise_signal(held[0])  # its own handler runs now (raises, in most cases)
