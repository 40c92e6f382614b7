"""The short subcommands: list, setup (stop is driver.stop, doctor is driver.doctor)."""

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from driver.errors import ExitCode, NodebookError
from driver.inventory import Cluster, all_clusters
from driver.progress import Renderer, Update, gpus_text
from driver.remote import Remote
from driver.runner import PlaybookRun
from driver.ssh import Master, cleanup_dir, make_control_dir
from driver.state import StateDir, pid_alive
from driver.usage import Usage, left_text


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
            use = Usage.from_line(s)
            use.measure()  # since the helper's previous look at the job, else since its start
            data.update(use.data())
            found += 1
            state, node = str(s.get("state") or ""), str(s.get("node") or "")
            if out.json_mode:
                out.emit(Update("session", job_id=job_id, state=state, node=node, data=data))
                continue
            where = f"port {rec.local_port}" if attached and rec else "no tunnel here"
            extra = f" ({s['reason']})" if state == "PENDING" and s.get("reason") else ""
            gres = gpus_text(count=s.get("gpus"))
            gres = f" {gres}" if gres else ""
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
            if state == "RUNNING":
                out.emit(Update("info", message=f"    {use_line(use)}"))
    if not found:
        out.emit(Update("info", message="no sessions"))
    return ExitCode.OK


def use_line(use: Usage) -> str:
    """`nodebook list`'s second line of a running session: time left, CPU and memory."""
    parts = [left_text(use.left, use.limit)] if use.left is not None else []
    if use.cpu_time is None:
        parts.append("no use reported yet (sstat of the job's batch step answered nothing)")
    else:
        parts.append(use.text())
    return " · ".join(p for p in parts if p)


# What ansible-runner answers when setup.yml asks for the Jupyter password (and its "confirm").
PASSWORD_PROMPT = r"Jupyter password[^\r\n]*:\s*$"
# Setup logs kept per cluster (older ones are removed).
KEEP_LOGS = 10


def extra_var_names(extra: list[str]) -> set[str] | None:
    """The variables ``-e``/``--extra-vars`` options set (None: a file nodebook cannot read,
    such as an Ansible Vault file, which may set anything)."""
    import yaml

    names: set[str] = set()
    values: list[str] = []
    it = iter(extra)
    for arg in it:
        if arg in ("-e", "--extra-vars"):
            values.append(next(it, ""))
        elif arg.startswith("--extra-vars="):
            values.append(arg.split("=", 1)[1])
        elif arg.startswith("-e") and len(arg) > 2:
            values.append(arg[2:])
    for value in values:
        text = value
        if value.startswith("@"):
            try:
                text = Path(value[1:]).expanduser().read_text()
            except OSError:
                return None
            if text.lstrip().startswith("$ANSIBLE_VAULT"):
                return None
        if text.lstrip().startswith(("{", "---")) or value.startswith("@"):
            try:
                data = yaml.safe_load(text)
            except yaml.YAMLError:
                return None
            names |= set(data) if isinstance(data, dict) else set()
        else:
            names |= {w.split("=", 1)[0] for w in shlex_split(text) if "=" in w}
    return names


def shlex_split(text: str) -> list[str]:
    import shlex

    try:
        return shlex.split(text)
    except ValueError:
        return text.split()


def ask_password(cluster: Cluster, extra: list[str]) -> str:
    """The Jupyter password for setup.yml's prompt: asked here (no echo, twice), or "" (keep the
    stored one) when it comes from -e, in token mode, or when there is no terminal to ask on."""
    import getpass

    names = extra_var_names(extra)
    token = cluster.hostvars.get("nodebook_password_mode") == "token" or any(
        "nodebook_password_mode=token" in a for a in extra
    )
    if names is None or "nodebook_password_secret" in names or token or not sys.stdin.isatty():
        return ""
    prompt = "Jupyter password, not echoed (Enter keeps the stored one): "
    while True:
        first = getpass.getpass(prompt)
        if not first or getpass.getpass("Again, to confirm: ") == first:
            return first
        print("The two entries differ; once more.", file=sys.stderr)


def setup_log(cluster: Cluster) -> Path:
    """A new 0600 log file for one setup run, in the user's state dir (old ones pruned)."""
    from driver.state import private_dir, state_root

    logs = private_dir(state_root() / "logs")
    old = sorted(logs.glob(f"setup-{cluster.name}-*.log"))
    for path in old[: max(0, len(old) - KEEP_LOGS + 1)]:
        path.unlink(missing_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = logs / f"setup-{cluster.name}-{stamp}.log"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.close(fd)
    return path


def setup(cluster: Cluster, extra: list[str], out: Renderer, verbose: int = 0) -> ExitCode:
    """Run playbooks/setup.yml over the cluster's master: one line per phase (the full output
    with -v, and always in a log file), the password asked here and typed into its prompt."""
    from driver.progress import SetupProgress

    with connected(cluster) as remote:
        password = ask_password(cluster, extra)
        log_path = setup_log(cluster)
        ev: dict[str, Any] = {"ansible_user": cluster.user} if cluster.user else {}
        args = [*extra] + (["-" + "v" * (verbose - 1)] if verbose > 1 else [])
        started = time.monotonic()
        where = f"{cluster.user + '@' if cluster.user else ''}{cluster.host}"
        out.emit(Update("info", message=f"setup on {cluster.name} ({where})"))
        with open(log_path, "a", encoding="utf-8") as log:
            progress = SetupProgress(out, log, verbose=verbose > 0)
            run = PlaybookRun(
                cluster,
                "setup.yml",
                ev,
                remote.master.ansible_env(),
                lambda _update: None,
                on_event=progress.event,
                cmdline=" ".join(shlex_quote(a) for a in args) or None,
                passwords={PASSWORD_PROMPT: password},
            )
            del password
            try:
                run.run()  # a Ctrl-C stops ansible-playbook before it is raised here
            except KeyboardInterrupt:
                progress.close(ok=False)
                raise NodebookError(
                    f"setup was interrupted on {cluster.name}: run `nodebook setup` again "
                    f"(it picks up where it stopped); log: {log_path}",
                    ExitCode.INTERRUPTED,
                ) from None
            progress.close(ok=run.status == "successful")
    counts = progress.counts(cluster.name)
    seconds = time.monotonic() - started
    if run.status != "successful":
        first = run.errors[0] if run.errors else None
        why = str(first.data.get("detail") or first.message) if first else ""
        why = (
            " ".join(why.split())
            or _last_error(log_path)
            or (f"ansible-playbook ended {run.status} (rc={run.rc})")
        )
        why = why.rstrip(". ")
        task = f" at task {progress.failed_task!r}" if progress.failed_task else ""
        code = ExitCode(first.code) if first and first.code else ExitCode.ERROR
        raise NodebookError(
            f"setup failed on {cluster.name}{task}: {why}; full log: {log_path}",
            ExitCode.SSH if code == ExitCode.SSH else ExitCode.ERROR,
        )
    summary = " ".join(f"{k}={counts[k]}" for k in ("ok", "changed", "failed"))
    out.emit(
        Update(
            "info",
            message=f"{cluster.name}: set up in {seconds:.1f} s ({summary}); log: {log_path}",
            data={
                "cluster": cluster.name,
                "seconds": round(seconds, 1),
                "log": str(log_path),
                **counts,
            },
        )
    )
    return ExitCode.OK


def _last_error(log: Path) -> str:
    """Ansible's last [ERROR] line in a log (a failure outside any task: inventory, syntax)."""
    with contextlib.suppress(OSError):
        lines = [ln.strip() for ln in log.read_text().splitlines() if "ERROR" in ln]
        return lines[-1].replace("[ERROR]: ", "") if lines else ""
    return ""


def shlex_quote(arg: str) -> str:
    import shlex

    return shlex.quote(arg)
