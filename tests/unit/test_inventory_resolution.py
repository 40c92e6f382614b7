"""Which inventory the driver uses: -i, then $NODEBOOK_INVENTORY, then the user's config dir;
never the sandbox's by default (driver/inventory.py::resolve_inventory)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from driver import cli, inventory, paths
from driver.errors import ExitCode, NodebookError
from driver.inventory import NO_INVENTORY, all_clusters, load_cluster, resolve_inventory
from driver.paths import SANDBOX_INVENTORY, config_dir, user_inventory_dir, user_inventory_file


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user with nothing configured: own HOME, no XDG_CONFIG_HOME, no NODEBOOK_INVENTORY."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("NODEBOOK_INVENTORY", raising=False)
    # The checkout as working directory: its sandbox inventory must still not be picked.
    monkeypatch.chdir(SANDBOX_INVENTORY.parents[2])
    return tmp_path / "home"


def write(path: Path, text: str = "all:\n  hosts:\n    c1:\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_config_dir_follows_xdg_then_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert config_dir() == home / ".config" / "nodebook"
    assert user_inventory_dir() == home / ".config" / "nodebook" / "inventory"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    assert user_inventory_dir() == home / "xdg" / "nodebook" / "inventory"
    assert user_inventory_file() == home / "xdg" / "nodebook" / "inventory.yml"


def test_nothing_configured_is_a_usage_error_naming_init(home: Path) -> None:
    assert SANDBOX_INVENTORY.exists()  # it is there, in the checkout, and still not used
    with pytest.raises(NodebookError) as err:
        resolve_inventory(None)
    assert err.value.code == ExitCode.USAGE
    assert err.value.message == NO_INVENTORY
    assert "nodebook init NAME --host LOGIN-HOST" in NO_INVENTORY and "-i PATH" in NO_INVENTORY


def test_explicit_path_wins_over_everything(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(user_inventory_dir() / "hpc.yml")
    monkeypatch.setenv("NODEBOOK_INVENTORY", str(home / "env.yml"))
    given = home / "given.yml"
    assert resolve_inventory(given) == given


def test_environment_wins_over_config_dir(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(user_inventory_dir() / "hpc.yml")
    monkeypatch.setenv("NODEBOOK_INVENTORY", str(home / "env.yml"))
    assert resolve_inventory(None) == home / "env.yml"


def test_empty_environment_variable_counts_as_unset(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(user_inventory_dir() / "hpc.yml")
    monkeypatch.setenv("NODEBOOK_INVENTORY", "")
    assert resolve_inventory(None) == user_inventory_dir()


def test_environment_expands_the_home_directory(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NODEBOOK_INVENTORY", "~/clusters.yml")
    assert resolve_inventory(None) == home / "clusters.yml"


def test_config_dir_with_a_cluster_file_is_the_inventory(home: Path) -> None:
    write(user_inventory_dir() / "hpc.yaml")
    write(user_inventory_file())  # the directory comes first
    assert resolve_inventory(None) == user_inventory_dir()


def test_config_dir_under_xdg_config_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "xdg"))
    write(home / ".config" / "nodebook" / "inventory" / "old.yml")  # not looked at
    with pytest.raises(NodebookError):
        resolve_inventory(None)
    write(home / "xdg" / "nodebook" / "inventory" / "hpc.yml")
    assert resolve_inventory(None) == home / "xdg" / "nodebook" / "inventory"


@pytest.mark.parametrize("names", [[], [".hpc.yml"], ["notes.txt", "hpc.yml~"]])
def test_config_dir_without_a_cluster_file_falls_through(home: Path, names: list[str]) -> None:
    user_inventory_dir().mkdir(parents=True)
    (user_inventory_dir() / "group_vars").mkdir()
    for name in names:
        write(user_inventory_dir() / name)
    with pytest.raises(NodebookError):
        resolve_inventory(None)
    write(user_inventory_file())
    assert resolve_inventory(None) == user_inventory_file()


def test_single_inventory_file_in_config_dir(home: Path) -> None:
    write(user_inventory_file())
    assert resolve_inventory(None) == user_inventory_file()


def test_load_cluster_and_all_clusters_resolve_before_reading(home: Path) -> None:
    """No ansible-inventory call happens without an inventory: the usage error comes first."""
    for call in (lambda: load_cluster(None, None), lambda: all_clusters(None, None)):
        with pytest.raises(NodebookError) as err:
            call()
        assert err.value.message == NO_INVENTORY


def test_cli_inventory_option_has_no_default(home: Path) -> None:
    parser = cli.build_parser()
    assert parser.parse_args(["doctor"]).inventory is None
    assert parser.parse_args(["doctor", "-i", "x.yml"]).inventory == Path("x.yml")


def test_cli_without_inventory_exits_with_usage_and_says_init(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["doctor"]) == int(ExitCode.USAGE)
    captured = capsys.readouterr()
    assert "nodebook init" in captured.out + captured.err


@pytest.mark.parametrize("from_checkout", [True, False])
def test_missing_ansible_says_a_fix_that_works_where_nodebook_runs(
    home: Path, monkeypatch: pytest.MonkeyPatch, from_checkout: bool
) -> None:
    """An installed wheel has no Makefile: `make venv` only from a checkout, else pip with the
    very Python nodebook runs on and the ansible-core it requires."""
    monkeypatch.setattr(paths, "FROM_CHECKOUT", from_checkout)
    monkeypatch.setattr(inventory, "_ansible_bin", lambda name: f"/nonexistent/bin/{name}")
    with pytest.raises(NodebookError) as exc:
        load_cluster(write(home / "hosts.yml"), None, None)
    message = exc.value.message
    assert len(message.splitlines()) == 1 and "ansible-inventory not found" in message
    if from_checkout:
        assert f"make venv` in {paths.CHECKOUT}" in message, message
    else:
        assert "make" not in message, message
        assert f"`{sys.executable} -m pip install 'ansible-core<" in message, message
