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
    hostvars = json.loads(listing.stdout).get("_meta", {}).get("hostvars", {})
    # a host that is a second way into another one (nodebook_same_as) would list it twice
    hosts = sorted(h for h, hv in hostvars.items() if not hv.get("nodebook_same_as"))
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
        child = subprocess.Popen([*argv, *extra], env=env, cwd=REPO)
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
                "`python -m driver setup` again (it picks up where it stopped)",
                ExitCode.INTERRUPTED,
            ) from None
        proc = child
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


def _fix(cluster: Cluster, name: str, detail: str) -> str:
    """What to do about a failed check (one line)."""
    where = f"{cluster.user + '@' if cluster.user else ''}{cluster.host}"
    return {
        "ssh": (
            f"check that `ssh {' '.join(cluster.ssh_args)} {where}` works from this machine "
            "(login node up, its sshd running, your key or password, the host key in "
            "known_hosts; never StrictHostKeyChecking=no)"
        ),
        "setup": "run `python -m driver setup` once",
        "python": "Jupyter's venv is gone: re-run `python -m driver setup`",
        "module": (
            f"{detail.split()[0]} is not available on {cluster.host} (`module avail`): set "
            "nodebook_environment_modules in the inventory and re-run `python -m driver setup`"
        ),
        "slurm": "Slurm does not answer on the login node: try `sinfo` there, ask the admins",
        "ports": "free a local port or pass --port",
    }.get(name, "see the line above")


SKIPPED = ("setup", "python", "module", "slurm")


def doctor(cluster: Cluster, out: Renderer) -> ExitCode:
    """One line per check (ssh, setup, python, module, slurm, ports); on a failure, a cause and
    a fix line, and a non-zero exit: 4 (ssh), 3 (not set up) or 1."""
    results: list[tuple[str, bool | None, str]] = []
    started = time.monotonic()
    proc = None
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
    except subprocess.TimeoutExpired:
        results.append(("ssh", False, f"{cluster.host} connected but did not answer in 60 s"))
    if proc is None:
        results += [(name, None, "not checked (no ssh)") for name in SKIPPED]
    else:
        kv = [ln.partition("=") for ln in proc.stdout.splitlines() if "=" in ln]
        for key, _, value in kv:
            if key == "setup":
                results.append(
                    (
                        "setup",
                        value == "ok",
                        "~/.nodebook/setup.json present"
                        if value == "ok"
                        else "not set up (no ~/.nodebook/setup.json)",
                    )
                )
            elif key == "python" and value != "missing":
                results.append(("python", True, value))
            elif key == "python":
                # only a failure when setup claims to be done
                done = any(k == "setup" and v == "ok" for k, _, v in kv)
                results.append(("python", False if done else None, "Jupyter's Python: missing"))
            elif key == "module":
                results.append(
                    ("module", not value.endswith("missing"), value.replace("none", "none needed"))
                )
            elif key == "slurm":
                ok = value.startswith("ok") or (value == "none" and cluster.standalone)
                results.append(
                    ("slurm", ok, "standalone server (no Slurm)" if cluster.standalone else value)
                )
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
