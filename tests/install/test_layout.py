"""What the wheel and the collection carry, and the rules that let one tree serve as both
(no sandbox needed; building the wheel fetches setuptools from the package index)."""

from __future__ import annotations

import importlib.util
import json
import re
import tarfile
import tomllib
import zipfile
from pathlib import Path

import yaml
from packaging.specifiers import SpecifierSet
from packaging.version import Version

from tests.install.conftest import COLLECTION, REPO
from tests.install.test_collection import readme_playbook

# The collection's content: in the wheel under ansible_collections/nodebook/jupyter/, in the
# collection's tarball at its root.
SHIPPED = ("playbooks/*.yml", "roles/**/*", "plugins/**/*.py", "meta/runtime.yml")
HELPER_PART_NAMES = ("common", "scheduler", "login", "node", "probes")
NOT_SHIPPED = ("driver", "tests", "sandbox", "bench", "inventory", "docs", "collections", ".ci")


def shipped_files(tree: Path) -> set[str]:
    files = {str(p.relative_to(tree)) for pattern in SHIPPED for p in tree.glob(pattern)}
    return {f for f in files if (tree / f).is_file() and "__pycache__" not in f}


def pyproject() -> dict[str, object]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def galaxy() -> dict[str, object]:
    return yaml.safe_load((REPO / "galaxy.yml").read_text())


def test_wheel_carries_the_collection_beside_the_driver(wheel: Path, source_tree: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    prefix = "/".join(COLLECTION) + "/"
    in_collection = {n.removeprefix(prefix) for n in names if n.startswith(prefix)}
    assert in_collection == shipped_files(source_tree) | {
        "ansible.cfg",
        "galaxy.yml",
        "CHANGELOG.md",
    }
    # The remote helper: its entry point, every part it loads, the job's Jupyter launcher.
    helper = "roles/nodebook_remote/files/"
    parts = {f"{helper}lib/nodebook-remote/{p}.sh" for p in HELPER_PART_NAMES}
    assert {
        f"{helper}bin/nodebook-remote",
        f"{helper}bin/nodebook-jupyter",
        *parts,
    } <= in_collection
    driver = {str(p.relative_to(source_tree)) for p in (source_tree / "driver").glob("*.py")}
    assert driver and driver <= names
    top = {n.split("/", 1)[0] for n in names}
    assert top == {"driver", "ansible_collections", wheel.name.split("-py3")[0] + ".dist-info"}


def test_wheel_metadata_allows_every_controller_python(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        meta = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        text = zf.read(meta).decode()
    requires = re.search(r"^Requires-Python: (.+)$", text, re.MULTILINE)
    assert requires is not None
    allowed = SpecifierSet(requires.group(1))
    assert all(v in allowed for v in ("3.11", "3.12", "3.13"))
    assert not any(v in allowed for v in ("3.10", "3.14"))
    assert "Requires-Dist: ansible-core<2.20,>=2.19" in text


def test_collection_tarball_holds_roles_playbooks_and_plugins_only(
    collection: Path, source_tree: Path
) -> None:
    with tarfile.open(collection) as tar:
        members = {m.name for m in tar.getmembers() if m.isfile()}
        manifest = json.load(tar.extractfile("MANIFEST.json"))  # type: ignore[arg-type]
    assert shipped_files(source_tree) <= members
    assert {"README.md", "CHANGELOG.md", "FILES.json", "MANIFEST.json"} <= members
    assert not [m for m in members if m.split("/", 1)[0] in NOT_SHIPPED]
    assert "ansible.cfg" not in members and not [m for m in members if "__pycache__" in m]
    info = manifest["collection_info"]
    assert (info["namespace"], info["name"], info["version"]) == ("nodebook", "jupyter", "1.0.0")


def test_one_version_for_wheel_and_collection_with_a_changelog_entry() -> None:
    version = pyproject()["project"]["version"]  # type: ignore[index]
    assert galaxy()["version"] == version
    assert Version(str(version)) >= Version("1.0.0")  # ansible-lint's galaxy rule
    assert f"\n## {version}\n" in (REPO / "CHANGELOG.md").read_text()


def test_requires_ansible_matches_the_pinned_ansible_core() -> None:
    runtime = yaml.safe_load((REPO / "meta" / "runtime.yml").read_text())
    pinned = next(
        d
        for d in pyproject()["project"]["dependencies"]  # type: ignore[index]
        if d.startswith("ansible-core")
    )
    specs = (SpecifierSet(runtime["requires_ansible"]), SpecifierSet(pinned.split("core", 1)[1]))
    for spec in specs:
        assert "2.19.0" in spec and "2.19.14" in spec
        assert "2.18.9" not in spec and "2.20.0" not in spec


def filter_names() -> dict[str, str]:
    """Every filter the plugins define: name -> plugin file."""
    names = {}
    for path in sorted((REPO / "plugins" / "filter").glob("*.py")):
        spec = importlib.util.spec_from_file_location(f"_nb_filter_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        names.update(dict.fromkeys(module.FilterModule().filters(), path.name))
    return names


def test_roles_and_playbooks_call_the_filters_by_their_collection_name() -> None:
    """Ansible resolves a filter in a collection's role only by its FQCN (the role's collection
    is searched for modules, not for Jinja plugins): `| nodebook_invalid` works from a checkout
    but fails in `ansible-playbook nodebook.jupyter.setup`. Write `| nodebook.jupyter.NAME`."""
    names = filter_names()
    assert "nodebook_invalid" in names
    used = re.compile(r"""(?:\|\s*|\bmap\(\s*['"])([A-Za-z_][\w.]*)""")
    files = [*REPO.glob("playbooks/*.yml"), *REPO.glob("roles/*/*/*.yml")]
    files += [*REPO.glob("roles/*/templates/*.j2")]
    bare = [
        f"{path.relative_to(REPO)}:{number}: {name} -> nodebook.jupyter.{name}"
        for path in files
        for number, line in enumerate(path.read_text().splitlines(), 1)
        for name in used.findall(line)
        if name in names and not line.lstrip().startswith("#")
    ]
    assert not bare, "unqualified nodebook filters:\n" + "\n".join(bare)


def test_readme_playbook_lists_the_roles_setup_runs_in_its_order() -> None:
    """README's playbook of one's own runs each role whole, one after the other: it must list
    every role playbooks/setup.yml imports, in the order of their last phase there (a role's
    configure may use what an earlier one set: nodebook_job the kernels' data dir)."""
    play = yaml.safe_load((REPO / "playbooks" / "setup.yml").read_text())[0]
    imported = [t["ansible.builtin.import_role"]["name"] for t in play["tasks"]]
    last_phase_order = sorted(set(imported), key=lambda r: len(imported) - imported[::-1].index(r))
    (readme,) = yaml.safe_load(readme_playbook())
    listed = [role.removeprefix("nodebook.jupyter.") for role in readme["roles"]]
    assert listed == last_phase_order, (listed, last_phase_order)
