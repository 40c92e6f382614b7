"""The inventory cache: hits while the files are unchanged, never for secrets or scripts."""

import os
import stat

import pytest

from driver import inventory_cache


@pytest.fixture
def inventory(tmp_path, monkeypatch):
    monkeypatch.setenv("NODEBOOK_STATE_DIR", str(tmp_path / "state"))
    inv = tmp_path / "inv"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text("all:\n  hosts:\n    c1:\n      ansible_host: h1\n")
    (inv / "group_vars" / "all.yml").write_text("nodebook_environment_module: py/3.11\n")
    return inv / "hosts.yml"


def test_hit_after_store_and_entry_is_private(inventory, tmp_path):
    key = inventory_cache.cache_key(inventory)
    assert key is not None
    assert inventory_cache.load(inventory, key) is None
    inventory_cache.store(inventory, key, {"_meta": {"hostvars": {"c1": {"ansible_host": "h1"}}}})
    assert inventory_cache.load(inventory, key) == {
        "_meta": {"hostvars": {"c1": {"ansible_host": "h1"}}}
    }
    entries = list((tmp_path / "state" / "inventory-cache").iterdir())
    assert len(entries) == 1
    assert stat.S_IMODE(entries[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(entries[0].parent.stat().st_mode) == 0o700


def test_any_edit_changes_the_key(inventory):
    key = inventory_cache.cache_key(inventory)
    gv = inventory.parent / "group_vars" / "all.yml"
    gv.write_text("nodebook_environment_module: py/3.12\n")
    os.utime(gv, ns=(1, 1))
    assert inventory_cache.cache_key(inventory) not in (None, key)


@pytest.mark.parametrize(
    "text",
    [
        "secret: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  6162\n",
        "plugin: constructed\n",
    ],
)
def test_vault_values_and_plugins_are_never_cached(inventory, text):
    (inventory.parent / "group_vars" / "all.yml").write_text(text)
    assert inventory_cache.cache_key(inventory) is None


def test_executable_inventories_are_never_cached(inventory):
    inventory.chmod(0o755)
    assert inventory_cache.cache_key(inventory) is None


def test_role_defaults_are_read_from_yaml_once_then_from_their_private_copy(tmp_path, monkeypatch):
    from driver.paths import rules

    monkeypatch.setenv("NODEBOOK_STATE_DIR", str(tmp_path / "state"))
    inventory_cache.role_defaults.cache_clear()
    first = inventory_cache.role_defaults()
    assert first == rules().role_defaults()
    assert inventory_cache.role_default("nodebook_scheduler") == "slurm"
    entry = tmp_path / "state" / "inventory-cache" / "role-defaults.json"
    assert stat.S_IMODE(entry.stat().st_mode) == 0o600

    def no_yaml() -> dict[str, object]:
        raise AssertionError("read the YAML again")

    monkeypatch.setattr(rules(), "role_defaults", no_yaml)
    inventory_cache.role_defaults.cache_clear()
    assert inventory_cache.role_defaults() == first  # the copy, no YAML read
    # a copy made for other files (another key) is never used
    entry.write_text(entry.read_text().replace('"key": "', '"key": "x'))
    inventory_cache.role_defaults.cache_clear()
    with pytest.raises(AssertionError, match="read the YAML again"):
        inventory_cache.role_defaults()
    inventory_cache.role_defaults.cache_clear()
