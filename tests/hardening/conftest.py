"""Broken conditions for the hardening tests, built from real parts and always restored.

Each helper is a context manager: temp inventories and ssh configs (derived from the sandbox's),
stopped daemons, a user whose setup is moved aside, a job script variant. The `finally` blocks
restore the sandbox even when the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from tests.harness.sandbox import SSH_CONFIG, Sandbox, laptop_argv


def write_inventory(
    path: Path, host: str = "login", user: str = "alice", ssh_args: str = ""
) -> Path:
    """A one-host inventory (host `c1`) reached like the sandbox's, with ssh_args appended."""
    common = f"-F {SSH_CONFIG} {ssh_args}".strip()
    path.write_text(
        "all:\n  hosts:\n    c1:\n"
        f"      ansible_host: {host}\n"
        f"      ansible_user: {user}\n"
        f'      ansible_ssh_common_args: "{common}"\n'
    )
    return path


def ssh_config_variant(tmp: Path, edit: Callable[[str], str]) -> Path:
    """A copy of the sandbox's ssh config, edited; returns its path (use with -F)."""
    text = SSH_CONFIG.read_text()
    new = edit(text)
    assert new != text, "the ssh config variant changes nothing"
    path = tmp / f"ssh_config-{uuid.uuid4().hex[:6]}"
    path.write_text(new)
    return path


def inventory_with_config(tmp: Path, config: Path) -> Path:
    """An inventory whose only ssh config is `config`."""
    path = tmp / f"inv-{uuid.uuid4().hex[:6]}.yml"
    path.write_text(
        "all:\n  hosts:\n    c1:\n      ansible_host: login\n      ansible_user: alice\n"
        f'      ansible_ssh_common_args: "-F {config}"\n'
    )
    return path


@contextlib.contextmanager
def daemons_stopped(sandbox: Sandbox, *names: str) -> Iterator[None]:
    """Stop sandbox daemons for the block; start them again whatever happens."""
    try:
        for name in names:
            sandbox.cluster("daemon", name, "stop")
        yield
    finally:
        for name in names:
            sandbox.cluster("daemon", name, "start", check=False, timeout=120)


@contextlib.contextmanager
def partition_down(sandbox: Sandbox, partition: str) -> Iterator[None]:
    """A partition that queues jobs but starts none (reason PartitionDown)."""
    upd = ["scontrol", "update", f"PartitionName={partition}"]
    try:
        sandbox.host("login", [*upd, "State=DOWN"])
        yield
    finally:
        sandbox.host("login", [*upd, "State=UP"], check=False)


def _write_as(path: Path, text: str, owner: Path, mode: int) -> None:
    """Write atomically with the owner of `owner` and `mode` (root writes into a user's home)."""
    st = owner.stat()
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:6]}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


class SetupJson:
    """A user's ~/.nodebook/setup.json, changed for a moment and always put back."""

    def __init__(self, user: str) -> None:
        self.path = Path(f"/home/{user}/.nodebook/setup.json")
        self.original = self.path.read_text()
        self.restored = False

    def set(self, **changes: object) -> None:
        data = json.loads(self.original)
        data.update(changes)
        _write_as(self.path, json.dumps(data, indent=2) + "\n", self.path, 0o600)

    def restore(self) -> None:
        if not self.restored:
            _write_as(self.path, self.original, self.path.parent, 0o600)
            self.restored = True


@contextlib.contextmanager
def setup_moved_aside(user: str) -> Iterator[SetupJson]:
    """The user looks never set up (no setup.json) until `restore()` or the end of the block."""
    sj = SetupJson(user)
    aside = sj.path.with_name(f"setup.json.hardening-{uuid.uuid4().hex[:6]}")
    os.rename(sj.path, aside)

    def restore() -> None:
        if not sj.restored:
            os.rename(aside, sj.path)
            sj.restored = True

    sj.restore = restore  # type: ignore[method-assign]
    try:
        yield sj
    finally:
        restore()


@contextlib.contextmanager
def job_script_variant(
    user: str,
    edit: Callable[[str], str] | None = None,
    edit_helper: Callable[[str], str] | None = None,
) -> Iterator[SetupJson]:
    """setup.json points at an edited copy of the user's job script until `restore()`.

    The job script only loads the modules and execs the remote helper's `job`, which runs
    Jupyter: ``edit_helper`` edits the helper's parts (bin/nodebook-remote loads
    lib/nodebook-remote/*.sh), in a copy of that dir beside it, with a copy of the entry point
    that loads them from there; the job script's copy execs that entry point instead. Exactly
    one part must change. The driver's test restores setup.json as soon as the job is
    submitted (sbatch copies the script), so other sessions of the same user see the variant
    only for a moment.
    """
    sj = SetupJson(user)
    setup = json.loads(sj.original)
    script = Path(setup["job_script"])
    text = script.read_text()
    made: list[Path] = []
    try:
        if edit_helper is not None:
            helper = Path(setup["helper"])
            lib = helper.parent.parent / "lib" / "nodebook-remote"
            tag = f"hardening-{uuid.uuid4().hex[:6]}"
            lib_copy = lib.with_name(f"nodebook-remote-{tag}")
            lib_copy.mkdir(mode=0o700)
            made.append(lib_copy)
            os.chown(lib_copy, lib.stat().st_uid, lib.stat().st_gid)
            changed = []
            for part in sorted(lib.glob("*.sh")):
                code = part.read_text()
                new_code = edit_helper(code)
                changed += [part.name] if new_code != code else []
                _write_as(lib_copy / part.name, new_code, part, 0o600)
                made.insert(0, lib_copy / part.name)
            assert len(changed) == 1, f"the helper variant changes {changed or 'nothing'}"
            loads = "/lib/nodebook-remote\n"
            entry = helper.read_text()
            assert entry.count(loads) == 1, "the helper's entry point no longer names its lib dir"
            copy = helper.with_name(f"nodebook-remote-{tag}")
            _write_as(copy, entry.replace(loads, f"/lib/{lib_copy.name}\n"), helper, 0o700)
            made.insert(0, copy)
            assert str(helper) in text, f"the job script does not exec {helper}"
            text = text.replace(str(helper), str(copy))
        new = edit(text) if edit is not None else text
        assert new != script.read_text(), "the job script variant changes nothing"
        variant = script.with_name(f"job-hardening-{uuid.uuid4().hex[:6]}.sbatch")
        _write_as(variant, new, script, 0o700)
        made.append(variant)
        sj.set(job_script=str(variant))
        yield sj
    finally:
        sj.restore()
        for path in made:
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink(missing_ok=True)


@contextlib.contextmanager
def laptop_listener() -> Iterator[int]:
    """A process listening on a 127.0.0.1 port inside the laptop's namespace; yields the port."""
    code = (
        "import socket, sys, time\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "print(s.getsockname()[1], flush=True); time.sleep(600)\n"
    )
    proc = subprocess.Popen(
        laptop_argv(["python3", "-c", code]),
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, 9)
        proc.wait(timeout=10)
