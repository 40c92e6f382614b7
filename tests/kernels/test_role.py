"""roles/nodebook_kernels through the real setup playbook, as alice on the sandbox.

What a researcher asks of it: her conda env and venv become kernels with their modules, the
opt-in install gives them ipykernel, a re-run changes nothing, a removed entry loses its
kernelspec, an env without ipykernel stops setup with the command that adds it, bad entries
stop it before anything is written, and `nodebook kernels` shows what is registered.
"""

from __future__ import annotations

import json
import shutil
import stat
import uuid
from pathlib import Path

import pytest

from tests.kernels.conftest import (
    BASE,
    CONFIG,
    DATA_KERNELS,
    HOME,
    USER,
    USER_KERNELS,
    driver_kernels,
    flat,
    kernel_json,
)

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(900)]

HELPER = str(BASE / "bin" / "nodebook-remote")
MODULE_PYTHON = "/opt/nodebook-sandbox/conda-python/3.11/bin/python3"
INDEX_OPTIONS = "--index-url http://login:3141/simple/ --trusted-host=login"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def setup_json() -> dict:
    return json.loads((BASE / "setup.json").read_text())


def snapshot() -> dict[str, object]:
    """What setup writes for kernels, to show that a failed run wrote none of it."""
    listing = sorted(
        str(p) for d in (DATA_KERNELS, USER_KERNELS) if d.exists() for p in d.rglob("*")
    )
    return {
        "kernels": listing,
        "config": CONFIG.read_text(),
        "setup.json": (BASE / "setup.json").read_text(),
    }


def test_first_run_installs_ipykernel_and_registers_both(kernels, sandbox):
    assert kernels.first.changed() > 0
    # The opt-in install put ipykernel into both environments (from the cluster's index).
    for env in (kernels.conda, kernels.venv):
        sandbox.host("login", [env["python"], "-c", "import ipykernel"], user=USER)
    conda = kernel_json(DATA_KERNELS, "torchish")
    prefix = kernels.conda["prefix"]
    words = f"kernel --name torchish --kind conda --prefix {prefix} --python {prefix}/bin/python"
    tail = "--module cuda/12.4 -- -f {connection_file}"
    assert conda["argv"] == [HELPER, *words.split(), *tail.split()]
    assert conda["display_name"] == "Torchish (CUDA 12.4)" and conda["language"] == "python"
    venv = kernel_json(DATA_KERNELS, "analysis")
    # Given by its python: the prefix is found, and pyvenv.cfg makes it a venv.
    assert venv["argv"][4:10] == [
        "--kind",
        "venv",
        "--prefix",
        kernels.venv["prefix"],
        "--python",
        kernels.venv["python"],
    ]
    assert mode(DATA_KERNELS / "torchish") == 0o700
    assert mode(DATA_KERNELS / "torchish" / "kernel.json") == 0o600
    # The job finds them through setup.json's data_dir; nodebook's python3 stays the default.
    assert setup_json()["data_dir"] == str(BASE / "share" / "jupyter")
    assert setup_json()["default_kernel"] == "python3"
    assert "default_kernel_name" not in CONFIG.read_text()
    assert not USER_KERNELS.exists() or not list(USER_KERNELS.iterdir())


def test_second_run_changes_nothing(kernels):
    again = kernels.apply()
    changed = [line for line in again.output.splitlines() if line.startswith("changed:")]
    assert again.changed() == 0, changed


def test_check_mode_shows_a_removal_and_changes_nothing(kernels):
    before = snapshot()
    dry = kernels.run(check=True, environments=kernels.entries()[:1])
    assert dry.rc == 0, dry.output[-3000:]
    assert dry.changed() > 0
    assert str(DATA_KERNELS / "analysis") in dry.output
    assert snapshot() == before


def test_removing_an_entry_removes_its_kernelspec_and_a_default_is_named(kernels, sandbox):
    try:
        kernels.apply(environments=kernels.entries()[:1], default="torchish")
        assert not (DATA_KERNELS / "analysis").exists()
        assert kernel_json(DATA_KERNELS, "torchish")["display_name"] == "Torchish (CUDA 12.4)"
        assert 'c.MappingKernelManager.default_kernel_name = "torchish"' in CONFIG.read_text()
        assert setup_json()["default_kernel"] == "torchish"
        listed = {
            e["data"]["name"]: e["data"] for e in driver_kernels(sandbox) if e["event"] == "kernel"
        }
        assert set(listed) == {"torchish", "python3"}
        torchish = listed["torchish"]
        assert torchish["default"] and torchish["managed"] and torchish["source"] == "nodebook"
        assert torchish["kind"] == "conda" and torchish["modules"] == ["cuda/12.4"]
        assert torchish["prefix"] == kernels.conda["prefix"]
        assert not listed["python3"]["default"] and listed["python3"]["source"] == "jupyter"
    finally:
        kernels.apply()
    assert (DATA_KERNELS / "analysis" / "kernel.json").exists()
    assert "default_kernel_name" not in CONFIG.read_text()


def test_user_data_dir_moves_them_and_never_replaces_a_foreign_kernelspec(kernels):
    try:
        kernels.apply(user_data_dir=True)
        assert kernel_json(USER_KERNELS, "torchish")["argv"][0] == HELPER
        assert (USER_KERNELS / "analysis" / "kernel.json").exists()
        assert not (DATA_KERNELS / "torchish").exists() and not (DATA_KERNELS / "analysis").exists()
    finally:
        kernels.apply()
    assert not (USER_KERNELS / "torchish").exists()
    assert (DATA_KERNELS / "torchish" / "kernel.json").exists()
    # A kernelspec alice made herself under an entry's name: setup stops and leaves it alone.
    foreign = USER_KERNELS / "analysis"
    foreign.mkdir(parents=True)
    spec = {
        "argv": ["python3", "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "alice's own",
        "language": "python",
    }
    (foreign / "kernel.json").write_text(json.dumps(spec))
    try:
        before = snapshot()
        refused = kernels.run(user_data_dir=True)
        assert refused.rc != 0
        assert f"{foreign} exists and is not nodebook's: rename the entry analysis" in flat(
            refused.output
        )
        assert json.loads((foreign / "kernel.json").read_text()) == spec
        assert snapshot() == before
    finally:
        shutil.rmtree(foreign, ignore_errors=True)


@pytest.fixture
def bare_envs(sandbox):
    """Under alice's home: a venv and a conda-layout env, both without ipykernel."""
    top = HOME / f"nbk-{uuid.uuid4().hex[:8]}"
    venv, conda = top / "bare-venv", top / "conda" / "envs" / "bare"
    sandbox.host("login", [MODULE_PYTHON, "-m", "venv", "--without-pip", str(venv)], user=USER)
    sandbox.host("login", ["mkdir", "-p", f"{conda}/conda-meta", f"{conda}/bin"], user=USER)
    sandbox.host("login", ["ln", "-s", MODULE_PYTHON, f"{conda}/bin/python"], user=USER)
    try:
        yield venv, conda
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_an_env_without_ipykernel_stops_setup_with_the_command_that_adds_it(kernels, bare_envs):
    venv, conda = bare_envs
    entries = [
        *kernels.entries(),
        {"name": "bare-venv", "display_name": "Bare venv", "prefix": str(venv)},
        {"name": "bare-conda", "display_name": "Bare conda", "prefix": str(conda)},
    ]
    before = snapshot()
    refused = kernels.run(environments=entries, install_ipykernel=False)
    assert refused.rc != 0
    said = flat(refused.output)
    assert (
        f"environment 'bare-venv' ({venv}/bin/python) has no ipykernel; add it with: "
        f"{venv}/bin/python -m pip install {INDEX_OPTIONS} ipykernel"
    ) in said
    assert f"add it with: conda install -p {conda} ipykernel (or with pip: " in said
    assert "nodebook_kernels_install_ipykernel: true" in said
    # alice's own two have ipykernel by now: they are not named.
    assert "'torchish' (" not in said and "'analysis' (" not in said
    assert snapshot() == before  # validation comes before anything is written


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"modules": ["cuda/99"]},
            "environment 'torchish': module cuda/99 does not exist (or does not load) on login; "
            "close matches from `module avail`: cuda/12.4",
        ),
        ({"prefix": "/home/alice/no-such-env"}, "no Python at /home/alice/no-such-env/bin/python"),
        ({"name": "python3"}, "'python3' is nodebook's own kernel; pick another name"),
    ],
    ids=["missing-module", "missing-env", "reserved-name"],
)
def test_bad_entries_stop_setup_before_anything_is_written(kernels, change, expected):
    entries = kernels.entries()
    entries[0] = {**entries[0], **change}
    before = snapshot()
    refused = kernels.run(environments=entries)
    assert refused.rc != 0
    assert expected in flat(refused.output)
    assert snapshot() == before


def test_a_default_that_is_not_an_entry_is_refused(kernels):
    refused = kernels.run(default="torch")
    assert refused.rc != 0
    assert (
        "nodebook_kernels_default 'torch' is not one of the environments' names "
        "(python3, torchish, analysis)"
    ) in flat(refused.output)
