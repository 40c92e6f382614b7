"""The remote helper's compute-node commands (lib/nodebook-remote/node.sh): the batch job itself
against a stand-in Jupyter, and a kernelspec's launcher (kernel). No sandbox
(tests/unit/helper_cluster.py).
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from tests.unit.helper_cluster import Cluster, Result

# ------------------------------------------------------------------------------- the job


FAKE_JUPYTER = """#!/usr/bin/env python3
# A stand-in for jupyter-lab: serves /api on the --sock it is given until SIGTERM.
import os, socket, sys, signal
from http.server import BaseHTTPRequestHandler, HTTPServer
sock = [a.split("=", 1)[1] for a in sys.argv if a.startswith("--sock=")][0]
class H(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"{}")
    def log_message(self, *a): pass
class S(HTTPServer):
    address_family = socket.AF_UNIX
    def server_bind(self):
        self.socket.bind(self.server_address)
    def get_request(self):
        conn, _ = self.socket.accept()
        return conn, ("local", 0)
signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
with open(os.environ["FAKE_ARGV"], "w") as f:
    f.write(" ".join(sys.argv) + "\\n" + os.environ["JUPYTER_TOKEN_FILE"])
S(sock, H).serve_forever()
"""


def start_job(cluster: Cluster, job: str, **env: str) -> subprocess.Popen[str]:
    venv_bin = cluster.tmp / "venv-bin"
    venv_bin.mkdir(exist_ok=True)
    lab = venv_bin / "jupyter-lab"
    lab.write_text(FAKE_JUPYTER)
    lab.chmod(0o755)
    (cluster.tmp / "node-tmp").mkdir(exist_ok=True)
    full = cluster.env(SLURM_JOB_ID=job, FAKE_ARGV=str(cluster.tmp / "argv"), **env)
    return subprocess.Popen(
        [str(cluster.base / "bin/nodebook-remote"), "job"],
        env=full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_job_writes_a_private_connection_file_and_cleans_up_on_sigterm(cluster: Cluster) -> None:
    proc = start_job(cluster, "70")
    conn = cluster.base / "jobs/70/connection.json"
    try:
        wait_for(conn)
        run_dir = cluster.tmp / "node-tmp/nodebook-tester-70"
        assert stat.S_IMODE(conn.stat().st_mode) == 0o600
        assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
        info = json.loads(conn.read_text())
        assert list(info)[-1] == "token" and len(info["token"]) == 64
        assert info["socket"] == str(run_dir / "jupyter.sock")
        argv = (cluster.tmp / "argv").read_text()
        assert info["token"] not in argv  # the token never reaches argv
        # the helper strips the token for Ansible
        assert "token" not in cluster.run("connection", "70").one("connection")
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 143
        assert time.monotonic() - started < 2
        assert not conn.exists() and not run_dir.exists()
        assert not (cluster.base / "jobs/70").exists()
    finally:
        proc.kill()
        out = proc.communicate()[0]
    assert "job 70 ended" in out


def test_job_ends_itself_without_heartbeat(cluster: Cluster) -> None:
    proc = start_job(cluster, "71", NODEBOOK_HEARTBEAT_TIMEOUT="2")
    try:
        assert proc.wait(timeout=30) == 75  # DEADMAN_EXIT: Slurm records the job as failed
    finally:
        proc.kill()
        out = proc.communicate()[0]
    assert "no heartbeat" in out
    assert not (cluster.base / "jobs/71").exists()


def test_job_refuses_a_bad_endpoint(cluster: Cluster) -> None:
    proc = start_job(cluster, "72", NODEBOOK_ENDPOINT="udp")
    assert proc.wait(timeout=10) == 1
    assert "NODEBOOK_ENDPOINT" in proc.communicate()[0]


# ------------------------------------------------------------------------------- kernels
# `kernel` is the launcher in the kernelspecs of roles/nodebook_kernels: Jupyter runs it on the
# node. Here the environment's python is a stand-in that prints its argv and environment for
# `-m ipykernel_launcher` (and is the real Python for anything else), `module` an exported
# bash function that records what it loads, `conda` a script on PATH.

FAKE_ENV_PYTHON = f"""#!/bin/sh
if [ "$1" = -m ]; then
  exec {sys.executable} -c 'import json, os, sys
line = {{"nodebook": "fake-kernel", "argv": sys.argv[1:], "env": dict(os.environ)}}
print(json.dumps(line))' "$@"
fi
exec {sys.executable} "$@"
"""
# Lmod's `module` as the job's login shell exports it; `missing/1` does not load.
FAKE_MODULE = (
    '() { [ "$1" = load ] || return 0; '
    'if [ "$2" = missing/1 ]; then '
    'echo "Lmod has detected the following error: $2" >&2; return 1; fi; '
    'export LOADED="${LOADED:+$LOADED }$2" PATH="/opt/modules/$2/bin:$PATH"; }'
)


def make_env(cluster: Cluster, name: str, kind: str) -> Path:
    """An environment prefix: bin/python (the stand-in); conda-meta/ and an activate.d hook
    (written for `set +u`, as real ones are) for conda, pyvenv.cfg for a venv."""
    prefix = cluster.home / ("conda/envs" if kind == "conda" else "envs") / name
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin" / "python").write_text(FAKE_ENV_PYTHON)
    (prefix / "bin" / "python").chmod(0o755)
    if kind == "conda":
        (prefix / "conda-meta").mkdir()
        (prefix / "conda-meta" / "state").write_text(
            json.dumps({"env_vars": {"FROM_CONDA_STATE": "a b=c", "1BAD": "x"}})
        )
        hooks = prefix / "etc" / "conda" / "activate.d"
        hooks.mkdir(parents=True)
        (hooks / "marker.sh").write_text(
            'export NBMARKER_ACTIVATED=1 HOOK_SAW_PREFIX="$CONDA_PREFIX$UNSET_IN_HOOK"\n'
        )
    elif kind == "venv":
        (prefix / "pyvenv.cfg").write_text("home = /usr/bin\n")
    return prefix


def run_kernel(cluster: Cluster, prefix: Path, kind: str, *extra: str, **env: str) -> Result:
    return cluster.run(
        "kernel",
        "--name",
        prefix.name,
        "--kind",
        kind,
        "--prefix",
        str(prefix),
        "--python",
        str(prefix / "bin" / "python"),
        *extra,
        "--",
        "-f",
        "/run/conn-1.json",
        env=cluster.env(**env),
    )


def test_kernel_activates_a_conda_env_as_conda_activate_does(cluster: Cluster) -> None:
    prefix = make_env(cluster, "torchish", "conda")
    base = "/opt/miniforge"
    path = f"{base}/bin:{cluster.bin}:/usr/bin:/bin"
    res = run_kernel(cluster, prefix, "conda", CONDA_PREFIX=base, CONDA_SHLVL="1", PATH=path)
    assert res.rc == 0, res
    kernel = res.one("fake-kernel")
    assert kernel["argv"] == ["-m", "ipykernel_launcher", "-f", "/run/conn-1.json"]
    env = kernel["env"]
    # The env's bin replaces the active env's (base) on PATH, as `conda activate` does.
    assert env["PATH"].split(":")[0] == f"{prefix}/bin"
    assert f"{base}/bin" not in env["PATH"].split(":")
    assert env["CONDA_PREFIX"] == str(prefix) and env["CONDA_DEFAULT_ENV"] == "torchish"
    assert env["CONDA_SHLVL"] == "2" and env["CONDA_PREFIX_1"] == base
    assert env["CONDA_PROMPT_MODIFIER"] == "(torchish) "
    assert env["FROM_CONDA_STATE"] == "a b=c" and "1BAD" not in env  # `conda env config vars`
    assert env["NBMARKER_ACTIVATED"] == "1"  # etc/conda/activate.d/*.sh, after the variables
    assert env["HOOK_SAW_PREFIX"] == str(prefix)
    assert "kernel torchish on " in res.stderr and "as conda does" in res.stderr


def test_kernel_uses_condas_own_activation_when_conda_exists(cluster: Cluster) -> None:
    prefix = make_env(cluster, "torchish", "conda")
    conda = cluster.bin / "conda"
    conda.write_text(
        "#!/bin/sh\n"
        '[ "$1 $2" = "shell.bash hook" ] || exit 2\n'
        'echo \'conda() { [ "$1" = activate ] || return 1; '
        'export CONDA_PREFIX="$2" ACTIVATED_BY=conda-hook PATH="$2/bin:$PATH"; }\'\n'
    )
    conda.chmod(0o755)
    res = run_kernel(cluster, prefix, "conda")
    env = res.one("fake-kernel")["env"]
    assert env["ACTIVATED_BY"] == "conda-hook" and env["CONDA_PREFIX"] == str(prefix)
    assert "NBMARKER_ACTIVATED" not in env  # conda's activate (here a stand-in) runs the hooks
    assert "(conda activate)" in res.stderr
    # A conda whose activate fails: the launcher activates the env itself, and says so.
    conda.write_text("#!/bin/sh\necho 'conda() { return 1; }'\n")
    res = run_kernel(cluster, prefix, "conda")
    env = res.one("fake-kernel")["env"]
    assert env["NBMARKER_ACTIVATED"] == "1" and env["CONDA_PREFIX"] == str(prefix)
    assert "conda activate" in res.stderr and "failed" in res.stderr


def test_kernel_loads_the_modules_then_activates_a_venv(cluster: Cluster) -> None:
    prefix = make_env(cluster, "analysis", "venv")
    res = run_kernel(
        cluster,
        prefix,
        "venv",
        "--module",
        "cuda/12.4",
        "--module",
        "mpi/4",
        **{"BASH_FUNC_module%%": FAKE_MODULE, "PYTHONHOME": "/wrong"},
    )
    env = res.one("fake-kernel")["env"]
    assert env["LOADED"] == "cuda/12.4 mpi/4"
    # Activated after the modules: the env's bin is first, then what the modules added.
    assert env["PATH"].split(":")[:3] == [
        f"{prefix}/bin",
        "/opt/modules/mpi/4/bin",
        "/opt/modules/cuda/12.4/bin",
    ]
    assert env["VIRTUAL_ENV"] == str(prefix) and "PYTHONHOME" not in env
    assert "CONDA_PREFIX" not in env


def test_kernel_with_a_module_that_does_not_load_fails_with_the_fix(cluster: Cluster) -> None:
    prefix = make_env(cluster, "analysis", "venv")
    res = run_kernel(
        cluster, prefix, "venv", "--module", "missing/1", **{"BASH_FUNC_module%%": FAKE_MODULE}
    )
    assert res.rc == 3 and not res.kind("fake-kernel")
    err = res.one("error")
    assert err["error"] == "missing-module" and err["module"] == "missing/1"
    assert "nodebook_kernels_environments" in err["message"] and "nodebook setup" in err["message"]
    assert "Lmod has detected the following error: missing/1" in res.stderr


def test_kernel_plain_python_and_bad_arguments(cluster: Cluster) -> None:
    prefix = make_env(cluster, "spack-python", "plain")
    env = run_kernel(cluster, prefix, "plain").one("fake-kernel")["env"]
    assert env["PATH"].split(":")[0] == f"{prefix}/bin" and "VIRTUAL_ENV" not in env
    gone = cluster.run(
        "kernel",
        "--kind",
        "venv",
        "--prefix",
        str(prefix),
        "--python",
        "/nope/python",
        "--",
        "-f",
        "x",
    )
    assert gone.rc == 3 and "no Python at /nope/python" in gone.one("error")["message"]
    for bad in (
        ["--kind", "pixi", "--prefix", str(prefix), "--", "-f", "x"],
        ["--kind", "venv", "--prefix", "relative/env", "--", "-f", "x"],
        ["--kind", "venv", "--prefix", str(prefix)],
    ):
        assert cluster.run("kernel", *bad).one("error")["error"] == "usage", bad


def test_job_puts_nodebooks_data_dir_first_on_jupyter_path(cluster: Cluster) -> None:
    """The kernelspecs of nodebook_kernels are found, and the user's own data dir still is:
    JUPYTER_PATH gets the data dir in front, JUPYTER_DATA_DIR is left alone."""
    data_dir = cluster.base / "share" / "jupyter"
    cluster.write_setup(data_dir=str(data_dir))
    venv_bin = cluster.tmp / "venv-bin"
    venv_bin.mkdir()
    (venv_bin / "jupyter-lab").write_text(
        f"#!{sys.executable}\nimport json, os\n"
        "with open(os.environ['FAKE_ENV_OUT'], 'w') as f:\n    json.dump(dict(os.environ), f)\n"
    )
    (venv_bin / "jupyter-lab").chmod(0o755)
    (cluster.tmp / "node-tmp").mkdir()
    out = cluster.tmp / "jupyter-env.json"
    env = cluster.env(SLURM_JOB_ID="80", FAKE_ENV_OUT=str(out), JUPYTER_PATH="/site/jupyter")
    proc = subprocess.run(
        [str(cluster.base / "bin/nodebook-remote"), "job"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    seen = json.loads(out.read_text())
    assert seen["JUPYTER_PATH"] == f"{data_dir}:/site/jupyter"
    assert "JUPYTER_DATA_DIR" not in seen
    assert "jupyter exited before it answered" in proc.stderr  # the stand-in only looked


def test_jupyter_ending_by_itself_ends_the_job_at_once(cluster: Cluster) -> None:
    """Shut down from its menu: the job ends then, not at its next poll (30 s here)."""
    cluster.write_setup(poll_interval=30)
    proc = start_job(cluster, "73")
    conn = cluster.base / "jobs/73/connection.json"
    try:
        wait_for(conn)
        os.kill(json.loads(conn.read_text())["pid"], signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    finally:
        proc.kill()
        out = proc.communicate()[0]
    assert "jupyter exited with status 0" in out
    assert not conn.exists()
