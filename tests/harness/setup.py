"""Running the one-time setup (playbooks/setup.yml) against the sandbox, as a user would.

The password goes to Ansible in a 0600 extra-vars file (as an Ansible Vault file would), never
on a command line, and the file is deleted right after the run. Used by the ``nodebook_setup``
fixture (tests/fixtures/setup.py) and by the benchmarks' setup stage.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness.sandbox import INVENTORY, REPO, Sandbox

PLAYBOOK = "playbooks/setup.yml"
ANSIBLE_PLAYBOOK = str(REPO / ".venv" / "bin" / "ansible-playbook")
# Extra pip find-links for the cluster (a directory every sandbox host sees), for example
# while the sandbox's index lacks a wheel; empty by default.
FIND_LINKS_ENV = "NODEBOOK_SETUP_FIND_LINKS"

_RECAP = re.compile(
    r"^(?P<host>\S+)\s*:\s*ok=(?P<ok>\d+)\s+changed=(?P<changed>\d+)\s+unreachable=(?P<unreachable>\d+)"
    r"\s+failed=(?P<failed>\d+)",
    re.MULTILINE,
)


def user_password(user: str) -> str:
    """The Jupyter password the tests and benchmarks give each sandbox user."""
    return f"nb-{user}-Secret-7f3a"


@dataclass
class PlaybookRun:
    """One ansible-playbook run and its PLAY RECAP."""

    proc: subprocess.CompletedProcess[str]
    recap: dict[str, dict[str, int]] = field(default_factory=dict)
    host: str = "sandbox"

    @property
    def rc(self) -> int:
        return self.proc.returncode

    @property
    def output(self) -> str:
        return self.proc.stdout + self.proc.stderr

    def changed(self, host: str | None = None) -> int:
        return self.recap[host or self.host]["changed"]

    def failed(self, host: str | None = None) -> int:
        return self.recap[host or self.host]["failed"]

    def ok(self, host: str | None = None) -> int:
        return self.recap[host or self.host]["ok"]


def parse_recap(text: str) -> dict[str, dict[str, int]]:
    return {
        m["host"]: {k: int(m[k]) for k in ("ok", "changed", "unreachable", "failed")}
        for m in _RECAP.finditer(text)
    }


def run_setup(
    sandbox: Sandbox,
    user: str,
    *,
    password: str | None = None,
    extra_vars: Mapping[str, Any] | None = None,
    host: str = "sandbox",
    inventory: Path = INVENTORY,
    check: bool = False,
    args: tuple[str, ...] = (),
    timeout: float = 600,
) -> PlaybookRun:
    """Run playbooks/setup.yml from the laptop as `user` (no assertion on the outcome).

    password None gives the user's test password; "" keeps the stored one.
    """
    secret = user_password(user) if password is None else password
    variables: dict[str, Any] = {"ansible_user": user, "nodebook_password_secret": secret}
    find_links = os.environ.get(FIND_LINKS_ENV, "")
    if find_links:
        variables["nodebook_jupyter_pip_find_links"] = find_links.split(",")
    variables.update(extra_vars or {})
    with tempfile.TemporaryDirectory(prefix="nodebook-setup-") as tmp:
        vars_file = Path(tmp) / "vars.json"
        fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(variables, f)
        argv = [ANSIBLE_PLAYBOOK, "-i", str(inventory), PLAYBOOK, "-l", host, "-e", f"@{vars_file}"]
        argv += ["--check", "--diff"] if check else []
        argv += list(args)
        proc = sandbox.laptop(argv, timeout=timeout, check=False, input="")
    return PlaybookRun(proc, parse_recap(proc.stdout), host)


def read_setup_json(sandbox: Sandbox, user: str, base: str = ".nodebook") -> dict[str, Any]:
    """The user's setup.json (base relative to the home unless absolute), read as the user."""
    path = base if base.startswith("/") else f"/home/{user}/{base}"
    out = sandbox.host("login", ["cat", f"{path}/setup.json"], user=user)
    return json.loads(out.stdout)
