"""Local session records: one JSON file per running session under a 0700 state dir per cluster.

The record holds what ``list`` and ``attach`` need locally (job id, node, local port, tunnel
mode, driver pid). Never the token: that stays on the cluster in connection.json (0600). A
record whose driver is gone (killed, a reboot) is kept aside as ``JOB.orphan`` for ``attach``.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path

from driver.stateroot import state_root_dir, stop_link

# typing.TYPE_CHECKING, without importing typing: `nodebook stop` asks before it loads more
TYPE_CHECKING = False
if TYPE_CHECKING:
    from driver.record import SessionRecord

# (The record's class is in driver/record.py, imported when a record is made: `nodebook stop`
# reads a record's fields before it imports more than it needs to ask the session's driver.)

# A driver's temporary directories (the ssh master's, ansible-runner's) carry the driver's pid in
# this file, so that the next command can remove what a killed driver left (prune_stale).
OWNER = "owner.pid"
TEMP_PREFIXES = ("nb-", "nodebook-runner-")
# The inventory cache's directory in the state root (driver.inventory_cache), beside the
# clusters' directories of session records: not a cluster's, so never read for records.
INVENTORY_CACHE_DIR = "inventory-cache"
# How long the record of a session whose driver is gone is kept for `nodebook attach` (longer
# than a job runs).
ORPHAN_KEEP = 14 * 24 * 3600.0


def owned_temp_dir(prefix: str) -> Path:
    """A private (0700) temporary directory marked as this driver's."""
    import tempfile

    path = Path(tempfile.mkdtemp(prefix=prefix))
    (path / OWNER).write_text(f"{os.getpid()}\n")
    return path


def state_root() -> Path:
    """The state root (driver.stateroot: ``$NODEBOOK_STATE_DIR``, else
    ``$XDG_STATE_HOME/nodebook``, else ~/.local/state/nodebook)."""
    return Path(state_root_dir())


def private_dir(path: Path) -> Path:
    """Create ``path`` (and parents) with mode 0700 and make sure it stays 0700."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)
    return path


class StateDir:
    """The per-cluster directory of session records."""

    def __init__(self, cluster: str, root: Path | None = None) -> None:
        self.path = (root or state_root()) / cluster

    def _file(self, job_id: str) -> Path:
        return self.path / f"{job_id}.json"

    def save(self, record: SessionRecord) -> Path:
        private_dir(self.path.parent)  # the state root too: nobody else lists the clusters
        private_dir(self.path)
        if not record.started:
            record.started = time.time()
        target = self._file(record.job_id)
        tmp = target.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(record.fields(), handle)
        os.replace(tmp, target)
        return target

    def load(self, job_id: str) -> SessionRecord | None:
        from driver.record import SessionRecord

        fields = self.load_fields(job_id)
        try:
            return SessionRecord(**fields) if fields is not None else None
        except TypeError:
            return None

    def load_fields(self, job_id: str) -> dict[str, object] | None:
        """The record's fields as stored (None: no readable record)."""
        try:
            fields = json.loads(self._file(job_id).read_text())
        except (OSError, ValueError):
            return None
        return fields if isinstance(fields, dict) else None

    def remove(self, job_id: str) -> None:
        self._file(job_id).unlink(missing_ok=True)
        self._orphan(job_id).unlink(missing_ok=True)
        self.stop_link(job_id).unlink(missing_ok=True)

    def stop_link(self, job_id: str) -> Path:
        """Beside the record: a link to its driver's stop socket (driver.stop)."""
        return Path(stop_link(self.path.name, job_id, str(self.path.parent)))

    def link_stop(self, job_id: str, socket_path: Path) -> None:
        """Point the session's stop link at its driver's stop socket."""
        link = self.stop_link(job_id)
        link.unlink(missing_ok=True)
        link.symlink_to(socket_path)

    def _orphan(self, job_id: str) -> Path:
        return self.path / f"{job_id}.orphan"

    def orphan(self, job_id: str) -> None:
        """The session's driver is gone (killed, a reboot): it no longer counts as running here,
        but what `nodebook attach` needs is kept (its local port, so that open browser tabs work
        again)."""
        with contextlib.suppress(OSError):
            os.replace(self._file(job_id), self._orphan(job_id))
        with contextlib.suppress(OSError):
            self.stop_link(job_id).unlink(missing_ok=True)  # no driver behind it

    def last_port(self, job_id: str) -> int | None:
        """The local port the job's session used on this machine, if it is known."""
        for file in (self._file(job_id), self._orphan(job_id)):
            with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
                return int(json.loads(file.read_text())["local_port"])
        return None

    def forget_orphans(self, older_than: float = ORPHAN_KEEP) -> None:
        """Orphaned records older than any job runs go (their jobs have ended long since)."""
        for file in self.path.glob("*.orphan") if self.path.is_dir() else []:
            with contextlib.suppress(OSError):
                if time.time() - file.stat().st_mtime > older_than:
                    file.unlink()

    def records(self) -> list[SessionRecord]:
        if not self.path.is_dir():
            return []
        out = []
        for file in sorted(self.path.glob("*.json")):
            record = self.load(file.stem)
            if record is not None:
                out.append(record)
        return out


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def driver_alive(pid: int) -> bool:
    """The pid runs and is still a nodebook driver (not a reused pid)."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc (macOS): trust the pid
    return b"driver" in cmdline or b"nodebook" in cmdline


def prune_temp_dirs(tmp: Path | None = None, *, own: bool = False) -> list[Path]:
    """Remove the temporary directories of drivers that are gone (their ssh master told to exit
    first); return them. ``own``: this driver's instead, as it exits (whatever a cleanup that
    was cut short left)."""
    removed = []
    import shutil
    import subprocess
    import tempfile

    base = tmp or Path(tempfile.gettempdir())
    try:  # the names first: a shared /tmp has hundreds of entries, few of them ours
        names = sorted(n for n in os.listdir(base) if n.startswith(TEMP_PREFIXES))
    except OSError:
        names = []
    for path in (base / n for n in names):
        if not path.is_dir():
            continue
        try:
            pid = int((path / OWNER).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # not ours, or still being made
        if (pid != os.getpid()) if own else (pid == os.getpid() or driver_alive(pid)):
            continue
        socket = path / "m"
        if socket.exists():  # an orphaned master lingers for its ControlPersist: end it now
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["ssh", "-o", f"ControlPath={socket}", "-O", "exit", "nodebook-orphan"],
                    capture_output=True,
                    timeout=10,
                    check=False,
                    stdin=subprocess.DEVNULL,
                )
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def prune_stale(root: Path | None = None) -> list[SessionRecord]:
    """Remove the records of sessions whose driver is gone (killed with SIGKILL, a crash) and
    return them: the next command says so."""
    base = root or state_root()
    pruned: list[SessionRecord] = []
    if not base.is_dir():
        return pruned
    for cluster_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        if cluster_dir.name == INVENTORY_CACHE_DIR:
            continue  # (every command would parse the whole cached inventory here)
        state = StateDir(cluster_dir.name, base)
        state.forget_orphans()
        for record in state.records():
            if not driver_alive(record.driver_pid):
                state.orphan(record.job_id)
                pruned.append(record)
    return pruned
