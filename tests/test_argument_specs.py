"""Every role's defaults and meta/argument_specs.yml agree: same names, matching types/defaults.

Pure logic, no sandbox. argument_specs do not convert types and `required` is satisfied by a
default, so a spec that drifts from the defaults silently validates nothing: this test is the
guard.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

ROLES = Path(__file__).resolve().parents[1] / "roles"
ROLE_NAMES = sorted(p.name for p in ROLES.iterdir() if (p / "tasks" / "main.yml").exists())

PY_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "bool": (bool,),
    "list": (list,),
    "dict": (dict,),
    "float": (float, int),
    "path": (str,),
}


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def spec_options(role: str) -> dict[str, dict[str, Any]]:
    return load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]["main"]["options"]


def defaults(role: str) -> dict[str, Any]:
    return load(ROLES / role / "defaults" / "main.yml") or {}


def test_roles_found() -> None:
    assert {
        "nodebook_environment",
        "nodebook_jupyter",
        "nodebook_password",
        "nodebook_jupyter_config",
        "nodebook_job",
    } <= set(ROLE_NAMES)


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_default_is_in_the_spec_and_back(role: str) -> None:
    assert set(defaults(role)) == set(spec_options(role))


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_defaults_are_role_prefixed(role: str) -> None:
    assert [name for name in defaults(role) if not name.startswith(role + "_")] == []


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_spec_defaults_and_types_match(role: str) -> None:
    values = defaults(role)
    for name, option in spec_options(role).items():
        assert "default" in option, f"{role}: {name} has no default in the spec"
        assert option["default"] == values[name], f"{role}: {name} default differs"
        assert option.get("description"), f"{role}: {name} has no description"
        kind = option["type"]
        value = values[name]
        if isinstance(value, str) and "{{" in value:
            continue  # templated from another role's facts: checked when the role runs
        assert isinstance(value, PY_TYPES[kind]), f"{role}: {name} is not a {kind}: {value!r}"
        if kind == "int":
            assert not isinstance(value, bool), f"{role}: {name} is a bool, spec says int"
        if "choices" in option:
            assert value in option["choices"], f"{role}: {name}={value!r} not in its choices"
        if kind == "list" and value:
            assert "elements" in option


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_role_has_readme_meta_and_phase_tags(role: str) -> None:
    base = ROLES / role
    assert (base / "README.md").read_text().strip()
    assert load(base / "meta" / "main.yml")["galaxy_info"]["role_name"] == role
    tags = {t for task in load(base / "tasks" / "main.yml") for t in task.get("tags", [])}
    assert "validate" in tags and "configure" in tags


def test_secret_option_is_no_log() -> None:
    assert spec_options("nodebook_password")["nodebook_password_secret"].get("no_log") is True


def test_sandbox_wheelhouse_carries_the_pins() -> None:
    """The sandbox's index must serve exactly what the role pins (roles/nodebook_jupyter)."""
    wheelhouse = ROLES.parent / "sandbox" / "wheelhouse.txt"
    if not wheelhouse.exists():
        pytest.skip("no sandbox wheelhouse list")
    lines = {
        line.strip() for line in wheelhouse.read_text().splitlines() if "==" in line.split("#")[0]
    }
    d = defaults("nodebook_jupyter")
    assert f"jupyterlab=={d['nodebook_jupyter_jupyterlab_version']}" in lines
    assert f"notebook=={d['nodebook_jupyter_notebook_version']}" in lines
    assert f"jupyter-server=={d['nodebook_jupyter_server_version']}" in lines
