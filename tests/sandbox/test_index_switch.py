"""`cluster.py index off|on`: the cluster's package index stops answering and comes back."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.sandbox

URL = "http://login:3141/simple/"


def curl(sandbox, host: str):
    argv = ["curl", "-sS", "-m", "5", "-o", "/dev/null", "-w", "%{http_code}", URL]
    return sandbox.host(host, argv, check=False)


def test_index_off_refuses_and_on_answers_again(sandbox):
    try:
        sandbox.cluster("index", "off")
        for host in ("login", "cn01"):
            res = curl(sandbox, host)
            assert res.returncode == 7, res  # curl: failed to connect
            assert "Couldn't connect to server" in res.stderr
        status = sandbox.cluster("status").stdout  # still healthy: the server runs
        assert "OFF" in next(line for line in status.splitlines() if "package index" in line)
        sandbox.cluster("index", "off")  # idempotent
    finally:
        sandbox.cluster("index", "on")
    sandbox.cluster("index", "on")
    for host in ("login", "cn02"):
        assert curl(sandbox, host).stdout == "200"
    status = sandbox.cluster("status").stdout
    assert " on " in next(line for line in status.splitlines() if "package index" in line)


def test_warm_up_turns_the_index_back_on(sandbox):
    try:
        sandbox.cluster("index", "off")
        out = sandbox.cluster("up").stdout
        assert "already up" in out
    finally:
        sandbox.cluster("index", "on")
    assert curl(sandbox, "cn01").stdout == "200"
