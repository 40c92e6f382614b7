"""Researchers' own environments: the cuda/12.4 module, alice's venv and conda-layout env."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.sandbox

MARKER = "import nbmarker, sys; print(nbmarker.WHERE, sys.prefix)"


@pytest.fixture(scope="module")
def envs(sandbox) -> dict[str, dict[str, str]]:
    return json.loads((sandbox.state / "envs.json").read_text())


@pytest.mark.parametrize("host", ["login", "cn01", "cn02"])
def test_cuda_module_sets_its_variables(sandbox, host):
    cmd = (
        "bash -lc 'module load cuda/12.4 && "
        'echo "$NODEBOOK_SANDBOX_CUDA $CUDA_HOME $(command -v nvcc)" && nvcc --version\''
    )
    out = sandbox.ssh("alice", cmd, host=host).stdout.splitlines()
    home = "/opt/nodebook-sandbox/cuda/12.4"
    assert out[-3] == f"12.4 {home} {home}/bin/nvcc"  # after the login shell's greeting
    assert "release 12.4" in out[-1]
    unset = sandbox.ssh("alice", "bash -lc 'echo ${CUDA_HOME:-unset}'").stdout.splitlines()
    assert unset[-1] == "unset"


def test_both_modules_are_listed(sandbox):
    out = sandbox.ssh("bob", "bash -lc 'module -t avail 2>&1'").stdout.split()
    assert "conda-python/3.11" in out and "cuda/12.4" in out


def test_venv_has_the_marker_and_no_ipykernel(sandbox, envs):
    venv = envs["venv"]
    assert venv["prefix"] == "/home/alice/envs/analysis" and venv["owner"] == "alice"
    out = sandbox.ssh("alice", f"{venv['python']} -c '{MARKER}'", host="cn01").stdout.split()
    assert out == ["venv", venv["prefix"]]
    res = sandbox.ssh("alice", f"{venv['python']} -c 'import ipykernel'", check=False)
    assert "No module named 'ipykernel'" in res.stderr
    cfg = sandbox.ssh("alice", f"cat {venv['prefix']}/pyvenv.cfg").stdout
    assert "home = /opt/nodebook-sandbox/conda-python/3.11/bin" in cfg.splitlines()
    assert sandbox.ssh("alice", f"{venv['prefix']}/bin/pip --version").stdout.startswith("pip ")


def test_conda_env_has_conda_layout_and_its_own_marker(sandbox, envs):
    conda = envs["conda"]
    prefix = conda["prefix"]
    assert prefix == "/home/alice/conda/envs/torchish" and conda["owner"] == "alice"
    out = sandbox.ssh("alice", f"{conda['python']} -c '{MARKER}'", host="cn02").stdout.split()
    assert out == ["conda", prefix]
    res = sandbox.ssh("alice", f"{conda['python']} -c 'import ipykernel'", check=False)
    assert "No module named 'ipykernel'" in res.stderr
    history = sandbox.ssh("alice", f"cat {prefix}/conda-meta/history").stdout
    assert history.startswith("==> ") and "# cmd: " in history
    assert prefix in sandbox.ssh("alice", "cat ~/.conda/environments.txt").stdout.split()
    hook = f"{prefix}/etc/conda/activate.d/nodebook-marker.sh"
    activated = sandbox.ssh("alice", f"bash -c '. {hook}; echo ${conda['activate_variable']}'")
    assert activated.stdout.strip() == "1"
    # Its own site-packages (not a venv: no pyvenv.cfg).
    site = f"{prefix}/lib/python3.11/site-packages"
    assert sandbox.ssh("alice", f"test -f {site}/nbmarker/__init__.py -a ! -e {prefix}/pyvenv.cfg")


def test_envs_belong_to_alice_only(sandbox, envs):
    for env in envs.values():
        out = sandbox.host("login", ["find", env["prefix"], "!", "-user", "alice"]).stdout
        assert out == ""
    # The conda env's stdlib links point into /usr: that stayed root's.
    assert (
        sandbox.host("login", ["stat", "-c", "%U", "/usr/lib/python3.11/os.py"]).stdout == "root\n"
    )
    denied = sandbox.ssh("bob", f"{envs['venv']['python']} -V", check=False)
    assert denied.returncode != 0
