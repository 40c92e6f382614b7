"""The short subcommands: list, stop, setup (doctor is driver.doctor)."""

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from driver.errors import ExitCode, NodebookError
from driver.inventory import Cluster, all_clusters
from driver.paths import ANSIBLE_CFG, DATA, PLAYBOOKS
from driver.progress import Renderer, Update
from driver.remote import Remote
from driver.runner import PlaybookRun
from driver.ssh import Master, cleanup_dir, make_control_dir
from driver.state import StateDir, pid_alive


@contextlib.contextmanager
def connected(cluster: Cluster) -> Iterator[Remote]:
    """A master to the cluster's login node for one command, and the helper behind it."""
    master = Master(cluster, make_control_dir())
    try:
        master.start()
        yield Remote(master, cluster)
    finally:
        master.close()
        cleanup_dir(master.control_dir)


def list_sessions(inventory: Path, name: str | None, user: str | None, out: Renderer) -> ExitCode:
    """One line per session on each cluster, with the local tunnel if this machine holds one."""
    found = 0
    for cluster in all_clusters(inventory, name, user):
        try:
            with connected(cluster) as remote:
                sessions = remote.sessions()
        except NodebookError as exc:
            out.emit(Update("info", message=f"{cluster.name}: unreachable ({exc.message})"))
            continue
        local = {r.job_id: r for r in StateDir(cluster.name).records()}
        for s in sessions:
            job_id = str(s.get("job_id"))
            rec = local.get(job_id)
            attached = rec is not None and pid_alive(rec.driver_pid)
            data = {k: v for k, v in s.items() if k != "nodebook"}
            data.update(
                cluster=cluster.name, local_port=rec.local_port if attached and rec else None
            )
            found += 1
            state, node = str(s.get("state") or ""), str(s.get("node") or "")
            if out.json_mode:
                out.emit(Update("session", job_id=job_id, state=state, node=node, data=data))
                continue
            where = f"port {rec.local_port}" if attached and rec else "no tunnel here"
            extra = f" ({s['reason']})" if state == "PENDING" and s.get("reason") else ""
            gres = f" GPUs {s['gpus']}" if s.get("gpus") else ""
            used, limit = s.get("elapsed") or "-", s.get("time_limit") or "-"
            out.emit(
                Update(
                    "info",
                    message=(
                        f"{cluster.name:<16} {job_id:<12} {state}{extra:<10} {node or '-':<8}"
                        f"{gres} {used:>10} / {limit:<10} {where}"
                    ),
                )
            )
    if not found:
        out.emit(Update("info", message="no sessions"))
    return ExitCode.OK


def stop(cluster: Cluster, job_id: str | None, out: Renderer) -> ExitCode:
    """Cancel one session or all of them (cleanup.yml) and confirm they left the queue."""
    if job_id is not None and not job_id.removeprefix("s").isdigit():
        raise NodebookError(f"stop: {job_id!r} is not a job id", ExitCode.USAGE)
    ev: dict[str, Any] = {"nodebook_job_id": job_id} if job_id else {"nodebook_all": True}
    if cluster.user:
        ev["ansible_user"] = cluster.user
    stopped: list[str] = []

    def on_update(update: Update) -> None:
        if update.kind == "stopped" and update.data.get("cancelled") and update.job_id:
            stopped.append(update.job_id)

    with connected(cluster) as remote:
        run = PlaybookRun(cluster, "cleanup.yml", ev, remote.master.ansible_env(), on_update)
        run.run()
        run.raise_for_failure("stop")
    for job in stopped:
        StateDir(cluster.name).remove(job)
    if job_id and job_id not in stopped:
        raise NodebookError(f"no session {job_id} on {cluster.name}", ExitCode.NOT_FOUND)
    out.emit(
        Update(
            "info",
            message=f"stopped: {', '.join(stopped) or 'nothing was running'}",
            data={"stopped": stopped},
        )
    )
    return ExitCode.OK


def setup(cluster: Cluster, extra: list[str]) -> ExitCode:
    """Run playbooks/setup.yml in the foreground (it may prompt for a password)."""
    with connected(cluster) as remote:
        argv = [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(cluster.inventory),
            "--limit",
            cluster.name,
            str(PLAYBOOKS / "setup.yml"),
        ]
        if cluster.user:
            argv += ["-e", f"ansible_user={cluster.user}"]
        env = {**os.environ, **remote.master.ansible_env(), "ANSIBLE_CONFIG": str(ANSIBLE_CFG)}
        child = subprocess.Popen([*argv, *extra], env=env, cwd=DATA)
        try:
            child.wait()
        except KeyboardInterrupt:
            # Ctrl-C reached ansible-playbook too (same process group): let it stop its tasks.
            try:
                child.wait(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
            raise NodebookError(
                f"setup was interrupted on {cluster.name}; it is safe to run "
                "`nodebook setup` again (it picks up where it stopped)",
                ExitCode.INTERRUPTED,
            ) from None
    if child.returncode != 0:
        raise NodebookError(
            f"setup failed on {cluster.name} (ansible-playbook exit "
            f"{child.returncode}); see the output above"
        )
    return ExitCode.OK
