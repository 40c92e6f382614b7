"""``nodebook doctor``: ssh, setup state, Jupyter's Python, modules, Slurm and a local port.

The cluster side is the remote helper's ``doctor``, piped in (it works before setup and across
versions). One line per check; each failure gets a cause-and-fix line and picks the exit code:
4 (ssh), 3 (only "not set up") or 1.
"""

import subprocess
import time

from driver.commands import connected
from driver.errors import ExitCode, NodebookError
from driver.inventory import Cluster
from driver.progress import Renderer, Update
from driver.tunnel import free_port

SKIPPED = ("setup", "python", "module", "slurm")


def _fix(cluster: Cluster, name: str, detail: str) -> str:
    """What to do about a failed check (one line)."""
    where = f"{cluster.user + '@' if cluster.user else ''}{cluster.host}"
    return {
        "ssh": (
            f"check that `ssh {' '.join(cluster.ssh_args)} {where}` works from this machine "
            "(login node up, its sshd running, your key or password, the host key in "
            "known_hosts; never StrictHostKeyChecking=no)"
        ),
        "setup": "run `nodebook setup` once",
        "python": "Jupyter's venv is gone: re-run `nodebook setup`",
        "helper": "re-run `nodebook setup` (it installs the helper)",
        "module": (
            f"{detail.split()[0]} is not available on {cluster.host} (`module avail`): set "
            "nodebook_environment_module in the inventory and re-run `nodebook setup`"
        ),
        "slurm": "Slurm does not answer on the login node: try `sinfo` there, ask the admins",
        "ports": "free a local port or pass --port",
    }.get(name, "see the line above")


def _modules(cluster: Cluster) -> list[str]:
    hv = cluster.hostvars
    first = (
        [str(hv["nodebook_environment_module"])] if hv.get("nodebook_environment_module") else []
    )
    extra = hv.get("nodebook_environment_extra_modules") or []
    return first + [str(m) for m in extra] if isinstance(extra, list) else first


def doctor(cluster: Cluster, out: Renderer) -> ExitCode:
    """One line per check; a cause and a fix for each failure; the exit code of the worst."""
    results: list[tuple[str, bool | None, str]] = []
    started = time.monotonic()
    checks = None
    try:
        with connected(cluster) as remote:
            results.append(
                (
                    "ssh",
                    True,
                    f"{cluster.user or ''}@{cluster.host} answers "
                    f"({time.monotonic() - started:.2f} s, host key checked)",
                )
            )
            checks = remote.piped("doctor", *_modules(cluster)).of("check")
    except NodebookError as exc:
        results.append(("ssh", False, exc.message))
    except subprocess.TimeoutExpired:
        results.append(("ssh", False, f"{cluster.host} connected but did not answer in 60 s"))
    if checks is None:
        results += [(name, None, "not checked (no ssh)") for name in SKIPPED]
    else:
        setup_ok = any(c.get("name") == "setup" and c.get("ok") for c in checks)
        for check in checks:
            name, ok, detail = str(check.get("name")), check.get("ok"), str(check.get("detail"))
            if name in ("python", "helper") and not setup_ok:
                ok = None  # only a failure when setup claims to be done
            if name == "slurm" and cluster.standalone:
                ok, detail = True, "standalone server (no Slurm)"
            results.append((name, ok if isinstance(ok, bool) else None, detail))
    try:
        port = free_port()
        results.append(("ports", True, f"local port {port} is free for the tunnel"))
    except OSError as exc:
        results.append(("ports", False, f"cannot bind a local port: {exc}"))
    for name, ok, text in results:
        mark = "ok  " if ok else "FAIL" if ok is False else "skip"
        out.emit(Update("info", message=f"{mark} {name:<7} {text}", data={"check": name, "ok": ok}))
    failed = [(name, text) for name, ok, text in results if ok is False]
    for name, text in failed:
        cause, _, fix = text.partition("; ")  # ssh failures come with their own fix
        fix = fix if name == "ssh" and fix else _fix(cluster, name, text)
        out.emit(
            Update(
                "error",
                message=f"{name}: cause: {cause if name == 'ssh' else text}; fix: {fix}",
                data={"check": name, "cause": cause, "fix": fix},
            )
        )
    if not failed:
        return ExitCode.OK
    names = {name for name, _ in failed}
    if "ssh" in names:
        return ExitCode.SSH
    if names == {"setup"}:
        return ExitCode.NOT_SET_UP
    return ExitCode.ERROR
