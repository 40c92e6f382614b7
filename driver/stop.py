"""``nodebook stop``: a session this machine holds is ended by its own driver; any other session
is cancelled by cleanup.yml.

The driver of a running session listens on a Unix socket in its control directory, beside its
ssh master's (``StopRequests``). ``nodebook stop JOB`` reads the session's record, connects,
asks, and reads one line once the driver's cleanup has cancelled the job and seen it leave the
queue. So the cancel stays the session's one ``cancel`` call, made by its owner (docs/design.md,
"One owner per step"), and the stop costs a local connect: no login, no Ansible, and no
inventory read when ``--cluster`` names the cluster. Without such a record, with no driver
behind the socket, or when the driver could not cancel: cleanup.yml over this command's own
master, which cancels only nodebook's jobs (a mistyped id never ends a job of another kind).
"""

from __future__ import annotations

# The C socket type alone: the `socket` module would load enum and selectors first, and
# `nodebook stop` sends its request before it loads anything it does not need (driver.__main__).
import _socket
import os

from driver.stateroot import stop_link

# typing.TYPE_CHECKING, without importing typing (nor collections.abc, pathlib, json, signal:
# the driver's side imports them when it starts listening, `stop` once its request is out)
TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from collections.abc import Callable, Sequence
    from pathlib import Path
    from typing import Any

    from driver.errors import ExitCode
    from driver.inventory import Cluster
    from driver.progress import Renderer

SOCKET = "stop"  # its name in the session's control directory
ASK = b"stop\n"
# How long `nodebook stop` waits for the driver's answer: its cleanup may first wait for an
# unreachable cluster (up to the reconnect bound), then fall back to cleanup.yml.
ANSWER_WITHIN_S = 300.0
ACCEPT_POLL_S = 0.5  # how soon the listening thread notices that the socket was closed


def socket_path(control_dir: Path) -> Path:
    return control_dir / SOCKET


class StopRequests:
    """The driver's side: a listening socket, and a thread that turns a request into the stop
    signal for the main thread (driver.signals), which unwinds into the session's cleanup.
    ``answer`` (from the cleanup) tells each waiting ``stop`` how it went and takes no more."""

    def __init__(self, control_dir: Path) -> None:
        import socket  # the driver's side only: `stop` asks before it imports more
        import threading

        self.path = socket_path(control_dir)
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(str(self.path))  # in the 0700 control directory: this user's only
        self._server.listen()
        self._server.settimeout(ACCEPT_POLL_S)
        self._lock = threading.Lock()
        self._waiting: list[socket.socket] = []
        self._closed = False
        self.requested = False
        self._main = threading.main_thread().ident
        threading.Thread(target=self._serve, name="nodebook-stop", daemon=True).start()

    def _serve(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return  # closed
            conn.settimeout(5.0)
            try:
                if conn.recv(len(ASK)) == ASK and self._take(conn):
                    continue
            except OSError:
                pass
            conn.close()

    def _take(self, conn: socket.socket) -> bool:
        with self._lock:  # never a signal after `answer`: the session may be past its handlers
            if self._closed:
                return False
            self._waiting.append(conn)
            if not self.requested and self._main is not None:
                import signal

                from driver.signals import STOP_REQUEST

                self.requested = True
                signal.pthread_kill(self._main, STOP_REQUEST)
        return True

    def answer(self, gone: bool, note: str) -> None:
        """The cleanup cancelled the job (``gone``: it left the queue) or could not (``note``
        says why); no request is taken after this."""
        with self._lock:
            self._closed = True
            waiting, self._waiting = self._waiting, []
        self._server.close()
        self.path.unlink(missing_ok=True)
        import contextlib
        import json

        answer = {"gone": gone, "note": note, "driver_pid": os.getpid()}
        line = (json.dumps(answer) + "\n").encode()
        for conn in waiting:
            with contextlib.suppress(OSError):
                conn.sendall(line)
            conn.close()


class Asked:
    """A request sent to the driver of a session; ``answer`` waits for its one line."""

    def __init__(self, job_id: str, conn: _socket.socket) -> None:
        self.job_id, self._conn = job_id, conn

    def answer(self, wait: float = ANSWER_WITHIN_S) -> dict[str, Any] | None:
        """The driver's answer ({"gone", "note", "driver_pid"}), or None when it hung up without
        one (it ended otherwise)."""
        import json

        data = b""
        try:
            try:
                self._conn.settimeout(wait)
                while not data.endswith(b"\n"):
                    chunk = self._conn.recv(4096)
                    if not chunk:
                        return None
                    data += chunk
            finally:
                self._conn.close()
            answer = json.loads(data)
        except (OSError, ValueError):
            return None
        return answer if isinstance(answer, dict) else None


def plain_stop(argv: Sequence[str]) -> tuple[str, str, str | None] | None:
    """(JOBID, cluster, user) when ``argv`` is ``stop JOBID --cluster NAME`` with at most
    ``--user USER`` and ``--json`` besides, in any order: the request to a session's own driver
    goes out before argparse is even imported. Any other form is None and parsed first (the
    unit test holds this reading to argparse's)."""
    if len(argv) < 4 or argv[0] != "stop" or not argv[1].isdigit():
        return None
    values: dict[str, str] = {}
    rest = list(argv[2:])
    while rest:
        word = rest.pop(0)
        if word == "--json":
            continue
        if word not in ("--cluster", "--user") or word in values or not rest:
            return None
        values[word] = rest.pop(0)
        if values[word].startswith("-") or not values[word]:
            return None
    if "--cluster" not in values:
        return None
    return argv[1], values["--cluster"], values.get("--user")


def _send(path: str) -> _socket.socket | None:
    """The request sent to the stop socket at ``path``; None: nothing listens there."""
    conn = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        conn.settimeout(5.0)
        conn.connect(path)
        conn.sendall(ASK)
    except OSError:
        conn.close()
        return None
    return conn


def ask(cluster: str, job_id: str, user: str | None) -> Asked | None:
    """Ask the driver that holds the session ``job_id`` on ``cluster`` (``user``'s, when a user
    is named) to end it. None: no such session here, or no driver listens behind it any more
    (killed). It runs before the rest of the driver is imported, so that the request goes out
    first: through the session's stop link beside its record (a connect, nothing read), else,
    and when a user is named, through the record's fields (its user, its control directory)."""
    if not job_id.isdigit():
        return None
    if user is None:
        conn = _send(stop_link(cluster, job_id))
        if conn is not None:
            return Asked(job_id, conn)
    from pathlib import Path

    from driver.state import StateDir

    fields = StateDir(cluster).load_fields(job_id)
    if fields is None or (user is not None and fields.get("user") != user):
        return None
    control = fields.get("control_path")
    if not isinstance(control, str) or not control:
        return None
    conn = _send(str(socket_path(Path(control).parent)))
    return Asked(job_id, conn) if conn is not None else None


def stop(
    job_id: str | None,
    cluster_name: str | None,
    user: str | None,
    out: Renderer,
    load_cluster: Callable[[], Cluster],
    asked: Asked | None = None,
) -> ExitCode:
    """Cancel one session or all of them and confirm they left the queue. ``asked``: the
    request the command line sent already (``--cluster`` given), else it is sent here."""
    from driver.errors import ExitCode, NodebookError
    from driver.progress import Update
    from driver.state import StateDir

    if job_id is not None and not job_id.removeprefix("s").isdigit():
        raise NodebookError(f"stop: {job_id!r} is not a job id", ExitCode.USAGE)
    cluster = None if cluster_name else load_cluster()
    name = cluster_name or (cluster.name if cluster else "")
    if asked is None and job_id:
        asked = ask(name, job_id, user)
    answer = asked.answer() if asked is not None else None
    if asked is not None and answer is not None and answer.get("gone"):
        StateDir(name).remove(asked.job_id)
        out.emit(
            Update(
                "info",
                message=f"stopped: {asked.job_id} (by its driver, pid {answer.get('driver_pid')})",
                data={"stopped": [asked.job_id]},
            )
        )
        return ExitCode.OK
    if answer is not None:
        out.emit(Update("info", message=f"its session's driver could not: {answer.get('note')}"))
    return _stop_by_cleanup(cluster or load_cluster(), job_id, out)


def _stop_by_cleanup(cluster: Cluster, job_id: str | None, out: Renderer) -> ExitCode:
    """cleanup.yml over this command's own master: by the id, or every session (--all)."""
    from driver.commands import connected
    from driver.errors import ExitCode, NodebookError
    from driver.progress import Update
    from driver.runner import run_cleanup
    from driver.state import StateDir

    selection: dict[str, Any] = {"nodebook_job_id": job_id} if job_id else {"nodebook_all": True}
    with connected(cluster) as remote:
        stopped = run_cleanup(cluster, selection, remote.master.ansible_env(), "stop")
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
