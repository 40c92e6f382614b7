"""Bring-up and teardown: idempotent, quick when warm, and leaving nothing behind.

These tests stop and restart the whole cluster, so they run last (see tests/conftest.py) and
only when this test session started the cluster itself (always so in CI).
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

pytestmark = [pytest.mark.sandbox, pytest.mark.destructive]

HOSTS = ("laptop", "login", "cn01", "cn02")


def owned_or_skip(sandbox) -> None:
    if not sandbox.owned:
        pytest.skip("the cluster was up before the tests (someone else's); not restarting it")


def namespaces(sandbox) -> set[str]:
    """The network namespaces of the sandbox's hosts, as /proc/PID/ns/net link texts."""
    found = set()
    for host in HOSTS:
        pid = (sandbox.state / "run" / f"anchor-{host}.pid").read_text().split()[0]
        found.add(os.readlink(f"/proc/{pid}/ns/net"))
    return found


def live(pid: int | str) -> tuple[str, bool] | None:
    """(its command name, alive) of a process, None when there is none: a zombie has exited
    (PID 1 here may reap it only later)."""
    try:
        comm, rest = Path(f"/proc/{pid}/stat").read_text().split("(", 1)[1].rsplit(")", 1)
    except OSError:
        return None
    return comm, rest.split()[0] != "Z"


def processes_in(nets: set[str]) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.readlink(f"/proc/{entry}/ns/net") in nets:
                    process = live(entry)
                    if process is not None and process[1]:
                        pids.append(int(entry))
            except OSError:
                continue
    return pids


def runs(pid: int, name: str) -> bool:
    """pid is a live `name`."""
    return live(pid) == (name, True)


def assert_nothing_left(sandbox, nets: set[str], munged: int) -> None:
    assert processes_in(nets) == []
    assert not runs(munged, "munged")
    for user in ("alice", "bob"):
        with pytest.raises(KeyError):
            pwd.getpwnam(user)
        assert not Path(f"/home/{user}").exists()
    assert not sandbox.state.exists()
    assert not Path("/opt/nodebook-sandbox").exists()
    assert not Path("/dev/nvidia0").exists()
    # The cache stays: wheels, MariaDB's data directory and the accounting snapshot.
    cache = Path(os.environ.get("NODEBOOK_SANDBOX_CACHE", "/var/cache/nodebook-sandbox"))
    assert (cache / "mariadb" / ".nodebook-sandbox").exists()
    assert list(cache.glob("accounting-*.sql"))


def test_up_is_idempotent_when_warm(sandbox):
    before = namespaces(sandbox)
    res = sandbox.cluster("up")
    assert "already up" in res.stdout
    assert namespaces(sandbox) == before
    assert sandbox.cluster("status").returncode == 0


def test_down_leaves_nothing_behind_and_up_restores(sandbox):
    owned_or_skip(sandbox)
    nets = namespaces(sandbox)
    munged = int(Path(sandbox.state / "run" / "munged.pid").read_text().split()[0])
    res = sandbox.cluster("down")
    assert "down in" in res.stdout
    assert_nothing_left(sandbox, nets, munged)
    assert sandbox.cluster("status", check=False).returncode == 3
    sandbox.cluster("up", timeout=600)
    assert sandbox.ssh("alice", "hostname").stdout.strip() == "login"
    # A new cluster: accounting restored from the cache, but no jobs from the old one.
    assocs = sandbox.host("login", ["sacctmgr", "-n", "-P", "show", "assoc", "format=account,user"])
    assert "chemistry|alice" in assocs.stdout.split()
    assert sandbox.host("login", ["sacct", "-n", "-a", "-X", "-S", "2000-01-01"]).stdout == ""
    assert sandbox.host("cn02", ["test", "-c", "/dev/nvidia1"]).returncode == 0


def test_failed_up_cleans_up_after_itself(sandbox):
    owned_or_skip(sandbox)
    sandbox.cluster("down")
    res = sandbox.cluster(
        "up", env={"NODEBOOK_SANDBOX_FAIL_AFTER": "network"}, check=False, timeout=600
    )
    assert res.returncode == 1
    assert "cleaning up" in res.stderr
    assert "failing after 'network'" in res.stderr
    assert not sandbox.state.exists()
    assert not Path("/opt/nodebook-sandbox").exists()
    for user in ("alice", "bob"):
        with pytest.raises(KeyError):
            pwd.getpwnam(user)
    sandbox.cluster("up", timeout=600)
    assert sandbox.cluster("status").returncode == 0
