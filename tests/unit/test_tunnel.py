"""Tunnel argv building: host-key checking stays on, the master is reused, no shell surprises."""

import shlex
from pathlib import Path

import pytest

from driver.errors import ExitCode, NodebookError
from driver.inventory import Cluster, cluster_from_hostvars
from driver.ssh import Master
from driver.tunnel import (
    Endpoint,
    Tunnel,
    free_port,
    hops_inner_command,
    jump_argv,
    port_is_free,
)

CLUSTER = Cluster(
    name="c",
    inventory=Path("inv"),
    host="login",
    user="alice",
    port=2222,
    ssh_args=("-F", "/etc/cfg file"),
    identity="/k/id",
)


def master():
    return Master(CLUSTER, Path("/tmp/nb-x"))


def test_master_client_uses_control_path_and_inventory_settings():
    argv = master().client_argv("-O", "check")
    assert argv[0] == "ssh" and argv[-1] == "login"
    assert "ControlPath=/tmp/nb-x/m" in argv and "ControlMaster=no" in argv
    assert argv[1:3] == ["-F", "/etc/cfg file"]
    assert "-p" in argv and "2222" in argv and "-l" in argv and "-i" in argv
    assert not any("StrictHostKeyChecking" in a for a in argv)


def test_master_start_detaches_and_persists_bounded():
    argv = master().start_argv()
    assert "-f" in argv and "-N" in argv and "ControlMaster=yes" in argv
    assert any(a.startswith("ControlPersist=") and a != "ControlPersist=yes" for a in argv)


def test_jump_argv_forwards_to_socket_on_node_through_master():
    ep = Endpoint(node="cn01", socket="/tmp/nodebook-alice-7/jupyter.sock")
    argv = jump_argv(master(), ep, 18000)
    assert argv[-2] == "cn01"
    assert "-L" in argv and "127.0.0.1:18000:/tmp/nodebook-alice-7/jupyter.sock" in argv
    assert "ExitOnForwardFailure=yes" in argv and "-N" not in argv
    proxy = next(a for a in argv if a.startswith("ProxyCommand="))
    words = shlex.split(proxy.removeprefix("ProxyCommand=").replace("%%", "%"))
    assert "-W" in words and "%h:%p" in words and "ControlPath=/tmp/nb-x/m" in words
    # the login port is not used for the node; the login port stays inside the ProxyCommand
    assert argv.index("-l") and "2222" not in argv


def test_tunnels_are_tagged_with_their_job():
    ep = Endpoint(node="cn01", socket="/tmp/nodebook-alice-7/jupyter.sock")
    assert jump_argv(master(), ep, 18000, "7")[-1] == "exec env NODEBOOK_TUNNEL=7 cat >/dev/null"


@pytest.mark.parametrize(
    "ep",
    [
        Endpoint(node="cn01", socket="/tmp/nodebook-alice-7/jupyter.sock"),
        Endpoint(node="cn01", port=4000),  # tcp: bound to the node's loopback, unreachable
    ],
)
def test_via_login_refuses_endpoints_login_cannot_reach(ep):
    tunnel = Tunnel(master(), "via-login", ep, 18000, "alice", "7")
    with pytest.raises(NodebookError, match="tcp-node") as exc:
        tunnel.start()
    assert exc.value.code == ExitCode.USAGE and tunnel.forward_spec is None


def test_jump_tcp_endpoint():
    ep = Endpoint(node="cn02", port=45678)
    assert "127.0.0.1:1:127.0.0.1:45678" in jump_argv(master(), ep, 1)


def test_proxy_command_escapes_percent():
    cl = Cluster(name="c", inventory=Path("i"), host="h", ssh_args=("-F", "/a%b"))
    cmd = Master(cl, Path("/tmp/nb-y")).proxy_command()
    assert "/a%%b" in cmd and "%h:%p" in cmd


def test_hops_inner_command_has_no_orphan_risk():
    ep = Endpoint(node="cn01", socket="/tmp/nodebook-alice-7/jupyter.sock")
    cmd = hops_inner_command(ep, "/tmp/nodebook-alice-7-hop.sock", "7")
    assert cmd.startswith("umask 077; env NODEBOOK_TUNNEL=7 ssh")
    assert " -N " not in cmd and "cat >/dev/null" in cmd
    assert "/tmp/nodebook-alice-7-hop.sock:/tmp/nodebook-alice-7/jupyter.sock" in cmd
    # ssh leaves the socket file behind: the shell removes it once the inner ssh has ended
    assert cmd.endswith("; rm -f /tmp/nodebook-alice-7-hop.sock")


def test_endpoint_needs_socket_or_port():
    with pytest.raises(NodebookError):
        Endpoint(node="cn01").target()


def test_free_port_is_free():
    port = free_port()
    assert 1024 <= port <= 65535 and port_is_free(port)


def test_inventory_refuses_disabled_host_key_checking():
    with pytest.raises(NodebookError):
        cluster_from_hostvars(
            "c", Path("i"), {"ansible_ssh_common_args": "-o StrictHostKeyChecking=no"}
        )
    with pytest.raises(NodebookError):
        cluster_from_hostvars(
            "c", Path("i"), {"ansible_ssh_common_args": "-o   StrictHostKeyChecking=No"}
        )


def test_inventory_settings_are_honoured():
    c = cluster_from_hostvars(
        "sandbox",
        Path("i"),
        {
            "ansible_host": "login",
            "ansible_user": "alice",
            "ansible_port": "2222",
            "ansible_ssh_common_args": "-F /x/config",
            "ansible_ssh_private_key_file": "~/k",
        },
    )
    assert (c.host, c.user, c.port, c.ssh_args) == ("login", "alice", 2222, ("-F", "/x/config"))
    assert c.identity and not c.identity.startswith("~")
    assert c.tunnel == "jump" and not c.standalone
    s = cluster_from_hostvars("srv", Path("i"), {"nodebook_scheduler": "none"}, user="bob")
    assert s.standalone and s.tunnel == "direct" and s.user == "bob" and s.host == "srv"
