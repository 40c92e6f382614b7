"""The Ansible collection nodebook.jupyter as an Ansible user gets it: the tarball built from the
working tree, installed into a temporary collections path, used from a directory of the user's
with an ansible.cfg of the user's (no roles_path, no filter_plugins: only the collection). The
setup playbook runs by its fully qualified name against the sandbox as alice; README's playbook
of one's own runs the roles from the collection (in check mode: it must not change alice's
setup while other tests use it)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.setup import user_password
from tests.install.conftest import BIN, REPO, logged_paths, paths_callback, run, secret_vars

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]
USER = "alice"
RECAP = re.compile(r"^(\S+)\s*:\s*ok=\d+\s+changed=\d+\s+unreachable=(\d+)\s+failed=(\d+)", re.M)


def not_ok(output: str) -> dict[str, tuple[int, int]]:
    """PLAY RECAP: host -> (unreachable, failed)."""
    return {host: (int(u), int(f)) for host, u, f in RECAP.findall(output)}


class AnsibleUser:
    """A directory of an Ansible user's: collections/, inventory/, ansible.cfg, a home."""

    def __init__(self, sandbox: Any, workspace: Path, tarball: Path) -> None:
        self.sandbox = sandbox
        self.workspace = workspace
        self.root = workspace / "ansible-user"
        self.collections = self.root / "collections"
        self.installed = self.collections / "ansible_collections" / "nodebook" / "jupyter"
        self.inventory = self.root / "inventory" / "hosts.yml"
        (self.root / "home").mkdir(parents=True, exist_ok=True)
        (self.inventory.parent / "group_vars").mkdir(parents=True, exist_ok=True)
        self.inventory.write_text(sandbox.inventory.read_text())
        group_vars = sandbox.inventory.parent / "group_vars" / "all.yml"
        (self.inventory.parent / "group_vars" / "all.yml").write_text(group_vars.read_text())
        cfg = self.root / "ansible.cfg"
        cfg.write_text(
            "[defaults]\n"
            f"collections_path = {self.collections}\n"
            # Only this path: not the test venv's sys.path (where an editable nodebook lives).
            "collections_scan_sys_path = false\n"
            "host_key_checking = true\n"
        )
        self.env = {
            "HOME": str(self.root / "home"),
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "ANSIBLE_CONFIG": str(cfg),
            "ANSIBLE_NOCOLOR": "1",
            **paths_callback(workspace),
        }
        galaxy = [str(BIN / "ansible-galaxy"), "collection", "install", "-p", str(self.collections)]
        run(self.local([*galaxy, str(tarball)]), cwd=self.root)

    def local(self, argv: list[str]) -> list[str]:
        return ["env", "-i", *(f"{k}={v}" for k, v in self.env.items()), *argv]

    def playbook(self, *args: str) -> tuple[int, str, dict[str, list[str]]]:
        """ansible-playbook on the laptop as alice: exit code, output, files it ran."""
        secret = secret_vars(self.workspace, {"nodebook_password_secret": user_password(USER)})
        argv = [str(BIN / "ansible-playbook"), "-i", str(self.inventory), "-l", "sandbox"]
        argv += ["-e", f"@{secret}", *args]
        logged_paths(self.workspace)
        proc = run(self.sandbox.laptop_argv(self.local(argv)), cwd=self.root, check=False)
        secret.unlink()
        return proc.returncode, proc.stdout + proc.stderr, logged_paths(self.workspace)


@pytest.fixture(scope="module")
def user(sandbox: Any, workspace: Path, collection: Path) -> AnsibleUser:
    return AnsibleUser(sandbox, workspace, collection)


def readme_playbook() -> str:
    """The playbook of one's own in README's "For Ansible users"."""
    text = (REPO / "README.md").read_text()
    section = text.split("\n## For Ansible users\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert match, "README's For Ansible users section has no ```yaml example"
    return match.group(1)


def test_setup_playbook_by_its_fully_qualified_name(user: AnsibleUser) -> None:
    rc, output, ran = user.playbook("nodebook.jupyter.setup")
    assert rc == 0, output[-5000:]
    assert not_ok(output) == {"sandbox": (0, 0)}, output[-3000:]
    assert ran["playbook"] == [str(user.installed / "playbooks" / "setup.yml")]
    assert ran["task"] and all(Path(t).is_relative_to(user.installed) for t in ran["task"]), ran


def test_readme_playbook_runs_the_roles_from_the_collection(user: AnsibleUser) -> None:
    site = user.root / "site.yml"
    site.write_text("---\n" + readme_playbook())
    rc, output, ran = user.playbook(str(site), "--check", "--diff")
    assert rc == 0, output[-5000:]
    assert not_ok(output) == {"sandbox": (0, 0)}, output[-3000:]
    # The play's own tasks (the roles' argument checks) are site.yml's; the rest the collection's.
    outside = {t for t in ran["task"] if not Path(t).is_relative_to(user.installed)}
    assert outside <= {str(site)}, outside
    roles = {
        Path(t).relative_to(user.installed / "roles").parts[0]
        for t in ran["task"]
        if t not in outside
    }
    listed = set(re.findall(r"- nodebook\.jupyter\.(\w+)", readme_playbook()))
    assert roles == listed and "nodebook_job" in roles


def test_filters_and_role_docs_by_their_full_names(user: AnsibleUser) -> None:
    expr = "{{ '1-12:00' | nodebook.jupyter.nodebook_slurm_seconds }}"
    argv = [str(BIN / "ansible"), "localhost", "-m", "ansible.builtin.debug", "-a", f"msg={expr}"]
    proc = run(user.local(argv), cwd=user.root)
    assert re.search(r'"?msg"?: "?129600"?', proc.stdout), proc.stdout
    doc = run(user.local([str(BIN / "ansible-doc"), "-t", "role", "nodebook.jupyter.nodebook_job"]))
    assert "ENTRY POINT: *configure*" in doc.stdout and "nodebook_job_time" in doc.stdout
