"""The sandbox's config files come from sandbox/templates/ through one strict render()."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.harness.sandbox import cluster_module

pytestmark = pytest.mark.sandbox

SANDBOX_DIR = Path(__file__).resolve().parents[2] / "sandbox"


@pytest.fixture(scope="module")
def cluster():
    with cluster_module("sandbox_cluster") as module:
        yield module


def test_render_wants_exactly_its_placeholders(cluster):
    assert "Port 2222" in cluster.render(
        "sshd.conf", pid_file="/p", port=2222, host_key="/k", users="alice", auth=""
    )
    with pytest.raises(cluster.SandboxError, match=r"missing values \['users'\]"):
        cluster.render("sshd.conf", pid_file="/p", port=22, host_key="/k", auth="")
    with pytest.raises(cluster.SandboxError, match=r"unused values \['colour'\]"):
        cluster.render("gres.conf", colour="red")


def test_every_template_is_used(cluster):
    source = (SANDBOX_DIR / "cluster.py").read_text()
    for template in (SANDBOX_DIR / "templates").iterdir():
        assert f'"{template.name}"' in source, f"{template.name} is rendered nowhere"


def test_written_config_has_no_placeholder_left(sandbox):
    etc = sandbox.state / "etc"
    files = [p for p in etc.rglob("*") if p.is_file() and p.suffix != ".so"]
    files = [p for p in files if "usr-bin-without-python" not in p.parts]  # hide-python's links
    files.append(sandbox.ssh_config)
    assert len(files) > 10
    for path in files:
        assert not re.search(r"\$\{?[A-Za-z_]", path.read_text()), path
    slurm = (etc / "slurm" / "slurm.conf").read_text()
    assert "PartitionName=gpu Nodes=cn02" in slurm and "GresTypes=gpu" in slurm
    assert re.search(r"^PartitionName=chem .*AllowAccounts=chemistry ", slurm, re.MULTILINE)
    for sshd in etc.glob("sshd-*.conf"):  # strict, as some sites are: 4 sessions a connection
        assert "\nMaxSessions 4\n" in sshd.read_text(), sshd
    assert (etc / "profile.d" / "sandbox-site.sh").is_file()  # the cluster hosts' talking shells
