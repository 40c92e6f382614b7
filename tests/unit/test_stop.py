"""`nodebook stop` of a session this machine holds: its own driver ends it (driver/stop.py).

Real Unix sockets and real signals, in this process: the listener's request reaches the main
thread as the stop signal, which unwinds like Ctrl-C (driver.signals); the answer reaches the
waiting `stop`. The cluster side is out of scope here (tests/e2e/test_session.py and
tests/e2e/test_one_owner.py stop real sessions).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from driver import stop as stop_mod
from driver.errors import ExitCode, Stopped
from driver.progress import Renderer
from driver.record import SessionRecord
from driver.signals import STOPPED_BY_STOP, exit_signals
from driver.state import StateDir
from driver.stop import StopRequests, ask


def _record(control_dir: Path, job_id: str = "41", user: str = "alice") -> SessionRecord:
    return SessionRecord(
        cluster="c1",
        job_id=job_id,
        node="cn01",
        local_port=8888,
        tunnel="jump",
        driver_pid=12345,
        user=user,
        control_path=str(control_dir / "master.sock"),
    )


@pytest.fixture
def state(tmp_path, monkeypatch) -> StateDir:
    monkeypatch.setenv("NODEBOOK_STATE_DIR", str(tmp_path / "state"))
    return StateDir("c1")


def _ask_in_thread() -> tuple[threading.Thread, list[Any]]:
    answers: list[Any] = []

    def run() -> None:
        asked = ask("c1", "41", None)
        answers.append(asked.answer(wait=10) if asked is not None else "not asked")

    thread = threading.Thread(target=run)
    thread.start()
    return thread, answers


def test_a_request_unwinds_the_session_and_waits_for_its_answer(tmp_path, state):
    state.save(_record(tmp_path))
    requests = StopRequests(tmp_path)
    thread, answers = _ask_in_thread()
    with pytest.raises(Stopped) as stopped, exit_signals():
        time.sleep(10)  # the session's main thread, holding: the request interrupts it
    assert (stopped.value.code, stopped.value.signame) == (ExitCode.OK, STOPPED_BY_STOP)
    assert requests.requested
    thread.join(0.2)
    assert thread.is_alive(), "the stop must wait for the cleanup's answer"
    requests.answer(True, "job 41 cancelled")
    thread.join(10)
    assert answers == [{"gone": True, "note": "job 41 cancelled", "driver_pid": os.getpid()}]
    assert not (tmp_path / stop_mod.SOCKET).exists()


def test_no_driver_behind_the_record_is_not_asked(tmp_path, state):
    assert ask("c1", "41", None) is None  # no record
    state.save(_record(tmp_path))
    assert ask("c1", "41", None) is None  # no socket
    StopRequests(tmp_path).answer(False, "")  # the session ended: it takes no more requests
    assert ask("c1", "41", None) is None
    requests = StopRequests(tmp_path)
    assert ask("c1", "41", "bob") is None  # another user's session (--user bob)
    assert ask("c1", "s41", None) is None  # not a scheduler's job id
    requests.answer(False, "")


def _stop(tmp_path, state, monkeypatch, answer: dict[str, Any] | None, **kw: Any) -> tuple:
    state.save(_record(tmp_path))
    asked: list[str] = []
    cleaned: list[str | None] = []

    class Asked:
        job_id, driver_pid = "41", 12345

        def answer(self) -> dict[str, Any] | None:
            return answer

    def fake_ask(cluster: str, job_id: str, user: str | None) -> Asked | None:
        asked.append(job_id)
        return Asked() if job_id == "41" and user in (None, "alice") else None

    monkeypatch.setattr(stop_mod, "ask", fake_ask)
    monkeypatch.setattr(
        stop_mod, "_stop_by_cleanup", lambda c, job, out: cleaned.append(job) or ExitCode.OK
    )

    def load() -> Any:
        raise AssertionError("the inventory is read only when the session's driver cannot stop")

    args = {"job_id": "41", "cluster_name": "c1", "user": None, "load_cluster": load, **kw}
    return stop_mod.stop(out=Renderer(json_mode=True), **args), asked, cleaned


def test_stop_of_a_held_session_asks_its_driver_and_reads_no_inventory(
    tmp_path, state, monkeypatch
):
    code, asked, cleaned = _stop(tmp_path, state, monkeypatch, {"gone": True, "note": ""})
    assert code == ExitCode.OK
    assert asked == ["41"] and cleaned == []
    assert state.load("41") is None


@pytest.mark.parametrize(
    ("kw", "answer"),
    [
        ({}, {"gone": False, "note": "ssh: lost"}),  # the driver could not cancel
        ({}, None),  # it hung up without an answer
        ({"user": "bob"}, {"gone": True}),  # another user's session: not through it
        ({"job_id": "42"}, {"gone": True}),  # no session of that id held here
    ],
)
def test_anything_else_goes_to_cleanup(tmp_path, state, monkeypatch, kw, answer):
    class Cluster:
        name, user = "c1", "alice"

    code, asked, cleaned = _stop(
        tmp_path, state, monkeypatch, answer, **{"load_cluster": lambda: Cluster(), **kw}
    )
    assert code == ExitCode.OK
    assert asked == [kw.get("job_id", "41")]
    assert cleaned == [kw.get("job_id", "41")]


PLAIN_FORMS = [
    ["stop", "41", "--cluster", "c1"],
    ["stop", "41", "--cluster", "c1", "--json"],
    ["stop", "41", "--json", "--user", "bob", "--cluster", "c1"],
    ["stop", "41", "--user", "bob", "--cluster", "c1", "--json", "--json"],
]
OTHER_FORMS = [
    ["stop", "41"],  # no --cluster: the inventory names it
    ["stop", "41", "--cluster=c1"],
    ["stop", "41", "--clu", "c1"],  # argparse's abbreviation
    ["stop", "41", "--cluster", "c1", "--cluster", "c2"],  # argparse takes the last
    ["stop", "41", "--cluster", "c1", "-i", "inv"],
    ["stop", "41", "--cluster", "c1", "--all"],
    ["stop", "41", "--cluster", ""],
    ["stop", "41", "--cluster", "c1", "--user"],
    ["stop", "s41", "--cluster", "c1"],
    ["stop", "--all", "--cluster", "c1"],
    ["list", "41", "--cluster", "c1"],
    ["stop", "--cluster", "c1", "41"],
]


@pytest.mark.parametrize("argv", PLAIN_FORMS + OTHER_FORMS, ids=" ".join)
def test_the_early_request_reads_the_command_line_as_argparse_does(argv):
    """`stop JOBID --cluster NAME` asks its session's driver before argparse is imported
    (stop.plain_stop): what it reads is what argparse reads, and any other form waits for
    argparse."""
    from driver.cli import build_parser
    from driver.stop import plain_stop

    early = plain_stop(argv)
    if argv in PLAIN_FORMS:
        args = build_parser("stop").parse_args(argv)
        assert early == (args.job_id, args.cluster, args.user)
    else:
        assert early is None


# What `nodebook stop JOBID --cluster NAME` has not loaded when its request goes out: argparse
# (and the shutil it brings) and typing, which the rest of the command loads; and enum, re,
# json, pathlib and the socket module, which cost more than the request itself.
NOT_YET = ("argparse", "shutil", "typing", "enum", "re", "json", "pathlib", "socket")


@pytest.mark.parametrize("user", [None, "bob"])
def test_the_early_request_goes_out_before_the_rest_loads(tmp_path, user):
    """The console script's entry (driver.__main__) asks first: the cluster, the job and the
    user as given, and of NOT_YET nothing loaded yet (with --user the record is read first:
    json and pathlib then, but still no argparse or typing)."""
    import subprocess
    import sys

    argv = ["stop", "41", "--cluster", "c1", *(["--user", user] if user else [])]
    code = (
        "import sys, driver.stop as s\n"
        "seen = []\n"
        f"s.ask = lambda *a: seen.append([*a, *(m for m in {NOT_YET!r} if m in sys.modules)])\n"
        "from driver.__main__ import main\n"
        f"main({argv!r})\n"
        "print('loaded:', seen)\n"
    )
    env = {
        "NODEBOOK_STATE_DIR": str(tmp_path),
        "NODEBOOK_INVENTORY": str(tmp_path / "none"),
        "TMPDIR": str(tmp_path),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert f"loaded: [['c1', '41', {user!r}]" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("user", [None, "bob"])
def test_the_real_ask_loads_none_of_them_through_the_stop_link(tmp_path, user):
    """The real ask, through a session's stop link (a driver listens): the request arrives, and
    of NOT_YET nothing is loaded by then. With --user it reads the record (json, pathlib) and
    sends the request through the record's control directory."""
    import subprocess
    import sys

    state = StateDir("c1", tmp_path / "state")
    state.save(_record(tmp_path, user="bob"))
    requests = StopRequests(tmp_path)
    state.link_stop("41", requests.path)
    code = (
        "import sys\n"
        "from driver.stop import ask\n"
        f"asked = ask('c1', '41', {user!r})\n"
        f"print('asked:', asked is not None, [m for m in {NOT_YET!r} if m in sys.modules])\n"
    )
    env = {"NODEBOOK_STATE_DIR": str(tmp_path / "state"), "TMPDIR": str(tmp_path)}
    with pytest.raises(Stopped), exit_signals():
        proc = subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        time.sleep(10)  # the request's signal ends this
    requests.answer(True, "")
    out, err = proc.communicate(timeout=60)
    asked, _, loaded = out.partition("asked: ")[2].strip().partition(" ")
    assert asked == "True", out + err
    if user is None:
        assert loaded == "[]"
    else:  # the record read: json and pathlib, still no argparse, typing or socket module
        assert "'json'" in loaded and "'pathlib'" in loaded, loaded
        assert not any(f"'{m}'" in loaded for m in ("argparse", "typing", "socket")), loaded


def test_the_stop_link_goes_with_the_record(tmp_path, state):
    """The link beside the record is removed with it, and when its driver is gone (orphan); a
    link with no driver behind it is not asked, and the record's socket is asked instead."""
    state.save(_record(tmp_path))
    requests = StopRequests(tmp_path)
    state.link_stop("41", requests.path)
    link = state.stop_link("41")
    assert link.is_symlink() and link.resolve() == requests.path.resolve()
    state.orphan("41")
    assert not link.is_symlink()
    state.save(_record(tmp_path))
    state.link_stop("41", tmp_path / "gone")  # a link to nothing: the record's socket then
    with pytest.raises(Stopped), exit_signals():
        asked = ask("c1", "41", None)
        assert asked is not None
        time.sleep(10)  # the request's signal ends this
    requests.answer(False, "")
    state.remove("41")
    assert not link.is_symlink() and state.load("41") is None
