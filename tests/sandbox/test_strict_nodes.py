"""Compute nodes as strict sites run them: pam_slurm_adopt.

ssh to a node is refused without a job of yours there, admitted with one (and adopted into its
extern step: PrologFlags=contain), and refused again once the job ended.
"""

from __future__ import annotations

import shlex

import pytest

from tests.harness.sandbox import NODES, Sandbox
from tests.harness.wait import wait_for

pytestmark = pytest.mark.sandbox


def ssh_from_login(sandbox: Sandbox, user: str, node: str, command: str):
    ssh = shlex.join(["ssh", "-o", "BatchMode=yes", node, command])
    return sandbox.host("login", ["bash", "-c", ssh], user=user, check=False)


def free_node(sandbox: Sandbox, user: str) -> str:
    """A node where ``user`` runs no job now (other tests may run theirs meanwhile)."""
    busy = sandbox.out("login", ["squeue", "-h", "-u", user, "-o", "%N"]).split()
    free = [n for n in NODES if n not in busy]
    assert free, f"{user} has jobs on every node: {busy}"
    return free[0]


def test_ssh_to_a_node_without_a_job_is_refused(sandbox: Sandbox) -> None:
    res = ssh_from_login(sandbox, "bob", free_node(sandbox, "bob"), "true")
    assert res.returncode == 255
    assert "Access denied by pam_slurm_adopt: you have no active jobs on this node" in res.stderr


def test_a_login_with_a_job_there_is_admitted_and_refused_again_after(sandbox: Sandbox) -> None:
    """(Adoption into the job's cgroup is not observable here: no cgroups, proctrack/linuxproc.)"""
    node = free_node(sandbox, "bob")
    with sandbox.holding("bob", node) as job:
        res = ssh_from_login(sandbox, "bob", node, "hostname")
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == node
    wait_for(lambda: job not in sandbox.squeue("bob"), 30, "bob's holder job to leave")
    assert ssh_from_login(sandbox, "bob", node, "true").returncode == 255
