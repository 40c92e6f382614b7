"""The master gate: a real FIFO read by a real `cat`, as session.yml's pipe lookup does."""

import json
import subprocess
import threading
import time

from driver.errors import ExitCode, NodebookError
from driver.gate import Connector, Gate


def reader(gate: Gate) -> subprocess.Popen[str]:
    return subprocess.Popen(["cat", str(gate.path)], stdout=subprocess.PIPE, text=True)


def test_the_play_passes_only_once_let_through(tmp_path):
    gate = Gate.create(tmp_path)
    assert (gate.path.stat().st_mode & 0o777) == 0o600
    cat = reader(gate)
    time.sleep(0.2)
    assert cat.poll() is None  # blocked: the master is not up yet
    assert gate.let_through(threading.Event())
    assert cat.communicate(timeout=5)[0] == "ok"
    assert gate.passed


def test_let_through_waits_for_the_reader_and_stops_when_asked(tmp_path):
    gate = Gate.create(tmp_path)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    assert gate.let_through(stop) is False  # no play ever reached the gate
    assert not gate.passed


def test_release_unblocks_a_waiting_play_with_nothing(tmp_path):
    gate = Gate.create(tmp_path)
    cat = reader(gate)
    time.sleep(0.2)
    gate.release()
    assert cat.communicate(timeout=5)[0] == ""  # the lookup reads '' != 'ok': task skipped
    assert not gate.path.exists()
    assert not gate.passed


class FailedLogin:
    def wait(self, timeout: float = 120) -> None:
        raise NodebookError("cannot ssh to login: Permission denied", ExitCode.SSH)

    def abort(self) -> None:
        pass


def test_a_failed_login_never_opens_the_gate(tmp_path):
    gate = Gate.create(tmp_path)
    cat = reader(gate)
    conn = Connector(FailedLogin(), gate)  # type: ignore[arg-type]
    conn.start()
    assert conn.thread is not None
    conn.thread.join(5)
    try:
        conn.check()
        raise AssertionError("check() did not raise the login's failure")
    except NodebookError as exc:
        assert exc.code == ExitCode.SSH
    assert not conn.passed
    conn.close()
    assert cat.communicate(timeout=5)[0] == ""


class LoggedIn:
    def wait(self, timeout: float = 120) -> None:
        pass

    def abort(self) -> None:
        pass


def test_the_drivers_submission_goes_through_the_gate_whole(tmp_path):
    """The driver submits once its master is up and hands the helper's lines to the play."""
    gate = Gate.create(tmp_path)
    cat = reader(gate)
    lines = "\n".join(json.dumps({"nodebook": "session", "job_id": str(i)}) for i in range(3000))
    conn = Connector(LoggedIn(), gate, on_up=lambda: lines.encode())  # type: ignore[arg-type]
    conn.start()
    assert cat.communicate(timeout=10)[0] == lines  # more than a pipe's buffer, in one piece
    assert conn.passed and conn.submitted


def test_a_refused_submission_keeps_the_gate_shut(tmp_path):
    gate = Gate.create(tmp_path)

    def refuse() -> bytes:
        raise NodebookError("a session is already running", ExitCode.DUPLICATE)

    conn = Connector(LoggedIn(), gate, on_up=refuse)  # type: ignore[arg-type]
    conn.start()
    assert conn.thread is not None
    conn.thread.join(5)
    try:
        conn.check()
    except NodebookError as exc:
        assert exc.code == ExitCode.DUPLICATE
    else:
        raise AssertionError("the refusal was not raised")
    cat = reader(gate)
    time.sleep(0.2)
    conn.close()
    assert cat.communicate(timeout=5)[0] == ""  # released with nothing: the play stops


def test_release_never_strands_a_reader_that_is_just_opening_the_gate(tmp_path):
    """A play whose `cat` opens the FIFO as the driver releases it must not block forever (a
    reader that opened between a failed write-open and the unlink once hung a CI run)."""
    for i in range(150):
        directory = tmp_path / str(i)
        directory.mkdir()
        gate = Gate.create(directory)
        cat = reader(gate)
        time.sleep(i % 5 * 0.0005)
        gate.release()
        assert cat.communicate(timeout=5)[0] == ""
        assert not gate.path.exists()
