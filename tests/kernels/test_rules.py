"""The rules of roles/nodebook_kernels (plugins/filter/nodebook_kernels.py), without a cluster."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

PLUGIN = Path(__file__).resolve().parents[2] / "plugins" / "filter" / "nodebook_kernels.py"
_spec = importlib.util.spec_from_file_location("nodebook_kernels_filters", PLUGIN)
assert _spec is not None and _spec.loader is not None
rules = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(rules)

CONDA = {
    "name": "torchish",
    "display_name": "Torch",
    "modules": ["cuda/12.4"],
    "prefix": "/home/a/conda/envs/torchish/",
}
VENV = {"name": "analysis", "python": "/home/a/envs/analysis/bin/python"}
NO_IPYKERNEL = "No module named 'ipykernel'"
SANDBOX_PIP = [
    "--disable-pip-version-check",
    "--no-input",
    "--timeout",
    "15",
    "--retries",
    "1",
    "--index-url",
    "http://login:3141/simple/",
    "--trusted-host=login",
    "--user",
]


def test_good_entries_have_no_problems_and_are_filled_in() -> None:
    assert rules.problems([CONDA, VENV], "torchish") == []
    assert rules.problems(None) == [] and rules.problems([], "") == []
    conda, venv = rules.entries([CONDA, VENV])
    assert conda == {
        "name": "torchish",
        "display_name": "Torch",
        "modules": ["cuda/12.4"],
        "prefix": "/home/a/conda/envs/torchish",
        "python": "/home/a/conda/envs/torchish/bin/python",
    }
    # Given its python, a venv's prefix is two levels up; the display name defaults to the name.
    assert venv["prefix"] == "/home/a/envs/analysis" and venv["display_name"] == "analysis"
    assert venv["modules"] == []


@pytest.mark.parametrize(
    ("entries", "default", "expected"),
    [
        ({"name": "x"}, "", "must be a list"),
        ([["x"]], "", "environment 1 is not a mapping"),
        ([{"name": "Torch GPU", "prefix": "/e"}], "", "lowercase letters"),
        ([{"name": "python3", "prefix": "/e"}], "", "nodebook's own kernel"),
        ([{"name": "x"}], "", "give the environment's prefix (or its python)"),
        ([{"name": "x", "prefix": "envs/x"}], "", "absolute path"),
        ([{"name": "x", "prefix": '/e/"x'}], "", "without quotes"),
        ([{"name": "x", "prefix": "/e", "modules": "cuda/12.4"}], "", "list of module names"),
        ([{"name": "x", "prefix": "/e", "modules": ["cuda 12"]}], "", "list of module names"),
        ([{"name": "x", "prefix": "/e", "env": "/e"}], "", "unknown key env"),
        ([{"name": "x", "prefix": "/e", "display_name": ""}], "", "display_name"),
        ([CONDA, {**VENV, "name": "torchish"}], "", "both named 'torchish'"),
        ([CONDA], "nope", "'nope' is not one of the environments' names (python3, torchish)"),
    ],
)
def test_each_bad_entry_says_what_is_wrong_and_what_to_do(entries, default, expected) -> None:
    found = rules.problems(entries, default)
    assert any(expected in p for p in found), found


def test_the_default_may_be_nodebooks_own() -> None:
    assert rules.problems([CONDA], "python3") == []


def test_kind_comes_from_the_prefix_on_the_cluster() -> None:
    items = rules.entries([CONDA, VENV, {"name": "plain", "python": "/usr/bin/python3"}])
    assert rules.stat_paths(items)[:3] == [
        "/home/a/conda/envs/torchish/conda-meta",
        "/home/a/conda/envs/torchish/pyvenv.cfg",
        "/home/a/conda/envs/torchish/bin/python",
    ]
    present = {"stat": {"exists": True, "isdir": True}}
    cfg = {"stat": {"exists": True, "isdir": False}}
    python = {"stat": {"exists": True, "isdir": False, "xusr": True}}
    absent = {"stat": {"exists": False}}
    stats = [present, absent, python, absent, cfg, python, absent, absent, absent]
    conda, venv, plain = rules.resolve(items, stats)
    assert (conda["kind"], venv["kind"], plain["kind"]) == ("conda", "venv", "plain")
    assert conda["python_ok"] and venv["python_ok"] and not plain["python_ok"]
    assert plain["prefix"] == "/usr"
    with pytest.raises(ValueError):
        rules.resolve(items, stats[:3])


def test_kernelspec_argv_is_the_helpers_kernel_command() -> None:
    (entry,) = rules.resolve(
        rules.entries([CONDA]),
        [{"stat": {"isdir": True}}, {"stat": {}}, {"stat": {"exists": True, "xusr": True}}],
    )
    spec = rules.kernelspec(entry, "/home/a/.nodebook/bin/nodebook-remote")
    prefix = "/home/a/conda/envs/torchish"
    words = f"kernel --name torchish --kind conda --prefix {prefix} --python {prefix}/bin/python"
    tail = "--module cuda/12.4 -- -f {connection_file}"
    assert spec["argv"] == ["/home/a/.nodebook/bin/nodebook-remote", *words.split(), *tail.split()]
    assert spec["display_name"] == "Torch" and spec["language"] == "python"
    ours = spec["metadata"]["nodebook"]
    assert ours["managed_by"] == "nodebook_kernels" and ours["modules"] == ["cuda/12.4"]


def test_the_install_hint_is_the_command_with_setups_package_source() -> None:
    venv = {**rules.entries([VENV])[0], "kind": "venv"}
    assert rules.install_hint(venv, SANDBOX_PIP) == (
        "/home/a/envs/analysis/bin/python -m pip install --index-url "
        "http://login:3141/simple/ --trusted-host=login ipykernel"
    )
    conda = {**rules.entries([CONDA])[0], "kind": "conda"}
    hint = rules.install_hint(conda)
    assert hint.startswith("conda install -p /home/a/conda/envs/torchish ipykernel (or with pip: ")
    # Offline setup's wheels (nodebook_jupyter) are where the packages come from: kept.
    offline = ["--no-index", "--find-links", "/home/a/.nodebook/wheels", "--timeout=15"]
    assert rules.pip_words(offline) == ["--no-index", "--find-links", "/home/a/.nodebook/wheels"]


def test_probe_reports_and_import_checks() -> None:
    item = {"name": "torchish", "modules": ["cuda/99"], "python": "/e/bin/python"}
    ok = {
        "item": {**item, "name": "ok"},
        "rc": 0,
        "stdout_lines": [
            "Lmod says hello",
            '{"nodebook": "environment", "path": "/m/bin:/usr/bin", "ld_library_path": "/m/lib",'
            ' "version": "3.11.2"}',
        ],
    }
    missing = {
        "item": item,
        "rc": 3,
        "stdout_lines": [
            '{"nodebook": "error", "error": "missing-module", "message": "module cuda/99 does not'
            ' exist (or does not load) on login", "close": ["cuda/12.4"]}',
        ],
    }
    silent = {"item": {**item, "name": "silent"}, "rc": 1, "stdout_lines": [], "stderr": "boom"}
    found = rules.reports([ok, missing, silent, {"item": item, "skipped": True}])
    assert found["ok"] == {
        "ok": True,
        "env": {"PATH": "/m/bin:/usr/bin", "LD_LIBRARY_PATH": "/m/lib"},
        "version": "3.11.2",
    }
    assert "close matches from `module avail`: cuda/12.4" in found["torchish"]["message"]
    assert "boom" in found["silent"]["message"] and not found["silent"]["ok"]

    checks = rules.ipykernel(
        [
            {"item": item, "rc": 0},
            {"item": item, "rc": 1, "stderr": f"Traceback...\nModuleNotFoundError: {NO_IPYKERNEL}"},
            {"item": {**item, "name": "broken"}, "rc": 1, "stderr": "ImportError: libzmq.so.5"},
            {"item": item, "skipped": True},
        ]
    )
    assert [e["name"] for e in checks["missing"]] == ["torchish"]
    assert len(checks["broken"]) == 1 and "libzmq.so.5" in checks["broken"][0]
    message = rules.missing_message([{**item, "prefix": "/e", "kind": "venv"}], SANDBOX_PIP)
    assert (
        "'torchish' (/e/bin/python) has no ipykernel; add it with: /e/bin/python -m pip" in message
    )
    assert message.endswith(
        "nodebook_kernels_install_ipykernel: true and setup installs it "
        "(with Jupyter's pip settings)"
    )
