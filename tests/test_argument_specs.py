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
        "nodebook_remote",
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


PHASES = ("validate", "install", "configure")
# Entry points that are not phases: nodebook_remote's probe (the helper's commands before setup,
# for the other roles' checks), with options of its own.
OTHER_ENTRY_POINTS = {"nodebook_remote": {"probe"}}


def role_phases(role: str) -> list[str]:
    return [p for p in PHASES if (ROLES / role / "tasks" / f"{p}.yml").exists()]


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_role_has_readme_meta_and_phase_tags(role: str) -> None:
    base = ROLES / role
    assert (base / "README.md").read_text().strip()
    assert load(base / "meta" / "main.yml")["galaxy_info"]["role_name"] == role
    tags = {t for task in load(base / "tasks" / "main.yml") for t in task.get("tags", [])}
    assert "configure" in role_phases(role)
    # the phase's tag and a role-prefixed one per phase (as prometheus-community's roles have them)
    assert set(role_phases(role)) <= tags
    assert {f"{role}_{phase}" for phase in role_phases(role)} <= tags


@pytest.mark.parametrize("role", ROLE_NAMES)
def test_every_phase_is_an_entry_point_with_the_roles_options(role: str) -> None:
    """`tasks_from: <phase>` is validated by Ansible itself against the entry point of that name."""
    specs = load(ROLES / role / "meta" / "argument_specs.yml")["argument_specs"]
    others = OTHER_ENTRY_POINTS.get(role, set())
    assert set(specs) == {"main", *role_phases(role), *others}
    for name, entry in specs.items():
        assert entry.get("short_description"), f"{role}: entry point {name} has no description"
        if name not in others:
            assert entry["options"] == specs["main"]["options"], f"{role}: {name} options differ"
    for name in others:
        assert (ROLES / role / "tasks" / f"{name}.yml").exists()


def test_four_roles_have_no_install_phase() -> None:
    assert sorted(r for r in ROLE_NAMES if "install" not in role_phases(r)) == [
        "nodebook_environment",
        "nodebook_job",
        "nodebook_jupyter_config",
        "nodebook_remote",
    ]


def test_no_task_rereads_the_argument_specs() -> None:
    for path in ROLES.glob("*/tasks/*.yml"):
        assert "validate_argument_spec" not in path.read_text(), path


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
    assert f"jupyter-server-proxy=={d['nodebook_jupyter_server_proxy_version']}" in lines
    assert f"jsonschema=={d['nodebook_jupyter_jsonschema_version']}" in lines
