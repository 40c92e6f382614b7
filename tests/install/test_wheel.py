"""The installed wheel, from a directory outside the checkout, with the checkout hidden (an empty
directory over it in a mount namespace of the command's own) and nothing but a fresh venv:
`nodebook init` (the inventory in the user's config dir), `nodebook setup`, `nodebook doctor` and
`nodebook session` against the sandbox as alice."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.setup import user_password
from tests.install.conftest import (
    COLLECTION,
    REPO,
    hidden_argv,
    logged_paths,
    paths_callback,
    run,
    secret_vars,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]
USER = "alice"

# What the probe prints from inside the hidden namespace (with the venv's Python).
PROBE = """
import json, os, sys
import driver, driver.paths as p
print(json.dumps({
    "checkout": os.listdir(sys.argv[1]),
    "driver": driver.__file__,
    "data": str(p.DATA), "playbooks": str(p.PLAYBOOKS), "cfg": str(p.ANSIBLE_CFG),
    "helper": str(p.HELPER), "rules": p.rules().__file__,
    "inventory_dir": str(p.user_inventory_dir()), "cwd": os.getcwd(),
    "from_checkout": p.FROM_CHECKOUT, "fix": p.reinstall_fix("ansible-core"),
}))
"""


class Installed:
    """The venv and a user's home in the workspace; runs commands as that user would."""

    def __init__(self, sandbox: Any, workspace: Path, venv: Path) -> None:
        self.sandbox = sandbox
        self.venv = venv
        self.home = workspace / "home"
        self.empty = workspace / "empty"
        self.cwd = workspace / "work"
        self.stderr = workspace / "session.stderr"
        bin_dir = workspace / "bin"  # on PATH, as pipx links ~/.local/bin/nodebook
        for path in (self.home, self.empty, self.cwd, bin_dir, workspace / "tmp"):
            path.mkdir(exist_ok=True)
        (bin_dir / "nodebook").unlink(missing_ok=True)
        (bin_dir / "nodebook").symlink_to(venv / "bin" / "nodebook")
        self.env = {
            "HOME": str(self.home),
            "PATH": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin",
            "TMPDIR": str(workspace / "tmp"),
            "LANG": "C.UTF-8",
            **paths_callback(workspace),
        }

    def argv(self, *args: str) -> list[str]:
        return hidden_argv(self.sandbox.laptop_argv, self.empty, args, self.env)

    def run(self, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
        return run(self.argv(*args), cwd=self.cwd, check=check, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def user(sandbox: Any, workspace: Path, installed: Path) -> Installed:
    return Installed(sandbox, workspace, installed)


def events(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_the_venv_is_not_made_from_the_checkout(installed: Path) -> None:
    cfg = dict(line.split(" = ", 1) for line in (installed / "pyvenv.cfg").read_text().splitlines())
    for key in ("home", "executable"):  # the Python it runs on ("command" only records how)
        assert not Path(cfg[key]).is_relative_to(REPO), cfg
    assert not (installed / "bin" / "python").resolve().is_relative_to(REPO)


def test_installed_driver_and_its_data_come_from_the_venv(user: Installed) -> None:
    proc = user.run(str(user.venv / "bin" / "python"), "-c", PROBE, str(REPO), check=True)
    found = json.loads(proc.stdout)
    assert found.pop("checkout") == []  # the checkout is hidden
    site = next((user.venv / "lib").glob("python3*/site-packages"))
    collection = site.joinpath(*COLLECTION)
    assert found.pop("driver") == str(site / "driver" / "__init__.py")
    assert found.pop("data") == str(collection)
    assert found.pop("inventory_dir") == str(user.home / ".config" / "nodebook" / "inventory")
    assert found.pop("cwd") == str(user.cwd)
    # no checkout, no Makefile: a missing dependency is put back with this venv's pip
    assert found.pop("from_checkout") is False
    fix = found.pop("fix")
    assert "make" not in fix and f"{user.venv}/bin/python -m pip install 'ansible-core<" in fix
    for name, path in found.items():
        assert Path(path).is_relative_to(collection), (name, path)


def test_without_an_inventory_the_error_says_nodebook_init(user: Installed) -> None:
    proc = user.run("nodebook", "doctor")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no inventory: run `nodebook init NAME --host LOGIN-HOST`" in proc.stdout + proc.stderr


def read_until(proc: subprocess.Popen[str], kinds: set[str], limit: float) -> list[dict[str, Any]]:
    """The driver's JSON events up to the first of `kinds` (or its exit); `limit` only guards
    against a hang."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            break
        if line.startswith("{"):
            seen.append(json.loads(line))
            if seen[-1].get("event") in kinds:
                break
    return seen


@contextlib.contextmanager
def session(user: Installed, job_ids: set[str]) -> Iterator[subprocess.Popen[str]]:
    """`nodebook session` running in the background; killed at the end if still running."""
    argv = user.argv("nodebook", "session", "--allow-second", "--no-browser", "--json")
    with open(user.stderr, "w") as err:
        proc = subprocess.Popen(
            argv,
            cwd=user.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        if job_ids:
            user.sandbox.host("login", ["scancel", *sorted(job_ids)], check=False)


def test_installed_nodebook_from_init_to_a_notebook(user: Installed, workspace: Path) -> None:
    """Three commands: init, setup, session (the sandbox's ssh config stands for ~/.ssh/config)."""
    init = user.run(
        "nodebook", "init", "sandbox", "--host", "login", "--user", USER,
        "--ssh-config", str(user.sandbox.ssh_config),
        "--index-url", "http://login:3141/simple/", "--yes",
    )  # fmt: skip
    assert init.returncode == 0, init.stdout[-3000:] + init.stderr[-3000:]
    inventory = user.home / ".config" / "nodebook" / "inventory" / "sandbox.yml"
    written = inventory.read_text()
    assert 'nodebook_environment_module: "conda-python/3.11"' in written
    assert 'nodebook_job_partition: "debug"' in written
    site = next((user.venv / "lib").glob("python3*/site-packages"))
    collection = site.joinpath(*COLLECTION)
    logged_paths(workspace)  # start afresh

    # nodebook setup (the same password as every test's, so alice's setup stays as it is)
    secret = secret_vars(workspace, {"nodebook_password_secret": user_password(USER)})
    # (alice's job script keeps the sandbox's 1G: other tests share her setup)
    setup = user.run("nodebook", "setup", "-e", f"@{secret}", "-e", "nodebook_job_mem=1G")
    secret.unlink()
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    ran = logged_paths(workspace)
    assert ran["playbook"] == [str(collection / "playbooks" / "setup.yml")]
    assert ran["task"] and all(Path(t).is_relative_to(collection) for t in ran["task"]), ran

    # nodebook doctor: every check passes
    doctor = user.run("nodebook", "doctor", "--json")
    checks = {e["data"]["check"]: e["data"]["ok"] for e in events(doctor.stdout) if "data" in e}
    assert doctor.returncode == 0 and checks and all(checks.values()), doctor.stdout
    assert {"ssh", "setup", "module", "slurm"} <= set(checks)

    # nodebook session: ready with a URL; `python -m driver list` sees it; Ctrl-C ends it
    job_ids: set[str] = set()
    with session(user, job_ids) as proc:
        seen = read_until(proc, {"ready", "error"}, limit=240)
        job_ids.update(str(e["job_id"]) for e in seen if e.get("job_id"))
        ready = seen[-1] if seen else {}
        assert ready.get("event") == "ready", (seen, user.stderr.read_text()[-3000:])
        job = str(ready["job_id"])
        assert str(ready["url"]).startswith(f"http://127.0.0.1:{ready['local_port']}/")
        page = user.sandbox.laptop(
            ["curl", "-s", "-L", "-o", "/dev/null", "-w", "%{http_code}", str(ready["url"])]
        )
        assert page.stdout == "200"

        listed = user.run(str(user.venv / "bin" / "python"), "-m", "driver", "list", "--json")
        assert listed.returncode == 0, listed.stdout + listed.stderr
        assert job in {str(e.get("job_id")) for e in events(listed.stdout)}

        os.kill(proc.pid, signal.SIGINT)  # the namespace wrappers exec: this is the driver
        assert proc.wait(timeout=120) == 130
    assert job not in wait_gone(user.sandbox, job)
    ran = logged_paths(workspace)
    assert str(collection / "playbooks" / "session.yml") in ran["playbook"]
    assert all(Path(p).is_relative_to(collection) for p in ran["playbook"] + ran["task"]), ran


def wait_gone(sandbox: Any, job: str, bound: float = 60) -> list[str]:
    """The queue once `job` has left it (or after `bound` seconds, for the assertion to show)."""
    deadline = time.monotonic() + bound
    while True:
        queued = sandbox.squeue()
        if job not in queued or time.monotonic() > deadline:
            return queued
        time.sleep(1)
