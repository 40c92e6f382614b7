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
from driver.paths import reinstall_fix, rules, user_inventory_dir, user_inventory_file

INVENTORY_ENV = "NODEBOOK_INVENTORY"
NO_INVENTORY = "no inventory: run `nodebook init NAME --host LOGIN-HOST` (or pass -i PATH)"


def _holds_inventory(directory: Path) -> bool:
    """True when the directory has a YAML file (one per cluster) that is not hidden."""
    if not directory.is_dir():
        return False
    return any(
        p.is_file() and not p.name.startswith(".") and p.suffix in (".yml", ".yaml")
        for p in directory.iterdir()
    )


def resolve_inventory(given: Path | None) -> Path:
    """The inventory to use: ``-i PATH``, else ``$NODEBOOK_INVENTORY``, else the user's inventory
    directory (``$XDG_CONFIG_HOME/nodebook/inventory/``, one file per cluster, written by
    ``nodebook init``) when it holds a YAML file, else ``$XDG_CONFIG_HOME/nodebook/inventory.yml``.
    No default beyond these: the sandbox's inventory is passed explicitly where it is meant."""
    if given is not None:
        return given
    if os.environ.get(INVENTORY_ENV):
        return Path(os.environ[INVENTORY_ENV]).expanduser()
    if _holds_inventory(user_inventory_dir()):
        return user_inventory_dir()
    if user_inventory_file().is_file():
        return user_inventory_file()
    raise NodebookError(NO_INVENTORY, ExitCode.USAGE)


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
    endpoint: str | None = None  # nodebook_job_endpoint from the inventory (None: setup's)
    base_dir: str = ".nodebook"  # nodebook_environment_base_dir: where setup put the helper
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
        raise NodebookError(
            "ansible-inventory not found (ansible-core is missing): "
            + reinstall_fix("ansible-core")
        ) from exc
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
    if "nodebook_endpoint" in hv:
        raise NodebookError(
            f"inventory host {name}: nodebook_endpoint is now nodebook_job_endpoint (the job's "
            "endpoint, as in roles/nodebook_job); rename it",
            ExitCode.USAGE,
        )
    scheduler = str(
        hv.get("nodebook_scheduler", inventory_cache.role_default("nodebook_scheduler"))
    )
    problems = rules().invalid(
        {k: hv[k] for k in ("nodebook_scheduler", "nodebook_job_endpoint") if k in hv}
    )
    if problems:
        raise NodebookError(f"inventory host {name}: {'; '.join(problems)}", ExitCode.USAGE)
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
        scheduler=scheduler,
        tunnel=str(hv.get("nodebook_tunnel", "direct" if scheduler == "none" else "jump")),
        endpoint=str(hv["nodebook_job_endpoint"]) if hv.get("nodebook_job_endpoint") else None,
        base_dir=str(
            hv.get("nodebook_environment_base_dir")
            or inventory_cache.role_default("nodebook_environment_base_dir")
        ),
        hostvars=hv,
    )


def _hostvars(inventory: Path) -> dict[str, dict[str, object]]:
    if not inventory.exists():
        raise NodebookError(f"inventory {inventory} does not exist: pass -i PATH", ExitCode.USAGE)
    listing = _listing(inventory)
    meta = listing.get("_meta", {}) if isinstance(listing, dict) else {}
    allvars = meta.get("hostvars", {}) if isinstance(meta, dict) else {}
    hosts = (
        {h: v for h, v in allvars.items() if isinstance(v, dict)}
        if isinstance(allvars, dict)
        else {}
    )
    if not hosts:
        raise NodebookError(
            f"inventory {inventory} defines no hosts: add your cluster's login node "
            "(`nodebook init NAME --host HOST` writes one)",
            ExitCode.USAGE,
        )
    return hosts


def default_host(hostvars: dict[str, dict[str, object]]) -> str | None:
    """The host to use without --cluster: the only one that is not a second way into another
    (``nodebook_same_as``), else the only Slurm one; None when that is ambiguous."""
    own = sorted(h for h, hv in hostvars.items() if not hv.get("nodebook_same_as"))
    if len(own) == 1:
        return own[0]
    slurm = [h for h in own if hostvars[h].get("nodebook_scheduler", "slurm") != "none"]
    return slurm[0] if len(slurm) == 1 else None


def load_cluster(inventory: Path | None, name: str | None, user: str | None = None) -> Cluster:
    """Read one host from the inventory (None: resolve_inventory's; one ansible-inventory call,
    or its cache)."""
    inventory = resolve_inventory(inventory)
    hostvars = _hostvars(inventory)
    hosts = sorted(hostvars)
    if name is None:
        name = default_host(hostvars)
        if name is None:
            raise NodebookError(
                f"inventory {inventory} has hosts {', '.join(hosts)}: pick one with --cluster NAME",
                ExitCode.USAGE,
            )
    elif name not in hostvars:
        raise NodebookError(
            f"no host {name!r} in {inventory}: pick one of {', '.join(hosts)} with --cluster NAME",
            ExitCode.USAGE,
        )
    return cluster_from_hostvars(name, inventory, hostvars[name], user)


def all_clusters(
    inventory: Path | None, name: str | None, user: str | None = None
) -> list[Cluster]:
    """One cluster (--cluster), else every host that is not a second way into another."""
    inventory = resolve_inventory(inventory)
    if name:
        return [load_cluster(inventory, name, user)]
    hostvars = _hostvars(inventory)
    return [
        cluster_from_hostvars(h, inventory, hv, user)
        for h, hv in sorted(hostvars.items())
        if not hv.get("nodebook_same_as")
    ]
