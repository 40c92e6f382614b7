"""`nodebook init` against the sandbox: one ssh master, one probe, one commented file.

Each test writes into its own XDG_CONFIG_HOME (never the user's real inventory) and restores
what it changed on the sandbox (hide-python) in a `finally`, even when it fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from driver.errors import ExitCode
from tests.fixtures.pty import run_with_prompts

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]
PY = str(REPO / ".venv" / "bin" / "python")
HOST_KEY_PROMPT = "Are you sure you want to continue connecting (yes/no/[fingerprint])? "


@pytest.fixture
def home() -> Iterator[Path]:
    """A fresh user's config dir (and a place for its ssh files), seen by the laptop."""
    path = Path(tempfile.mkdtemp(prefix="nbinit-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def init_argv(home: Path, *args: str) -> list[str]:
    env = [f"XDG_CONFIG_HOME={home / 'config'}", f"TMPDIR={home}", "HOME=/root"]
    return ["env", *env, PY, "-m", "driver", "init", *args]


def run_init(sandbox, home: Path, *args: str) -> tuple[int, list[dict], str]:
    proc = sandbox.laptop(init_argv(home, *args, "--json"), check=False, timeout=120)
    events = [json.loads(x) for x in proc.stdout.splitlines() if x.startswith("{")]
    return proc.returncode, events, proc.stdout + proc.stderr


def as_alice(sandbox) -> tuple[str, ...]:
    """The sandbox's login node through its ssh config, as alice, without questions."""
    return ("--host", "login", "--ssh-config", str(sandbox.ssh_config), "--user", "alice", "--yes")


def written(home: Path, name: str) -> dict:
    data = yaml.safe_load((home / "config" / "nodebook" / "inventory" / f"{name}.yml").read_text())
    for group in data["all"]["children"].values():
        if name in group.get("hosts", {}):
            return group["hosts"][name]
    raise AssertionError(data)


def test_a_fresh_user_is_shown_the_host_key_asked_once_and_gets_a_working_inventory(sandbox, home):
    # A user who never logged in there: empty known_hosts, ssh asks about the key as it does.
    known = home / "known_hosts"
    known.touch()
    config = home / "ssh_config"
    config.write_text(
        "Host *\n"
        f"  UserKnownHostsFile {known}\n"
        "  GlobalKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking ask\n"
        f"Include {sandbox.ssh_config}\n"
    )
    answers = {
        "User on login [alice]: ": "bob",
        HOST_KEY_PROMPT: "yes",
        "Python module (none: the login shell's python3) [conda-python/3.11]: ": "",
        "Partition [debug]: ": "long",
        "Time limit (max 1-00:00:00) [01:00:00]: ": "02:00:00",
    }
    argv = init_argv(
        home,
        "mycluster",
        "--host",
        "login",
        "--ssh-config",
        str(config),
        "--index-url",
        "http://login:3141/simple/",
    )
    output, asked, code = run_with_prompts(sandbox.laptop_argv(argv), answers, timeout=120)
    assert code == 0, output
    assert asked == list(answers), output  # each question once, the host key among them
    assert "key fingerprint is SHA256:" in output  # shown by ssh before it asked
    # accepted as ssh does, into the user's own known_hosts: login's real key
    (entry,) = known.read_text().splitlines()
    key = entry.split()[-1]
    assert key in (sandbox.ssh_config.parent / "known_hosts").read_text()
    hv = written(home, "mycluster")
    assert hv == {
        "ansible_host": "login",
        "ansible_user": "bob",
        "ansible_ssh_common_args": f"-F {config}",
        "nodebook_environment_module": "conda-python/3.11",
        "nodebook_job_partition": "long",
        "nodebook_job_time": "02:00:00",
        "nodebook_jupyter_pip_index_url": "http://login:3141/simple/",
        "nodebook_jupyter_pip_trusted_hosts": ["login"],
    }
    text = (home / "config" / "nodebook" / "inventory" / "mycluster.yml").read_text()
    assert "# The environment module that provides Python 3.11.2" in text
    assert "The login node reaches http://login:3141/simple/" in text
    first = text

    # The driver reads the file as it is: doctor over it reaches the cluster with the module.
    inv = home / "config" / "nodebook" / "inventory" / "mycluster.yml"
    proc = sandbox.laptop(
        [
            "env",
            f"TMPDIR={home}",
            f"NODEBOOK_STATE_DIR={home / 'state'}",
            PY,
            "-m",
            "driver",
            "doctor",
            "-i",
            str(inv),
            "--json",
        ],
        check=False,
        timeout=120,
    )
    checks = {
        e["data"]["check"]: e["data"].get("ok")
        for e in map(json.loads, proc.stdout.splitlines())
        if e.get("data", {}).get("check")
    }
    assert checks.get("ssh") is True and checks.get("module") is True, proc.stdout + proc.stderr

    # A second cluster, without questions: its own file; the first is untouched.
    code, _, out = run_init(
        sandbox,
        home,
        "second",
        "--host",
        "login",
        "--ssh-config",
        str(config),
        "--user",
        "alice",
        "--yes",
    )
    assert code == 0, out
    assert written(home, "second")["ansible_user"] == "alice"
    assert inv.read_text() == first
    assert sorted(p.name for p in inv.parent.iterdir()) == ["mycluster.yml", "second.yml"]


def test_with_the_login_nodes_python_hidden_the_module_is_proposed(sandbox, home):
    sandbox.cluster("hide-python", "on")
    try:
        code, events, out = run_init(sandbox, home, "hidden", *as_alice(sandbox))
    finally:
        sandbox.cluster("hide-python", "off")
    assert code == 0, out
    found = next(e["data"]["found"] for e in events if "found" in e.get("data", {}))
    assert [p["module"] for p in found["pythons"]] == ["conda-python/3.11"]  # no system python3
    assert found["index"]["reachable"] is False  # PyPI is out of the sandbox's reach
    hv = written(home, "hidden")
    assert hv["nodebook_environment_module"] == "conda-python/3.11"
    assert (hv["nodebook_job_partition"], hv["nodebook_job_time"]) == ("debug", "00:30:00")


def test_a_module_that_does_not_exist_gets_close_matches_and_writes_nothing(sandbox, home):
    code, events, out = run_init(
        sandbox, home, "badmod", *as_alice(sandbox), "--module", "conda-python/3.9"
    )
    assert code == ExitCode.USAGE, out
    (error,) = [e for e in events if e["event"] == "error"]
    assert "module conda-python/3.9 does not exist on login" in error["message"]
    assert "close matches: conda-python/3.11" in error["message"]
    assert "--module" in error["message"]
    assert "\n" not in error["message"]
    assert not (home / "config" / "nodebook" / "inventory" / "badmod.yml").exists()


def test_a_host_that_does_not_answer_fails_with_cause_and_fix(sandbox, home):
    # 10.251.1.77 is on the laptop's link, but nothing has that address.
    code, events, out = run_init(
        sandbox, home, "ghost", "--host", "10.251.1.77", "--user", "alice", "--yes"
    )
    assert code == ExitCode.SSH, out
    (error,) = [e for e in events if e["event"] == "error"]
    assert "cannot ssh to 10.251.1.77" in error["message"]
    assert "check that the login node is up and reachable" in error["message"]
    assert not (home / "config" / "nodebook" / "inventory").exists()
    # and no ssh of this run is left behind
    ps = subprocess.run(["ps", "-eo", "args="], capture_output=True, text=True).stdout
    assert str(home) not in ps


def test_accounts_alice_gets_chemistry_for_chem_and_bob_is_told_to_pick_another(sandbox, home):
    code, events, out = run_init(sandbox, home, "chem", *as_alice(sandbox), "--partition", "chem")
    assert code == 0, out
    found = next(e["data"]["found"] for e in events if "found" in e.get("data", {}))
    assert (found["accounts"], found["default_account"]) == (["physics", "chemistry"], "physics")
    chem = next(p for p in found["partitions"] if p["name"] == "chem")
    assert chem["allow_accounts"] == ["chemistry"]
    hv = written(home, "chem")
    assert (hv["nodebook_job_partition"], hv["nodebook_job_account"]) == ("chem", "chemistry")
    # bob has one account, physics, which chem does not admit: nothing written, the fix said
    bob = [a if a != "alice" else "bob" for a in as_alice(sandbox)]
    code, events, out = run_init(sandbox, home, "chembob", *bob, "--partition", "chem")
    assert code == ExitCode.USAGE, out
    (error,) = [e for e in events if e["event"] == "error"]
    why = "partition chem admits only the account chemistry, none of yours (physics)"
    assert why in error["message"]
    assert not (home / "config" / "nodebook" / "inventory" / "chembob.yml").exists()
