"""The cluster's connection settings, read from the Ansible inventory (never guessed)."""

import contextlib
import json
import os
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from driver import inventory_cache
from driver.errors import ExitCode, NodebookError

REPO = Path(__file__).resolve().parent.parent
DEFAULT_INVENTORY = REPO / "inventory" / "sandbox" / "hosts.yml"


@dataclass(frozen=True)
class Cluster:
    """One inventory host: where ssh goes and how the session runs there."""

    name: str
    inventory: Path
    host: str
    user: str | None = None
    port: int | None = None
    ssh_args: tuple[str, ...] = ()
    identity: str | None = None
    scheduler: str = "slurm"
    tunnel: str = "jump"
    endpoint: str = "socket"
    hostvars: dict[str, object] = field(default_factory=dict, compare=False, repr=False)

    @property
    def same_as(self) -> str | None:
        """Another inventory host for the same cluster (a second way in, e.g. a login port
        that asks for a password and a code): not a default, not listed twice."""
        value = self.hostvars.get("nodebook_same_as")
        return str(value) if value else None

    @property
    def standalone(self) -> bool:
        """True for a host without a scheduler (a workstation or VM running Jupyter directly)."""
        return self.scheduler == "none"


def _ansible_bin(name: str) -> str:
    """Path of an Ansible command next to this Python (the project venv), else from PATH."""
    import sys

    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


def _run_inventory(inventory: Path, args: list[str]) -> object:
    argv = [_ansible_bin("ansible-inventory"), "-i", str(inventory), *args]
    # A file no plugin can parse is an error, not an empty inventory.
    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"}
    try:
        proc = subprocess.run(
            argv, capture_output=True, text=True, timeout=60, check=False, env=env
        )
    except FileNotFoundError as exc:
        raise NodebookError("ansible-inventory not found: run `make venv` first") from exc
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        why = next(
            (ln for ln in lines if "parsing failed" in ln.lower() and not ln.startswith("[")),
            lines[-1] if lines else "unknown error",
        )
        raise NodebookError(
            f"cannot read inventory {inventory}: {why}; fix the file "
            f"(`ansible-inventory -i {inventory} --list` shows every error)",
            ExitCode.USAGE,
        )
    return json.loads(proc.stdout)


def _listing(inventory: Path) -> object:
    """`ansible-inventory --list`, from the cache when the static inventory has not changed."""
    key = inventory_cache.cache_key(inventory)
    if key is not None and (cached := inventory_cache.load(inventory, key)) is not None:
        return cached
    listing = _run_inventory(inventory, ["--list"])
    if key is not None:
        with contextlib.suppress(OSError):
            inventory_cache.store(inventory, key, listing)
    return listing


def cluster_from_hostvars(
    name: str, inventory: Path, hv: dict[str, object], user: str | None = None
) -> Cluster:
    """Build a Cluster from one host's inventory variables (pure; unit-tested)."""
    for key in ("ansible_host", "ansible_user", "ansible_ssh_common_args"):
        value = hv.get(key)
        if isinstance(value, str) and "{{" in value:
            raise NodebookError(
                f"inventory host {name}: {key} is a template; give a literal value", ExitCode.USAGE
            )
    args: list[str] = []
    for key in ("ansible_ssh_common_args", "ansible_ssh_extra_args"):
        value = hv.get(key)
        if isinstance(value, str) and value.strip():
            args += shlex.split(value)
    for i, arg in enumerate(args):
        if "stricthostkeychecking=no" in arg.lower().replace(" ", "") or (
            arg == "-o"
            and i + 1 < len(args)
            and args[i + 1].lower().replace(" ", "") == "stricthostkeychecking=no"
        ):
            raise NodebookError(
                f"inventory host {name}: StrictHostKeyChecking=no is refused; pin the host keys",
                ExitCode.USAGE,
            )
    port = hv.get("ansible_port", hv.get("ansible_ssh_port"))
    key = hv.get("ansible_ssh_private_key_file", hv.get("ansible_private_key_file"))
    ansible_user = hv.get("ansible_user", hv.get("ansible_ssh_user"))
    return Cluster(
        name=name,
        inventory=inventory,
        host=str(hv.get("ansible_host", name)),
        user=user or (str(ansible_user) if ansible_user else None),
        port=int(str(port)) if port is not None else None,
        ssh_args=tuple(args),
        identity=str(Path(str(key)).expanduser()) if key else None,
        scheduler=str(hv.get("nodebook_scheduler", "slurm")),
        tunnel=str(
            hv.get(
                "nodebook_tunnel", "direct" if hv.get("nodebook_scheduler") == "none" else "jump"
            )
        ),
        endpoint=str(hv.get("nodebook_endpoint", "socket")),
        hostvars=hv,
    )


def load_cluster(inventory: Path, name: str | None, user: str | None = None) -> Cluster:
    """Read one host from the inventory (one ansible-inventory call).

    With no name, the inventory must hold exactly one host with a scheduler (hosts marked
    ``nodebook_same_as: OTHER`` do not count: they are a second way into OTHER).
    """
    if not inventory.exists():
        raise NodebookError(f"inventory {inventory} does not exist: pass -i PATH", ExitCode.USAGE)
    listing = _listing(inventory)
    meta = listing.get("_meta", {}) if isinstance(listing, dict) else {}
    allvars = meta.get("hostvars", {}) if isinstance(meta, dict) else {}
    hosts = sorted(allvars) if isinstance(allvars, dict) else []
    if not hosts:
        raise NodebookError(
            f"inventory {inventory} defines no hosts: add your cluster's login node "
            "(see inventory/example/hosts.yml)",
            ExitCode.USAGE,
        )
    if name is None:
        slurm = [
            h
            for h in hosts
            if allvars[h].get("nodebook_scheduler", "slurm") != "none"
            and not allvars[h].get("nodebook_same_as")
        ]
        if len(slurm) != 1:
            raise NodebookError(
                f"inventory {inventory} has hosts {', '.join(hosts) or 'none'}: pick one with "
                "--cluster NAME",
                ExitCode.USAGE,
            )
        name = slurm[0]
    elif name not in hosts:
        raise NodebookError(
            f"no host {name!r} in {inventory}: pick one of {', '.join(hosts) or 'none'} "
            "with --cluster NAME",
            ExitCode.USAGE,
        )
    hv = allvars[name]
    if not isinstance(hv, dict):
        raise NodebookError(f"inventory host {name}: unexpected ansible-inventory output")
    return cluster_from_hostvars(name, inventory, hv, user)
