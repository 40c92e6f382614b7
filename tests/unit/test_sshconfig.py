"""`nodebook ssh-config`: the Host block (pure logic; the sandbox test runs ssh with it)."""

import os
from pathlib import Path
from unittest.mock import patch

import pytest

from driver.errors import ExitCode, NodebookError
from driver.inventory import Cluster
from driver.progress import Renderer
from driver.record import SessionRecord
from driver.sshconfig import host_block, proxy_command, ssh_config
from driver.state import StateDir

CLUSTER = Cluster(name="hpc", inventory=Path("i"), host="login", user="jdoe")


def test_block_keeps_host_keys_identity_and_checking_on():
    config = {
        "user": ["jdoe"],
        "identityfile": ["~/.ssh/id_ed25519"],
        "userknownhostsfile": ["~/.ssh/known_hosts"],
        "stricthostkeychecking": ["false"],  # never copied: the block says yes
        "port": ["2222"],  # the login's port is not the node's
    }
    pinned = Path("/state/hpc/known_hosts")
    text = host_block(CLUSTER, "123", "cn07", "ssh -W %h:%p login", config, pinned)
    lines = text.splitlines()
    assert "Host nodebook-123" in lines and "  HostName cn07" in lines
    assert "  ProxyCommand ssh -W %h:%p login" in lines
    # the user's own files, then the node keys nodebook pinned, looked up under the node's name
    assert "  userknownhostsfile ~/.ssh/known_hosts /state/hpc/known_hosts" in lines
    assert "  HostKeyAlias cn07" in lines
    assert "  StrictHostKeyChecking yes" in lines
    assert not [ln for ln in lines if "false" in ln or "2222" in ln]


def test_without_a_session_master_the_proxy_logs_in_itself():
    proxy = proxy_command(CLUSTER, "/nonexistent/m")
    assert proxy.endswith("-W %h:%p login") and "ControlPath" not in proxy


@pytest.mark.parametrize(
    ("cluster", "job", "words"),
    [
        (CLUSTER, "12x", "not a Slurm job id"),
        (Cluster(name="ws", inventory=Path("i"), host="ws", scheduler="none"), "1", "standalone"),
        (Cluster(name="c", inventory=Path("i"), host="l", tunnel="via-login"), "1", "forbids ssh"),
    ],
)
def test_refusals_say_why(cluster, job, words):
    with pytest.raises(NodebookError, match=words) as exc:
        ssh_config(cluster, job, Renderer(False))
    assert exc.value.code == ExitCode.USAGE


@pytest.mark.parametrize("tunnel", ["via-login", "jump"])
def test_a_session_started_via_login_is_refused_by_its_own_mode(tunnel):
    """The inventory allows ssh to nodes, but this session was started with --tunnel via-login:
    its record says so, and no block that cannot work is printed."""
    StateDir(CLUSTER.name).save(
        SessionRecord(
            cluster=CLUSTER.name, job_id="77", node="cn03", local_port=1, tunnel=tunnel,
            driver_pid=os.getpid(), control_path="/nonexistent/m",
        )
    )  # fmt: skip
    if tunnel == "jump":  # not refused: it goes on to ask ssh for the login's options
        with patch("driver.sshconfig.resolved", return_value={}):
            assert ssh_config(CLUSTER, "77", Renderer(False)) == ExitCode.OK
        return
    with pytest.raises(NodebookError) as exc:
        ssh_config(CLUSTER, "77", Renderer(False))
    assert exc.value.code == ExitCode.USAGE
    message = exc.value.message
    assert len(message.splitlines()) == 1
    assert "--tunnel via-login" in message and "session's URL" in message, message
