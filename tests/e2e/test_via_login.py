"""--tunnel via-login: Jupyter on the node's cluster address (tcp-node), reached only through login.

For clusters that forbid ssh to compute nodes: the master forwards local port -> node:port, so
Jupyter must listen on the node's cluster address. The token (or password) is then its only
protection: the API answers 403 without it, also to bob on the cluster network.
"""

from __future__ import annotations

import json
import signal

import pytest

from driver.errors import ExitCode
from tests.e2e.conftest import http_status, token_of
from tests.harness import leftovers

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]

NODE_ADDRESS = {"cn01": "10.251.0.11", "cn02": "10.251.0.12"}


def test_via_login_tcp_node_200_with_token_403_without_and_bob_403(sandbox, drive, nothing_left):
    d = drive(["session", "--cluster", "sandbox", "--allow-second", "--tunnel", "via-login"])
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

    d.signal(signal.SIGINT)
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(job, port)
