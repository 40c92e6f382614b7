"""Compute nodes as strict sites run them: pam_slurm_adopt and a private /tmp per job.

ssh to a node is refused without a job of yours there, admitted with one (and adopted into its
extern step: PrologFlags=contain), and refused again once the job ended. Each job has a /tmp of
its own (job_container/tmpfs), which an adopted login joins; the node's /tmp and the user's
other jobs do not see it, and Slurm removes it when the job ends.
"""

from __future__ import annotations

import os
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


def test_a_login_with_a_job_there_is_admitted_and_refused_again_after(sandbox: Sandbox) -> None:
    """(Adoption into the job's cgroup is not observable here: no cgroups, proctrack/linuxproc.)"""
    node = free_node(sandbox, "bob")
    with sandbox.holding("bob", node) as job:
        res = ssh_from_login(sandbox, "bob", node, "hostname")
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == node
    wait_for(lambda: job not in sandbox.squeue("bob"), 30, "bob's holder job to leave")
    assert ssh_from_login(sandbox, "bob", node, "true").returncode == 255


def test_each_job_has_a_private_tmp_that_an_adopted_login_joins(sandbox: Sandbox) -> None:
    node = free_node(sandbox, "bob")
    jobs: list[str] = []
    try:
        for _ in range(2):  # two jobs of bob on one node, each leaving a file in its /tmp
            wrap = "touch /tmp/mine-$SLURM_JOB_ID && exec sleep 300"
            sbatch = ["sbatch", "--parsable", "-w", node, "-t", "5", "-o", "/dev/null", "--wrap",
                      wrap]  # fmt: skip
            job = sandbox.host("login", sbatch, user="bob").stdout.strip().split(";")[0]
            jobs.append(job)
            mine = job_tmp(node, job) / f".{job}" / f"mine-{job}"
            wait_for(mine.exists, 30, f"job {job}'s file in its /tmp")
        older, newer = jobs
        # a login is adopted into one of them (pam_slurm_adopt: the newest by its cgroup's time;
        # no cgroups here, so the one it lists last) and sees that job's /tmp only
        res = ssh_from_login(sandbox, "bob", node, "ls /tmp")
        assert res.returncode == 0, res.stderr
        seen = [f for f in res.stdout.split() if f.startswith("mine-")]
        assert seen in ([f"mine-{older}"], [f"mine-{newer}"]), res.stdout
        # the older job's /tmp (its directory on disk) holds its own file only
        assert os.listdir(job_tmp(node, older) / f".{older}") == [f"mine-{older}"]
        # and the node's own /tmp holds neither
        node_tmp = sandbox.out(node, ["ls", "-a", "/tmp"]).split()
        assert not [f for f in node_tmp if f.startswith("mine-")], node_tmp
    finally:
        if jobs:
            sandbox.host("login", ["scancel", *jobs], check=False)
    for job in jobs:
        wait_for(lambda j=job: not job_tmp(node, j).exists(), 30, f"Slurm to remove {job}'s /tmp")
