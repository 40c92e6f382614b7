"""Sessions on nodes that give each job a private /tmp (job_container/tmpfs), as strict sites do.

Jupyter's default endpoint is a unix socket under the node's /tmp, which is the job's own /tmp
there. The tunnel's ssh to the node is adopted into a job of the user there (pam_slurm_adopt,
which joins the job's mount namespace), so with one job it reaches that job's socket. With
several, pam_slurm_adopt picks one (the newest by its cgroup's time; the sandbox has no cgroups,
so 22.05 takes whichever of the node's steps it lists last), which need not be the job whose
socket the tunnel wants: a second session on the same node (--allow-second) listens on the
node's loopback instead, which every job there reaches.
"""

from __future__ import annotations

import json
import shlex
import signal

import pytest

from driver.errors import ExitCode
from tests.e2e.conftest import http_status, token_of
from tests.harness import leftovers
from tests.harness.sandbox import Sandbox, job_tmp

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]
# partition gpu has one node (cn02): two sessions there share it
ONE_NODE = ["--partition", "gpu"]


def connection(sandbox: Sandbox, job: str) -> dict:
    """The job's connection record (its endpoint), as the helper wrote it on the shared disk."""
    paths = leftovers.job_paths(sandbox, "alice", job)
    return json.loads(sandbox.host("login", ["cat", paths["connection"]]).stdout)


def visible_from_a_login(sandbox: Sandbox, node: str, path: str) -> bool:
    """Whether alice's ssh from login to ``node`` (adopted into her newest job there) sees
    ``path``."""
    ssh = shlex.join(["ssh", "-o", "BatchMode=yes", node, f"test -e {shlex.quote(path)}"])
    res = sandbox.host("login", ["bash", "-c", ssh], user="alice", check=False)
    assert res.returncode in (0, 1), res.stderr
    return res.returncode == 0


def test_the_default_socket_is_in_the_job_s_private_tmp_and_reached(sandbox, drive, nothing_left):
    d = drive(["session", "--cluster", "sandbox"])  # the defaults: socket endpoint, jump tunnel
    ready = d.wait_event("ready", timeout=90)
    job, node, port = ready["job_id"], ready["node"], ready["data"]["local_port"]
    assert ready["data"]["tunnel"] == "jump"
    assert http_status(sandbox, port, token_of(ready)) == 200
    conn = connection(sandbox, job)
    socket = conn["socket"]
    assert conn["endpoint"] == "socket" and socket.startswith("/tmp/"), conn
    # it lives in the job's /tmp: on disk under the node's BasePath, seen inside the job and by
    # a login adopted into it, and not in the node's own /tmp
    assert (job_tmp(node, job) / f".{job}" / socket.removeprefix("/tmp/")).is_socket()
    assert leftovers.in_job(sandbox, job, ["test", "-S", socket], check=False).returncode == 0
    assert visible_from_a_login(sandbox, node, socket)
    assert sandbox.host(node, ["test", "-e", socket], check=False).returncode == 1
    d.signal(signal.SIGINT)
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(job, port)  # (its private /tmp too: leftovers checks job_tmp)


def test_a_second_session_on_the_node_listens_on_loopback(sandbox, drive, nothing_left):
    first = drive(["session", "--cluster", "sandbox", *ONE_NODE])
    r1 = first.wait_event("ready", timeout=90)
    second = drive(["session", "--cluster", "sandbox", "--allow-second", *ONE_NODE])
    r2 = second.wait_event("ready", timeout=90)
    assert r1["node"] == r2["node"]
    node = r1["node"]
    c1, c2 = connection(sandbox, r1["job_id"]), connection(sandbox, r2["job_id"])
    assert c1["endpoint"] == "socket", c1
    assert c2["endpoint"] == "tcp" and c2["host"] == "127.0.0.1", c2
    # both answer; the first one's tunnel was adopted into its own job before the second came
    assert http_status(sandbox, r2["data"]["local_port"], token_of(r2)) == 200
    assert http_status(sandbox, r1["data"]["local_port"], token_of(r1)) == 200
    # the wall the second one avoids: the first job's socket is not there in the second job
    second_job = leftovers.in_job(sandbox, r2["job_id"], ["test", "-e", c1["socket"]], check=False)
    assert second_job.returncode == 1
    assert leftovers.existing(sandbox, node, [c1["socket"]], r1["job_id"]) == [c1["socket"]]
    for d in (second, first):
        d.signal(signal.SIGINT)
        assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(r1["job_id"], r1["data"]["local_port"])
    nothing_left(r2["job_id"], r2["data"]["local_port"])
