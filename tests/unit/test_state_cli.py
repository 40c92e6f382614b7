"""Local state files, session helpers and the CLI edge (exit codes, one-line errors)."""

import argparse
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from driver.cli import build_parser, main
from driver.errors import ExitCode
from driver.monitor import describe_end
from driver.record import SessionRecord
from driver.session import job_url
from driver.state import (
    INVENTORY_CACHE_DIR,
    StateDir,
    owned_temp_dir,
    pid_alive,
    prune_stale,
    prune_temp_dirs,
)


def test_state_dir_is_private_and_round_trips(tmp_path):
    sd = StateDir("sandbox", root=tmp_path / "st")
    path = sd.save(
        SessionRecord(
            cluster="sandbox",
            job_id="12",
            node="cn01",
            local_port=1234,
            tunnel="jump",
            driver_pid=os.getpid(),
        )
    )
    assert stat.S_IMODE(os.stat(sd.path).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    rec = sd.load("12")
    assert rec is not None and rec.local_port == 1234 and rec.started > 0
    assert "token" not in path.read_text()
    assert [r.job_id for r in sd.records()] == ["12"]
    sd.remove("12")
    assert sd.records() == []


def test_pid_alive():
    assert pid_alive(os.getpid())
    assert not pid_alive(2**22 + 12345)


def test_job_url():
    assert job_url(8000, "/", "lab", "t") == "http://127.0.0.1:8000/lab?token=t"
    assert job_url(8000, "/base/", "notebook", None) == "http://127.0.0.1:8000/base/tree"


@pytest.mark.parametrize(
    ("ended", "code", "words"),
    [
        ({"state": "COMPLETED"}, ExitCode.OK, "shut down"),
        ({"state": ""}, ExitCode.OK, "shut down"),
        ({"state": "CANCELLED", "by": "alice"}, ExitCode.JOB_ENDED, "by you"),
        ({"state": "CANCELLED", "by": "root"}, ExitCode.JOB_ENDED, "by root"),
        ({"state": "TIMEOUT"}, ExitCode.JOB_ENDED, "--time"),
        ({"state": "OUT_OF_MEMORY"}, ExitCode.JOB_ENDED, "--mem"),
        ({"state": "FAILED", "exit_code": "0:9", "cause": "memory"}, ExitCode.JOB_ENDED, "--mem"),
        (
            {"state": "FAILED", "exit_code": "75:0", "cause": "heartbeat"},
            ExitCode.JOB_ENDED,
            "while this machine was away: no heartbeat reached it for its lease (--lease)",
        ),
        ({"state": "NODE_FAIL"}, ExitCode.JOB_ENDED, "node failed"),
        (
            {"state": "FAILED", "exit_code": "1:0", "log": ["boom"]},
            ExitCode.JOB_ENDED,
            "(exit code 1:0); last lines of the job log: boom",
        ),
    ],
)
def test_why_a_job_ended_with_a_fix(ended, code, words):
    text, got = describe_end(ended, "alice", "01:00:00")
    assert got == code and words in text


def test_help_teaches_with_examples(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for word in ("session", "attach", "stop", "doctor", "examples:", "exit codes:", "130"):
        assert word in out


def test_help_reads_as_the_installed_command(tmp_path):
    """What a user sees of --help: `nodebook ...` and clusters of their own, never the sandbox's
    hosts or `python -m driver`, whichever way the command was started."""
    env = {**os.environ, "XDG_CONFIG_HOME": "/home/you/.config"}  # init's help names it
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert commands.choices, "no subcommands found"
    for argv in ([], *([name] for name in commands.choices)):
        text = subprocess.run(
            [sys.executable, "-m", "driver", *argv, "--help"],
            capture_output=True, text=True, check=True, env=env, cwd=tmp_path,
        ).stdout  # fmt: skip
        assert text.startswith(f"usage: {' '.join(['nodebook', *argv])} "), text[:80]
        for wrong in ("sandbox", "-m driver"):
            assert wrong not in text, (argv, wrong)
        block = text.split("examples:\n")[1].split("\n\n")[0].splitlines()
        commands_shown = {ln.split()[0] for ln in block if ln[:2] == "  " and ln[2] != " "}
        assert commands_shown and commands_shown <= {"nodebook", "ssh"}, (argv, block)


def test_a_subcommand_parsed_alone_is_parsed_as_in_the_whole_line():
    """main() builds only the subcommand it runs (`nodebook stop` then imports nothing of the
    session's): its arguments, defaults and help are those of the whole parser's subcommand;
    a word that is no subcommand gets the whole line's error."""
    (whole,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    for name, full in whole.choices.items():
        (alone,) = [
            a for a in build_parser(name)._actions if isinstance(a, argparse._SubParsersAction)
        ]
        assert list(alone.choices) == [name]
        assert alone.choices[name].format_help() == full.format_help(), name
        defaults = [
            {(a.dest, str(a.default), " ".join(a.option_strings)) for a in p._actions}
            for p in (alone.choices[name], full)
        ]
        assert defaults[0] == defaults[1], name
    assert build_parser("stpo")._actions[-1].choices.keys() == whole.choices.keys()


@pytest.mark.parametrize("command", ["session", "attach"])
def test_forward_help_says_where_the_app_must_listen_through_the_login_node(command, capsys):
    """With via-login or hops the login node connects to node:port: an app on the node's
    127.0.0.1 is out of its reach, and --help says so."""
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    forward = text.split("--forward NODEPORT[:LOCALPORT] ", 1)[1]
    assert "via-login or hops" in forward and "not on 127.0.0.1" in forward, forward


@pytest.mark.parametrize(
    "argv",
    [
        ["session", "--time", "1h"],
        ["session", "--mem", "8GB"],
        ["session", "--cpus", "0"],
        ["session", "--port", "80"],
        ["session", "--gpus", "x:"],
    ],
)
def test_bad_options_exit_usage_before_network(argv, capsys):
    assert main(argv) == ExitCode.USAGE
    err = capsys.readouterr()
    assert len((err.err + err.out).strip().splitlines()) == 1


def test_stop_needs_id_or_all(capsys):
    assert main(["stop", "-i", "/nonexistent"]) == ExitCode.USAGE


def test_missing_inventory_is_usage(tmp_path):
    assert main(["session", "-i", str(tmp_path / "nope.yml")]) == ExitCode.USAGE


def test_stale_records_of_killed_drivers_are_pruned_and_said(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NODEBOOK_STATE_DIR", str(tmp_path / "st"))
    dead = subprocess.Popen(["true"])
    dead.wait()
    for job, pid in (("12", dead.pid), ("13", os.getpid())):
        StateDir("c1").save(
            SessionRecord(cluster="c1", job_id=job, node="cn01", local_port=1, tunnel="jump",
                          driver_pid=pid)
        )  # fmt: skip
    # the pytest process is not a driver: its record is stale too, unless its cmdline says so
    assert [r.job_id for r in prune_stale()] == ["12"] + (
        [] if b"driver" in Path(f"/proc/{os.getpid()}/cmdline").read_bytes() else ["13"]
    )
    StateDir("c1").save(
        SessionRecord(cluster="c1", job_id="14", node="cn01", local_port=1, tunnel="jump",
                      driver_pid=dead.pid)
    )  # fmt: skip
    assert main(["stop", "--cluster", "c1", "-i", str(tmp_path / "none.yml")]) == ExitCode.USAGE
    out = capsys.readouterr()
    assert "removed the stale record of job 14 on c1" in out.out
    assert StateDir("c1").records() == []


def test_the_inventory_cache_is_not_read_for_session_records(tmp_path, monkeypatch):
    """prune_stale, run by every command, looks only at the clusters' directories: the cached
    inventory beside them is never parsed (nor a file there taken for a stale record)."""
    monkeypatch.setenv("NODEBOOK_STATE_DIR", str(tmp_path / "st"))
    dead = subprocess.Popen(["true"])
    dead.wait()
    record = SessionRecord(cluster="c1", job_id="12", node="cn01", local_port=1, tunnel="jump",
                           driver_pid=dead.pid)  # fmt: skip
    StateDir(INVENTORY_CACHE_DIR).save(record)
    cached = tmp_path / "st" / INVENTORY_CACHE_DIR / "12.json"
    assert cached.is_file()
    assert prune_stale() == []
    assert cached.is_file()


def test_a_killed_drivers_temp_dirs_are_removed_and_a_live_ones_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen(["true"])
    dead.wait()
    ours = owned_temp_dir("nb-")  # this process: alive
    killed = tmp_path / "nodebook-runner-x1"
    killed.mkdir()
    (killed / "owner.pid").write_text(f"{dead.pid}\n")
    foreign = tmp_path / "nb-someone-else"  # no owner file: not ours to judge
    foreign.mkdir()
    assert prune_temp_dirs() == [killed]
    assert ours.exists() and foreign.exists() and not killed.exists()


def test_a_command_exits_without_its_own_temp_dirs_whatever_cut_its_cleanup_short(
    tmp_path, monkeypatch
):
    """Whatever a cleanup cut short left (a run's private_data_dir), the CLI edge removes as
    the command exits; another live driver's and foreign directories stay."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("NODEBOOK_STATE_DIR", str(tmp_path / "state"))
    ours = owned_temp_dir("nodebook-runner-")
    (ours / "job_events").mkdir()
    (ours / "job_events" / "1-partial.json").write_text("{}")
    # another driver, still running (its command line names nodebook). Wait for its first line:
    # right after exec, /proc/PID/cmdline can still read empty, as a zombie's does.
    live = subprocess.Popen(
        ["python3", "-c", "import time; print(flush=True); time.sleep(30)", "nodebook"],
        stdout=subprocess.PIPE,
    )
    assert live.stdout is not None and live.stdout.readline() == b"\n"
    other = tmp_path / "nb-other"
    other.mkdir()
    (other / "owner.pid").write_text(f"{live.pid}\n")
    foreign = tmp_path / "nb-foreign"  # no owner file
    foreign.mkdir()
    try:
        code = main(["stop", "--cluster", "c1", "-i", str(tmp_path / "none.yml")])
    finally:
        live.kill()
        live.wait()
        live.stdout.close()
    assert code == ExitCode.USAGE
    assert not ours.exists()
    assert other.exists() and foreign.exists()
