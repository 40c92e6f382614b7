"""Compute nodes as strict sites run them: pam_slurm_adopt and a private /tmp per job.

ssh to a node is refused without a job of yours there; with one, the login is adopted into the
job and sees the job's own /tmp (job_container/tmpfs), which the node's /tmp does not show and
Slurm removes when the job ends.
"""

from __future__ import annotations

import shlex

import pytest

from tests.harness.sandbox import NODES, Sandbox, job_tmp
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


def test_a_job_s_login_is_adopted_into_its_private_tmp(sandbox: Sandbox) -> None:
    wrap = "touch /tmp/mine-$SLURM_JOB_ID && sleep 120"
    sbatch = ["sbatch", "--parsable", "-w", "cn01", "--time=5", "--wrap", wrap]
    job = sandbox.host("login", ["bash", "-c", shlex.join(sbatch)], user="bob").stdout.strip()
    private = job_tmp("cn01", job)
    try:
        wait_for(lambda: (private / f".{job}" / f"mine-{job}").exists(), 30, "its /tmp file")
        res = ssh_from_login(sandbox, "bob", "cn01", "ls /tmp")
        assert res.returncode == 0, res.stderr
        assert f"mine-{job}" in res.stdout.split()  # adopted: the job's own /tmp
        node_tmp = sandbox.out("cn01", ["ls", "/tmp"]).split()
        assert f"mine-{job}" not in node_tmp  # not the node's

    finally:
        sandbox.host("login", ["scancel", job], check=False)
    wait_for(lambda: not private.exists(), 30, "Slurm to remove the job's /tmp")
