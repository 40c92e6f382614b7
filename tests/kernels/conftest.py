"""alice's own environments as kernels of her nodebook (roles/nodebook_kernels), on the sandbox.

alice's venv (~/envs/analysis) and conda-layout env (~/conda/envs/torchish) come without
ipykernel (tests/sandbox/test_environments.py checks that). The `kernels` fixture registers both
(with module cuda/12.4) through the real setup playbook, ipykernel added by the opt-in install
from the cluster's index.

Other tests and benchmarks run alice's default setup at any time (and a setup without these
entries removes their kernelspecs), so these tests give alice a nodebook of their own:
nodebook_environment_base_dir ~/.nodebook-kernels-test, reached by the driver through an
inventory that names it. Her default ~/.nodebook is never touched; when the package's tests are
done that directory goes, and so does every file the tests added to her environments.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.setup import run_setup

USER = "alice"
HOME = Path("/home/alice")
BASE_DIR = ".nodebook-kernels-test"
BASE = HOME / BASE_DIR
DATA_KERNELS = BASE / "share" / "jupyter" / "kernels"
USER_KERNELS = HOME / ".local" / "share" / "jupyter" / "kernels"
CONFIG = BASE / "jupyter" / "jupyter_server_config.py"
REPO = Path(__file__).resolve().parents[2]
STATE = Path(os.environ.get("NODEBOOK_SANDBOX_STATE", "/var/lib/nodebook-sandbox"))
PY = str(REPO / ".venv" / "bin" / "python")


def files_of(prefix: Path) -> set[str]:
    """Every path below prefix, relative (links not followed)."""
    found = set()
    for root, dirs, files in os.walk(prefix):
        for name in dirs + files:
            found.add(os.path.relpath(os.path.join(root, name), prefix))
    return found


def remove_added(prefix: Path, before: set[str]) -> list[str]:
    """Remove what was added below prefix since `before` (deepest first); returns it."""
    added = sorted(files_of(prefix) - before, key=lambda p: p.count("/"), reverse=True)
    for rel in added:
        path = prefix / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        elif path.exists() or path.is_symlink():
            path.unlink()
    return added


def flat(text: str) -> str:
    """Ansible's output with its line wrapping undone (YAML results wrap long messages)."""
    return " ".join(text.replace("''", "'").split())


@dataclass
class Kernels:
    """alice's setup with her environments as kernels; `run` re-runs it with changes."""

    sandbox: Any
    envs: dict[str, dict[str, str]]
    first: Any = None
    runs: list[Any] = field(default_factory=list)

    @property
    def conda(self) -> dict[str, str]:
        return self.envs["conda"]

    @property
    def venv(self) -> dict[str, str]:
        return self.envs["venv"]

    def entries(self) -> list[dict[str, Any]]:
        """The inventory entries: the conda env by its prefix, the venv by its python."""
        return [
            {
                "name": "torchish",
                "display_name": "Torchish (CUDA 12.4)",
                "modules": ["cuda/12.4"],
                "prefix": self.conda["prefix"],
            },
            {
                "name": "analysis",
                "display_name": "Analysis venv (CUDA 12.4)",
                "modules": ["cuda/12.4"],
                "python": self.venv["python"],
            },
        ]

    def variables(self, **changes: Any) -> dict[str, Any]:
        """The extra vars: both entries and the opt-in install, `nodebook_kernels_<key>` changed."""
        ev: dict[str, Any] = {
            "nodebook_environment_base_dir": BASE_DIR,
            "nodebook_kernels_environments": self.entries(),
            "nodebook_kernels_install_ipykernel": True,
        }
        ev.update({f"nodebook_kernels_{k}": v for k, v in changes.items()})
        return ev

    def run(self, check: bool = False, **changes: Any) -> Any:
        result = run_setup(self.sandbox, USER, extra_vars=self.variables(**changes), check=check)
        self.runs.append(result)
        return result

    def apply(self, **changes: Any) -> Any:
        """Run setup with these changes; fail the test with Ansible's output if it fails."""
        result = self.run(**changes)
        assert result.rc == 0, result.output[-5000:]
        return result


def kernel_json(directory: Path, name: str) -> dict[str, Any]:
    return json.loads((directory / name / "kernel.json").read_text())


def inventory(directory: Path) -> Path:
    """The sandbox cluster for alice, with this package's nodebook directory."""
    path = directory / "hosts.yml"
    host = {
        "ansible_host": "login",
        "ansible_user": USER,
        "ansible_ssh_common_args": f"-F {STATE}/ssh/config",
        "nodebook_environment_base_dir": BASE_DIR,
    }
    path.write_text(
        json.dumps({"all": {"children": {"slurm_clusters": {"hosts": {"sandbox": host}}}}})
    )
    return path


def driver_env(work: Path) -> dict[str, str]:
    """The driver's environment: this package's inventory, a private TMPDIR and state dir."""
    return {
        "NODEBOOK_INVENTORY": str(inventory(work)),
        "NODEBOOK_STATE_DIR": str(work / "state"),
        "TMPDIR": str(work),
        "HOME": "/root",
    }


def driver_argv(work: Path, *args: str) -> list[str]:
    env = driver_env(work)
    return ["env", *(f"{k}={v}" for k, v in env.items()), PY, "-m", "driver", *args]


def driver_kernels(sandbox: Any) -> list[dict[str, Any]]:
    """`nodebook kernels --json` from the laptop, as alice would run it."""
    work = Path(tempfile.mkdtemp(prefix="nbk-"))
    try:
        out = sandbox.laptop(driver_argv(work, "kernels", "--json"), timeout=120)
        return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    finally:
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture(scope="package")
def kernels(sandbox: Any) -> Iterator[Kernels]:
    """alice set up with torchish (conda) and analysis (venv) as kernels; undone at the end."""
    envs = json.loads((sandbox.state / "envs.json").read_text())
    before = {name: files_of(Path(env["prefix"])) for name, env in envs.items()}
    had_user_kernels = USER_KERNELS.exists()
    registered = Kernels(sandbox, envs)
    try:
        registered.first = registered.apply()
        yield registered
    finally:
        shutil.rmtree(BASE, ignore_errors=True)
        for kernel in USER_KERNELS.glob("*/kernel.json"):
            if '"managed_by": "nodebook_kernels"' in kernel.read_text():
                shutil.rmtree(kernel.parent, ignore_errors=True)
        if not had_user_kernels:
            with contextlib.suppress(OSError):
                USER_KERNELS.rmdir()  # made by the user_data_dir test, and empty again
        for name, env in envs.items():
            remove_added(Path(env["prefix"]), before[name])
