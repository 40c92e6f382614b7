"""A cache of `ansible-inventory --list` for static inventories (it costs ~0.6 s per start), and
of the roles' defaults (PyYAML's import alone is a tenth of the driver's start-up).

The cache entry is keyed by the inventory's files (path, size, mtime) and ansible-core's
version, so any edit is seen at once. Inventories that could hold secrets or run code are never
cached: vault-encrypted values, executable (dynamic) inventories and inventory plugin configs.
Entries live in a 0700 directory of the state root, 0600 each.
"""

import contextlib
import hashlib
import json
import os
from functools import cache
from pathlib import Path

from ansible import __version__ as ansible_version

from driver.paths import ROLES, RULES_FILE, rules
from driver.state import INVENTORY_CACHE_DIR, private_dir, state_root

MAX_FILES = 200
UNSAFE_MARKERS = ("$ANSIBLE_VAULT", "!vault", "\nplugin:")


def inventory_files(inventory: Path) -> list[Path]:
    """The files that make up a static inventory: itself, group_vars/ and host_vars/."""
    root = inventory if inventory.is_dir() else inventory.parent
    files = [] if inventory.is_dir() else [inventory]
    scan = [root] if inventory.is_dir() else [root / "group_vars", root / "host_vars"]
    for top in scan:
        if top.is_dir():
            files += sorted(p for p in top.rglob("*") if p.is_file())
    return files


def cache_key(inventory: Path) -> str | None:
    """A key that changes with any inventory file, or None when it must not be cached."""
    files = inventory_files(inventory.resolve())
    if not files or len(files) > MAX_FILES:
        return None
    stamped = []
    for path in files:
        st = path.stat()
        if st.st_mode & 0o111:
            return None  # a dynamic inventory script: its output may change at any time
        text = "\n" + path.read_text(errors="replace")
        if any(marker in text for marker in UNSAFE_MARKERS):
            return None
        stamped.append((path, st))
    return _key(stamped)


def _key(stamped: list[tuple[Path, os.stat_result]]) -> str:
    """A digest of ansible-core's version and each file's path, size and mtime."""
    digest = hashlib.sha256(ansible_version.encode())
    for path, st in stamped:
        digest.update(f"{path}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def _entry(inventory: Path) -> Path:
    name = hashlib.sha256(str(inventory.resolve()).encode()).hexdigest()[:32]
    return state_root() / INVENTORY_CACHE_DIR / f"{name}.json"


def load(inventory: Path, key: str) -> object | None:
    return _read(_entry(inventory), key)


def store(inventory: Path, key: str, listing: object) -> None:
    _write(_entry(inventory), key, listing)


def _read(path: Path, key: str) -> object | None:
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return entry.get("listing") if isinstance(entry, dict) and entry.get("key") == key else None


def _write(path: Path, key: str, value: object) -> None:
    text = json.dumps({"key": key, "listing": value})  # TypeError before any file is made
    private_dir(path.parent)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def role_default(name: str) -> object:
    """``rules().default(name)``, without reading YAML on every start."""
    defaults = role_defaults()
    return defaults[name] if name in defaults else rules().default(name)


@cache
def role_defaults() -> dict[str, object]:
    """The roles' merged defaults (``rules().role_defaults()``), read from their
    defaults/main.yml once per change of those files or of the rules, else from a JSON copy."""
    files = [RULES_FILE, *sorted(ROLES.glob("*/defaults/main.yml"))]
    key = _key([(path, path.stat()) for path in files])
    entry = state_root() / INVENTORY_CACHE_DIR / "role-defaults.json"
    cached = _read(entry, key)
    if isinstance(cached, dict):
        return cached
    defaults: dict[str, object] = rules().role_defaults()
    with contextlib.suppress(OSError, TypeError, ValueError):  # not cacheable: read them again
        _write(entry, key, defaults)
    return defaults
