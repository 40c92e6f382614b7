"""--tunnel via-login: Jupyter on the node's cluster address (tcp-node), reached only through login.

For clusters that forbid ssh to compute nodes: the master forwards local port -> node:port, so
Jupyter must listen on the node's cluster address. The token (or password) is then its only
protection: the API answers 403 without it, also to bob on the cluster network.
"""

from __future__ import annotations

import json
import random
import signal

import pytest

from driver.errors import ExitCode
from tests.e2e import test_real_work as real_work
from tests.e2e.conftest import http_status, token_of
from tests.harness import leftovers

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]

NODE_ADDRESS = {"cn01": "10.251.0.11", "cn02": "10.251.0.12"}


def test_via_login_tcp_node_200_with_token_403_without_and_bob_403(sandbox, drive, nothing_left):
    app_port = random.randint(20000, 29999)
    d = drive(
        ["session", "--cluster", "sandbox", "--allow-second", "--tunnel", "via-login",
         "--forward", str(app_port)]
    )  # fmt: skip
    ready = d.wait_event("ready", timeout=90)
    job, node, port = ready["job_id"], ready["node"], ready["local_port"]
    assert ready["data"]["tunnel"] == "via-login"
    token = token_of(ready)
    assert http_status(sandbox, port, token) == 200
    assert http_status(sandbox, port, None) == 403
    assert http_status(sandbox, port, "0" * 64) == 403

    # Jupyter listens on the node's cluster address (not 0.0.0.0, not loopback) ...
    paths = leftovers.job_paths(sandbox, "alice", job)
    conn = json.loads(sandbox.host("login", ["cat", paths["connection"]]).stdout)
    assert conn["endpoint"] == "tcp-node" and conn["host"] == NODE_ADDRESS[node]
    listening = sandbox.host(node, ["ss", "-Hltn", f"sport = :{conn['port']}"]).stdout
    assert [ln.split()[3] for ln in listening.splitlines()] == [f"{conn['host']}:{conn['port']}"]
    # ... and the tunnel is the master's forward: no ssh session holds a tunnel for this job
    # (no `nodebook-remote hold`, on the node or anywhere).
    assert not leftovers.tunnel_processes(job)

    # bob, on the cluster network, without alice's token: 403 (with his own bogus one too).
    url = f"http://{conn['host']}:{conn['port']}/api/status"
    for headers in ([], ["-H", "Authorization: token " + "f" * 64]):
        curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5"]
        for host in ("login", node):
            out = sandbox.host(host, [*curl, *headers, url], user="bob", check=False)
            assert out.stdout == "403", (host, headers, out.stdout, out.stderr)
    # The token is nowhere in a process's argv.
    assert not [p for p in leftovers.job_processes([job]) if token in p]

    # --forward goes through login to node:port, and the driver says where the app must listen;
    # an app (started from a cell) on the node's address is reached on the forward's port.
    (fw,) = ready["data"]["forwards"]
    said = ""
    while fw["url"] not in said:  # the info lines follow the ready line
        said = d.wait_event("info", timeout=30)["message"]
    assert f"must listen on {node}'s address" in said and "not on 127.0.0.1" in said, said
    marker = f"nodebook-forward-{random.randint(0, 10**9)}"
    serve = real_work.SERVE.format(marker=marker, host=conn["host"], port=app_port)
    assert "serving" in real_work.cell(sandbox, ready, serve, keep=True)["stdout"]
    assert real_work.curl(sandbox, f"{fw['url']}marker.txt") == (200, marker)
    # no ssh to the node in this session: ssh-config refuses, by the session's own mode
    conf = drive(["ssh-config", job, "--cluster", "sandbox"])
    assert conf.wait(timeout=60) == ExitCode.USAGE
    (error,) = conf.errors
    assert "--tunnel via-login" in error and not [
        e for e in conf.events if e["event"] == "ssh-config"
    ]

    d.signal(signal.SIGINT)
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(job, port)
