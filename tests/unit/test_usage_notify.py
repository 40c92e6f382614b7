"""Time left, use and notifications of a held session (driver/usage.py, driver/notify.py): pure
logic on the helper's lines, a clock given by the test, and a real notify-send stand-in."""

from __future__ import annotations

import io
import json
import os
import stat
from pathlib import Path

import pytest

from driver.errors import NodebookError
from driver.notify import Notifier, SessionWatch, notify_argv
from driver.options import SessionOptions, notify_settings
from driver.progress import Renderer
from driver.usage import IdleWatch, Usage, clock, seconds, size, tres

LINE = {
    "nodebook": "usage",
    "job_id": "42",
    "state": "RUNNING",
    "elapsed": "5:00",
    "time_limit": "1:00:00",
    "tres": "cpu=4,mem=4G,node=1,billing=4",
    "cpu": "00:04:00",
    "rss": "120M",
    "peak_rss": "130M",
    "gpus": "",
}


def test_slurm_words_become_numbers():
    assert seconds("5:00") == 300 and seconds("1:00:00") == 3600 and seconds("00:00:00") == 0
    assert seconds("2-03:04:05") == ((2 * 24 + 3) * 60 + 4) * 60 + 5
    assert seconds("01:02.345") == 62  # sstat's fractions
    assert seconds("UNLIMITED") is None and seconds("") is None and seconds("INVALID") is None
    assert size("9660K") == 9660 * 1024 and size("1.5G") == 3 << 29 and size("123") == 123
    assert size("") is None and size("n/a") is None
    assert tres("cpu=2,mem=512M,node=1,gres/gpu=2") == {
        "cpu": "2", "mem": "512M", "node": "1", "gres/gpu": "2"}  # fmt: skip


def test_a_usage_line_in_numbers_and_words():
    use = Usage.from_line(LINE)
    assert (use.cpus, use.mem, use.left, use.limit) == (4, 4 << 30, 3300, 3600)
    use.measure()
    assert use.cores == pytest.approx(0.8) and use.over is None
    assert use.text() == (
        "CPU 0.80 of 4 (average since start) · memory 120.0 MiB of 4.0 GiB (peak 130.0 MiB)"
    )
    data = use.data()
    assert data["cores"] == 0.8 and data["cores_over_s"] is None and data["time_left_s"] == 3300
    assert "gpu_util" not in data


def test_cores_since_the_helpers_previous_look_when_it_is_long_enough_ago():
    use = Usage.from_line({**LINE, "cpu_then": "00:03:30", "then_age": "30"})
    use.measure()
    assert use.cores == pytest.approx(1.0) and use.over == 30
    assert use.text().startswith("CPU 1.00 of 4 (last 0:30)")
    use = Usage.from_line({**LINE, "cpu_then": "00:03:58", "then_age": "2"})  # too short a time
    use.measure()
    assert use.cores == pytest.approx(0.8) and use.over is None
    use.measure(since=(12.0, 228))  # the caller's own earlier report first
    assert use.cores == pytest.approx(1.0) and use.over == 12


def test_gpus_the_node_does_not_report_are_said_so():
    use = Usage.from_line({**LINE, "gpus": "2"})
    assert use.text().endswith("GPU use: not reported by the node")
    use = Usage.from_line({**LINE, "gpus": "1", "gpu_util": "87", "gpu_mem": "3G"})
    assert use.text().endswith("GPU utilisation 87, memory 3G")


def test_no_sstat_yet():
    use = Usage.from_line({**LINE, "cpu": "", "rss": "", "peak_rss": ""})
    use.measure()
    assert use.cpu_time is None and use.cores is None
    assert use.text().startswith("CPU ? of 4 (no sstat yet)")


def test_idle_cpus_for_an_hour_get_one_suggestion():
    watch = IdleWatch(cpus=8)
    said = [watch.add(t, int(t * 0.5)) for t in range(0, 3601, 30)]  # half a CPU busy
    assert said[:-1] == [None] * (len(said) - 1)
    assert said[-1] is not None and "`--cpus 1`" in said[-1] and "0.50 of its 8 CPUs" in said[-1]
    assert watch.add(3630, 1815) is None  # once


def test_busy_cpus_or_a_single_cpu_get_none():
    busy = IdleWatch(cpus=4)
    assert all(busy.add(t, t * 3) is None for t in range(0, 7201, 60))  # 3 of 4 busy
    single = IdleWatch(cpus=1)
    assert all(single.add(t, 0) is None for t in range(0, 7201, 60))
    spiky = IdleWatch(cpus=4)  # idle on average, but once all 4 were busy: no fewer would do
    said = [spiky.add(t, 0 if t < 1800 else 240) for t in range(0, 3601, 60)]
    assert said == [None] * len(said)


def test_the_hint_looks_at_the_last_hour_not_the_first():
    watch = IdleWatch(cpus=4)
    for t in range(0, 3600, 60):
        assert watch.add(t, t * 4) is None  # the first hour all busy
    said = [watch.add(t, 3600 * 4 + (t - 3600) // 10) for t in range(3600, 7201, 60)]
    assert said[-1] is not None and "`--cpus 1`" in said[-1]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def watch_for(reports: list[Usage], warn_before: float = 10.0, usage_interval: float = 30):
    out = io.StringIO()
    sent: list[str] = []
    notifier = Notifier(terminal=None)
    notifier.send = lambda text: sent.append(text) or "notify-send"  # type: ignore[method-assign]
    clk = Clock()
    watch = SessionWatch(
        job_id="42",
        node="cn01",
        out=Renderer(json_mode=True, out=out),
        notifier=notifier,
        fetch=lambda: reports.pop(0),
        warn_before=warn_before,
        usage_interval=usage_interval,
        clock=clk,
    )
    return watch, clk, sent, out


def events(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_ready_notifies_only_a_job_that_waited():
    watch, _, sent, out = watch_for([])
    watch.ready(None, "http://127.0.0.1:9/lab")
    assert sent == [] and events(out) == []
    watch.ready(190, "http://127.0.0.1:9/lab")
    assert sent == ["job 42 is ready on cn01 after 3:10 in the queue: http://127.0.0.1:9/lab"]
    notice = events(out)[-1]
    assert notice["event"] == "notice" and notice["data"]["notified"] == "notify-send"


def test_the_warning_comes_once_when_the_limit_is_near_by_the_wall_clock():
    first = Usage.from_line({**LINE, "elapsed": "45:00"})  # 15 min left
    watch, clk, sent, out = watch_for([first, Usage.from_line(LINE)], usage_interval=3600)
    watch.tick()
    assert sent == [] and watch.line(900).startswith("job 42 on cn01 · 15:00 left of 1:00:00")
    clk.now += 299  # a laptop asleep: the wall clock moved on
    watch.tick()
    assert sent == []
    clk.now += 1
    watch.tick()
    assert sent == [
        "job 42 has 10:00 left of its time limit (1:00:00): save your work; the next session "
        "can ask for more with --time"
    ]
    clk.now += 10
    watch.tick()
    assert len(sent) == 1
    kinds = [e["event"] for e in events(out)]
    assert kinds == ["usage", "notice"]


def test_no_warning_when_off_or_for_a_job_shorter_than_the_warning():
    watch, clk, sent, _ = watch_for([Usage.from_line(LINE)], warn_before=0)
    clk.now += 3600
    watch.tick()
    assert sent == []
    short = Usage.from_line({**LINE, "time_limit": "5:00", "elapsed": "0:10"})
    watch, clk, sent, _ = watch_for([short])
    watch.tick()
    assert sent == []


def test_cores_between_two_reports_then_since_start():
    later = Usage.from_line({**LINE, "cpu": "00:04:30"})  # 30 CPU seconds in 30 s
    watch, clk, _, out = watch_for([Usage.from_line(LINE), later])
    watch.tick()
    assert watch.usage is not None and watch.usage.cores == pytest.approx(0.8)  # since start
    clk.now += 30
    watch.tick()
    assert watch.usage.cores == pytest.approx(1.0) and watch.usage.over == 30
    assert [e["data"]["cores"] for e in events(out)] == [0.8, 1.0]


def test_a_failed_report_keeps_the_line():
    def fail() -> Usage:
        raise NodebookError("lost the ssh connection")

    watch, _, _, _ = watch_for([])
    watch.fetch = fail
    watch.tick()
    assert watch.errors == ["lost the ssh connection"] and watch.line(None) == "job 42 on cn01"


def recorder(tmp_path: Path, name: str, rc: int = 0) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / name
    log = tmp_path / f"{name}.log"
    script.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" >> {log}\nexit {rc}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return log


def test_notify_send_gets_the_text_as_arguments(tmp_path, monkeypatch):
    log = recorder(tmp_path, "notify-send")
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    assert Notifier().send("job 1 is ready; $(x) 'q'") == "notify-send"
    assert log.read_text().splitlines() == ["--app-name", "nodebook", "nodebook",
                                            "job 1 is ready; $(x) 'q'"]  # fmt: skip
    argv = notify_argv("nodebook", "t", platform="darwin")
    assert argv is None  # no osascript here


def test_osascript_on_macos(tmp_path, monkeypatch):
    recorder(tmp_path, "osascript")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    argv = notify_argv("nodebook", 'a "quoted" text', platform="darwin")
    assert argv is not None and argv[-2:] == ["nodebook", 'a "quoted" text']
    assert 'a "quoted"' not in " ".join(argv[:-2])  # the text is an argument, not the script


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bell_without_a_notifier_or_when_it_fails(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "nothing"))
    term = Tty()
    assert Notifier(terminal=term).send("x") == "bell" and term.getvalue() == "\a"
    assert Notifier(terminal=io.StringIO()).send("x") is None  # no terminal, no bell
    recorder(tmp_path, "notify-send", rc=1)  # no desktop session
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    term = Tty()
    assert Notifier(terminal=term).send("x") == "bell"
    assert Notifier(enabled=False, terminal=term).send("x") is None and term.getvalue() == "\a"


def test_notify_settings_command_line_over_inventory_over_defaults():
    assert notify_settings(SessionOptions(), {}) == (True, 10.0)
    inv = {"nodebook_notify": False, "nodebook_warn_before": 5}
    assert notify_settings(SessionOptions(), inv) == (False, 5.0)
    assert notify_settings(SessionOptions(), {"nodebook_notify": "False"}) == (False, 10.0)
    assert notify_settings(SessionOptions(notify=True, warn_before=0.5), inv) == (True, 0.5)
    with pytest.raises(NodebookError, match="nodebook_notify: 'sometimes': true or false"):
        notify_settings(SessionOptions(), {"nodebook_notify": "sometimes"})
    with pytest.raises(NodebookError, match="nodebook_warn_before: 'soon'"):
        notify_settings(SessionOptions(), {"nodebook_warn_before": "soon"})


def test_clock():
    assert clock(190) == "3:10" and clock(3723) == "1:02:03" and clock(-5) == "0:00"


def test_list_second_line_of_a_running_session():
    from driver.commands import use_line

    use = Usage.from_line(LINE)
    use.measure()
    assert use_line(use) == (
        "55:00 left of 1:00:00 · CPU 0.80 of 4 (average since start) · memory 120.0 MiB of "
        "4.0 GiB (peak 130.0 MiB)"
    )
    bare = Usage.from_line({**LINE, "cpu": "", "time_limit": "UNLIMITED"})
    assert use_line(bare).startswith("no use reported yet")


def test_a_job_waited_only_when_slurm_held_it_for_a_reason():
    from driver.progress import Update
    from driver.session import Session

    for reason, waited in ((None, False), ("Resources", True)):
        session = Session.__new__(Session)  # only its queue bookkeeping
        session._queue = (0.0, None, False)
        session._queued(Update("submitted", job_id="1"))
        session._queued(Update("pending", job_id="1", state="PENDING", reason=reason))
        session._queued(Update("running", job_id="1", state="RUNNING", node="cn01"))
        assert (session._queue[1] is not None) is waited, reason
