"""playbooks/setup.yml and its roles against the sandbox cluster (issue 3).

bob is the throwaway user here: tests that need a fresh state remove bob's ~/.nodebook first,
and the `nodebook_setup` fixture sets him up again when a later test needs him. alice is only
ever set up (idempotently), never wiped, so the driver's tests can share her.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

import pytest
import testinfra

from driver.paths import HELPER_PARTS
from tests.fixtures.setup import SetupResult
from tests.harness import leftovers
from tests.harness.sandbox import INVENTORY, REPO, Sandbox, job_tmp
from tests.harness.setup import FIND_LINKS_ENV, run_setup, user_password
from tests.harness.wait import wait_for

pytestmark = pytest.mark.sandbox

USER = "bob"
HOME = Path(f"/home/{USER}")
BASE = HOME / ".nodebook"
VENV_PY = BASE / "venv" / "bin" / "python"
# JupyterLab's setting defaults that setup writes (nodebook_jupyter_config), under the base.
LAB_DEFAULTS = "jupyter/labconfig/default_setting_overrides.d/nodebook.json"

CHECK_PASSWORD = (
    "import json, sys\n"
    "from jupyter_server.auth import passwd_check\n"
    "h = json.load(open(sys.argv[1]))['PasswordIdentityProvider']['hashed_password']\n"
    "print(passwd_check(h, sys.stdin.read()))\n"
)


def wipe(sandbox: Sandbox, user: str = USER) -> None:
    sandbox.host("login", ["rm", "-rf", f"/home/{user}/.nodebook"])
    assert not Path(f"/home/{user}/.nodebook").exists()


def mtimes(base: Path) -> dict[Path, int]:
    """mtime of every file setup writes under base (not the venv, not the sessions' jobs/)."""
    return {
        p: p.stat().st_mtime_ns
        for p in base.rglob("*")
        if not {"venv", "jobs"} & set(p.relative_to(base).parts)
    }


def verifies(sandbox: Sandbox, user: str, password: str) -> bool:
    config = f"/home/{user}/.nodebook/jupyter/jupyter_server_config.json"
    py = f"/home/{user}/.nodebook/venv/bin/python"
    out = sandbox.host("login", [py, "-c", CHECK_PASSWORD, config], user=user, input=password)
    return out.stdout.strip() == "True"


def stored_hash(user: str) -> str:
    path = Path(f"/home/{user}/.nodebook/jupyter/jupyter_server_config.json")
    identity = json.loads(path.read_text()).get("PasswordIdentityProvider", {})
    return identity.get("hashed_password", "")


# --- bad inputs: a clear failure and nothing written ----------------------------------------

BAD_INPUTS = {
    "missing-module": (
        {"nodebook_environment_module": "conda-pyton/3.11"},
        ["module conda-pyton/3.11 does not exist", "conda-python/3.11"],
    ),
    "python-too-old": (
        {"nodebook_environment_python_min_version": "3.99"},
        [
            "older than 3.99",
            "nodebook_environment_python_min_version",
            "nodebook_environment_module",
        ],
    ),
    "non-numeric-cpus": ({"nodebook_job_cpus": "many"}, ["nodebook_job_cpus"]),
    "bad-memory": ({"nodebook_job_mem": "lots"}, ["nodebook_job_mem='lots': a size like 8G"]),
    "unknown-partition": ({"nodebook_job_partition": "nosuch"}, ["Slurm rejects"]),
    "unreachable-index": (
        {
            "nodebook_jupyter_pip_index_url": "http://login:9/simple/",
            "nodebook_jupyter_pip_find_links": [],
        },
        ["could not install", "Nothing was left behind"],
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_fails_clearly_and_writes_nothing(sandbox: Sandbox, case: str) -> None:
    extra, messages = BAD_INPUTS[case]
    wipe(sandbox)
    run = run_setup(sandbox, USER, extra_vars=extra)
    assert run.rc != 0
    assert run.failed() == 1
    for message in messages:
        assert message in run.output, f"{message!r} missing from:\n{run.output[-3000:]}"
    assert not BASE.exists(), f"{case} left {BASE} behind"


# --- fresh install, idempotence, check mode -------------------------------------------------


def test_check_mode_on_a_fresh_user_writes_nothing(sandbox: Sandbox) -> None:
    wipe(sandbox)
    run = run_setup(sandbox, USER, check=True)
    assert run.rc == 0, run.output[-3000:]
    assert run.changed() > 0  # it reports what it would do ...
    assert not BASE.exists()  # ... and does none of it


def test_install_then_second_run_and_check_mode_change_nothing(sandbox: Sandbox) -> None:
    wipe(sandbox)
    first = run_setup(sandbox, USER)
    assert first.rc == 0, first.output[-3000:]
    assert first.changed() >= 5
    second = run_setup(sandbox, USER)
    assert second.rc == 0, second.output[-3000:]
    assert second.changed() == 0
    before = mtimes(BASE)
    check = run_setup(sandbox, USER, check=True)
    assert check.rc == 0 and check.changed() == 0, check.output[-3000:]
    assert mtimes(BASE) == before


def test_a_rerun_repairs_the_helper_it_finds_changed(sandbox: Sandbox, nodebook_setup) -> None:
    """A re-run reads the installed helper once and installs only when something differs: a
    part with another mode, or other content, is put back, then nothing changes."""
    nodebook_setup(USER)
    part = BASE / "lib" / "nodebook-remote" / "node.sh"
    entry = BASE / "bin" / "nodebook-remote"
    sandbox.host("login", ["chmod", "0644", str(part)], user=USER)
    sandbox.host("login", ["sh", "-c", f"echo '# edited' >> {entry}"], user=USER)
    repaired = run_setup(sandbox, USER)
    assert repaired.rc == 0 and repaired.changed() == 2, repaired.output[-3000:]
    assert part.stat().st_mode & 0o777 == 0o600
    assert (
        entry.read_bytes()
        == (REPO / "roles/nodebook_remote/files/bin/nodebook-remote").read_bytes()
    )
    again = run_setup(sandbox, USER)
    assert again.rc == 0 and again.changed() == 0, again.output[-3000:]
    # (the install's tasks were skipped, not run to find nothing to do)
    section = again.output.split("Install the helper's parts (0600)]", 1)[1].split("TASK [", 1)[0]
    assert "skipping" in section and "ok:" not in section, section


# --- what setup leaves behind ---------------------------------------------------------------


@pytest.fixture
def bob(nodebook_setup) -> SetupResult:
    return nodebook_setup(USER)


def test_files_modes_and_owners(bob: SetupResult) -> None:
    host = testinfra.get_host("local://")
    expected = {
        "": (0o700, "directory"),
        "jupyter": (0o700, "directory"),
        "jupyter/jupyter_server_config.json": (0o600, "file"),
        "jupyter/jupyter_server_config.py": (0o600, "file"),
        "jupyter/labconfig": (0o700, "directory"),
        "jupyter/labconfig/default_setting_overrides.d": (0o700, "directory"),
        LAB_DEFAULTS: (0o600, "file"),
        "job.sbatch": (0o700, "file"),
        "bin": (0o700, "directory"),
        "bin/nodebook-remote": (0o700, "file"),
        "bin/nodebook-jupyter": (0o700, "file"),
        "lib": (0o700, "directory"),
        "lib/nodebook-remote": (0o700, "directory"),
        **{f"lib/nodebook-remote/{p.name}": (0o600, "file") for p in HELPER_PARTS.glob("*.sh")},
        "setup.json": (0o600, "file"),
        "jobs": (0o700, "directory"),
        "venv": (0o755, "directory"),
    }
    for rel, (mode, kind) in expected.items():
        f = host.file(str(bob.base / rel))
        assert f.exists, rel
        assert getattr(f, f"is_{kind}"), rel
        assert f.mode == mode, f"{rel}: {oct(f.mode)}"
        assert f.user == USER and f.group == USER, rel
    others = host.run(f"find {bob.base} -path {bob.base}/venv -prune -o -perm /o+rwx -print")
    assert others.stdout.strip() == ""


def test_installed_versions_match_the_pins(bob: SetupResult) -> None:
    import yaml

    d = yaml.safe_load((REPO / "roles/nodebook_jupyter/defaults/main.yml").read_text())
    host = testinfra.get_host("local://")
    out = host.check_output(
        f"{VENV_PY} -c 'from importlib.metadata import version as v; "
        f'print(v("jupyterlab"), v("jupyter-server"))\''
    )
    pins = [d["nodebook_jupyter_jupyterlab_version"], d["nodebook_jupyter_server_version"]]
    assert out.split() == pins
    assert bob.setup["packages"] == {
        "jupyterlab": d["nodebook_jupyter_jupyterlab_version"],
        "jupyter-server": d["nodebook_jupyter_server_version"],
        "jupyter-server-proxy": d["nodebook_jupyter_server_proxy_version"],
        "jsonschema": d["nodebook_jupyter_jsonschema_version"],
    }
    # with the pin, jsonschema's format checkers no longer import rfc3987-syntax, whose Lark
    # parsers slowed Jupyter's start by over a second
    probe = "import sys, jsonschema._format; print('rfc3987_syntax' in sys.modules)"
    assert host.check_output(f'{VENV_PY} -c "{probe}"') == "False"
    assert bob.setup["module_python"] == "/opt/nodebook-sandbox/conda-python/3.11/bin/python3"
    assert Path(bob.setup["python"]) == VENV_PY
    assert host.file(str(VENV_PY)).exists


def test_server_config_as_jupyter_loads_it(sandbox: Sandbox, bob: SetupResult) -> None:
    text = (bob.base / "jupyter/jupyter_server_config.py").read_text()
    for deprecated in ("NotebookApp", ".port =", "c.ServerApp.password"):
        assert deprecated not in text
    show = sandbox.host(
        "login",
        [
            "env",
            f"JUPYTER_CONFIG_DIR={bob.base}/jupyter",
            f"{bob.base}/venv/bin/jupyter-server",
            "--show-config",
        ],
        user=USER,
    ).stdout
    shown: dict[str, str] = {}
    section = ""
    for line in show.splitlines():
        if line and not line.startswith(" "):
            section = line.strip()
        elif line.strip().startswith(".") and " = " in line:
            key, value = line.strip()[1:].split(" = ", 1)
            shown[f"{section}.{key}"] = value
    assert shown["ServerApp.ip"] == "'127.0.0.1'"
    assert shown["ServerApp.port_retries"] == "0"
    assert shown["ServerApp.open_browser"] == "False"
    assert shown["ServerApp.root_dir"] == f"'{bob.home}'"
    assert shown["ServerApp.shutdown_no_activity_timeout"] == "3600"
    assert shown["MappingKernelManager.cull_idle_timeout"] == "3600"
    assert shown["PasswordIdentityProvider.hashed_password"].startswith("'argon2:$argon2id$")
    assert "ServerApp.port" not in shown and "ServerApp.sock" not in shown
    # nothing on the node calls out at start (news, update check, PyPI's extension manager)
    assert shown["LabApp.news_url"] == "None"
    assert shown["LabApp.check_for_updates_class"] == "'jupyterlab.NeverCheckForUpdate'"
    assert shown["LabApp.extension_manager"] == "'readonly'"


def test_lab_setting_defaults_ask_no_news(sandbox: Sandbox, bob: SetupResult) -> None:
    """JupyterLab's page asks no news question and checks no updates (setting defaults in a file
    of setup's own); switching them back on rewrites, then removes, that file and never touches a
    user's default_setting_overrides.json beside it."""
    path = bob.base / LAB_DEFAULTS
    notification = "@jupyterlab/apputils-extension:notification"
    assert json.loads(path.read_text()) == {
        notification: {"fetchNews": "false", "checkForUpdates": False}
    }
    users = path.parent.parent / "default_setting_overrides.json"
    theirs = '{"@jupyterlab/apputils-extension:themes": {"theme": "JupyterLab Dark"}}\n'
    sandbox.host("login", ["sh", "-c", f"cat > {users}"], user=USER, input=theirs)
    news = {"nodebook_jupyter_config_lab_news": True}
    try:
        run = run_setup(sandbox, USER, extra_vars=news)
        assert run.rc == 0, run.output[-3000:]
        assert json.loads(path.read_text()) == {notification: {"checkForUpdates": False}}
        both = {**news, "nodebook_jupyter_config_lab_update_check": True}
        run = run_setup(sandbox, USER, extra_vars=both)
        assert run.rc == 0, run.output[-3000:]
        assert not path.exists()
        assert users.read_text() == theirs
    finally:
        sandbox.host("login", ["rm", "-f", str(users)], user=USER)
        assert run_setup(sandbox, USER).rc == 0
    assert json.loads(path.read_text())[notification]["fetchNews"] == "false"


def test_hash_is_argon2_and_verifies(sandbox: Sandbox, bob: SetupResult) -> None:
    assert stored_hash(USER).startswith("argon2:$argon2id$")
    assert verifies(sandbox, USER, bob.password)
    assert not verifies(sandbox, USER, bob.password + "x")


def test_password_change_keep_and_token_mode(sandbox: Sandbox, bob: SetupResult) -> None:
    old = stored_hash(USER)
    new_password = "another-Passw0rd-for-bob"
    try:
        changed = run_setup(sandbox, USER, password=new_password)
        assert changed.rc == 0 and changed.changed() == 1, changed.output[-3000:]
        assert stored_hash(USER) != old
        assert verifies(sandbox, USER, new_password) and not verifies(sandbox, USER, bob.password)
        kept = run_setup(sandbox, USER, password="")  # empty: keep the stored hash
        assert kept.rc == 0 and kept.changed() == 0
        token = run_setup(sandbox, USER, extra_vars={"nodebook_password_mode": "token"})
        assert token.rc == 0 and token.changed() >= 1
        assert stored_hash(USER) == ""
        assert json.loads((BASE / "setup.json").read_text())["auth"] == "token"
    finally:
        restore = run_setup(sandbox, USER)
        assert restore.rc == 0
    assert verifies(sandbox, USER, user_password(USER))


def test_alice_and_bob_are_independent(sandbox: Sandbox, nodebook_setup) -> None:
    alice = nodebook_setup("alice")
    bob = nodebook_setup(USER)
    assert stored_hash("alice") != stored_hash(USER)
    assert verifies(sandbox, "alice", alice.password)
    assert not verifies(sandbox, "alice", bob.password)
    for reader, owner in (("bob", alice), ("alice", bob)):
        for rel in ("setup.json", "jupyter/jupyter_server_config.json", "job.sbatch"):
            r = sandbox.host("login", ["cat", str(owner.base / rel)], user=reader, check=False)
            assert r.returncode != 0, f"{reader} can read {owner.base / rel}"
    # Setting bob up again leaves alice's files alone.
    before = mtimes(alice.base)
    assert run_setup(sandbox, USER).rc == 0
    assert mtimes(alice.base) == before


def test_setup_works_without_a_system_python(sandbox: Sandbox, bob: SetupResult) -> None:
    sandbox.cluster("hide-python", "on")
    try:
        hidden = sandbox.host("login", ["sh", "-c", "ls /usr/bin/python3*"], check=False)
        assert hidden.returncode != 0 or hidden.stdout.strip() == "", hidden.stdout
        run = run_setup(sandbox, USER)
        assert run.rc == 0, run.output[-3000:]
        assert run.changed() == 0
    finally:
        sandbox.cluster("hide-python", "off")


# --- secrets ----------------------------------------------------------------------------------


def test_secret_audit(sandbox: Sandbox, bob: SetupResult) -> None:
    """A fresh password, run through ansible-runner, shows up nowhere but as its hash."""
    marker = f"nbAudit-{uuid.uuid4().hex}"
    seen: set[str] = set()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False)
            seen.update(ps.stdout.splitlines())
            time.sleep(0.05)

    pdd = Path(tempfile.mkdtemp(prefix="nodebook-audit-"))
    try:
        (pdd / "env").mkdir(mode=0o700)
        (pdd / "project").symlink_to(REPO)
        extravars = {"ansible_user": USER, "nodebook_password_secret": marker}
        if os.environ.get(FIND_LINKS_ENV):
            extravars["nodebook_jupyter_pip_find_links"] = os.environ[FIND_LINKS_ENV].split(",")
        (pdd / "env" / "extravars").write_text(json.dumps(extravars))
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            runner = str(REPO / ".venv/bin/ansible-runner")
            argv = [runner, "run", str(pdd), "-p", "playbooks/setup.yml", "--limit", "sandbox",
                    "--inventory", str(INVENTORY)]  # fmt: skip
            path = f"{REPO}/.venv/bin:{os.environ['PATH']}"
            proc = sandbox.laptop(argv, check=False, timeout=600, env={"PATH": path})
        finally:
            stop.set()
            sampler.join()
        assert proc.returncode == 0, proc.stdout[-3000:]
        assert "sandbox" in proc.stdout and "failed=0" in proc.stdout, proc.stdout[-3000:]
        assert verifies(sandbox, USER, marker)  # the run did use the password
        assert len(seen) > 10
        assert [line for line in seen if marker in line] == []
        (pdd / "env" / "extravars").unlink()  # the input file, deleted as the driver does
        grep = ["grep", "-rlF", marker, str(pdd) + "/"]
        leaks = subprocess.run(grep, capture_output=True, text=True, check=False)
        assert leaks.stdout == "", f"password in runner files: {leaks.stdout}"
        assert "no_log" in (REPO / "roles/nodebook_password/tasks/install.yml").read_text()
        for where in (str(HOME), "/root/.ansible", "/tmp"):
            found = subprocess.run(["grep", "-rlsF", marker, where], capture_output=True, text=True)
            assert found.stdout == "", f"password found in {found.stdout}"
        on_login = sandbox.host("login", ["grep", "-rlsF", marker, "/tmp", "/var/tmp"], check=False)
        assert on_login.stdout == ""
    finally:
        shutil.rmtree(pdd, ignore_errors=True)
        assert run_setup(sandbox, USER).rc == 0  # back to the fixture's password


# --- the job script ---------------------------------------------------------------------------


def test_sbatch_test_only_accepts_the_script(sandbox: Sandbox, bob: SetupResult) -> None:
    argv = ["sbatch", "--test-only", str(bob.job_script)]
    r = sandbox.host("login", argv, user=USER, check=False)
    assert r.returncode == 0, r.stderr
    assert "to start at" in r.stderr
    head = bob.job_script.read_text().splitlines()
    assert head[0] == "#!/bin/bash -l"
    assert "#SBATCH --nodes=1" in head and "#SBATCH --partition=debug" in head
    assert f"#SBATCH --output={bob.jobs_dir}/%j.log" in head


# Asks Jupyter on the endpoint named in connection.json, reading the token from the file (never
# from argv); prints the status with the token and without it.
PROBE = """
import http.client, json, socket, sys
info = json.load(open(sys.argv[1]))
class Unix(http.client.HTTPConnection):
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(info["socket"])
def status(headers):
    if info["endpoint"] == "socket":
        c = Unix("localhost", timeout=5)
    else:
        c = http.client.HTTPConnection(info.get("host") or "127.0.0.1", info["port"], timeout=5)
    c.request("GET", "/api/status", headers=headers)
    return c.getresponse().status
print(status({"Authorization": "token " + info["token"]}), status({}))
"""


def submit(sandbox: Sandbox, bob: SetupResult, *env: str) -> str:
    export = ["--export=ALL," + ",".join(env)] if env else []
    argv = ["sbatch", "--parsable", *export, str(bob.job_script)]
    return sandbox.host("login", argv, user=USER).stdout.strip().split(";")[0]


def check_running_job(sandbox: Sandbox, bob: SetupResult, job: str, endpoint: str) -> dict:
    conn = bob.jobs_dir / job / "connection.json"
    wait_for(conn.exists, 90, f"{conn}")
    assert conn.stat().st_mode & 0o777 == 0o600
    assert (bob.jobs_dir / job).stat().st_mode & 0o777 == 0o700
    info = json.loads(conn.read_text())
    assert info["job_id"] == job and info["endpoint"] == endpoint and len(info["token"]) >= 32
    node = info["node"]
    assert node == sandbox.scontrol_job(job)["NodeList"]
    paths = leftovers.job_paths(sandbox, USER, job)  # where setup's helper puts the job's files
    run_dir = paths["runtime_dir"]
    assert run_dir == f"{bob.setup['runtime_base']}/nodebook-{USER}-{job}"
    if endpoint == "socket":
        assert info["socket"] == paths["socket"] == f"{run_dir}/jupyter.sock"
        assert info["port"] is None
        # (in the job's own /tmp: job_container/tmpfs; seen from inside the job)
        stat = ["stat", "-c", "%a %U", run_dir, info["socket"]]
        assert leftovers.in_job(sandbox, job, stat).stdout.split() == ["700", USER, "600", USER]
    else:
        assert info["socket"] is None and isinstance(info["port"], int)
    probe = leftovers.in_job(sandbox, job, [str(VENV_PY), "-c", PROBE, str(conn)], USER)
    assert probe.stdout.split() == ["200", "403"]
    # Jupyter's argv carries no token; its log shows none.
    ps = sandbox.host(node, ["ps", "-ww", "-u", USER, "-o", "args="]).stdout
    assert info["token"] not in ps and "jupyter-lab" in ps
    return info


def job_gone(sandbox: Sandbox, bob: SetupResult, job: str, node: str) -> None:
    wait_for(lambda: job not in sandbox.squeue(), 60, f"job {job} to leave the queue")
    # the job's private /tmp (job_container/tmpfs), with its runtime dir, is removed
    wait_for(lambda: not job_tmp(node, job).exists(), 30, f"job {job}'s /tmp removed")
    assert not (bob.jobs_dir / job / "connection.json").exists()
    log = (bob.jobs_dir / f"{job}.log").read_text()
    assert (bob.jobs_dir / f"{job}.log").stat().st_mode & 0o777 == 0o600
    assert bob.password not in log


def test_job_on_a_socket_answers_and_cleans_up_on_scancel(
    sandbox: Sandbox, bob: SetupResult
) -> None:
    job = submit(sandbox, bob)
    try:
        info = check_running_job(sandbox, bob, job, "socket")
        log = (bob.jobs_dir / f"{job}.log").read_text()
        assert info["token"] not in log and "module: not found" not in log
    finally:
        sandbox.host("login", ["scancel", job])
    job_gone(sandbox, bob, job, info["node"])
    assert "job " + job + " ended" in (bob.jobs_dir / f"{job}.log").read_text()


def test_job_on_tcp_ends_itself_without_heartbeat(sandbox: Sandbox, bob: SetupResult) -> None:
    job = submit(sandbox, bob, "NODEBOOK_ENDPOINT=tcp", "NODEBOOK_HEARTBEAT_TIMEOUT=6")
    try:
        info = check_running_job(sandbox, bob, job, "tcp")
        # Nobody touches the heartbeat: the dead-man's switch ends the job by itself.
        job_gone(sandbox, bob, job, info["node"])
        assert "no heartbeat" in (bob.jobs_dir / f"{job}.log").read_text()
    finally:
        sandbox.host("login", ["scancel", job], check=False)


NODE_ADDRESS = {"cn01": "10.251.0.11", "cn02": "10.251.0.12"}


def test_job_on_tcp_node_binds_the_cluster_address_and_needs_the_token(
    sandbox: Sandbox, bob: SetupResult
) -> None:
    job = submit(sandbox, bob, "NODEBOOK_ENDPOINT=tcp-node")
    try:
        info = check_running_job(sandbox, bob, job, "tcp-node")
        assert info["host"] == NODE_ADDRESS[info["node"]]
        listening = sandbox.host(info["node"], ["ss", "-Hltn", f"sport = :{info['port']}"]).stdout
        assert [ln.split()[3] for ln in listening.splitlines()] == [
            f"{info['host']}:{info['port']}"
        ]
        # From the login node (the via-login path), without the token: refused.
        url = f"http://{info['host']}:{info['port']}/api/status"
        curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", url]
        assert sandbox.host("login", curl, user="alice").stdout == "403"
    finally:
        sandbox.host("login", ["scancel", job], check=False)
    job_gone(sandbox, bob, job, info["node"])


def test_standalone_mode_without_slurm(sandbox: Sandbox, bob: SetupResult) -> None:
    job = f"s{int(time.time())}{uuid.uuid4().int % 100000}"  # the helper's s<digits> ids
    log = bob.jobs_dir / f"{job}.log"
    script = (
        f"NODEBOOK_JOB_ID={job} NODEBOOK_HEARTBEAT_TIMEOUT=5 setsid {bob.job_script} "
        f"> {log} 2>&1 < /dev/null &"
    )
    sandbox.host("login", ["bash", "-c", script], user=USER)
    conn = bob.jobs_dir / job / "connection.json"
    wait_for(conn.exists, 60, str(conn))
    info = json.loads(conn.read_text())
    assert info["job_id"] == job and info["node"] == "login"
    probe = sandbox.host("login", [str(VENV_PY), "-c", PROBE, str(conn)], user=USER).stdout.split()
    assert probe == ["200", "403"]
    wait_for(lambda: not conn.exists(), 60, "the standalone server to end itself")
    run_dir = leftovers.job_paths(sandbox, USER, job)["runtime_dir"]
    wait_for(lambda: not leftovers.existing(sandbox, "login", [run_dir]), 30, "runtime dir removed")

    # the trap removes the files first, then stops Jupyter (within its grace)
    def jupyter_gone() -> bool:
        # (ps exits 1 when bob has no process left at all)
        ps = sandbox.host("login", ["ps", "-u", USER, "-o", "pid="], check=False)
        pids = ps.stdout.split()
        return str(info["pid"]) not in pids

    wait_for(jupyter_gone, 30, f"jupyter (pid {info['pid']}) to exit")
    log.unlink()
