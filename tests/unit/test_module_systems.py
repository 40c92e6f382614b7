"""The helper's module probes against real module systems: Environment Modules and Lmod.

Clusters run either Lmod or Environment Modules (Tcl), whose `module` differs where the helper
reads it: `module -t avail` (both on stderr; Environment Modules marks loaded modules " <L>" and
symbolic versions "(default:latest)"), and the words of a failed `module load`. Debian's
environment-modules conflicts with lmod, so it is fetched and extracted once by the sandbox's own
code (sandbox/cluster.py `environment_modules`, cached in its cache dir, as the profile `modules`
uses it); Lmod is this machine's (`make deps`). Each gets the sandbox's modulefiles
(`write_modulefiles`: Tcl or Lua), a site tree with a symbolic version, and a site default loaded
in the shell, and the helper runs `discover`, `environment` and `doctor` as the driver and setup
call them.

- Without root: the `module` function is defined in a plain `bash -c` and exported to the
  helper's bash, as a login shell's is. Not `bash -l`: this machine's /etc/profile.d/lmod.sh
  would put Lmod's function in place of Environment Modules'.
- As root: the cluster hosts' own mounts of each profile (`module_system`: anchor-lmod.sh,
  anchor-modules.sh) in a private mount namespace, and real login shells there: /etc/profile
  defines `module`, the helper is piped into `bash -l -s` as the driver does, doctor runs its own
  `bash -lc`, and the job script's lines load a module.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from driver.paths import helper_script
from tests.harness.sandbox import cluster_module

LMOD_INIT = Path("/usr/share/lmod/lmod/init/bash")
SYSTEMS = ("modules", "lmod")  # the sandbox's profile names
NAME = re.compile(r"^[\w.+-]+(/[\w.+-]+)*$")  # a module name, no marker, tag or colour left


@pytest.fixture(scope="module")
def cluster() -> Iterator[ModuleType]:
    with cluster_module("sandbox_cluster_modules") as module:
        yield module


@pytest.fixture(scope="module")
def em_root(cluster: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Environment Modules' extracted root, through the sandbox's code and its cache (a private
    cache when this user cannot write the sandbox's and it holds none yet)."""
    cache = cluster.CACHE
    if not (cache / cluster.EM_PACKAGE / ".complete").exists() and os.geteuid() != 0:
        cache = tmp_path_factory.mktemp("cache")
    try:
        return cluster.environment_modules(cache)
    except (cluster.SandboxError, OSError) as err:
        pytest.skip(f"Environment Modules could not be fetched and extracted: {err}")


@dataclass
class Tree:
    """Modulefiles as the sandbox writes them, their software, and a site tree."""

    root: Path
    python: Path  # conda-python/3.11's prefix
    cuda: Path
    modulefiles: Path
    site: Path  # conda-python/3.10, the default and "latest" of its family (a .modulerc)
    base: Path

    def env(self) -> dict[str, str]:
        home = self.root / "home"
        home.mkdir(exist_ok=True)
        return {"HOME": str(home), "USER": "tester", "LOGNAME": "tester", "PATH": "/usr/bin:/bin"}


def make_tree(cluster: ModuleType, tmp: Path, profile: str) -> Tree:
    python, cuda = tmp / "opt" / "conda-python" / "3.11", tmp / "opt" / "cuda" / "12.4"
    older = tmp / "opt" / "conda-python" / "3.10"
    for prefix in (python, older):
        (prefix / "bin").mkdir(parents=True)
        (prefix / "bin" / "python3").symlink_to(Path(sys.executable).resolve())
    (cuda / "bin").mkdir(parents=True)
    tree = Tree(tmp, python, cuda, tmp / "modulefiles", tmp / "site", tmp / "base")
    cluster.write_modulefiles(profile, tree.modulefiles, python, cuda)
    family = tree.site / "conda-python"
    family.mkdir(parents=True)
    (family / "3.10").write_text(f"#%Module1.0\nprepend-path PATH {older}/bin\n")
    (family / ".modulerc").write_text(
        "#%Module1.0\nmodule-version conda-python/3.10 default latest\n"
    )
    return tree


def module_function(system: str, em_root: Path) -> str:
    """bash that defines `module` as the system's login init does."""
    if system == "modules":
        cmd = em_root / "usr" / "lib" / "x86_64-linux-gnu" / "modulecmd.tcl"
        # Debian's /usr/share/modules/init/bash, and its initrc's default modulefiles.
        return (
            f'eval "$(/usr/bin/tclsh8.6 {shlex.quote(str(cmd))} bash autoinit)"; '
            f"module use --append {shlex.quote(str(em_root / 'usr/share/modules/modulefiles'))}"
        )
    if not LMOD_INIT.exists():
        pytest.skip(f"Lmod is not installed ({LMOD_INIT}): `make deps` installs it")
    return f". {LMOD_INIT}"


def lines_of(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def of(lines: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [line for line in lines if line["nodebook"] == kind]


@pytest.fixture(params=SYSTEMS)
def shell(request, cluster, em_root, tmp_path):
    """Runs the helper in a shell whose `module` is the system's, with a site default loaded."""
    system = request.param
    tree = make_tree(cluster, tmp_path, system)
    setup = module_function(system, em_root)
    setup += f"; module use --append {tree.modulefiles}; module use --append {tree.site}"
    setup += "; module load cuda/12.4"  # a site default: Environment Modules lists it " <L>"

    def run(*args: str) -> tuple[int, list[dict[str, Any]], str]:
        proc = subprocess.run(
            ["bash", "-c", f'{setup}; exec bash -s -- "$@"', "bash", "--base", str(tree.base),
             *args],
            input=helper_script(), capture_output=True, text=True, env=tree.env(), timeout=60,
            check=False,
        )  # fmt: skip
        return proc.returncode, lines_of(proc.stdout), proc.stderr

    run.tree = tree
    run.system = system
    return run


def test_discover_lists_every_python_module_and_checks_the_asked_ones(shell):
    rc, lines, err = shell(
        "discover", "--only", "python", "--module", "conda-python/3.11", "--module", "cuda/12.4",
        "--module", "cuda/12.3", "--module", "conda-python/3.99",
    )  # fmt: skip
    assert rc == 0, err
    pythons = {p["module"]: p for p in of(lines, "python") if p["module"]}
    assert {"conda-python/3.11", "conda-python/3.10"} <= set(pythons), lines
    assert all(NAME.match(name) for name in pythons), pythons
    assert pythons["conda-python/3.11"]["python"] == str(shell.tree.python / "bin" / "python3")
    modules = {m["name"]: m for m in of(lines, "module")}
    assert modules["conda-python/3.11"]["exists"] is True
    assert modules["conda-python/3.11"]["python"] == str(shell.tree.python / "bin" / "python3")
    assert modules["cuda/12.4"]["exists"] is True and modules["cuda/12.4"]["python"] == ""
    # The loaded site default is among the close matches of a missing version.
    assert modules["cuda/12.3"] == {
        "nodebook": "module", "name": "cuda/12.3", "exists": False, "close": ["cuda/12.4"]
    }  # fmt: skip
    close = modules["conda-python/3.99"]["close"]
    assert {"conda-python/3.11", "conda-python/3.10"} <= set(close), close
    assert all(NAME.match(name) for name in close), close


def test_environment_loads_the_modules_and_reports_the_python(shell):
    rc, lines, err = shell("environment", "--", "conda-python/3.11", "cuda/12.4")
    assert rc == 0, err
    (env,) = of(lines, "environment")
    assert env["python"] == str(shell.tree.python / "bin" / "python3")
    # cuda/12.4 was loaded already: Lmod loads it again (first on PATH), Environment Modules not.
    first = set(env["path"].split(":")[:2])
    assert first == {str(shell.tree.cuda / "bin"), str(shell.tree.python / "bin")}, env
    assert re.fullmatch(r"3\.\d+\.\d+", env["version"])


def test_environment_with_a_missing_module_names_the_close_ones(shell):
    rc, lines, _ = shell("environment", "--", "cuda/12.5")
    assert rc == 3, lines
    (error,) = of(lines, "error")
    assert error["error"] == "missing-module" and error["module"] == "cuda/12.5"
    assert error["close"] == ["cuda/12.4"]


# ---------------------------------------------------------------- the sandbox's mounts, as root


@pytest.fixture(params=SYSTEMS)
def host(request, cluster, em_root, tmp_path):
    """A cluster host's module system as the sandbox's anchor mounts it (profile lmod or
    modules), in a private mount namespace; runs bash scripts there as root, with a clean env."""
    profile = request.param
    if os.geteuid() != 0:
        pytest.skip("needs root: the profiles' mounts are made in a private mount namespace")
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux)")
    if profile == "lmod" and not Path("/etc/lmod/modulespath").exists():
        pytest.skip("Lmod is not installed (/etc/lmod/modulespath): `make deps` installs it")
    tree = make_tree(cluster, tmp_path, profile)
    etc = tmp_path / "etc"
    (etc / "profile.d").mkdir(parents=True)
    (etc / "profile.d" / "sandbox-site.sh").write_text(cluster.render("profile-site.sh"))
    (etc / "modulespath").write_text(cluster.render("modulespath", modulefiles=tree.modulefiles))
    if profile == "modules":
        cluster.modules_etc(etc)
    mounts = cluster.module_system(profile, etc)
    clean = "env -i HOME=/root USER=root LOGNAME=root PATH=/usr/bin:/bin"

    def run(script: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec",
                f"{mounts}\nexec {clean} {script}"]  # fmt: skip
        return subprocess.run(
            argv, input=stdin, capture_output=True, text=True, timeout=60, check=False
        )

    run.tree = tree
    run.profile = profile
    return run


def test_the_profiles_login_shell_has_its_module_system_and_the_helper_works_there(host):
    said = host("bash -lc 'type -t module; module --version 2>&1; ls /etc/profile.d'").stdout
    assert "function" in said
    if host.profile == "modules":
        assert "Modules Release 5" in said and "modules.sh" in said and "lmod.sh" not in said
    else:
        assert "Modules based on Lua" in said and "lmod.sh" in said
    assert "Welcome to the nodebook sandbox cluster" in said  # the site's profile script too
    assert host("bash -c 'type module'").returncode != 0  # only in login shells
    base = str(host.tree.base)
    python = str(host.tree.python / "bin" / "python3")
    # As the driver runs them: the helper piped into `bash -l -s`.
    proc = host(f"bash -l -s -- --base {base} discover --only python --module conda-python/3.11",
                 stdin=helper_script())  # fmt: skip
    (module,) = of(lines_of(proc.stdout), "module")
    assert module["exists"] is True and module["python"] == python, proc.stderr
    proc = host(f"bash -l -s -- --base {base} environment -- conda-python/3.11 cuda/12.4",
                stdin=helper_script())  # fmt: skip
    (env,) = of(lines_of(proc.stdout), "environment")
    assert env["python"] == python and env["path"].startswith(f"{host.tree.cuda}/bin:"), proc
    proc = host(
        f"bash -l -s -- --base {base} environment -- conda-python/3.9", stdin=helper_script()
    )
    (error,) = of(lines_of(proc.stdout), "error")
    assert error["error"] == "missing-module" and error["close"] == ["conda-python/3.11"]
    proc = host(f"bash -l -s -- --base {base} doctor conda-python/3.11 conda-python/3.9",
                stdin=helper_script())  # fmt: skip
    checks = [c for c in of(lines_of(proc.stdout), "check") if c["name"] == "module"]
    assert [c["ok"] for c in checks] == [True, False], proc.stdout


def test_the_job_scripts_module_load_works_and_a_missing_module_fails(host):
    # job.sbatch's lines, in a shell that is not a login shell (sbatch's --export=ALL).
    job = (
        "type module >/dev/null 2>&1 || . /etc/profile >/dev/null 2>&1; "
        "module load conda-python/3.11 && command -v python3 && echo CUDA=${CUDA_HOME:-unset}; "
        "module load cuda/12.4 && echo CUDA=$CUDA_HOME; module load missing/1; echo rc=$?"
    )
    proc = host(f"bash -c {shlex.quote(job)}")
    out = proc.stdout.splitlines()
    assert str(host.tree.python / "bin" / "python3") in out, proc
    assert "CUDA=unset" in out and f"CUDA={host.tree.cuda}" in out
    assert out[-1] == "rc=1" and "missing/1" in proc.stderr
