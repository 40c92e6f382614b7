"""Cleanups that a signal cannot cut short: shielded() and the runner's temp dir removal."""

import os
import signal
import threading
from pathlib import Path

import pytest

from driver import runner
from driver.signals import shielded


def test_shielded_ignores_ctrl_c_and_restores_the_handler():
    before = signal.getsignal(signal.SIGINT)
    with shielded():
        os.kill(os.getpid(), signal.SIGINT)  # delivered now; ignored, so nothing is raised
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGINT) is before
    with pytest.raises(KeyboardInterrupt):
        os.kill(os.getpid(), signal.SIGINT)  # the handler runs before os.kill returns


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
