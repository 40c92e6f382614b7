"""The default tunnel on a laptop that knows only the login node's host key (issue 19).

The sandbox's laptop has never seen a compute node's key; the cluster's hosts have a site-wide
/etc/ssh/ssh_known_hosts (alice also a hashed ~/.ssh/known_hosts of her own, bob none). The
driver pins the login node's records of the node's key and checks the node against them; when
the records are wrong or missing, or the node does not take ssh, the session stops with what ssh
said and its fix, and nothing is left.

Tests that change the login node's records bind-mount a file over its /etc/ssh/ssh_known_hosts
in login's own mount namespace (the nodes and the laptop keep theirs), as bob, whose only
records those are.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from driver.errors import ExitCode
from tests.harness.sandbox import KNOWN_HOSTS, STATE, Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(300)]

SITE = "/etc/ssh/ssh_known_hosts"


def site_key(sandbox: Sandbox, node: str) -> str:
    """The node's key ("type blob") in the cluster's site-wide known_hosts."""
    for line in sandbox.out("login", ["cat", SITE]).splitlines():
        if line.strip() and node in line.split()[0].split(","):
            return " ".join(line.split()[1:3])
    raise AssertionError(f"{SITE} on login has no line for {node}")


@contextlib.contextmanager
def login_records(sandbox: Sandbox, text: str) -> Iterator[None]:
    """login's /etc/ssh/ssh_known_hosts reads ``text`` for the block (its own mount namespace)."""
    path = STATE / f"test-known-hosts-{os.getpid()}"  # seen by login (not under /tmp)
    path.write_text(text)
    path.chmod(0o644)
    sandbox.host("login", ["mount", "--bind", str(path), SITE])
    try:
        yield
    finally:
        sandbox.host("login", ["umount", SITE], check=False)
        path.unlink(missing_ok=True)


def impostor_key(tmp: Path) -> str:
    key = tmp / "impostor"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return " ".join(Path(f"{key}.pub").read_text().split()[:2])


def test_the_laptop_knows_only_the_login_nodes_key(sandbox: Sandbox) -> None:
    names = {n for line in KNOWN_HOSTS.read_text().splitlines() for n in line.split()[0].split(",")}
    assert not names & {"cn01", "cn02", "10.251.0.11", "10.251.0.12"}, names
    assert "login" in names


def test_default_tunnel_pins_the_nodes_key_from_the_login_nodes_records(
    sandbox, drive, nothing_left, state_dir
):
    """Fails on the code before the pin: the tunnel's ssh had no key for the node (exit 7)."""
    d = drive(["session", "--cluster", "sandbox", "--allow-second"])
    ready = d.wait_event("ready", timeout=90)
    node, port = str(ready["node"]), int(ready["local_port"])
    assert ready["data"]["tunnel"] == "jump"
    pinned = state_dir / "sandbox" / "known_hosts"
    assert f"{node} {site_key(sandbox, node)}" in pinned.read_text().splitlines()
    assert stat.S_IMODE(pinned.stat().st_mode) == 0o600
    assert node not in KNOWN_HOSTS.read_text()  # the user's own file is left alone
    d.signal(signal.SIGINT)
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(str(ready["job_id"]), port)


def test_bob_with_the_site_wide_file_only(sandbox, drive, nothing_left, nodebook_setup, state_dir):
    nodebook_setup("bob")
    assert not Path("/home/bob/.ssh/known_hosts").exists()
    d = drive(["session", "--cluster", "sandbox", "--allow-second", "--user", "bob"])
    ready = d.wait_event("ready", timeout=90)
    node = str(ready["node"])
    pinned = (state_dir / "sandbox" / "known_hosts").read_text()
    assert f"{node} {site_key(sandbox, node)}" in pinned
    d.signal(signal.SIGINT)
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(str(ready["job_id"]), int(ready["local_port"]), user="bob")


def test_a_node_key_that_differs_from_the_records_stops_with_ssh_s_warning(
    sandbox, drive, nothing_left, nodebook_setup, tmp_path
):
    nodebook_setup("bob")
    fake = impostor_key(tmp_path)
    text = sandbox.out("login", ["cat", SITE])
    wrong = "".join(
        f"{line.split()[0]} {fake}\n" if "cn0" in line.split()[0] else line + "\n"
        for line in text.splitlines()
        if line.strip()
    )
    with login_records(sandbox, wrong):
        d = drive(["session", "--cluster", "sandbox", "--allow-second", "--user", "bob"])
        assert d.wait(timeout=120) == ExitCode.TUNNEL_LOST, d.output
    assert d.job_ids, "the job was submitted (the login node's key is right)"
    assert not [e for e in d.events if e.get("event") == "ready"]
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in d.output
    assert "man-in-the-middle" in d.output and "tell your cluster's admins" in d.output
    assert "cancelled" in d.output
    nothing_left(user="bob")


def test_a_node_the_login_node_has_no_record_of_stops_with_the_cause(
    sandbox, drive, nothing_left, nodebook_setup
):
    nodebook_setup("bob")
    text = sandbox.out("login", ["cat", SITE])
    login_only = "".join(line + "\n" for line in text.splitlines() if line.startswith("login,"))
    with login_records(sandbox, login_only):
        d = drive(["session", "--cluster", "sandbox", "--allow-second", "--user", "bob"])
        assert d.wait(timeout=120) == ExitCode.TUNNEL_LOST, d.output
    assert d.job_ids and not [e for e in d.events if e.get("event") == "ready"]
    assert re.search(r"cn0\d's host key is unknown", d.output), d.output
    assert "No ED25519 host key is known for" in d.output  # ssh's own words
    assert "/etc/ssh/ssh_known_hosts" in d.output
    nothing_left(user="bob")


def test_a_node_without_sshd_names_the_refusal_and_via_login(sandbox, drive, nothing_left):
    """cn02 alone in partition gpu: its sshd stopped, the login node's connect is refused."""
    sandbox.cluster("daemon", "sshd-cn02", "stop")
    try:
        d = drive(["session", "--cluster", "sandbox", "--allow-second", "--partition", "gpu"])
        assert d.wait(timeout=120) == ExitCode.TUNNEL_LOST, d.output
    finally:
        sandbox.cluster("daemon", "sshd-cn02", "start", check=False, timeout=120)
    assert "Connection refused" in d.output and "--tunnel via-login" in d.output
    assert "nothing on cn02 accepts ssh" in d.output
    nothing_left()
