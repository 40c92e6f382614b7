"""Cleanups that a signal cannot cut short: shielded() and the runner's temp dir removal."""

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from driver import runner, signals
from driver.errors import ExitCode, Stopped
from driver.signals import shielded


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    """``code`` run by this test's Python in a process of its own (what it imported, how its
    signals ended)."""
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_a_ctrl_c_during_the_block_takes_effect_once_it_is_done():
    """The lost Ctrl-C: one that came while a play's temp dir was removed (the session play
    ends, the driver goes on to hold the session) was dropped, and the driver ran on."""
    before = signal.getsignal(signal.SIGINT)
    done = []
    with pytest.raises(KeyboardInterrupt), shielded():
        os.kill(os.getpid(), signal.SIGINT)  # the handler runs before os.kill returns
        done.append("the rest of the block ran")
    assert done == ["the rest of the block ran"]
    assert signal.getsignal(signal.SIGINT) is before


def test_sigterm_during_the_block_goes_to_its_own_handler_after_it():
    seen: list[int] = []
    before = signal.signal(signal.SIGTERM, lambda signum, _f: seen.append(signum))
    try:
        with shielded():
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)
            assert seen == []
        assert seen == [signal.SIGTERM]  # once: the driver unwinds on the first anyway
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_signal_is_dropped_when_the_driver_is_already_on_its_way_out():
    # unwinding (the cleanup of a Ctrl-C): a second Ctrl-C neither cuts it short nor replaces
    # the exit reason
    with pytest.raises(ValueError, match="first"):
        try:
            raise ValueError("first")
        finally:
            with shielded():
                os.kill(os.getpid(), signal.SIGINT)
    # the body itself fails: its error wins
    with pytest.raises(ValueError, match="body"), shielded():
        os.kill(os.getpid(), signal.SIGINT)
        raise ValueError("body")
    # the last cleanup before the exit
    with shielded(final=True):
        os.kill(os.getpid(), signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)  # the handler is back


def test_nested_blocks_hold_the_signal_until_the_outer_one_is_done():
    order: list[str] = []
    with pytest.raises(KeyboardInterrupt), shielded():
        with shielded():
            os.kill(os.getpid(), signal.SIGINT)
        order.append("outer block went on")
    assert order == ["outer block went on"]


def test_shielded_off_the_main_thread_changes_nothing():
    seen: list[object] = []

    def body() -> None:
        with shielded():
            seen.append(signal.getsignal(signal.SIGINT))

    t = threading.Thread(target=body)
    t.start()
    t.join()
    assert seen == [signal.getsignal(signal.SIGINT)]


def test_remove_tree_tries_again_when_a_writer_drops_a_file_in(tmp_path, monkeypatch):
    private = tmp_path / "nodebook-runner-x"
    (private / "job_events").mkdir(parents=True)
    real = runner.shutil.rmtree
    calls: list[Path] = []

    def racing(path, ignore_errors=False):
        calls.append(path)
        real(path / "job_events", ignore_errors=ignore_errors)
        if len(calls) == 1:  # a killed ansible-playbook's last event lands mid-removal
            (path / "job_events").mkdir()
            (path / "job_events" / "e-partial.json").write_text("{}")
            return
        real(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(runner.shutil, "rmtree", racing)
    runner.remove_tree(private)
    assert not private.exists()
    assert len(calls) == 2


def test_remove_tree_gives_up_after_its_tries(tmp_path, monkeypatch):
    private = tmp_path / "stays"
    private.mkdir()
    monkeypatch.setattr(runner.shutil, "rmtree", lambda *a, **k: None)
    monkeypatch.setattr(runner.time, "sleep", lambda _s: None)
    runner.remove_tree(private, tries=3)
    assert private.exists()


def test_ctrl_c_while_a_finished_plays_temp_dir_is_removed_still_ends_the_driver(
    monkeypatch, tmp_path
):
    """The CI hang: the session play ended, the user's Ctrl-C came during the removal of its
    temp dir, and the driver went on to hold the session as if nothing had been pressed."""
    done = threading.Thread(target=lambda: None)

    class Finished:
        status, rc = "successful", 0

    def run_async(**_kw):
        done.start()
        return done, Finished()

    def remove_tree(path, tries=5):
        os.kill(os.getpid(), signal.SIGINT)  # the Ctrl-C lands in the shielded removal
        removed.append(path)

    removed: list[Path] = []
    monkeypatch.setitem(sys.modules, "ansible_runner", SimpleNamespace(run_async=run_async))
    monkeypatch.setattr(runner, "remove_tree", remove_tree)
    monkeypatch.setattr(runner, "owned_temp_dir", lambda _prefix: tmp_path)
    cluster = SimpleNamespace(inventory=str(tmp_path / "hosts.yml"), name="c")
    run = runner.PlaybookRun(cluster, "session.yml", {}, {}, lambda _u: None)
    with pytest.raises(KeyboardInterrupt):
        run.run()
    assert removed == [tmp_path]  # the removal itself was not cut short


def test_a_session_loads_its_modules_before_a_ctrl_c_can_come():
    """Every module a session uses is loaded with driver.session, at the start: a @dataclass
    made later runs `exec` while a Ctrl-C can come, and CPython 3.11 then ends `python -m
    driver` by SIGINT (exit -2) after the driver handled the Ctrl-C and exited 130
    (docs/design.md). Seen when the monitor, the notifications and the runner loaded late."""
    code = (
        "import sys, driver.cli, driver.session\n"
        "late = [m for m in ('driver.monitor', 'driver.notify', 'driver.runner', "
        "'driver.tunnel', 'driver.stop') if m not in sys.modules]\n"
        "print('late:', late)\n"
    )
    done = run_python(code)
    assert "late: []" in done.stdout, done.stdout + done.stderr


def test_a_session_held_without_a_terminal_loads_no_rich():
    """rich (its markup, and the dataclasses and NamedTuples it makes on import) loads only to
    draw a terminal's status line: in CI a hold's first tick without one loaded it right after
    `ready`, as the test's Ctrl-C came, and `python -m driver` ended by SIGINT (exit -2)."""
    code = (
        "import io, sys, driver.session\n"
        "from driver.notify import Notifier, SessionWatch\n"
        "from driver.progress import Renderer\n"
        "from driver.usage import Usage\n"
        "line = {'job_id': '42', 'state': 'RUNNING', 'elapsed': '5:00', 'time_limit': '1:00:00',"
        " 'tres': 'cpu=1,mem=1G', 'cpu': '00:01:00', 'rss': '1M', 'peak_rss': '1M', 'gpus': ''}\n"
        "watch = SessionWatch(job_id='42', node='cn01', out=Renderer(json_mode=True,"
        " out=io.StringIO()), notifier=Notifier(terminal=None),"
        " fetch=lambda: Usage.from_line(line))\n"
        "watch.tick(); watch.tick()\n"
        "print('rich:', sorted(m for m in sys.modules if m.split('.')[0] == 'rich'))\n"
    )
    done = run_python(code)
    assert "rich: []" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("how", ["exec", "eval"])
def test_a_handled_ctrl_c_inside_a_string_exec_ends_python_m_driver_with_130(tmp_path, how):
    """CI saw `python -m driver session` exit -2 (killed by SIGINT) after a Ctrl-C the driver
    had handled: CPython remembers a KeyboardInterrupt that left a string `exec` (a @dataclass
    or namedtuple being made) even when it is caught, and ends a `-m` run by SIGINT. Here the
    Ctrl-C lands inside one, always; the driver must still exit 130."""
    (tmp_path / "ctrl_c_in_exec.py").write_text(
        "import sys\n"
        "from driver import cli\n"
        "def run(args, out):\n"
        f"    {how}('(_ for _ in ()).throw(KeyboardInterrupt)', {{}})\n"
        "cli.run = run\n"
        "sys.exit(cli.main(['list']))\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": f"{root}{os.pathsep}{tmp_path}",
        "NODEBOOK_STATE_DIR": str(tmp_path / "state"),
    }
    done = subprocess.run(
        [sys.executable, "-m", "ctrl_c_in_exec"],
        capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == (130, "interrupted; cleaned up"), done


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_lost_in_a_finalizer_is_sent_again(signame):
    """The bench's lost Ctrl-C: it came while the garbage collector ran a Popen.__del__, CPython
    printed "Exception ignored in ... KeyboardInterrupt", and the session held on. Here the
    signal always comes inside a finalizer; the driver's hook sends it again after it."""
    code = (
        "import os, signal, sys, time\n"
        "from driver.signals import exit_signals, resend_lost_signals\n"
        "from driver.errors import Stopped\n"
        "resend_lost_signals()\n"
        "class Finalized:\n"
        "    def __del__(self):\n"
        f"        os.kill(os.getpid(), signal.{signame})\n"
        "        time.sleep(0.01)\n"
        "with exit_signals():\n"
        "    try:\n"
        "        Finalized()\n"
        "        time.sleep(5)\n"
        "        print('lost')\n"
        "    except (KeyboardInterrupt, Stopped) as exc:\n"
        "        print('delivered:', type(exc).__name__)\n"
    )
    done = run_python(code)
    assert done.stdout.startswith("delivered:"), done
    assert "Exception ignored" not in done.stderr, done.stderr


@pytest.mark.parametrize(
    ("signum", "code", "name"),
    [
        (signal.SIGTERM, ExitCode.TERMINATED, "SIGTERM"),
        (signal.SIGHUP, ExitCode.HANGUP, "SIGHUP"),
        (signals.STOP_REQUEST, ExitCode.OK, signals.STOPPED_BY_STOP),
    ],
)
def test_each_exit_signal_unwinds_as_its_exit_code_and_is_known_again(signum, code, name):
    """The signal that raised a Stopped is the one the lost-signal hook sends again."""
    with signals.exit_signals(), pytest.raises(Stopped) as stopped:
        os.kill(os.getpid(), signum)
    assert (stopped.value.code, stopped.value.signame) == (code, name)
    assert signals._signal_of(stopped.value) == signum
    assert signals._signal_of(KeyboardInterrupt()) == signal.SIGINT
    assert signals._signal_of(ValueError()) is None
