"""``nodebook ssh-config JOBID``: an ssh Host block that reaches a session's compute node.

For VS Code Remote-SSH (or plain ``ssh -F FILE nodebook-JOBID``) while the session lives. The
block goes through the login node the way the inventory says (its ssh options, host keys and
identity, resolved by ``ssh -G``), and through the session's own ssh master when the session runs
on this machine, so no second password or one-time code is asked. Host key checking stays on.
"""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

from driver import hostkeys
from driver.commands import connected
from driver.errors import ExitCode, NodebookError
from driver.inventory import Cluster
from driver.progress import Renderer, Update
from driver.ssh import Master, target_argv
from driver.state import StateDir, pid_alive

# What the block keeps of the login host's resolved ssh config (ssh -G), so that the node is
# reached with the same user, identity and pinned host keys.
KEPT = ("user", "identityfile", "identitiesonly", "userknownhostsfile", "globalknownhostsfile")


def resolved(cluster: Cluster) -> dict[str, list[str]]:
    """``ssh -G`` for the login host with the inventory's options: key -> values."""
    proc = subprocess.run(
        ["ssh", "-G", *target_argv(cluster), cluster.host],
        capture_output=True,
        text=True,
        timeout=15,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    if proc.returncode != 0:
        why = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise NodebookError(f"ssh -G {cluster.host} failed: {why}; fix the inventory's ssh options")
    config: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.partition(" ")
        config.setdefault(key.lower(), []).append(value)
    return config


def host_block(
    cluster: Cluster,
    job_id: str,
    node: str,
    proxy: str,
    config: dict[str, list[str]],
    pinned: Path,
) -> str:
    """The Host block text (pure; unit-tested)."""
    lines = [
        f"# nodebook: job {job_id} on {node}, cluster {cluster.name}; valid while the job runs.",
        f"#   ssh -F THIS-FILE nodebook-{job_id}   (or add it to ~/.ssh/config for VS Code)",
        f"Host nodebook-{job_id}",
        f"  HostName {node}",
        f"  ProxyCommand {proxy}",
    ]
    for key in KEPT:
        for value in config.get(key, []):
            if key == "userknownhostsfile":  # the user's own files, then the pinned node keys
                value = " ".join([*value.split(), hostkeys.quoted(str(pinned))])
            lines.append(f"  {key} {value}")
    # The node's key is looked up under its own name (driver.hostkeys pinned it there).
    lines.append(f"  HostKeyAlias {node}")
    # Never off: an inventory that turns it off is refused before this point.
    lines.append("  StrictHostKeyChecking yes")
    return "\n".join(lines) + "\n"


def proxy_command(cluster: Cluster, control_path: str | None) -> str:
    """Through the session's master when it is up, else a login of its own (as ProxyJump)."""
    if control_path and Path(control_path).exists():
        master = Master(cluster, Path(control_path).parent)
        if master.alive():
            return master.proxy_command()
    words = ["ssh", *target_argv(cluster), "-W", "%h:%p", cluster.host]
    return " ".join(shlex.quote(w).replace("%", "%%") for w in words).replace("%%h:%%p", "%h:%p")


def ssh_config(cluster: Cluster, job_id: str, out: Renderer) -> ExitCode:
    if not job_id.isdigit():
        raise NodebookError(f"ssh-config: {job_id!r} is not a Slurm job id", ExitCode.USAGE)
    if cluster.standalone:
        raise NodebookError(
            f"{cluster.name} is a standalone server: ssh to it directly, no block needed",
            ExitCode.USAGE,
        )
    record = StateDir(cluster.name).load(job_id)
    # The inventory's mode, and the session's own: a via-login session has no ssh to its node.
    why = fix = ""
    if cluster.tunnel == "via-login":
        why = f"{cluster.name} forbids ssh to compute nodes (nodebook_tunnel: via-login)"
    elif record is not None and record.tunnel == "via-login":
        why = f"job {job_id} was started with --tunnel via-login"
        fix = " (or start a session with --tunnel jump)"
    if why:
        raise NodebookError(
            f"{why}: VS Code Remote-SSH cannot reach the node there; connect VS Code's Jupyter "
            f"to the session's URL instead{fix} (README, VS Code)",
            ExitCode.USAGE,
        )
    live = record is not None and pid_alive(record.driver_pid)
    node = record.node if live and record else None
    if node is None:
        with connected(cluster) as remote:
            sessions = {str(s.get("job_id")): s for s in remote.sessions()}
            found = sessions.get(job_id)
            if found is None or found.get("state") != "RUNNING" or not found.get("node"):
                raise NodebookError(
                    f"job {job_id} is not a running session on {cluster.name} "
                    "(see `nodebook list`)",
                    ExitCode.NOT_FOUND,
                )
            node = str(found["node"])
            # A session of another machine: the login node's records of the node's key, pinned
            # here as a session pins them (no token asked for).
            reply = remote.call("connection", job_id, "--timeout", "0", *remote.scheduler_args())
            line = reply.first("connection") or {}
            hostkeys.pin(cluster.name, node, [str(r) for r in line.get("host_keys") or []])
    proxy = proxy_command(cluster, record.control_path if live and record else None)
    pinned = hostkeys.pinned_file(cluster.name)
    text = host_block(cluster, job_id, node, proxy, resolved(cluster), pinned)
    if out.json_mode:
        out.emit(Update("ssh-config", job_id=job_id, node=node, data={"config": text}))
    else:
        print(text, end="", flush=True)
    return ExitCode.OK
