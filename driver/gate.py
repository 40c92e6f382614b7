"""Start Ansible while the ssh master connects; its first remote task waits for the master.

ansible-playbook needs about half a second to start, the master a few tenths (and on a prompting
login node as long as the user takes to type): the driver runs both at once. session.yml's first
remote task reads the gate, a FIFO in the session's 0700 control directory, with a ``pipe``
lookup of ``cat``; that blocks until the driver opens the FIFO for writing, which it does only
once the master is up, and writes ``ok``. So no remote command runs (and nothing is submitted)
unless the master authenticated, and Ansible never has to log in by itself.
"""

import contextlib
import errno
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from driver.errors import NodebookError
from driver.ssh import Connecting

POLL = 0.005  # s between attempts to find the play waiting at the gate


@dataclass
class Gate:
    """The FIFO the play waits on; ``passed`` once the play was let through."""

    path: Path
    passed: bool = False

    @classmethod
    def create(cls, directory: Path) -> "Gate":
        path = directory / "gate"
        os.mkfifo(path, 0o600)
        return cls(path)

    def _open_writer(self) -> int | None:
        """A write end, if the play is reading (blocked in ``cat``); None if it is not yet."""
        try:
            return os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
        except OSError as exc:
            if exc.errno in (errno.ENXIO, errno.ENOENT):
                return None
            raise

    def let_through(self, stop: threading.Event, payload: bytes = b"ok") -> bool:
        """Wait for the play to reach the gate, then let it pass with `payload` ("ok": submit
        yourself; else the driver's own submission, the helper's lines); False if stopped."""
        while not stop.is_set():
            fd = self._open_writer()
            if fd is None:
                stop.wait(POLL)
                continue
            self.passed = True
            try:
                os.set_blocking(fd, True)  # the reader is there: the whole payload goes in
                view = memoryview(payload)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            return True
        return False

    def release(self) -> None:
        """Unblock a play still waiting (it reads nothing, so its remote task is skipped), and
        remove the FIFO. Held open read-write (never ENXIO on Linux) across the unlink, so a
        reader that opens it at any moment up to the unlink gets EOF rather than blocking; one
        that comes later finds no FIFO and its task fails."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_NONBLOCK)
        except OSError:
            fd = None
        with contextlib.suppress(OSError):
            self.path.unlink()
        if fd is not None:
            os.close(fd)


@dataclass
class Connector:
    """The master's login in a thread; the gate opens when it succeeds."""

    connecting: Connecting | None
    gate: Gate
    # Runs once the master is up, before the play is let through: the driver's own submission
    # (its result goes through the gate), or None to let the play submit.
    on_up: Callable[[], bytes] | None = None
    error: NodebookError | None = None
    submitted: bool = False  # on_up ran: a job may exist
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, name="nodebook-master", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            if self.connecting is not None:
                self.connecting.wait()
            payload = b"ok"
            if self.on_up is not None and not self.stop.is_set():
                self.submitted = True
                payload = self.on_up()
        except NodebookError as exc:
            self.error = exc
            return
        self.gate.let_through(self.stop, payload)

    def check(self) -> None:
        """Raise the master's failure (cause and fix) in the caller's thread."""
        if self.error is not None:
            raise self.error

    @property
    def passed(self) -> bool:
        """True once a job may have been submitted (by the driver, or by the play it let pass)."""
        return self.submitted or self.gate.passed

    def close(self) -> None:
        """Stop waiting, end a login still in progress, unblock the play, remove the gate."""
        self.stop.set()
        if self.connecting is not None:
            self.connecting.abort()
        if self.thread is not None:
            self.thread.join(10)
        self.gate.release()
