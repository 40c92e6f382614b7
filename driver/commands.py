"""The short subcommands: list, stop, setup, doctor."""

import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from driver.errors import ExitCode, NodebookError
from driver.inventory import REPO, Cluster, load_cluster
from driver.progress import Renderer, Update
from driver.runner import PlaybookRun
from driver.ssh import Master, cleanup_dir, make_control_dir
from driver.state import StateDir, pid_alive
from driver.tunnel import free_port


@contextlib.contextmanager
def _master(cluster: Cluster) -> Any:
    master = Master(cluster, make_control_dir())
    try:
        master.start()
        yield master
    finally:
        master.close()
        cleanup_dir(master.control_dir)


def _all_clusters(inventory: Path, name: str | None, user: str | None) -> list[Cluster]:
    if name:
        return [load_cluster(inventory, name, user)]
    listing = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(inventory), "--list"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if listing.returncode != 0:
        raise NodebookError(f"cannot read inventory {inventory}", ExitCode.USAGE)
    hosts = sorted(json.loads(listing.stdout).get("_meta", {}).get("hostvars", {}))
    return [load_cluster(inventory, h, user) for h in hosts]


LIST_SLURM = "squeue -h -u \"$(id -un)\" -n nodebook -o '%i|%T|%N|%M|%l|%r'"
LIST_SERVER = (
    'for p in "$HOME"/.nodebook/jobs/*.pid; do [ -r "$p" ] || continue; '
    'kill -0 "$(cat "$p")" 2>/dev/null || continue; id=${p##*/}; '
    'printf "%s|RUNNING|%s|||\\n" "${id%.pid}" "$(hostname -s)"; done'
)


def list_sessions(inventory: Path, name: str | None, user: str | None, out: Renderer) -> ExitCode:
    """One line per session on each cluster, with the local tunnel if this machine holds one."""
    found = 0
    for cluster in _all_clusters(inventory, name, user):
        try:
            with _master(cluster) as master:
                proc = master.run(LIST_SERVER if cluster.standalone else LIST_SLURM)
        except NodebookError as exc:
            out.emit(Update("info", message=f"{cluster.name}: unreachable ({exc.message})"))
            continue
        local = {r.job_id: r for r in StateDir(cluster.name).records()}
        for line in proc.stdout.splitlines():
            job_id, state, node, used, limit, reason = (line.split("|") + [""] * 6)[:6]
            rec = local.get(job_id)
            attached = rec is not None and pid_alive(rec.driver_pid)
            data = {
                "cluster": cluster.name,
                "job_id": job_id,
                "state": state,
                "node": node,
                "elapsed": used,
                "time_limit": limit,
                "local_port": rec.local_port if attached and rec else None,
            }
            found += 1
            if out.json_mode:
                out.emit(Update("session", job_id=job_id, state=state, node=node, data=data))
            else:
                where = f"port {rec.local_port}" if attached and rec else "no tunnel here"
                extra = f" ({reason})" if state == "PENDING" and reason else ""
                out.emit(
                    Update(
                        "info",
                        message=(
                            f"{cluster.name:<16} {job_id:<12} {state}{extra:<10} {node or '-':<8} "
                            f"{used or '-':>10} / {limit or '-':<10} {where}"
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
    with _master(cluster) as master:
        run = PlaybookRun(cluster, "cleanup.yml", ev, master.ansible_env(), lambda _u: None)
        run.run()
        run.raise_for_failure("stop")
    stopped = [str(j) for j in run.stats.get("nodebook_stopped", [])]
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
    with _master(cluster) as master:
        argv = [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            str(cluster.inventory),
            "--limit",
            cluster.name,
            str(REPO / "playbooks/setup.yml"),
        ]
        if cluster.user:
            argv += ["-e", f"ansible_user={cluster.user}"]
        env = {**os.environ, **master.ansible_env(), "ANSIBLE_CONFIG": str(REPO / "ansible.cfg")}
        proc = subprocess.run([*argv, *extra], env=env, check=False, cwd=REPO)
    if proc.returncode != 0:
        raise NodebookError(
            f"setup failed on {cluster.name} (ansible-playbook exit "
            f"{proc.returncode}); see the output above"
        )
    return ExitCode.OK


DOCTOR_PROBE = r"""
f="$HOME/.nodebook/setup.json"
if [ -r "$f" ]; then echo "setup=ok"; else echo "setup=missing"; fi
py=$(sed -n 's/.*"python": *"\([^"]*\)".*/\1/p' "$f" 2>/dev/null | head -n 1)
if [ -n "$py" ] && [ -x "$py" ]; then echo "python=$py"; else echo "python=missing"; fi
mods=$(tr -d '\n ' < "$f" 2>/dev/null | sed -n 's/.*"modules":\[\([^]]*\)\].*/\1/p' |
  tr -d '"' | tr , ' ')
for m in $mods; do
  if bash -lc "module is-avail $m" >/dev/null 2>&1; then echo "module=$m ok"
  else echo "module=$m missing"; fi
done
[ -n "$mods" ] || echo "module=none"
if command -v sinfo >/dev/null 2>&1; then
  if s=$(sinfo -h -o '%P' 2>&1); then echo "slurm=ok $(echo $s)"; else echo "slurm=fail $s"; fi
else echo "slurm=none"; fi
"""


def doctor(cluster: Cluster, out: Renderer) -> ExitCode:
    """One line per check; exit 1 if any failed."""
    results: list[tuple[str, bool, str]] = []
    started = time.monotonic()
    try:
        with _master(cluster) as master:
            results.append(
                (
                    "ssh",
                    True,
                    f"{cluster.user or ''}@{cluster.host} answers "
                    f"({time.monotonic() - started:.2f} s, host key checked)",
                )
            )
            proc = master.run(DOCTOR_PROBE, timeout=60)
    except NodebookError as exc:
        results.append(("ssh", False, exc.message))
        proc = None
    if proc is not None:
        kv = [ln.partition("=") for ln in proc.stdout.splitlines() if "=" in ln]
        for key, _, value in kv:
            if key == "setup":
                results.append(
                    (
                        "setup",
                        value == "ok",
                        "~/.nodebook/setup.json present"
                        if value == "ok"
                        else "not set up: run `python -m driver setup`",
                    )
                )
            elif key == "python":
                results.append(("python", value != "missing", value))
            elif key == "module":
                results.append(("module", not value.endswith("missing"), value))
            elif key == "slurm":
                ok = value.startswith("ok") or (value == "none" and cluster.standalone)
                results.append(
                    ("slurm", ok, "standalone server (no Slurm)" if cluster.standalone else value)
                )
    port = free_port()
    results.append(("ports", True, f"local port {port} is free for the tunnel"))
    for name, ok, text in results:
        out.emit(
            Update(
                "info",
                message=f"{'ok  ' if ok else 'FAIL'} {name:<7} {text}",
                data={"check": name, "ok": ok},
            )
        )
    return ExitCode.OK if all(ok for _, ok, _ in results) else ExitCode.ERROR
