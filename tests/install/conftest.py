"""nodebook as a user gets it, away from this checkout: the wheel and the Ansible collection built
from the working tree, a fresh venv holding the wheel, and commands run where the checkout is
hidden.

Everything lives in one temporary directory outside the checkout (removed at the end, whatever
happens). The build reads a copy of the working tree (the files git tracks or would track, as
they are now), so nothing is written into the checkout (no build/, no *.egg-info) and nothing
stale from an earlier build gets into the wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the test venv: pip, ansible-galaxy, ansible-playbook
COLLECTION = ("ansible_collections", "nodebook", "jupyter")
# Inside a private mount namespace: an empty directory over the checkout, checked, then the
# command (argv after the two paths). Exit 125 when the checkout could not be hidden.
HIDE = 'mount --bind "$1" "$2" && [ -z "$(ls -A "$2")" ] || exit 125; shift 2; exec "$@"'

# tests/install/callback/nodebook_paths.py: logs the playbook and task files Ansible runs.
PATHS_CALLBACK = Path(__file__).resolve().parent / "callback" / "nodebook_paths.py"


def run(
    argv: Sequence[str], *, timeout: float = 300, check: bool = True, **kw: object
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, check=False, **kw
    )  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise AssertionError(
            f"exit {proc.returncode}: {' '.join(map(str, argv))}\n"
            f"--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def workspace() -> Iterator[Path]:
    """A temporary directory outside the checkout; removed at the end of the session."""
    root = Path(tempfile.mkdtemp(prefix="nodebook-install-")).resolve()
    assert root != REPO and REPO not in root.parents, f"{root} lies inside the checkout"
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _worktree_files() -> list[str] | None:
    """The files git tracks or would track (not ignored), relative to the checkout."""
    proc = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        return None
    return sorted({name for name in proc.stdout.decode().split("\0") if name})


@pytest.fixture(scope="session")
def source_tree(workspace: Path) -> Path:
    """A copy of the working tree, as a fresh clone with the local changes would have it."""
    dest = workspace / "src"
    names = _worktree_files()
    if names is None:  # not a git checkout: everything but the local state
        shutil.copytree(
            REPO,
            dest,
            symlinks=True,
            ignore=shutil.ignore_patterns(
                ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache"
            ),
        )
        return dest
    for name in names:
        src = REPO / name
        if not src.is_symlink() and not src.is_file():
            continue  # deleted in the working tree
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            target.symlink_to(os.readlink(src))
        else:
            shutil.copy2(src, target)
    return dest


@pytest.fixture(scope="session")
def wheel(workspace: Path, source_tree: Path) -> Path:
    """`pip wheel --no-deps` of the source tree (as `pipx install .` builds it)."""
    dist = workspace / "dist"
    run([str(BIN / "pip"), "wheel", "-q", "--no-deps", "-w", str(dist), str(source_tree)])
    (built,) = dist.glob("nodebook-*.whl")
    return built


@pytest.fixture(scope="session")
def installed(workspace: Path, wheel: Path) -> Path:
    """A fresh venv (on the system's Python, not the test venv) with the wheel and its
    dependencies from the package index (pip's cache keeps it quick). Returns the venv."""
    venv = workspace / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", str(wheel)])
    return venv


@pytest.fixture(scope="session")
def collection(workspace: Path, source_tree: Path) -> Path:
    """`ansible-galaxy collection build` of the source tree (as `make collection`)."""
    out = workspace / "collection-dist"
    build = [str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out)]
    run(build, cwd=source_tree)
    (built,) = out.glob("nodebook-jupyter-*.tar.gz")
    return built


def paths_callback(workspace: Path) -> dict[str, str]:
    """Environment that makes Ansible log the playbook and task files it runs (read with
    `logged_paths`)."""
    plugins = workspace / "callbacks"
    plugins.mkdir(exist_ok=True)
    shutil.copy2(PATHS_CALLBACK, plugins / PATHS_CALLBACK.name)  # the checkout may be hidden
    return {
        "ANSIBLE_CALLBACK_PLUGINS": str(plugins),
        "ANSIBLE_CALLBACKS_ENABLED": "nodebook_paths",
        "NODEBOOK_TEST_PATHS_LOG": str(workspace / "ansible-paths.jsonl"),
    }


def logged_paths(workspace: Path) -> dict[str, list[str]]:
    """{"playbook": [...], "task": [...]}: the files Ansible ran since the last call."""
    log = workspace / "ansible-paths.jsonl"
    found: dict[str, list[str]] = {"playbook": [], "task": []}
    if log.exists():
        for line in log.read_text().splitlines():
            for key, value in json.loads(line).items():
                found[key].append(str(value).rsplit(":", 1)[0] if key == "task" else str(value))
        log.unlink()
    return found


def secret_vars(workspace: Path, values: dict[str, str]) -> Path:
    """A 0600 extra-vars file (as an Ansible Vault file would hold the password)."""
    path = workspace / "vars.json"
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(values, fh)
    return path


def hidden_argv(
    laptop_argv: object, empty: Path, argv: Sequence[str], env: dict[str, str]
) -> list[str]:
    """argv that runs `argv` on the sandbox's laptop with only `env`, in a mount namespace of
    its own where the checkout is an empty directory. The namespace ends with the process."""
    inner = [
        "unshare", "--mount", "--propagation", "private", "--",
        "sh", "-c", HIDE, "sh", str(empty), str(REPO),
        "env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv,
    ]  # fmt: skip
    return list(laptop_argv(inner))  # type: ignore[operator]
