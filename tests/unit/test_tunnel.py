"""Tunnel argv building: host-key checking stays on, the master is reused, no shell surprises."""

import shlex
from pathlib import Path

import pytest

from driver.errors import ExitCode, NodebookError
from driver.inventory import Cluster, cluster_from_hostvars
from driver.options import parse_forward
from driver.paths import helper_protocol
from driver.remote import Remote
from driver.ssh import Master
from driver.tunnel import Endpoint, Forward, Tunnel, free_port, jump_argv, port_is_free

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


def remote():
    return Remote(master(), CLUSTER)


HELPER = f"\"$HOME\"/'.nodebook/bin/nodebook-remote' --protocol {helper_protocol()}"


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
    argv = jump_argv(master(), ep, 18000, "HOLD")
    assert argv[-2] == "cn01" and argv[-1] == "HOLD"
    assert "-L" in argv and "127.0.0.1:18000:/tmp/nodebook-alice-7/jupyter.sock" in argv
    assert "ExitOnForwardFailure=yes" in argv and "-N" not in argv
    proxy = next(a for a in argv if a.startswith("ProxyCommand="))
    words = shlex.split(proxy.removeprefix("ProxyCommand=").replace("%%", "%"))
    assert "-W" in words and "%h:%p" in words and "ControlPath=/tmp/nb-x/m" in words
    # the login port is not used for the node; the login port stays inside the ProxyCommand
    assert argv.index("-l") and "2222" not in argv


def test_tunnels_hold_with_the_helper_and_their_job():
    # the helper's `hold` tags the remote end with its job (NODEBOOK_TUNNEL) and keeps it open
    assert remote().hold_command("7") == f"{HELPER} hold 7"
    hop = remote().hop_command("7", "cn01", "/tmp/x y.sock")
    assert hop == f"{HELPER} hop 7 cn01 '/tmp/x y.sock'"


def test_helper_under_an_absolute_base_dir():
    cl = cluster_from_hostvars("c", Path("i"), {"nodebook_environment_base_dir": "/scratch/a/nb"})
    assert Remote(master(), cl).command("list").startswith("'/scratch/a/nb/bin/nodebook-remote' ")


@pytest.mark.parametrize(
    "ep",
    [
        Endpoint(node="cn01", socket="/tmp/nodebook-alice-7/jupyter.sock"),
        Endpoint(node="cn01", port=4000),  # tcp: bound to the node's loopback, unreachable
    ],
)
def test_via_login_refuses_endpoints_login_cannot_reach(ep):
    tunnel = Tunnel(remote(), "via-login", ep, 18000, "7")
    with pytest.raises(NodebookError, match="tcp-node") as exc:
        tunnel.start()
    assert exc.value.code == ExitCode.USAGE and tunnel.forward_spec is None


def test_jump_tcp_endpoint():
    ep = Endpoint(node="cn02", port=45678)
    assert "127.0.0.1:1:127.0.0.1:45678" in jump_argv(master(), ep, 1, "HOLD")


def test_proxy_command_escapes_percent():
    cl = Cluster(name="c", inventory=Path("i"), host="h", ssh_args=("-F", "/a%b"))
    cmd = Master(cl, Path("/tmp/nb-y")).proxy_command()
    assert "/a%%b" in cmd and "%h:%p" in cmd


def test_hops_needs_the_hop_socket():
    tunnel = Tunnel(remote(), "hops", Endpoint(node="cn01", port=1), 18000, "7")
    with pytest.raises(NodebookError, match="hop socket"):
        tunnel.start()


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
    assert c.base_dir == ".nodebook" and c.endpoint is None  # setup's endpoint


def test_inventory_old_and_bad_settings_are_refused_with_the_fix():
    with pytest.raises(NodebookError, match="nodebook_job_endpoint"):
        cluster_from_hostvars("c", Path("i"), {"nodebook_endpoint": "tcp"})
    with pytest.raises(NodebookError, match="nodebook_scheduler"):
        cluster_from_hostvars("c", Path("i"), {"nodebook_scheduler": "pbs"})


def test_forwards_ride_in_the_jump_tunnels_ssh():
    ep = Endpoint(node="cn01", socket="/s")
    argv = jump_argv(master(), ep, 18000, "HOLD", (Forward(6006, 16006), Forward(8787, 18787)))
    specs = [argv[i + 1] for i, a in enumerate(argv) if a == "-L"]
    assert specs == [
        "127.0.0.1:18000:/s",
        "127.0.0.1:16006:127.0.0.1:6006",
        "127.0.0.1:18787:127.0.0.1:8787",
    ]


@pytest.mark.parametrize(
    ("spec", "parsed"), [("6006", (6006, None)), ("6006:16006", (6006, 16006))]
)
def test_forward_specs(spec, parsed):
    assert parse_forward(spec) == parsed


@pytest.mark.parametrize("spec", ["", "x", "0", "70000", "6006:80", "6006:x", "6006:16006:1"])
def test_bad_forward_specs_are_usage_errors(spec):
    with pytest.raises(NodebookError) as exc:
        parse_forward(spec)
    assert exc.value.code == ExitCode.USAGE and "--forward" in exc.value.message


@pytest.fixture
def jupyter_like():
    """A local server that answers /api/status 200 for the right token, 403 otherwise."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            ok = self.path == "/api/status" and self.headers["Authorization"] == "token t0k"
            self.send_response(200 if ok else 403)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/api/status"
    server.shutdown()
    server.server_close()


def test_http_checks_never_go_through_an_environment_proxy(jupyter_like, monkeypatch):
    """A researcher's http_proxy (common on campus networks) cannot reach this machine's
    tunnel: the checks must talk to 127.0.0.1 directly."""
    from driver.tunnel import http_ok, wait_http

    for name in ("http_proxy", "HTTP_PROXY", "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert http_ok(jupyter_like, "t0k")
    assert not http_ok(jupyter_like, "wrong")
    wait_http(jupyter_like, "t0k", timeout=5)
    with pytest.raises(NodebookError, match="HTTP 403"):
        wait_http(jupyter_like, "wrong", timeout=0.3)


def test_listening_is_true_only_while_something_accepts_on_the_socket(tmp_path):
    """`nodebook stop` cancels over the session's master only when it listens: a socket file
    left by a dead master, or none, means no (never a second login through it)."""
    import socket

    master = Master(CLUSTER, tmp_path)
    assert not master.listening()  # no socket at all
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(master.control_path))
    server.listen(1)
    assert master.listening()
    server.close()  # the file stays, nothing accepts: a master that died
    assert master.control_path.exists()
    assert not master.listening()
