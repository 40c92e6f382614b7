"""cn02's two fake GPUs: Slurm GRES on device files that exist only in cn02's mount namespace."""

from __future__ import annotations

import os
import shlex
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.sandbox


def test_sinfo_shows_the_gres_and_the_gpu_partition(sandbox):
    out = sandbox.ssh("alice", "sinfo -h -o '%P %N %G %l'").stdout.splitlines()
    assert "gpu cn02 gpu:a100:2 8:00:00" in out
    assert "debug* cn01 (null) 30:00" in out
    assert "long cn02 gpu:a100:2 1-00:00:00" in out


def test_a_gpu_job_gets_cuda_visible_devices(sandbox):
    out = sandbox.ssh(
        "alice", "srun -p gpu --gpus 1 bash -c 'echo $(hostname) $CUDA_VISIBLE_DEVICES'"
    ).stdout.split()
    assert out == ["cn02", "0"]
    two = sandbox.ssh("alice", "srun -p gpu --gpus 2 printenv CUDA_VISIBLE_DEVICES").stdout
    assert two.strip() == "0,1"


def test_batch_job_on_gpu_partition(sandbox):
    name = f"sandbox-gpu-{time.monotonic_ns()}.out"
    try:
        sandbox.ssh(
            "bob",
            f"sbatch --wait -p gpu --gpus a100:1 -o ~/{name} --wrap 'echo $CUDA_VISIBLE_DEVICES'",
        )
        assert sandbox.ssh("bob", f"cat ~/{name}").stdout.strip() == "0"
    finally:
        sandbox.ssh("bob", f"rm -f ~/{name}", check=False)


def test_more_gpus_than_there_are_is_refused(sandbox):
    res = sandbox.ssh("alice", "sbatch -p gpu --gpus 3 --wrap true", check=False)
    assert res.returncode == 1
    assert "Requested node configuration is not available" in res.stderr


def test_devices_exist_on_cn02_only(sandbox):
    listing = sandbox.host("cn02", ["stat", "-c", "%F %t:%T %a %n", "/dev/nvidia0", "/dev/nvidia1"])
    assert listing.stdout.splitlines() == [
        "character special file c3:0 666 /dev/nvidia0",
        "character special file c3:1 666 /dev/nvidia1",
    ]  # stat prints major:minor in hex: c3 = 195
    for host in ("cn01", "login"):
        assert sandbox.host(host, ["test", "-e", "/dev/nvidia0"], check=False).returncode == 1
    # Nothing on the machine itself: its /dev is untouched.
    if any(e.name.startswith("nvidia") for e in os.scandir("/dev")):
        pytest.skip("this machine has NVIDIA device files of its own")
    assert not Path("/dev/nvidia0").exists()


def test_cn02_dev_still_works(sandbox):
    script = (
        "set -e; head -c 16 /dev/urandom | wc -c; head -c 8 /dev/zero | wc -c; echo x > /dev/null; "
        "python3 -c 'import multiprocessing as m, os; m.Lock(); print(len(os.urandom(4)))'; "
        "d=$(mktemp -p /dev/shm); echo shm > $d; cat $d; rm $d"
    )
    out = sandbox.ssh("alice", script, host="cn02").stdout.split()
    assert out == ["16", "8", "4", "shm"]
    # A pty (sshd allocates it through /dev/ptmx) and /dev/tty work as on the other nodes
    # (through login, while a job of alice's runs on cn02: pam_slurm_adopt).
    inner = shlex.join(["ssh", "-tt", "-o", "BatchMode=yes", "cn02", "tty; echo ok > /dev/tty"])
    with sandbox.holding("alice", "cn02"):
        tty = sandbox.laptop(
            ["ssh", "-F", str(sandbox.ssh_config), "-tt", "-o", "BatchMode=yes", "alice@login",
             inner],
            input="",
        )  # fmt: skip
    # (with a pty, the shell's stderr, ~/.bashrc's line among it, comes on stdout too)
    lines = tty.stdout.replace("\r", "").splitlines()
    assert any(ln.startswith("/dev/pts/") for ln in lines) and "ok" in lines
