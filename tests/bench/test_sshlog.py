"""The ssh log's reading of invocations (tests/harness/sshlog.py), on the argv the driver and
Ansible really build: what opens a connection, what is a round trip, which helper command."""

from __future__ import annotations

import subprocess
from pathlib import Path

from driver.inventory import Cluster
from driver.remote import Remote
from driver.ssh import Master
from tests.harness import sshlog

CLUSTER = Cluster(name="c", inventory=Path("inv.yml"), host="login", user="alice",
                  ssh_args=("-F", "/cfg"))  # fmt: skip


def inv(argv: list[str]) -> sshlog.Invocation:
    return sshlog.parse_argv(0.0, argv[1:])  # without the leading "ssh"


def test_the_driver_s_invocations_are_told_apart(tmp_path: Path) -> None:
    master = Master(CLUSTER, tmp_path)
    remote = Remote(master, CLUSTER)
    start = inv(master.start_argv())
    assert start.master and start.opens_connection and not start.remote_command
    call = inv([*master.client_argv("-T"), remote.command("heartbeat", "42")])
    assert call.round_trip and not call.opens_connection
    assert call.helper_command() == "heartbeat"
    check = inv(master.client_argv("-O", "check"))
    assert check.control and not check.round_trip and not check.opens_connection
    proxy = inv(master.client_argv("-W", "%h:%p"))
    assert proxy.proxy and not proxy.remote_command and not proxy.opens_connection
    tunnel = inv(master.node_argv("cn01", ["-L", "1:/s"], remote.hold_command("42")))
    assert tunnel.opens_connection and not tunnel.round_trip
    assert tunnel.helper_command() == "hold" and tunnel.destination == "cn01"


def test_ansible_s_raw_task_and_a_foreign_command() -> None:
    raw = "\"$HOME\"/'.nodebook/bin/nodebook-remote' --protocol 2 wait 42 --window 30"
    opts = ["-C", "-o", "ControlMaster=auto", "-o", "ControlPersist=60s", "-o", "User=alice"]
    ansible = inv(["ssh", *opts, "-o", "ControlPath=/tmp/nb-x/m", "login", raw])
    assert ansible.round_trip and ansible.helper_command() == "wait"
    foreign = inv(["ssh", "-o", "ControlPath=/tmp/nb-x/m", "login", "squeue -h -j 42"])
    assert foreign.round_trip and foreign.helper_command() is None
    assert sshlog.helper_commands([ansible, foreign]) == {"wait": 1, "other": 1}
    assert sshlog.counts([ansible, foreign])["round_trips"] == 2


def test_the_wrapper_logs_argv_exactly_and_runs_ssh(tmp_path: Path) -> None:
    log = sshlog.SshLog(tmp_path)
    odd = ["-V", "a b", "quote'\"", "", "tab\there"]
    proc = subprocess.run([str(log.bin / "ssh"), *odd], capture_output=True, text=True)
    assert "OpenSSH" in proc.stderr  # the real ssh ran (-V prints its version)
    (call,) = log.read()
    assert list(call.argv) == odd and call.t > 0
