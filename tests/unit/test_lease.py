"""The session's lease and a machine that slept: the rules of driver.monitor, on a fake clock.

The sandbox tests (tests/e2e/test_lost_tunnel.py) freeze a real driver and drop its packets;
these check the decisions on an injected wall clock: what counts as away and for how long, that
an outage longer than the reconnect bound but inside the lease cancels nothing and ends in a
re-established tunnel, and that a lease that ran out ends the session with the job's reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from driver import monitor as monitor_mod
from driver.errors import ExitCode, NodebookError
from driver.monitor import Job, Monitor, Waking, span
from driver.progress import Update


class Clock:
    """A wall clock that moves only when told (or when the monitor sleeps)."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_jump_of_the_wall_clock_is_an_absence_and_says_how_long():
    clock = Clock()
    waking = Waking(gap=3.0, clock=clock)
    for _ in range(10):  # ticks half a second apart: awake
        waking.tick()
        clock.now += 0.5
    assert waking.take() is None  # (a take ticks too: the last tick before the lid closed)
    since = clock.now
    clock.now += 600  # asleep for ten minutes (the monotonic clock would not have moved)
    waking.tick()
    assert waking.take() == (since, pytest.approx(600))
    assert waking.take() is None  # taken once


def test_a_take_right_after_a_thaw_sees_the_absence_before_the_thread_ticks():
    """After a thaw the main thread may look before the ticking thread runs again: the hold
    loop's heartbeat would then find the job gone without saying that the machine was away."""
    clock = Clock()
    waking = Waking(gap=3.0, clock=clock)
    waking.tick()
    since = clock.now
    clock.now += 120  # frozen; no tick of the thread since
    assert waking.take() == (since, pytest.approx(120))


def test_a_slow_tick_is_not_an_absence():
    clock = Clock()
    waking = Waking(gap=3.0, clock=clock)
    waking.tick()
    clock.now += 2.9
    waking.tick()
    assert waking.take() is None


@pytest.mark.parametrize(
    ("seconds", "words"),
    [(45, "45 s"), (200, "3 min 20 s"), (180, "3 min"), (7500, "2 h 5 min"), (7200, "2 h")],
)
def test_durations_read_as_people_say_them(seconds, words):
    assert span(seconds) == words


@dataclass
class FakeMaster:
    starts: int = 0
    fail_until: float = 0.0
    clock: Clock | None = None

    def close(self) -> None:
        pass

    def start(self, timeout: float = 120) -> None:
        self.starts += 1
        assert self.clock is not None
        if self.clock() < self.fail_until:
            self.clock.now += min(timeout, 5.0)  # a connect that hangs, then gives up
            raise NodebookError("ssh to login did not connect within 5 s", ExitCode.SSH)


@dataclass
class FakeRemote:
    master: FakeMaster
    clock: Clock
    back_at: float  # the cluster answers again from this wall-clock time on
    ended_line: dict[str, Any] = field(default_factory=dict)
    heartbeats: int = 0
    cancels: int = 0

    @property
    def cluster(self) -> Any:
        return type("C", (), {"user": "alice"})()

    def responsive(self, timeout: float = 5) -> bool:
        return self.clock() >= self.back_at

    def heartbeat(self, job_id: str) -> str:
        self.heartbeats += 1
        return "alive" if self.clock() >= self.back_at else "lost"

    def ended(self, job_id: str) -> dict[str, Any]:
        return self.ended_line

    def cancel(self, job_id: str) -> bool:  # never called: nothing is cancelled
        self.cancels += 1
        return True

    def tidy_node(self, node: str, job_id: str) -> None:
        pass


@dataclass
class FakeTunnel:
    local_port: int = 8765
    starts: int = 0
    endpoint: Any = field(default_factory=lambda: type("E", (), {"node": "cn01"})())

    def close(self) -> None:
        pass

    def start(self) -> None:
        self.starts += 1

    def alive(self) -> bool:
        return True


class Out:
    def __init__(self) -> None:
        self.updates: list[Update] = []

    def emit(self, update: Update) -> None:
        self.updates.append(update)

    def messages(self) -> list[str]:
        return [str(u.message) for u in self.updates]


def held(clock: Clock, back_after: float, lease: int, ended: dict[str, Any] | None = None):
    master = FakeMaster(clock=clock, fail_until=clock() + back_after)
    remote = FakeRemote(master, clock, back_at=clock() + back_after, ended_line=ended or {})
    job = Job(tag="t", id="42", heartbeat_timeout=lease, last_heartbeat=clock())
    out = Out()
    mon = Monitor(
        remote=remote,  # type: ignore[arg-type]
        job=job,
        tunnel=FakeTunnel(),  # type: ignore[arg-type]
        api_url="http://127.0.0.1:8765/api/status",
        token="t0k",
        out=out,  # type: ignore[arg-type]
        check_interval=5,
        reconnect_bound=6,
        sleep=clock.sleep,
        clock=clock,
    )
    return mon, remote, out


@pytest.fixture(autouse=True)
def jupyter_answers(monkeypatch):
    monkeypatch.setattr(monitor_mod, "wait_http", lambda *a, **k: None)
    monkeypatch.setattr(monitor_mod, "http_ok", lambda *a, **k: True)


def test_an_outage_past_the_bound_inside_the_lease_reconnects_and_cancels_nothing():
    clock = Clock()
    mon, remote, out = held(clock, back_after=300, lease=3600)
    assert mon.reconnect() == "ok"
    text = " | ".join(out.messages())
    assert "cluster unreachable for 6 s" in text and "still trying until" in text, text
    assert "nothing is cancelled" in text
    assert out.messages()[-2] == "tunnel re-established"
    assert out.messages()[-1].startswith("back after 5 min"), text  # from the loss, on the wall
    assert remote.cancels == 0 and mon.unreachable is False
    assert remote.master.starts > 2  # it kept trying, with a bounded backoff
    assert mon.job.last_heartbeat >= clock() - 1  # the lease starts over


def test_without_a_lease_the_bound_still_gives_up():
    clock = Clock()
    mon, _, _ = held(clock, back_after=300, lease=0)
    assert mon.reconnect() == "failed"
    assert clock() - 1_000_000.0 < 60 and mon.unreachable


def test_an_outage_longer_than_the_lease_ends_with_the_jobs_own_reason():
    clock = Clock()
    ended = {"state": "FAILED", "exit_code": "75:0", "cause": "heartbeat"}
    mon, remote, out = held(clock, back_after=900, lease=600, ended=ended)
    with pytest.raises(NodebookError) as exc:
        mon._recover()
    assert exc.value.code == ExitCode.JOB_ENDED
    assert "ended itself while this machine was away" in exc.value.message
    text = " | ".join(out.messages())
    assert "the lease of job 42 ran out at" in text, text
    assert remote.cancels == 0


def test_woken_past_the_lease_says_how_long_it_was_away_and_why_the_job_ended():
    clock = Clock()
    ended = {"state": "FAILED", "exit_code": "75:0", "cause": "heartbeat"}
    mon, remote, out = held(clock, back_after=0, lease=600, ended=ended)
    since = clock()
    clock.now += 3 * 3600  # the lid was closed for three hours
    with pytest.raises(NodebookError) as exc:
        mon._woke(since, clock() - since)
    assert exc.value.code == ExitCode.JOB_ENDED
    assert out.updates[0].message.startswith("this machine was away for 3 h")
    assert out.updates[0].data["away_s"] == 3 * 3600
    assert remote.heartbeats == 0  # an expired lease is not renewed


def test_woken_inside_the_lease_with_everything_still_up_is_back_at_once():
    clock = Clock()
    mon, remote, out = held(clock, back_after=0, lease=7200)
    since = clock()
    clock.now += 1200
    assert mon._woke(since, 1200) is None
    assert [u.message for u in out.updates][-1] == "back after 20 min: the session goes on"
    assert remote.master.starts == 0  # nothing had to be rebuilt


def test_a_login_that_asks_again_without_a_terminal_says_what_to_run(monkeypatch):
    clock = Clock()
    mon, remote, _ = held(clock, back_after=0, lease=7200)
    monkeypatch.setattr(monitor_mod, "has_terminal", lambda: False)

    def refused() -> bool:
        raise NodebookError(
            "cannot ssh to login: Permission denied (keyboard-interactive)", ExitCode.SSH
        )

    remote.responsive = lambda timeout=5: False  # type: ignore[method-assign]
    remote.master.start = lambda timeout=120: refused()  # type: ignore[method-assign]
    with pytest.raises(NodebookError) as exc:
        mon.reconnect()
    assert exc.value.code == ExitCode.SSH
    assert "run `nodebook attach 42` in a terminal" in exc.value.message
    assert mon.unreachable  # the job is not cancelled: its lease ends it


def test_a_gone_drivers_record_keeps_the_port_for_attach_and_old_ones_go(tmp_path, monkeypatch):
    import os
    import subprocess

    from driver.record import SessionRecord
    from driver.state import StateDir, prune_stale

    monkeypatch.setenv("NODEBOOK_STATE_DIR", str(tmp_path / "st"))
    dead = subprocess.Popen(["true"])
    dead.wait()
    state = StateDir("c1")
    state.save(SessionRecord("c1", "12", "cn01", 18123, "jump", driver_pid=dead.pid))
    assert [r.job_id for r in prune_stale()] == ["12"]
    assert state.records() == []  # no longer a session running here (list, the one-session rule)
    assert state.last_port("12") == 18123  # but attach finds its port
    old = state.path / "12.orphan"
    os.utime(old, (0, 0))  # kept for longer than any job runs, then forgotten
    prune_stale()
    assert state.last_port("12") is None and not old.exists()
    state.save(SessionRecord("c1", "13", "cn01", 18124, "jump", driver_pid=os.getpid()))
    state.remove("13")
    assert state.last_port("13") is None


@pytest.mark.timeout(10)
def test_a_heartbeat_that_does_not_reach_the_job_does_not_renew_the_lease(monkeypatch):
    clock = Clock()
    mon, remote, _ = held(clock, back_after=0, lease=600)
    remote.heartbeat = lambda job_id: "lost"  # type: ignore[method-assign]

    def no_answer(*args: Any, **kwargs: Any) -> None:
        raise NodebookError("Jupyter did not answer through the tunnel", ExitCode.TUNNEL_LOST)

    monkeypatch.setattr(monitor_mod, "wait_http", no_answer)
    assert mon.reconnect() == "lease"
    assert mon.job.last_heartbeat == 1_000_000.0


def test_a_port_left_in_time_wait_by_a_killed_tunnel_is_free_and_a_listened_one_is_not():
    import socket

    from driver.tunnel import port_is_free

    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    assert not port_is_free(port)
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = listener.accept()
    accepted.close()  # the tunnel's end closes first (killed): its side stays in TIME_WAIT
    listener.close()
    client.close()
    assert port_is_free(port)
