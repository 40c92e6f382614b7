"""A session's life: master -> session.yml -> tunnel -> ready -> heartbeat/monitor -> cleanup.

Every way out runs ``Session.cleanup``: Ctrl-C (also while PENDING), SIGTERM, SIGHUP, the job
ending on its own, Jupyter shut down from its UI, the tunnel lost for longer than the bound.
The driver knows the job id from the ``submitted`` event (and tags the job with a session tag
before that), so it cancels the job itself: ansible-runner's cancel is SIGKILL and runs nothing.
"""

import contextlib
import dataclasses
import json
import os
import secrets
import signal
import subprocess
import threading
import time
import webbrowser
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from driver.errors import ExitCode, NodebookError, Stopped
from driver.gate import Connector, Gate
from driver.inventory import Cluster
from driver.progress import Renderer, Update
from driver.resources import Resources
from driver.runner import PlaybookRun
from driver.ssh import Master, cleanup_dir, make_control_dir
from driver.state import SessionRecord, StateDir
from driver.tunnel import Endpoint, Tunnel, free_port, port_is_free, wait_http


@dataclass
class SessionOptions:
    """Everything ``session`` and ``attach`` take from the command line."""

    resources: Resources = field(default_factory=Resources)
    tunnel: str | None = None
    local_port: int | None = None
    browser: bool = True
    allow_second: bool = False
    endpoint: str | None = None
    heartbeat_timeout: int = 300
    check_interval: float = 5.0
    pending_limit: int = 3600
    reconnect_bound: float = 60.0


def _raise_stopped(signum: int, _frame: FrameType | None) -> None:
    if signum == signal.SIGHUP:
        raise Stopped(ExitCode.HANGUP, "SIGHUP")
    raise Stopped(ExitCode.TERMINATED, "SIGTERM")


@contextlib.contextmanager
def exit_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C does, into the cleanup."""
    old = {s: signal.signal(s, _raise_stopped) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Cleanup must finish: a second Ctrl-C, SIGTERM or SIGHUP does not interrupt it."""
    sigs = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    old = {s: signal.signal(s, signal.SIG_IGN) for s in sigs}
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def job_url(local_port: int, base_url: str, app: str, token: str | None) -> str:
    """The browser URL; with a token it logs in directly."""
    base = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
    path = {"lab": "lab", "notebook": "tree"}.get(app, "")
    url = f"http://127.0.0.1:{local_port}{base}{path}"
    return f"{url}?token={token}" if token else url


def ended_reason(state: str, reason: str) -> tuple[str, ExitCode]:
    """Why a job left, in words, and the exit code for it."""
    if state in ("COMPLETED", "GONE", ""):
        return "Jupyter was shut down and the job ended", ExitCode.OK
    if state == "TIMEOUT":
        return (
            "the job reached its time limit (walltime); ask for more with --time next time",
            ExitCode.JOB_ENDED,
        )
    if state == "CANCELLED":
        return (
            "the job was cancelled outside this session (scancel); start a new one with "
            "`python -m driver session`",
            ExitCode.JOB_ENDED,
        )
    if state in ("FAILED", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "PREEMPTED"):
        detail = f" ({reason})" if reason and reason != "None" else ""
        return f"the job ended with {state}{detail}", ExitCode.JOB_ENDED
    return f"the job ended ({state})", ExitCode.JOB_ENDED


class Session:
    """One session (``session``) or a take-over of a running one (``attach``)."""

    def __init__(self, cluster: Cluster, opts: SessionOptions, renderer: Renderer) -> None:
        self.cluster = cluster
        self.opts = opts
        self.out = renderer
        self.control_dir = make_control_dir()
        self.master = Master(cluster, self.control_dir)
        self.state = StateDir(cluster.name)
        self.tag = secrets.token_hex(6)
        self.job_id: str | None = None
        self.submitted = False
        self.job_gone = False
        self.tunnel: Tunnel | None = None
        self.connector: Connector | None = None  # the master connecting while Ansible starts
        self.unreachable = False  # the cluster stopped answering (lost link): skip the cancel
        self.fast_cancelled = False  # cleanup sent scancel over the master itself
        self._api_url = ""
        self._token = ""
        self._running_node: str | None = None
        self._ready_data: dict[str, Any] | None = None
        self._prepared: tuple[Endpoint, dict[str, Any], int, str] | None = None
        self._announced = False
        self._wake = threading.Event()  # set by the runner thread when the main thread has work
        self.remote_user: str = cluster.user or os.environ.get("USER", "user")

    # -- events from the playbook (runner thread) -------------------------------------------
    def _on_update(self, update: Update) -> None:
        if update.kind == "submitted":
            self.job_id, self.submitted = update.job_id, True
        if update.kind == "running" and update.node:
            self._running_node = update.node  # the main thread opens the tunnel early
        if update.kind == "ready":
            self._ready_data = dict(update.data)  # the main thread connects while runner ends
        else:
            self.out.emit(update)
        if update.kind in ("running", "ready"):
            self._wake.set()

    # -- start ------------------------------------------------------------------------------
    def _extravars(self) -> dict[str, Any]:
        ev: dict[str, Any] = dict(self.opts.resources.extravars())
        ev.update(
            nodebook_session_tag=self.tag,
            nodebook_heartbeat_timeout=self.opts.heartbeat_timeout,
            nodebook_pending_limit=self.opts.pending_limit,
            nodebook_allow_second=self.opts.allow_second,
        )
        if self.opts.endpoint:
            ev["nodebook_endpoint"] = self.opts.endpoint
        if self.cluster.user:
            ev["ansible_user"] = self.cluster.user
        return ev

    def _play(
        self,
        playbook: str,
        extravars: dict[str, Any],
        what: str,
        tick: Callable[[], None] | None = None,
    ) -> PlaybookRun:
        run = PlaybookRun(
            self.cluster, playbook, extravars, self.master.ansible_env(), self._on_update
        )

        def wait(thread: threading.Thread) -> None:
            try:
                while thread.is_alive():
                    self._wake.wait(0.05)  # at once when the job runs or Jupyter is up
                    self._wake.clear()
                    if tick is not None and thread.is_alive():
                        tick()
            except BaseException:
                # sbatch may have run before its event arrived: cancel by the tag, unless the
                # play never got past the gate (then no remote command ran at all).
                self.submitted = self.connector is None or self.connector.passed
                # The job first: ansible-runner takes a few tenths of a second to stop
                # ansible-playbook (Ctrl-C right after `ready` lands while the play still ends).
                self._fast_cancel()
                run.cancelled.set()  # SIGKILLs ansible-playbook
                thread.join(30)
                raise

        run.run(wait)
        run.raise_for_failure(what)
        return run

    def start(self) -> ExitCode:
        """``session``: submit, wait, connect, then hold the session until it ends."""
        with exit_signals():
            try:
                self._check_local_port()  # before anything is submitted
                # The master logs in while ansible-playbook starts; the play's first remote
                # task waits at the gate until the master is up.
                gate = Gate.create(self.control_dir)
                self.connector = Connector(self.master.begin(), gate)
                self.connector.start()
                extravars = {**self._extravars(), "nodebook_master_gate": str(gate.path)}
                run = self._play("session.yml", extravars, "starting the session", self._tick)
                if self._prepared is None:
                    self._prepared = self._prepare(self._endpoint_from(run.stats))
                return self._announce_and_hold(*self._prepared)
            finally:
                with shielded():
                    self.cleanup()

    def attach(self, job_id: str) -> ExitCode:
        """``attach``: reconnect to a running job and take the session over."""
        with exit_signals():
            try:
                self.master.start()
                self.job_id, self.submitted = job_id, True
                conn = self._connection()
                endpoint = Endpoint(
                    node=str(conn["node"]),
                    socket=conn.get("socket") or None,
                    port=int(conn["port"]) if conn.get("port") else None,
                )
                return self._announce_and_hold(*self._prepare(endpoint, conn))
            finally:
                with shielded():
                    self.cleanup()

    def _check_local_port(self) -> None:
        if self.opts.local_port and not port_is_free(self.opts.local_port):
            raise NodebookError(
                f"local port {self.opts.local_port} is in use: pick another "
                "with --port or leave it out",
                ExitCode.USAGE,
            )

    def _connection(self) -> dict[str, Any]:
        """connection.json over the master (the token never passes through Ansible)."""
        job = self.job_id or ""
        if not job.replace("s", "", 1).isdigit():
            raise NodebookError(f"bad job id {job!r}", ExitCode.USAGE)
        proc = self.master.run(f'cat "$HOME/.nodebook/jobs/{job}/connection.json"')
        if proc.returncode != 0:
            self.submitted = False  # nothing of ours to cancel
            raise NodebookError(
                f"job {job} has no running Jupyter on {self.cluster.name} "
                "(see `python -m driver list`)",
                ExitCode.NOT_FOUND,
            )
        data = json.loads(proc.stdout)
        if not isinstance(data, dict):
            raise NodebookError(f"job {job}: unreadable connection file")
        return data

    # -- connect: the tunnel opens while the playbook still runs -----------------------------
    @staticmethod
    def _endpoint_from(stats: dict[str, Any]) -> Endpoint:
        return Endpoint(
            node=str(stats.get("nodebook_node") or stats.get("node")),
            socket=str(stats.get("nodebook_socket") or stats.get("socket") or "") or None,
            port=int(stats.get("nodebook_port") or stats.get("port") or 0) or None,
        )

    def _mode(self) -> str:
        mode = self.opts.tunnel or ("direct" if self.cluster.standalone else self.cluster.tunnel)
        if self.cluster.standalone and mode != "direct":
            raise NodebookError(
                f"{self.cluster.name} is a standalone server: use --tunnel direct", ExitCode.USAGE
            )
        return mode

    def _local_port(self) -> int:
        if self.opts.local_port:
            self._check_local_port()
            return self.opts.local_port
        return free_port()

    def _tick(self) -> None:
        """Called every 50 ms while session.yml runs (main thread).

        Once the job runs on a node, a jump tunnel to the socket the job will create is opened
        (Jupyter is still starting: the ssh login to the node overlaps with it). Once the
        playbook reports the endpoint, the driver reads the token and checks Jupyter answers
        while ansible-runner winds down. A master that failed to log in ends the start here.
        """
        if self.connector is not None:
            self.connector.check()
        if self._ready_data is not None and self._prepared is None:
            data = {**self._ready_data, "node": self._ready_data.get("node")}
            self.job_id = str(data.get("job_id") or self.job_id)
            self._prepared = self._prepare(self._endpoint_from(data))
            self._announce(*self._prepared)  # the URL answers: say so now, not after Ansible
        elif self._running_node and self.tunnel is None and self.job_id:
            if self._mode() != "jump" or (self.opts.endpoint or self.cluster.endpoint) != "socket":
                return
            guess = Endpoint(
                node=self._running_node,
                socket=f"/tmp/nodebook-{self.remote_user}-{self.job_id}/jupyter.sock",
            )
            self.tunnel = Tunnel(
                self.master, "jump", guess, self._local_port(), self.remote_user, self.job_id
            )
            self.tunnel.start()

    def _prepare(
        self, endpoint: Endpoint, conn: dict[str, Any] | None = None
    ) -> tuple[Endpoint, dict[str, Any], int, str]:
        """Read the connection file, open (or keep) the tunnel, wait for HTTP 200 through it."""
        conn = conn or self._connection()
        token = str(conn.get("token") or "")
        if conn.get("host"):  # tcp-node: the node's cluster address Jupyter is bound to
            endpoint = dataclasses.replace(endpoint, host=str(conn["host"]))
        mode = self._mode()
        early = self.tunnel
        if early is not None and (
            early.endpoint != endpoint or early.mode != mode or not early.alive()
        ):
            early.close()  # the early guess was wrong (another endpoint) or it died: start over
            self.tunnel = None
        if self.tunnel is None:
            port = early.local_port if early is not None else self._local_port()
            self.tunnel = Tunnel(
                self.master, mode, endpoint, port, self.remote_user, self.job_id or ""
            )
            self.tunnel.start()
        port = self.tunnel.local_port
        base = str(conn.get("base_url") or "/")
        api = f"http://127.0.0.1:{port}/{base.strip('/')}/api/status".replace("//api", "/api")
        self._api_url, self._token = api, token
        try:
            wait_http(api, token, 60, self.tunnel.alive)
        except NodebookError:
            if self.tunnel.alive():
                raise
            # the tunnel's ssh died (a node's sshd restarting, a dropped login): one more try
            self.tunnel.close()
            self.tunnel.start()
            wait_http(api, token, 60, self.tunnel.alive)
        return endpoint, conn, port, mode

    def _announce_and_hold(
        self, endpoint: Endpoint, conn: dict[str, Any], port: int, mode: str
    ) -> ExitCode:
        self._announce(endpoint, conn, port, mode)
        return self._hold()

    def _announce(self, endpoint: Endpoint, conn: dict[str, Any], port: int, mode: str) -> None:
        """Record the session, print the ready line, open the browser (once)."""
        if self._announced:
            return
        self._announced = True
        token, base = self._token, str(conn.get("base_url") or "/")
        self.state.save(
            SessionRecord(
                cluster=self.cluster.name,
                job_id=self.job_id or "",
                node=endpoint.node,
                local_port=port,
                tunnel=mode,
                driver_pid=os.getpid(),
                user=self.cluster.user,
            )
        )
        url = job_url(port, base, str(conn.get("app") or "lab"), token)
        self.out.emit(
            Update(
                "ready",
                job_id=self.job_id,
                node=endpoint.node,
                url=url,
                local_port=port,
                data={"url": url, "local_port": port, "tunnel": mode, "driver_pid": os.getpid()},
            )
        )
        if self.opts.browser:
            with contextlib.suppress(Exception):
                webbrowser.open(url)

    # -- hold: heartbeat, job and tunnel watch -----------------------------------------------
    def _heartbeat(self) -> str:
        """Touch the heartbeat; 'alive', 'gone' (job ended) or 'lost' (master unreachable)."""
        job = self.job_id
        cmd = (
            f'd="$HOME/.nodebook/jobs/{job}"; touch "$d/heartbeat" 2>/dev/null; '
            f'if [ -e "$d/connection.json" ]; then echo alive; else echo gone; fi'
        )
        try:
            proc = self.master.run(cmd, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return "lost"
        if proc.returncode == 255:
            return "lost"
        return "alive" if "alive" in proc.stdout else "gone"

    def _why_ended(self) -> tuple[str, ExitCode]:
        job = self.job_id
        state, reason = "", ""
        if not self.cluster.standalone:
            # The job's trap removes connection.json first, so the job may still be RUNNING or
            # COMPLETING when that is noticed: wait (on the cluster, one round trip) for its
            # final state.
            proc = self.master.run(
                f"for i in $(seq 1 30); do s=$(squeue -h -t all -j {job} -o '%T|%r' 2>/dev/null);"
                ' case "${s%%|*}" in RUNNING|COMPLETING|CONFIGURING) sleep 0.5 ;; *) break ;;'
                ' esac; done; printf "%s\\n" "$s"',
                timeout=30,
            )
            if proc.returncode == 0 and proc.stdout.strip():
                state, _, reason = proc.stdout.strip().splitlines()[0].partition("|")
        text, code = ended_reason(state, reason)
        if code != ExitCode.OK:
            tail = self.master.run(f'tail -n 5 "$HOME/.nodebook/jobs/{job}.log" 2>/dev/null')
            lines = " | ".join(ln.strip() for ln in tail.stdout.splitlines() if ln.strip())
            if lines:
                text += f"; last lines of the job log: {lines}"
        return text, code

    def _reconnect(self) -> bool:
        """Re-establish master and tunnel with backoff within the bound; False if it failed.

        Re-established means Jupyter answers through the new tunnel again, not just that an ssh
        process runs: a master hung on a dead link still answers ``-O check`` locally.
        """
        assert self.tunnel is not None
        deadline = time.monotonic() + self.opts.reconnect_bound
        delay = 1.0
        self.out.emit(Update("info", job_id=self.job_id, message="tunnel lost, reconnecting"))
        while time.monotonic() < deadline:
            self.tunnel.close()
            try:
                if not self.master.responsive():
                    self.master.close()
                    self.master.start(timeout=max(5.0, min(30.0, deadline - time.monotonic())))
                self.tunnel.start()
                wait_http(
                    self._api_url,
                    self._token,
                    max(2.0, min(15.0, deadline - time.monotonic())),
                    self.tunnel.alive,
                )
                self.out.emit(Update("info", job_id=self.job_id, message="tunnel re-established"))
                return True
            except NodebookError:
                pass
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 2, 10.0)
        self.unreachable = not self.master.responsive()
        return False

    def _lost(self) -> NodebookError:
        text = (
            f"the tunnel was lost and could not be re-established within "
            f"{self.opts.reconnect_bound:.0f} s"
        )
        if self.unreachable and self.opts.heartbeat_timeout:
            text += (
                f"; the cluster is unreachable, so job {self.job_id} ends itself within "
                f"{self.opts.heartbeat_timeout} s of the last heartbeat (dead-man's switch)"
            )
        return NodebookError(text, ExitCode.TUNNEL_LOST)

    def _hold(self) -> ExitCode:
        assert self.tunnel is not None
        next_check = 0.0
        while True:
            now = time.monotonic()
            if now >= next_check:
                status = self._heartbeat()
                next_check = now + self.opts.check_interval
                if status == "gone":
                    self.job_gone = True
                    text, code = self._why_ended()
                    self.out.emit(Update("ended", job_id=self.job_id, message=text, code=int(code)))
                    if code != ExitCode.OK:
                        raise NodebookError(text, code)
                    return code
                if status == "lost" and not self._reconnect():
                    raise self._lost()
            if not self.tunnel.alive() and not self._reconnect():
                raise self._lost()
            time.sleep(0.5)

    # -- cleanup ----------------------------------------------------------------------------
    def _fast_cancel(self) -> None:
        """scancel over the open master at once (one round trip); cleanup.yml then confirms.

        Starting Ansible for the cancel alone costs most of a second; the job should not wait
        for it. Best effort: cleanup.yml below is what reports and checks.
        """
        if self.fast_cancelled or self.cluster.standalone or self.unreachable or self.job_gone:
            return
        if not (self.job_id or "").isdigit():
            return
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            if self.master.run(f"scancel {self.job_id}", timeout=10).returncode == 0:
                self.fast_cancelled = True

    def cleanup(self) -> None:
        """Close the tunnel, cancel the job (unless it ended), close the master, forget state."""
        notes: list[str] = []
        if self.connector is not None:
            self.connector.close()
        self._fast_cancel()
        if self.tunnel is not None:
            self.tunnel.close()
            notes.append("tunnel closed")
        if self.unreachable:
            notes.append(f"cluster unreachable: job {self.job_id} was not cancelled from here")
        elif not self.job_gone and (self.submitted or self.job_id):
            try:
                ev: dict[str, Any] = (
                    {"nodebook_job_id": self.job_id}
                    if self.job_id
                    else {"nodebook_session_tag": self.tag}
                )
                if self.cluster.user:
                    ev["ansible_user"] = self.cluster.user
                run = PlaybookRun(
                    self.cluster, "cleanup.yml", ev, self.master.ansible_env(), lambda _u: None
                )
                run.run()
                run.raise_for_failure("cancelling the job")
                stopped = run.stats.get("nodebook_stopped") or []
                if not stopped and self.fast_cancelled:
                    stopped = [self.job_id]  # scancel'd above; gone before cleanup.yml looked
                notes.append(
                    f"job {', '.join(map(str, stopped))} cancelled"
                    if stopped
                    else "no job left to cancel"
                )
            except Exception as exc:  # report, keep cleaning up
                notes.append(f"could not cancel job {self.job_id}: {exc}")
        self.master.close()
        cleanup_dir(self.control_dir)
        if self.job_id:
            self.state.remove(self.job_id)
        if notes:
            self.out.emit(Update("info", job_id=self.job_id, message="; ".join(notes)))
