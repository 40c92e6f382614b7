"""A non-default layout end to end: setup and a whole session where the inventory says, never at
the defaults.

bob is set up with a relative nodebook_environment_base_dir (`work/nb`, under his home) and a
node-local nodebook_job_runtime_base, through a temporary inventory; his default setup
(~/.nodebook, shared with tests/roles) is left alone. The session must answer through the
tunnel, Ctrl-C must leave nothing at the configured paths (the leftover check asks the helper
where they are), and nothing of this run may appear at the default ones (~/.nodebook/jobs/<id>*,
/tmp/nodebook-bob-<id>* on login and the nodes).

The runtime base must exist on every node, be node-local and world-writable with the sticky bit
(as /tmp is). Not under /tmp: a job's /tmp is its own (job_container/tmpfs), where a directory
made in the node's /tmp does not exist. The test makes a directory in each host's own /var/tmp
(a tmpfs per cluster host), as a site provides node-local scratch, and checks those three
properties first.
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

import pytest
import yaml

from driver.errors import ExitCode
from tests.e2e.conftest import http_status, token_of
from tests.harness import leftovers
from tests.harness.sandbox import CLUSTER_HOSTS, INVENTORY, NODES, SSH_CONFIG, Sandbox
from tests.harness.setup import read_setup_json, run_setup
from tests.harness.wait import wait_for

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(900)]

USER = "bob"
HOME = Path(f"/home/{USER}")
BASE = "work/nb"  # relative: under $HOME
RUNTIME_BASE = "/var/tmp/scratch-local"  # (see above: not under /tmp)


def default_paths(job: str) -> list[str]:
    """Where the default layout would put this job's files."""
    jobs = f"{HOME}/.nodebook/jobs"
    run = f"/tmp/nodebook-{USER}-{job}"
    return [f"{jobs}/{job}", f"{jobs}/{job}.log", f"{jobs}/{job}.seen", f"{jobs}/{job}.pid",
            run, f"{run}-hop.sock"]  # fmt: skip


def at_defaults(sandbox: Sandbox, job: str) -> list[str]:
    found = []
    for host in CLUSTER_HOSTS:
        found += [f"{host}:{p}" for p in leftovers.existing(sandbox, host, default_paths(job))]
    return found


@pytest.fixture
def scratch(sandbox: Sandbox):
    """The node-local runtime base on login and the nodes (root-made, mode 1777), removed after."""
    for host in CLUSTER_HOSTS:
        sandbox.host(host, ["install", "-d", "-m", "1777", RUNTIME_BASE])
    yield RUNTIME_BASE
    for host in CLUSTER_HOSTS:
        sandbox.host(host, ["rm", "-rf", RUNTIME_BASE], check=False)


@pytest.fixture
def alt_inventory(tmp_path: Path) -> Path:
    """The sandbox's cluster as bob, with the non-default layout (a host of its own)."""
    inv = tmp_path / "inventory"
    (inv / "group_vars").mkdir(parents=True)
    shutil.copy(INVENTORY.parent / "group_vars" / "all.yml", inv / "group_vars" / "all.yml")
    host = {
        "ansible_host": "login",
        "ansible_user": USER,
        "ansible_ssh_common_args": f"-F {SSH_CONFIG}",
        "nodebook_environment_base_dir": BASE,
        "nodebook_job_runtime_base": RUNTIME_BASE,
    }
    (inv / "hosts.yml").write_text(yaml.safe_dump({"all": {"hosts": {"alt": host}}}))
    return inv / "hosts.yml"


@pytest.fixture
def alt_setup(sandbox: Sandbox, alt_inventory: Path, scratch: str):
    """bob set up with the non-default layout; his work/ dir removed afterwards."""
    had_default = (HOME / ".nodebook").exists()
    try:
        run = run_setup(sandbox, USER, host="alt", inventory=alt_inventory)
        assert run.rc == 0, run.output[-4000:]
        if not had_default:  # (tests/roles may set bob up at the same time: checked at once)
            assert not (HOME / ".nodebook").exists(), "setup with another base made ~/.nodebook"
        yield read_setup_json(sandbox, USER, BASE)
    finally:
        sandbox.host("login", ["rm", "-rf", str(HOME / "work")], check=False)


def test_runtime_base_is_node_local_and_sticky_world_writable(sandbox, scratch):
    marker = f"{scratch}/layout-{uuid.uuid4().hex[:6]}"
    for host in CLUSTER_HOSTS:
        mode = sandbox.host(host, ["stat", "-c", "%a %U", scratch]).stdout.split()
        assert mode == ["1777", "root"], (host, mode)
    sandbox.host(NODES[0], ["touch", marker])
    others = [h for h in CLUSTER_HOSTS if h != NODES[0]]
    assert [h for h in others if leftovers.existing(sandbox, h, [marker])] == []
    assert leftovers.existing(sandbox, NODES[0], [marker]) == [marker]


def test_non_default_layout_session_uses_only_the_configured_paths(
    sandbox, alt_setup, alt_inventory, drive, nothing_left
):
    setup = alt_setup
    base = f"{HOME}/{BASE}"
    assert setup["base_dir"] == base and setup["runtime_base"] == RUNTIME_BASE
    for key in ("helper", "jobs_dir", "job_script", "config_dir", "venv", "python"):
        assert str(setup[key]).startswith(base + "/"), (key, setup[key])
    script = sandbox.host("login", ["cat", setup["job_script"]], user=USER).stdout
    assert f"exec {setup['helper']} job" in script and ".nodebook" not in script

    # the socket endpoint asked for (--allow-second alone would mean loopback TCP)
    args = ["-i", str(alt_inventory), "--cluster", "alt", "--allow-second", "--endpoint", "socket"]
    d = drive(["session", *args])
    ready = d.wait_event("ready", timeout=120)
    job, node, port = ready["job_id"], ready["node"], ready["local_port"]
    assert http_status(sandbox, port, token_of(ready)) == 200
    assert http_status(sandbox, port, None) == 403

    # the helper puts the job's files under the configured base and runtime base ...
    paths = leftovers.job_paths(sandbox, USER, job, BASE)
    assert paths["runtime_dir"] == f"{RUNTIME_BASE}/nodebook-{USER}-{job}"
    assert paths["connection"] == f"{base}/jobs/{job}/connection.json"
    assert paths["hop_socket"].startswith(RUNTIME_BASE + "/")
    # ... and they are there while the session runs: Jupyter's socket and token on the node
    # (in the job's private /tmp), the connection file, heartbeat and log on the shared home
    on_node = leftovers.existing(sandbox, node, [paths["socket"], paths["token"]], job)
    assert on_node == [paths["socket"], paths["token"]]
    # (the heartbeat is the driver's first touch, which follows `ready`: wait for it)
    shared = [paths["connection"], paths["heartbeat"], paths["log"]]
    wait_for(lambda: leftovers.existing(sandbox, "login", shared) == shared, 30, f"{shared}")
    assert at_defaults(sandbox, job) == []

    d.ctrl_c()
    assert d.wait() == ExitCode.INTERRUPTED
    nothing_left(job, port, user=USER, base=BASE)
    assert at_defaults(sandbox, job) == []
    # the log stays, where the layout says
    assert leftovers.existing(sandbox, "login", [paths["log"]]) == [paths["log"]]
