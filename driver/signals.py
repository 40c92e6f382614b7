"""How the driver's signals unwind: SIGTERM and SIGHUP like Ctrl-C, and cleanups that finish."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from types import FrameType

from driver.errors import ExitCode, Stopped

# `nodebook stop JOB` of this session (driver.stop): the driver's own thread sends it to the main
# thread, which unwinds into the cleanup as on Ctrl-C; the session then ends with exit 0.
STOP_REQUEST = signal.SIGUSR1
STOPPED_BY_STOP = "stopped by `nodebook stop`"
# Each signal that unwinds like Ctrl-C: the session's exit code, and how the end is named.
STOPS = {
    signal.SIGTERM: (ExitCode.TERMINATED, "SIGTERM"),
    signal.SIGHUP: (ExitCode.HANGUP, "SIGHUP"),
    STOP_REQUEST: (ExitCode.OK, STOPPED_BY_STOP),
}
EXIT_SIGNALS = tuple(STOPS)


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    code, name = STOPS[signal.Signals(signum)]
    raise Stopped(code, name, signum)


def _signal_of(exc: BaseException | None) -> int | None:
    """The signal whose handler raised ``exc`` (Ctrl-C's KeyboardInterrupt, or Stopped)."""
    if isinstance(exc, KeyboardInterrupt):
        return signal.SIGINT
    if isinstance(exc, Stopped):
        return exc.signum
    return None


def resend_lost_signals() -> None:
    """A signal is not lost in a finalizer: sent again once the finalizer is done.

    A handler raises in whatever Python code the main thread runs, and when that is a
    finalizer (``Popen.__del__``, run by the garbage collector after a heartbeat's ssh) CPython
    prints "Exception ignored in ..." and goes on: the bench saw a Ctrl-C so lost, the session
    held for another minute. This hook takes such an exception and sends its signal again from
    a thread, a few milliseconds later (not at once: the handler would then raise inside the
    hook, and be lost the same way). Any other unraisable exception goes to the previous hook.
    """
    import _thread
    import os
    import time

    previous = sys.unraisablehook

    def again(signum: int) -> None:
        time.sleep(0.01)
        os.kill(os.getpid(), signum)

    def hook(unraisable: object) -> None:
        signum = _signal_of(getattr(unraisable, "exc_value", None))
        if signum is None:
            previous(unraisable)  # type: ignore[arg-type]
            return
        _thread.start_new_thread(again, (signum,))

    sys.unraisablehook = hook


def forget_caught_interrupt() -> None:
    """Let a Ctrl-C the driver has handled end the process with the driver's exit code.

    CPython (3.11, 3.12) sets a flag when a KeyboardInterrupt leaves code run by ``exec`` or
    ``eval`` of a string (``@dataclass`` and ``namedtuple`` make their methods so), even when a
    caller catches it, and ``python -m driver`` then ends by SIGINT (exit -2) after the driver's
    cleanup and its exit 130. Every string ``exec`` clears the flag as it starts: one that
    finishes clears it for good. A KeyboardInterrupt that escapes ``main`` sets it again (runpy's
    caller checks), so this hides nothing unhandled. The console script is not affected.
    """
    exec("pass", {})  # a constant string; clears the flag (see above)


@contextlib.contextmanager
def exit_signals() -> Iterator[None]:
    """SIGTERM, SIGHUP and a `nodebook stop` request unwind like Ctrl-C does, into the
    cleanup."""
    old = {s: signal.signal(s, _raise_stopped) for s in EXIT_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def shielded(final: bool = False) -> Iterator[None]:
    """Cleanup must finish: Ctrl-C, SIGTERM, SIGHUP or a stop request do not interrupt it, and
    are not lost.

    A signal that comes during the block is held, and takes effect as soon as the block is
    done, so a Ctrl-C as a play ends (its temp dir being removed) still ends the session.
    It is dropped only when the driver is on its way out already: an exception is unwinding
    through the block, or ``final`` (the last cleanup before the exit). Signals reach only the
    main thread, so elsewhere there is nothing to shield.
    """
    import threading  # (not at the top: `nodebook stop` imports this module before it asks)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list[int] = []
    leaving = final or sys.exc_info()[1] is not None

    def hold(signum: int, _frame: FrameType | None) -> None:
        held.append(signum)

    sigs = (signal.SIGINT, *EXIT_SIGNALS)
    old = {s: signal.signal(s, hold) for s in sigs}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        if held and not leaving and sys.exc_info()[1] is None:
            signal.raise_signal(held[0])  # its own handler runs now (raises, in most cases)
