"""The sandbox cluster itself: topology, Slurm, Lmod, ssh and the package index are real."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

from tests.harness.wait import wait_for

pytestmark = pytest.mark.sandbox


def tcp(sandbox, address: str, port: int) -> bool:
    """True when a TCP connection from the laptop to address:port succeeds."""
    probe = "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 2)"
    res = sandbox.laptop(["python3", "-c", probe, address, str(port)], check=False, timeout=20)
    return res.returncode == 0


@pytest.mark.parametrize(
    ("address", "port", "reachable"),
    [
        ("10.251.1.1", 22, True),  # login's sshd
        ("10.251.1.1", 2222, True),  # login's prompting sshd
        ("10.251.1.1", 6817, False),  # slurmctld: firewalled from the laptop
        ("10.251.1.1", 6819, False),  # slurmdbd: likewise
        ("10.251.0.1", 6817, False),  # login's cluster address: no route
        ("10.251.0.11", 22, False),  # a compute node: no route from the laptop
        ("10.251.0.12", 6818, False),  # a slurmd: no route
    ],
)
def test_laptop_reachability(sandbox, address, port, reachable):
    assert tcp(sandbox, address, port) is reachable


def test_login_reaches_compute_nodes_over_ssh_while_a_job_runs_there(sandbox):
    """Through login, on login's host keys (the laptop has none of the nodes')."""
    for node in ("cn01", "cn02"):
        assert sandbox.ssh("alice", "hostname", host=node).stdout.strip() == node


def test_the_laptop_cannot_jump_to_a_node_on_its_own(sandbox):
    """A real laptop has never seen a node's key: a plain ProxyJump fails host key checking."""
    res = sandbox.laptop(
        ["ssh", "-F", str(sandbox.ssh_config), "-o", "BatchMode=yes", "-J", "alice@login",
         "alice@cn01", "true"],
        check=False,
    )  # fmt: skip
    assert res.returncode == 255
    assert "Host key verification failed" in res.stderr, res.stderr


def test_hosts_have_own_hostname_and_private_tmp(sandbox):
    marker = f"/tmp/sandbox-private-{time.monotonic_ns()}"
    sandbox.host("cn01", ["touch", marker])
    try:
        assert sandbox.host("cn01", ["hostname"]).stdout.strip() == "cn01"
        assert sandbox.host("cn01", ["test", "-e", marker], check=False).returncode == 0
        assert sandbox.host("cn02", ["test", "-e", marker], check=False).returncode != 0
        assert sandbox.host("login", ["test", "-e", marker], check=False).returncode != 0
    finally:
        sandbox.host("cn01", ["rm", "-f", marker])


def test_homes_are_shared_and_private(sandbox):
    name = f"shared-{time.monotonic_ns()}"
    sandbox.ssh("alice", f"echo hello > ~/{name}")
    try:
        assert sandbox.ssh("alice", f"cat ~/{name}", host="cn01").stdout.strip() == "hello"
        denied = sandbox.ssh("bob", f"cat /home/alice/{name}", check=False)
        assert denied.returncode != 0
        assert "Permission denied" in denied.stderr
    finally:
        sandbox.ssh("alice", f"rm -f ~/{name}")


def test_unknown_host_key_is_rejected(sandbox, tmp_path):
    known = tmp_path / "known_hosts"
    known.write_text("")
    res = sandbox.laptop(
        ["ssh", "-F", str(sandbox.ssh_config), "-o", f"UserKnownHostsFile={known}",
         "-o", "BatchMode=yes", "alice@login", "true"],
        check=False,
    )  # fmt: skip
    assert res.returncode == 255
    assert "Host key verification failed" in res.stderr


def test_ssh_config_never_disables_host_key_checking(sandbox):
    text = sandbox.ssh_config.read_text()
    assert "StrictHostKeyChecking yes" in text
    assert not re.search(r"StrictHostKeyChecking\s+(no|accept-new|off)", text)


def test_key_login_only_on_port_22(sandbox):
    res = sandbox.laptop(
        ["ssh", "-F", str(sandbox.ssh_config), "-o", "BatchMode=yes",
         "-o", "PubkeyAuthentication=no", "alice@login", "true"],
        check=False,
    )  # fmt: skip
    assert res.returncode == 255
    assert "Permission denied (publickey)" in res.stderr


GREETING = "Welcome to the nodebook sandbox cluster"


@pytest.mark.parametrize("host", ["login", "cn01", "cn02"])
def test_login_shells_talk_on_every_cluster_host(sandbox, host):
    """As on real clusters (sandbox-site.sh): a greeting and a quota line on stdout and a
    warning on stderr in every login shell, `bash -lc` and `bash -l -s` alike (the nodes are
    entered directly: their sshd admits only users with a job there)."""
    shells = ((["bash", "-lc", "echo READY"], None), (["bash", "-l", "-s"], "echo READY"))
    for argv, given in shells:
        res = sandbox.host(host, argv, user="alice", input=given)
        out = res.stdout.splitlines()
        assert out[0] == f"{GREETING} ({host}). Be kind to the login node.", res.stdout
        assert out[1].startswith("Disk quota for alice: ") and out[-1] == "READY", res.stdout
        assert "warning: /scratch is purged" in res.stderr, res.stderr


def test_shells_sshd_starts_talk_on_stderr(sandbox):
    """~/.bashrc's first line runs in every command sshd starts (Debian's bash reads it then):
    on stderr only. A login shell over ssh has the greeting on stdout too."""
    plain = sandbox.ssh("alice", "echo READY")
    assert plain.stdout == "READY\n" and "bashrc: loading" in plain.stderr, plain
    login = sandbox.ssh("alice", "bash -lc 'echo READY'")
    assert login.stdout.startswith(GREETING) and login.stdout.endswith("\nREADY\n"), login
    assert "bashrc: loading" in login.stderr and "warning: /scratch" in login.stderr, login


def test_the_laptop_login_shell_is_quiet(sandbox):
    """The laptop shares this machine's /etc: the cluster's profile script is not there."""
    res = sandbox.laptop(["bash", "-lc", "echo READY"])
    assert res.stdout == "READY\n" and GREETING not in res.stderr


def test_login_allows_four_sessions_per_connection(sandbox, tmp_path):
    """MaxSessions 4, as strict sites set it: a fifth session on one connection is refused (ssh
    then logs in anew by itself, which a key allows)."""
    control = tmp_path / "m"
    base = ["ssh", "-F", str(sandbox.ssh_config), "-o", "BatchMode=yes",
            "-o", f"ControlPath={control}"]  # fmt: skip
    master = subprocess.Popen(
        sandbox.laptop_argv([*base, "-o", "ControlMaster=yes", "-N", "alice@login"]),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    holders = []
    try:
        check = sandbox.laptop_argv([*base, "-O", "check", "alice@login"])
        wait_for(lambda: subprocess.run(check, capture_output=True).returncode == 0, 20, "master")
        for _ in range(4):
            holder = subprocess.Popen(
                sandbox.laptop_argv([*base, "-T", "alice@login", "echo open; cat"]),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
            holders.append(holder)
            assert holder.stdout.readline() == "open\n"  # its session is open
        fifth = sandbox.laptop([*base, "-T", "alice@login", "echo fifth"], check=False)
        assert "Session open refused by peer" in fifth.stderr, fifth.stderr
    finally:
        said = [holder.communicate("", timeout=20)[1] for holder in holders]
        master.terminate()
        master.wait(10)
    assert not [err for err in said if "refused" in err], said


def test_module_only_in_login_shells(sandbox):
    plain = sandbox.ssh("alice", "type module", check=False)
    assert plain.returncode != 0
    login = sandbox.ssh("alice", "bash -lc 'module -t avail 2>&1'")
    assert "conda-python/3.11" in login.stdout


def test_module_python_has_no_jupyter(sandbox):
    cmd = (
        "bash -lc 'module load conda-python/3.11 && command -v python3 && "
        'python3 -c "import jupyter_server"\''
    )
    res = sandbox.ssh("alice", cmd, check=False)
    assert "/opt/nodebook-sandbox/conda-python/3.11/bin/python3" in res.stdout
    assert res.returncode != 0
    assert "No module named 'jupyter_server'" in res.stderr


def test_sbatch_runs_on_a_compute_node_and_scancel_ends_it(sandbox):
    out = sandbox.ssh(
        "alice", "sbatch --parsable -o /dev/null --wrap 'hostname > ~/.sandbox-job-host; sleep 120'"
    ).stdout.strip()
    job_id = out.split(";")[0]
    assert job_id.isdigit()
    deadline = time.monotonic() + 30
    while sandbox.scontrol_job(job_id).get("JobState") != "RUNNING":
        assert time.monotonic() < deadline, f"job {job_id} never started"
        time.sleep(0.2)
    node = sandbox.scontrol_job(job_id)["NodeList"]
    assert node in {"cn01", "cn02"}
    while sandbox.ssh("alice", "cat ~/.sandbox-job-host", check=False).stdout.strip() != node:
        assert time.monotonic() < deadline, "the job script did not run on its node"
        time.sleep(0.2)
    assert any("sleep 120" in p for p in sandbox.user_processes(node, "alice"))
    sandbox.ssh("alice", f"scancel {job_id}; rm -f ~/.sandbox-job-host")
    while job_id in sandbox.squeue():
        assert time.monotonic() < deadline + 30, f"job {job_id} still queued after scancel"
        time.sleep(0.2)
    assert not any("sleep 120" in p for p in sandbox.user_processes(node, "alice"))


def test_partitions_and_time_limits(sandbox):
    out = sandbox.ssh("alice", "sinfo -h -o '%P %l'").stdout.split("\n")
    assert "debug* 30:00" in out
    assert "long 1-00:00:00" in out
    over = sandbox.ssh("alice", "sbatch -p debug -t 01:00:00 --wrap true", check=False)
    assert over.returncode != 0
    assert "time limit" in over.stderr.lower()


def test_wheelhouse_serves_pip_inside_the_cluster(sandbox):
    venv = f"/tmp/wheelhouse-check-{time.monotonic_ns()}"
    cmd = (
        f"bash -lc 'module load conda-python/3.11 && python3 -m venv {venv} && "
        f"{venv}/bin/pip install -q --index-url http://login:3141/simple/ --trusted-host login "
        "six jinja2 && "
        f'{venv}/bin/python -c "import jinja2, six; print(jinja2.__version__)"\''
    )
    try:
        res = sandbox.ssh("alice", cmd, host="cn01", timeout=300)
        assert re.fullmatch(r"\d+\.\d+\.\d+", res.stdout.splitlines()[-1])  # after the greeting
    finally:
        sandbox.ssh("alice", f"rm -rf {venv}", host="cn01", check=False)


def test_cluster_has_no_route_outside(sandbox):
    res = sandbox.host(
        "cn01", ["python3", "-c", "import socket; socket.create_connection(('1.1.1.1', 443), 2)"],
        check=False,
    )  # fmt: skip
    assert res.returncode != 0
    assert "Network is unreachable" in res.stderr


def test_prompting_login_asks_password_then_code(sandbox):
    from tests.fixtures.pty import run_with_prompts

    argv = sandbox.laptop_argv(
        ["ssh", "-F", str(sandbox.ssh_config), "alice@login-otp", "echo logged-in-$(hostname)"]
    )
    answers = {"Password: ": sandbox.secret("alice.password"),
               "Verification code: ": sandbox.secret("alice.otp")}  # fmt: skip
    out, prompts, code = run_with_prompts(argv, answers, timeout=30)
    assert code == 0, out
    assert "logged-in-login" in out
    assert prompts == ["Password: ", "Verification code: "]


def test_prompting_login_rejects_a_wrong_code(sandbox):
    from tests.fixtures.pty import run_with_prompts

    argv = sandbox.laptop_argv(
        ["ssh", "-F", str(sandbox.ssh_config), "-o", "NumberOfPasswordPrompts=1",
         "alice@login-otp", "true"]
    )  # fmt: skip
    answers = {"Password: ": sandbox.secret("alice.password"), "Verification code: ": "000000x"}
    out, _, code = run_with_prompts(argv, answers, timeout=30)
    assert code == 255
    assert "Permission denied" in out


def test_hidden_system_python_on_login(sandbox):
    assert "python3" in sandbox.ssh("alice", "command -v python3").stdout  # visible before
    try:
        sandbox.cluster("hide-python", "on")
        res = sandbox.ssh("alice", "command -v python3 python3.11; echo rc=$?")
        assert res.stdout.strip() == "rc=1"
        ok = sandbox.ssh("alice", "bash -lc 'module load conda-python/3.11 && python3 -V'")
        assert ok.stdout.splitlines()[-1].startswith("Python 3.11")
    finally:
        sandbox.cluster("hide-python", "off")
    assert "python3" in sandbox.ssh("alice", "command -v python3").stdout


def test_daemon_restart_keeps_running_jobs(sandbox):
    job_id = sandbox.ssh(
        "alice", "sbatch --parsable -o /dev/null --wrap 'sleep 300'"
    ).stdout.strip()
    try:
        deadline = time.monotonic() + 30
        while sandbox.scontrol_job(job_id).get("JobState") != "RUNNING":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        sandbox.cluster("daemon", "slurmctld", "restart")
        assert sandbox.scontrol_job(job_id).get("JobState") == "RUNNING"
    finally:
        sandbox.ssh("alice", f"scancel {job_id}", check=False)


def test_daemon_stop_and_start_a_compute_nodes_sshd(sandbox):
    sandbox.cluster("daemon", "sshd-cn02", "stop")
    try:
        res = sandbox.ssh("alice", "true", host="cn02", check=False)
        assert res.returncode == 255
    finally:
        sandbox.cluster("daemon", "sshd-cn02", "start")
    assert sandbox.ssh("alice", "hostname", host="cn02").stdout.strip() == "cn02"


def test_laptop_link_cut_and_restored(sandbox):
    sandbox.cluster("link", "down")
    try:
        assert not tcp(sandbox, "10.251.1.1", 22)
    finally:
        sandbox.cluster("link", "up")
    assert tcp(sandbox, "10.251.1.1", 22)
