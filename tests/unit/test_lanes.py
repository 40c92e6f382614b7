"""The lanes' lock (tests/harness/lanes.py), with real flock on a file here: a solo test waits
for the other lane's test to end, and the other lane's next test waits behind it (no starving)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.harness import lanes

WAIT = 0.3  # s a blocked taker is given to show that it is blocked


@pytest.fixture(autouse=True)
def lock_here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lanes, "LOCK", tmp_path / "lanes.lock")
    monkeypatch.setattr(lanes, "TURNSTILE", tmp_path / "lanes.turnstile")


class Taker(threading.Thread):
    """Takes the lock, says so, holds it until released."""

    def __init__(self, solo: bool, log: list[str], name: str) -> None:
        super().__init__(daemon=True)
        self.solo, self.log, self.label = solo, log, name
        self.got, self.release = threading.Event(), threading.Event()

    def run(self) -> None:
        with lanes.hold(self.solo):
            self.log.append(self.label)
            self.got.set()
            self.release.wait(10)


def test_shared_tests_run_side_by_side():
    log: list[str] = []
    a, b = Taker(False, log, "a"), Taker(False, log, "b")
    a.start()
    b.start()
    assert a.got.wait(5) and b.got.wait(5)
    a.release.set()
    b.release.set()


def test_a_solo_test_waits_and_the_next_shared_one_waits_behind_it():
    log: list[str] = []
    first = Taker(False, log, "first")
    first.start()
    assert first.got.wait(5)
    solo = Taker(True, log, "solo")
    solo.start()
    assert not solo.got.wait(WAIT)  # the other lane's test still runs
    later = Taker(False, log, "later")
    later.start()
    assert not later.got.wait(WAIT)  # behind the waiting solo test, not beside the first
    first.release.set()
    assert solo.got.wait(5)
    assert not later.got.wait(WAIT)  # nothing beside a solo test
    solo.release.set()
    assert later.got.wait(5)
    later.release.set()
    assert log == ["first", "solo", "later"]


def test_the_holder_keeps_the_lock_between_solo_tests_only():
    log: list[str] = []
    holder = lanes.Holder()
    holder.before(True)
    holder.after(True, True)  # the next test is solo too: a module's fixture may span them
    other = Taker(False, log, "other")
    other.start()
    assert not other.got.wait(WAIT)
    holder.before(True)
    holder.after(True, False)
    assert other.got.wait(5)
    other.release.set()
    holder.before(False)  # shared beside the other lane
    holder.after(False, False)
