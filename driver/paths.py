"""Where nodebook's own files are: the playbooks, roles, plugins and Ansible settings it runs.

Installed (a wheel, ``pipx install``), they are the Ansible collection ``nodebook.jupyter`` next
to this package, ``site-packages/ansible_collections/nodebook/jupyter/``, where Ansible finds
collections on ``sys.path`` (the roles call the filter plugins as ``nodebook.jupyter.*``). In a
checkout (or an editable install) they are the repository's top-level directories, and
``collections/ansible_collections/nodebook/jupyter`` (a link to the checkout, named by
ansible.cfg's ``collections_path``) makes the same names resolve. Both trees have one shape:
``playbooks/``, ``roles/``, ``plugins/`` and ``ansible.cfg`` side by side. Everything else finds
them through this module, never through ``__file__`` of its own.
"""

import importlib.util
import os
from functools import cache
from pathlib import Path
from types import ModuleType

PACKAGE = Path(__file__).resolve().parent
# The installed collection (a wheel puts it beside this package) and the checkout's root.
INSTALLED = PACKAGE.parent / "ansible_collections" / "nodebook" / "jupyter"
CHECKOUT = PACKAGE.parent


def _data_root() -> Path:
    """The directory holding playbooks/, roles/, plugins/ and ansible.cfg."""
    for candidate in (INSTALLED, CHECKOUT):
        if (candidate / "playbooks").is_dir() and (candidate / "roles").is_dir():
            return candidate
    raise RuntimeError(f"nodebook's playbooks and roles are missing next to {PACKAGE}")


DATA = _data_root()
# Running from a checkout (`make venv`, an editable install), not from an installed wheel.
FROM_CHECKOUT = DATA == CHECKOUT
PLAYBOOKS = DATA / "playbooks"
ROLES = DATA / "roles"
PLUGINS = DATA / "plugins"
ANSIBLE_CFG = DATA / "ansible.cfg"
# The remote helper (role nodebook_remote, docs/design.md): its entry point bin/nodebook-remote
# and the parts it loads from lib/nodebook-remote/, installed on the cluster by setup with the
# same layout; piped in as one script (helper_script) before setup exists.
HELPER_FILES = ROLES / "nodebook_remote" / "files"
HELPER = HELPER_FILES / "bin" / "nodebook-remote"
HELPER_PARTS = HELPER_FILES / "lib" / "nodebook-remote"
# Starts the job's Jupyter; installed next to the helper, which runs it (docs/design.md).
LAUNCHER = HELPER_FILES / "bin" / "nodebook-jupyter"


RULES_FILE = PLUGINS / "filter" / "nodebook.py"
# The sandbox's inventory, in a checkout only: `make demo`, the tests and the benchmarks pass it
# (-i or $NODEBOOK_INVENTORY); it is never a default.
SANDBOX_INVENTORY = CHECKOUT / "inventory" / "sandbox" / "hosts.yml"


def config_dir() -> Path:
    """The user's nodebook configuration: $XDG_CONFIG_HOME/nodebook, usually ~/.config/nodebook."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "nodebook"


def user_inventory_dir() -> Path:
    """The user's inventory: a directory with one file per cluster (`nodebook init` writes them)."""
    return config_dir() / "inventory"


def user_inventory_file() -> Path:
    """A single inventory file in the config dir, accepted when the inventory dir is empty."""
    return config_dir() / "inventory.yml"


def reinstall_fix(dependency: str) -> str:
    """How to get a missing dependency of nodebook back, as words that work where it runs:
    `make venv` in a checkout; an installed wheel has no Makefile, so pip (or pipx) with this
    very Python and the version nodebook requires."""
    if FROM_CHECKOUT:
        return f"run `make venv` in {CHECKOUT}"
    import importlib.metadata
    import re
    import shlex
    import sys

    try:
        wanted = importlib.metadata.requires("nodebook") or []
    except importlib.metadata.PackageNotFoundError:
        wanted = []
    spec = next((r for r in wanted if re.split(r"[\s<>=!~;\[]", r)[0] == dependency), dependency)
    pip = f"{shlex.quote(sys.executable)} -m pip install {shlex.quote(spec)}"
    return f"install it into nodebook's Python: `{pip}` (with pipx: `pipx reinstall nodebook`)"


@cache
def rules() -> ModuleType:
    """plugins/filter/nodebook.py: the option rules, role defaults and helper command, shared
    with the roles and playbooks (which load it as an Ansible filter plugin)."""
    spec = importlib.util.spec_from_file_location("nodebook_rules", RULES_FILE)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {RULES_FILE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def helper_script() -> str:
    """The whole helper as one script for ``bash -s`` (fed on stdin, never as an argument): its
    parts, then its entry point, which finds them loaded and runs the command."""
    parts = sorted(HELPER_PARTS.glob("*.sh"))
    return "".join(p.read_text() for p in parts) + HELPER.read_text()


def helper_protocol() -> int:
    """The protocol version the helper in this installation speaks (read from the helper)."""
    return int(rules().protocol())
