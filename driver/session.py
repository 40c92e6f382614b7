"""A session's life: master -> session.yml -> tunnel -> ready -> monitor -> cleanup.

The orchestration only: the remote steps are the helper's (driver.remote), holding a running
session is driver.monitor's. Every way out runs ``Session.cleanup``: Ctrl-C (also while
PENDING), SIGTERM, SIGHUP, the job ending on its own, Jupyter shut down from its UI, the tunnel
lost for longer than the bound. The driver knows the job id from the ``submitted`` line (and tags
the job before that), so it cancels the job itself: ansible-runner's cancel is SIGKILL and runs
nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import webbrowser
from dataclasses import dataclass
from typing import Any

from driver import hostkeys
from driver.errors import ExitCode, NodebookError, Stopped
from driver.gate import Connector, Gate
from driver.inventory import Cluster
from driver.monitor import Monitor
from driver.notify import Notifier, SessionWatch
from driver.options import SessionOptions, notify_settings
from driver.paths import rules
from driver.progress import Renderer, Update
from driver.progress import from_line as progress_update
from driver.record import Job, SessionRecord
from driver.remote import Remote
from driver.runner import PlaybookRun, run_cleanup
from driver.signals import exit_signals, shielded
from driver.ssh import Master, cleanup_dir, make_control_dir
from driver.state import StateDir
from driver.stop import StopRequests
from driver.tunnel import (
    Endpoint,
    Forward,
    Tunnel,
    TunnelFailed,
    free_port,
    port_is_free,
    preload,
    wait_http,
)


def job_url(local_port: int, base_url: str, app: str, token: str | None) -> str:
    """The browser URL; with a token it logs in directly."""
    base = "/" + base_url.strip("/") + "/" if base_url.strip("/") else "/"
    path = {"lab": "lab", "notebook": "tree"}.get(app, "")
    url = f"http://127.0.0.1:{local_port}{base}{path}"
    return f"{url}?token={token}" if token else url


@dataclass
class Connected:
    """Jupyter reached through a tunnel: where, how, and the token that logs in."""

    endpoint: Endpoint
    info: dict[str, Any]  # connection.json, the token left out
    token: str
    tunnel: Tunnel

    @property
    def api_url(self) -> str:
        base = str(self.info.get("base_url") or "/").strip("/")
        return f"http://127.0.0.1:{self.tunnel.local_port}/{base + '/' if base else ''}api/status"

    @property
    def url(self) -> str:
        base = str(self.info.get("base_url") or "/")
        return job_url(self.tunnel.local_port, base, str(self.info.get("app") or "lab"), self.token)


def endpoint_of(info: dict[str, Any]) -> Endpoint:
    """Where Jupyter listens, from its connection info."""
    return Endpoint(
        node=str(info["node"]),
        socket=str(info.get("socket") or "") or None,
        port=int(info["port"]) if info.get("port") else None,
        host=str(info.get("host") or "127.0.0.1"),
    )


class Session:
    """One session (``session``) or a take-over of a running one (``attach``)."""

    def __init__(self, cluster: Cluster, opts: SessionOptions, renderer: Renderer) -> None:
        self.cluster = cluster
        self.opts = opts
        self.out = renderer
        self.control_dir = make_control_dir()
        self.master = Master(cluster, self.control_dir, keepalive=opts.keepalive)
        self.remote = Remote(self.master, cluster)
        self.state = StateDir(cluster.name)
        self.job = Job(tag=os.urandom(6).hex())  # (as secrets.token_hex, without its import)
        self.connector: Connector | None = None  # the master connecting while Ansible starts
        self.tunnel: Tunnel | None = None  # opened early (jump to a socket) or at ready
        self.connected: Connected | None = None
        self.monitor: Monitor | None = None
        self.stop_requests: StopRequests | None = None  # `nodebook stop JOB`, once ready
        self.forwards: tuple[Forward, ...] = ()  # --forward, local ports chosen at the start
        # The driver's own `connection --token` call, started once the job runs: it returns
        # when Jupyter answers, without waiting for the play's task and its result to travel.
        self._own_connection: threading.Thread | None = None
        self._connection: dict[str, Any] | None = None
        self._connection_error: NodebookError | None = None  # why that call gave up
        self._stopped: str | None = None  # what the one cancel call said (cleanup's note)
        self._still_running: NodebookError | None = None  # neither cancel could end the job
        # The node, once the job runs: the play's wait or the connection call said so first.
        self._running_on: str | None = None
        self._running_said = False
        # (wall time of the submission, seconds it waited PENDING once it runs; None: it did
        # not wait, was it seen PENDING) for the notification that it is ready (driver/notify.py)
        self._queue: tuple[float, float | None, bool] = (time.time(), None, False)
        self._wake = threading.Event()  # set by the runner thread when the main thread has work
        self._lock = threading.Lock()

    # -- the play's progress (runner thread) ------------------------------------------------
    def _on_update(self, update: Update) -> None:
        """(The runner's thread, the master's for the submission, the connection call's for
        the job's start) one step of the start: shown, and what it tells kept."""
        if update.kind in ("running", "pending"):
            with self._lock:  # the play's wait and the connection call both say it: once,
                if self._running_said:  # and a wait's late word of the queue is stale then
                    return
                if update.kind == "running":
                    self._running_said = True
        if update.kind == "submitted":
            self.job.id, self.job.submitted = update.job_id, True
            hb = update.data.get("heartbeat_timeout")
            self.job.heartbeat_timeout = int(hb) if isinstance(hb, int) else None
            self.job.socket = str(update.data.get("socket") or "") or None
            self.job.endpoint = str(update.data.get("endpoint") or "") or None
        if update.kind == "running" and update.node:
            # The login node's records of the node's key first: the early tunnel checks it.
            self._pin(update.node, update.data.get("host_keys"))
            self._running_on = update.node  # the main thread opens the tunnel early
        self._queued(update)
        self.out.emit(update)
        if update.kind == "running":
            self._wake.set()

    def _queued(self, update: Update) -> None:
        """How long the job waited in the queue, if it waited: Slurm held it PENDING for a reason
        (Resources, Priority ...). A job is PENDING without one for a moment before the
        scheduler first looks at it: that is no wait."""
        since, waited, pending = self._queue
        if update.kind == "submitted":
            self._queue = (time.time(), None, False)
        elif update.kind == "pending" and update.state == "PENDING" and update.reason:
            self._queue = (since, None, True)
        elif update.kind == "running" and pending and waited is None:
            self._queue = (since, time.time() - since, True)

    def _pin(self, node: str, records: object) -> None:
        """Pin the login node's records of ``node``'s host key (driver.hostkeys)."""
        if isinstance(records, list) and records:
            try:
                hostkeys.pin(self.cluster.name, node, [str(r) for r in records])
            except OSError as exc:  # the tunnel then says the key is unknown, and why
                where = hostkeys.pinned_file(self.cluster.name)
                message = f"could not pin {node}'s host key in {where}: {exc}"
                self.out.emit(Update("info", job_id=self.job.id, message=message))

    def _extravars(self) -> dict[str, Any]:
        ev: dict[str, Any] = dict(self.opts.job)
        ev.update(nodebook_session_tag=self.job.tag, nodebook_allow_second=self.opts.allow_second)
        if self.cluster.user:
            ev["ansible_user"] = self.cluster.user
        return ev

    def _submit_args(self) -> list[str] | None:
        """The helper's submit arguments as session.yml would build them (the command line's
        job options over the inventory's), or None when the inventory holds a template the
        driver cannot evaluate (then the play submits)."""
        values: dict[str, Any] = {}
        names = [*rules().SBATCH_FLAGS, *rules().SUBMIT_KEYS]
        for name in names:
            value = self.cluster.hostvars.get(name)
            if isinstance(value, str) and "{{" in value:
                return None
            if value is not None:
                values[name] = value
        values.update(self.opts.job)
        values.update(
            nodebook_scheduler=self.cluster.scheduler,
            nodebook_session_tag=self.job.tag,
            nodebook_allow_second=self.opts.allow_second,
        )
        try:
            return [str(a) for a in rules().submit_args(values)]
        except ValueError as exc:
            raise NodebookError(str(exc).removeprefix("[usage] "), ExitCode.USAGE) from exc

    def _submit(self, args: list[str]) -> bytes:
        """(The master's thread, once it is up) submit over the master, show what the helper
        said at once, and hand its lines to the play through the gate."""
        reply = self.remote.call("submit", *args, check=False)
        for line in reply.lines:
            update = progress_update(line)
            if update is not None:
                self._on_update(update)
        if reply.error is not None and self.connector is not None:
            self.connector.submitted = False  # the helper refused before sbatch (or sbatch did)
        self.remote.raise_for(reply)
        return "\n".join(json.dumps(line) for line in reply.lines).encode()

    # -- start ------------------------------------------------------------------------------
    def start(self) -> ExitCode:
        """``session``: submit, wait, connect, then hold the session until it ends. In order
        (tests/unit/test_session_contract.py checks each step's helper calls and lines):

        1. ansible-playbook starts session.yml while the ssh master logs in (``Connector``); the
           play's first task waits at the gate until the master is up.
        2. The master is up: the driver submits over it (``_submit``, the helper's ``submit``),
           shows the job id and its first state, and hands that answer to the play through the
           gate (the play submits itself only when run by hand).
        3. The play's wait step reports each change of state (``_on_update``) until RUNNING.
        4. The job runs: the driver's own thread makes the session's one ``connection --token``
           call (``_await_connection``), which returns once Jupyter answers; meanwhile the main
           thread opens the tunnel to the socket the submission named (``_tick``).
        5. Jupyter answers through the tunnel (``_connect``): ready (``_announce``).
        6. ``Monitor`` holds the session, a heartbeat every check interval, until it ends.
        7. Every way out runs ``cleanup``: the one ``cancel --job ID --own`` (``_cancel``), or
           cleanup.yml when there is no id yet or that call failed (``_stop_job``).
        """
        with exit_signals():
            try:
                self._check_local_port()  # before anything is submitted
                # The master logs in while ansible-playbook starts; the play's first remote
                # task waits at the gate until the master is up.
                gate = Gate.create(self.control_dir)
                args = self._submit_args()
                on_up = (lambda: self._submit(args)) if args is not None else None
                self.connector = Connector(self.master.begin(), gate, on_up=on_up)
                self.connector.start()
                preload()  # while the master logs in, not at `ready`
                extravars = {**self._extravars(), "nodebook_master_gate": str(gate.path)}
                self._play("session.yml", extravars)
                self._until_connected()
                assert self.connected is not None
                return self._hold(self.connected)
            finally:
                self._wait_for_the_cluster()
                with shielded():
                    self.cleanup()

    def attach(self, job_id: str) -> ExitCode:
        """``attach``: reconnect to a running job and take the session over."""
        with exit_signals():
            try:
                self._check_local_port()
                self._same_port_as_before(job_id)
                self.master.start()
                self.job.id, self.job.submitted = job_id, True
                try:
                    self.connected = self._connect({})
                except NodebookError as exc:
                    if exc.code == ExitCode.NOT_FOUND:
                        self.job.submitted = False  # nothing of ours to cancel
                    raise
                self._announce(self.connected)
                return self._hold(self.connected)
            finally:
                self._wait_for_the_cluster()
                with shielded():
                    self.cleanup()

    def _play(self, playbook: str, extravars: dict[str, Any]) -> None:
        run = PlaybookRun(
            self.cluster, playbook, extravars, self.master.ansible_env(), self._on_update
        )

        def wait(thread: threading.Thread) -> None:
            try:
                while thread.is_alive():
                    self._wake.wait(0.05)  # at once when the job runs or Jupyter is up
                    self._wake.clear()
                    if thread.is_alive():
                        self._tick()
            except BaseException:
                # The job first: ansible-runner takes a few tenths of a second to stop
                # ansible-playbook (Ctrl-C right after `ready` lands while the play still ends).
                self._cancel()
                raise  # then run() stops ansible-playbook (SIGKILL) and waits for it

        run.run(wait)
        run.raise_for_failure("starting the session")

    def _tick(self) -> None:
        """Every 50 ms while session.yml runs (main thread).

        Once the job is submitted, the driver's connection call waits for it. Once the job runs
        on a node, a jump tunnel to the socket the submission named is opened (Jupyter is still
        starting: the ssh login to the node overlaps with it). Once the connection call returns
        (Jupyter answers), the driver checks that it answers through the tunnel while
        ansible-runner winds down. A master that failed to log in ends the start here.
        """
        if self.connector is not None:
            self.connector.check()
        self._start_connection()
        ready = self._connection
        if ready is not None and self.connected is None:
            self.connected = self._connect(ready)
            self._announce(self.connected)  # the URL answers: say so now, not after Ansible
        elif self._running_on and self.tunnel is None and self.job.id and self.job.socket:
            if self._mode() != "jump" or self.job.endpoint != "socket":
                return
            guess = Endpoint(node=self._running_on, socket=self.job.socket)
            self.tunnel = Tunnel(
                self.remote, "jump", guess, self._local_port(), self.job.id, forwards=self.forwards
            )
            self.tunnel.start()

    def _start_connection(self) -> None:
        if self.job.id and self._own_connection is None:
            self._own_connection = threading.Thread(
                target=self._await_connection, args=(self.job.id,), daemon=True
            )
            self._own_connection.start()

    def _await_connection(self, job_id: str) -> None:
        """(A thread) the session's one `connection --token` call, from the submission until
        Jupyter answers: the step's owner when the driver runs the play (session.yml skips its
        own). It says when the job starts, often before the play's wait can (ansible-playbook
        takes most of a second to start): the tunnel's login then overlaps Jupyter's start."""

        def started(line: dict[str, Any]) -> None:
            update = progress_update(line)
            if update is not None and update.kind == "running":
                self._on_update(update)

        try:
            self._connection = self.remote.connection(job_id, on_line=started)
        except NodebookError as exc:
            self._connection_error = exc
        except (OSError, subprocess.SubprocessError) as exc:
            self._connection_error = NodebookError(
                f"job {job_id}: could not ask the login node where Jupyter runs: {exc}",
                ExitCode.SSH,
            )
        finally:
            self._wake.set()

    def _until_connected(self) -> None:
        """After the play (the job runs): the driver's own `connection` call brings the
        endpoint and the token; keep ticking (the early tunnel) until Jupyter answers."""
        while self.connected is None:
            self._start_connection()  # a play without a wait step (standalone) did not yet
            self._tick()
            if self.connected is not None:
                break
            thread = self._own_connection
            if thread is None:
                raise NodebookError("the session play ended without the job's id")
            if not thread.is_alive() and self._connection is None:
                raise self._connection_error or NodebookError(
                    f"job {self.job.id}: the helper returned no connection"
                )
            self._wake.wait(0.05)
            self._wake.clear()

    def _check_local_port(self) -> None:
        """The local ports asked for are free (before anything is submitted); pick the others."""
        if self.opts.local_port and not port_is_free(self.opts.local_port):
            raise NodebookError(
                f"local port {self.opts.local_port} is in use: pick another "
                "with --port or leave it out",
                ExitCode.USAGE,
            )
        forwards = []
        for node_port, local_port in self.opts.forwards:
            if local_port is not None and not port_is_free(local_port):
                raise NodebookError(
                    f"--forward {node_port}:{local_port}: local port {local_port} is in use; "
                    "pick another or leave it out",
                    ExitCode.USAGE,
                )
            forwards.append(Forward(node_port, local_port or free_port()))
        self.forwards = tuple(forwards)

    def _mode(self) -> str:
        mode = self.opts.tunnel or ("direct" if self.cluster.standalone else self.cluster.tunnel)
        if self.cluster.standalone and mode != "direct":
            raise NodebookError(
                f"{self.cluster.name} is a standalone server: use --tunnel direct", ExitCode.USAGE
            )
        return mode

    def _same_port_as_before(self, job_id: str) -> None:
        """``attach`` without --port: the local port the job's session had here (after a
        reboot, a killed driver), if it is free, so that open browser tabs work again."""
        port = None if self.opts.local_port else self.state.last_port(job_id)
        if port is None:
            return
        if port_is_free(port):
            self.opts = dataclasses.replace(self.opts, local_port=port)
            return
        message = f"local port {port}, the session's before, is in use: another port is used"
        self.out.emit(Update("info", job_id=job_id, message=message))

    def _local_port(self) -> int:
        if self.opts.local_port:
            self._check_local_port()
            return self.opts.local_port
        return free_port()

    def _connect(self, ready: dict[str, Any]) -> Connected:
        """Read the token (unless `ready` has it), open (or keep) the tunnel, wait for HTTP 200
        through it."""
        info = dict(ready) if ready.get("token") else self.remote.connection(self.job.id or "")
        token = str(info.pop("token", "") or "")
        if isinstance(info.get("heartbeat_timeout"), int):
            self.job.heartbeat_timeout = info["heartbeat_timeout"]
        info = {**ready, **info}
        endpoint = endpoint_of(info)
        self._pin(endpoint.node, info.pop("host_keys", None))
        mode = self._mode()
        early = self.tunnel
        if early is not None and early.proc is not None and not early.alive():
            died = early.failure()
            if died.final:  # a host key, a refused login: ssh's word, no second try
                raise died
        if early is not None and (
            early.endpoint != endpoint or early.mode != mode or not early.alive()
        ):
            early.close()  # the early tunnel went elsewhere (another endpoint) or died
            self.tunnel = None
        if self.tunnel is None:
            port = early.local_port if early is not None else self._local_port()
            self.tunnel = Tunnel(
                self.remote,
                mode,
                endpoint,
                port,
                self.job.id or "",
                hop_socket=str(info.get("hop_socket") or "") or None,
                forwards=self.forwards,
            )
            self.tunnel.start()
        connected = Connected(endpoint, info, token, self.tunnel)
        try:
            wait_http(connected.api_url, token, 60, self.tunnel)
        except TunnelFailed as exc:
            if exc.final:  # a host key, a refused login: the same again on a second try
                raise
            # the tunnel's ssh died (a node's sshd restarting, a dropped login): one more try
            self.tunnel.close()
            self.tunnel.start()
            wait_http(connected.api_url, token, 60, self.tunnel)
        return connected

    def _announce(self, connected: Connected) -> None:
        """Take `nodebook stop` requests, record the session, print the ready line, open the
        browser."""
        port = connected.tunnel.local_port
        if self.stop_requests is None:
            self.stop_requests = StopRequests(self.control_dir)
        self.state.save(
            SessionRecord(
                cluster=self.cluster.name,
                job_id=self.job.id or "",
                node=connected.endpoint.node,
                local_port=port,
                tunnel=connected.tunnel.mode,
                driver_pid=os.getpid(),
                user=self.cluster.user,
                control_path=str(self.master.control_path),
            )
        )
        with contextlib.suppress(OSError):  # without it, `stop` finds the socket by the record
            self.state.link_stop(self.job.id or "", self.stop_requests.path)
        url = connected.url
        self.out.emit(
            Update(
                "ready",
                job_id=self.job.id,
                node=connected.endpoint.node,
                url=url,
                local_port=port,
                data={
                    "url": url,
                    "local_port": port,
                    "tunnel": connected.tunnel.mode,
                    "driver_pid": os.getpid(),
                    "gpus": connected.info.get("gpus"),
                    "forwards": [
                        {"node_port": f.node_port, "local_port": f.local_port, "url": f.url}
                        for f in connected.tunnel.forwards
                    ],
                },
            )
        )
        node = connected.endpoint.node
        through = (  # the login node forwards to node:port (driver/tunnel.py), not to loopback
            f", through the login node to {node}: the app must listen on {node}'s address "
            "(0.0.0.0, --bind_all), not on 127.0.0.1"
            if connected.tunnel.mode in ("via-login", "hops")
            else ""
        )
        for fw in connected.tunnel.forwards:
            self.out.emit(
                Update(
                    "info",
                    job_id=self.job.id,
                    message=f"node port {fw.node_port} forwarded to {fw.url}{through}",
                )
            )
        if self.opts.browser:
            with contextlib.suppress(Exception):
                webbrowser.open(url)

    def _hold(self, connected: Connected) -> ExitCode:
        self.monitor = Monitor(
            remote=self.remote,
            job=self.job,
            tunnel=connected.tunnel,
            api_url=connected.api_url,
            token=connected.token,
            out=self.out,
            check_interval=self.opts.check_interval,
            reconnect_bound=self.opts.reconnect_bound,
            time_limit=self.opts.job.get("nodebook_job_time"),
            on_tick=self._watch(connected).tick,
        )
        return self.monitor.hold()

    def _watch(self, connected: Connected) -> SessionWatch:
        """The live line's time left and use, and the notifications (driver/notify.py)."""
        notify, warn_before = notify_settings(self.opts, self.cluster.hostvars)
        job_id = self.job.id or ""
        watch = SessionWatch(
            job_id=job_id,
            node=connected.endpoint.node,
            out=self.out,
            notifier=Notifier(enabled=notify, terminal=self.out.err),
            fetch=lambda: self.remote.usage(job_id),
            warn_before=warn_before,
            usage_interval=self.opts.usage_interval,
        )
        base = str(connected.info.get("base_url") or "/")
        app = str(connected.info.get("app") or "lab")
        watch.ready(self._queue[1], job_url(connected.tunnel.local_port, base, app, None))
        return watch

    # -- cleanup ----------------------------------------------------------------------------
    @property
    def _unreachable(self) -> bool:
        return self.monitor is not None and self.monitor.unreachable

    def _cancel(self) -> None:
        """The session's one `cancel` call, over the open master: scancel at once, then the
        helper confirms the job left the queue (Ansible would take most of a second to start
        first). cleanup.yml is the fallback when this cannot run: no job id yet (cancel by the
        tag) or the call failed."""
        job = self.job
        if job.cancel_sent or job.gone or self._unreachable or not job.id:
            return
        job.cancel_sent = True  # one call, whatever it says
        try:
            cancelled = self.remote.cancel(job.id)
        except (NodebookError, OSError, subprocess.SubprocessError) as exc:
            self._stopped = self._stop_job(f"{exc}")
            return
        job.gone = True
        self._stopped = f"job {job.id} cancelled" if cancelled else "no job left to cancel"

    def cleanup(self) -> None:
        """Close the tunnel, cancel the job (unless it ended), close the master, forget state."""
        notes: list[str] = []
        if self.connector is not None:
            self.connector.close()
            # sbatch may have run before its line arrived, wherever the Ctrl-C came: cancel by
            # the tag, unless nothing got past the gate (then no remote command ran at all).
            self.job.submitted = self.job.submitted or self.connector.passed
        self._cancel()
        if self.stop_requests is not None:  # a `nodebook stop` waits for this: the job is gone
            self.stop_requests.answer(self.job.gone, self._stopped or "")
        if self.tunnel is not None:
            self.tunnel.close()
            notes.append("tunnel closed")
        job = self.job
        if self._unreachable:
            notes.append(self._unreachable_note())
        elif self._stopped is not None and self._still_running is None:
            notes.append(self._stopped)  # (a job still running: the session ends with that)
        elif not job.gone and job.submitted and not job.id:
            notes.append(self._stop_job("no job id yet"))
        self.master.close()
        cleanup_dir(self.control_dir)
        if job.id:
            self.state.remove(job.id)
        if notes:
            self.out.emit(Update("info", job_id=job.id, message="; ".join(notes)))
        if self._still_running is not None:  # not "cleaned up", whatever ended the session
            ended = sys.exc_info()[1]
            if isinstance(ended, NodebookError):  # keep what ended it, after the job's state
                self._still_running.message += f" (the session ended on: {ended.message})"
            raise self._still_running

    def _stop_job(self, why: str) -> str:
        """The fallback (``why`` the one cancel call could not do it): cleanup.yml cancels by
        the id, or by the tag when the id never came, and confirms."""
        selection: dict[str, Any] = (
            {"nodebook_job_id": self.job.id}
            if self.job.id
            else {"nodebook_session_tag": self.job.tag}
        )
        try:
            stopped = run_cleanup(
                self.cluster, selection, self.master.ansible_env(), "cancelling the job"
            )
            self.job.gone = True  # cancelled, or it had left: cleanup.yml confirmed either
        except Exception as exc:  # report, keep cleaning up; the session ends with this error
            what = f"job {self.job.id}" if self.job.id else f"the job tagged {self.job.tag}"
            note = f"could not cancel {what}: {exc} (first: {why})"
            self._still_running = NodebookError(
                f"{what} may still be running: {note}; {self._how_it_ends()}",
                exc.code if isinstance(exc, NodebookError) else ExitCode.ERROR,
            )
            return note
        return f"job {', '.join(stopped)} cancelled" if stopped else "no job left to cancel"

    def _how_it_ends(self, sooner: str = "") -> str:
        """When a job this driver could not cancel ends anyway (its lease), and the stop that
        ends it sooner (``sooner``: when that can work)."""
        job = self.job
        stop = f"`nodebook stop {job.id} --cluster {self.cluster.name}`{sooner}"
        if not job.id:
            stop = f"`nodebook stop --all --cluster {self.cluster.name}`{sooner}"
        lease_end = self._ends_itself_at()
        if lease_end is None:
            return f"it has no lease (--lease 0) and runs until its time limit; end it with {stop}"
        if time.time() >= lease_end:
            since = time.strftime("%H:%M:%S", time.localtime(job.last_heartbeat))
            return f"it has ended itself by now (its lease ran out: no heartbeat since {since})"
        by = time.strftime("%H:%M:%S", time.localtime(lease_end))
        return (
            f"it ends itself by {by} at the latest, when its lease ({job.heartbeat_timeout} s "
            f"after the last heartbeat) runs out; end it sooner with {stop}"
        )

    def _ends_itself_at(self) -> float | None:
        """Wall-clock time at which the job's lease ends it (None: it has none)."""
        return self.job.lease_end()

    def _wait_for_the_cluster(self) -> None:
        """The link to the cluster is gone as the session ends (Ctrl-C during an outage): try to
        reach it, to cancel the job, for up to the reconnect bound (never past the job's lease,
        when it ends itself). Ctrl-C stops trying."""
        if not self._unreachable or self.job.gone or not self.job.id:
            return
        lease_end = self._ends_itself_at()
        if lease_end is None or lease_end <= time.time():
            return
        until = min(lease_end, time.time() + self.opts.reconnect_bound)
        by = time.strftime("%H:%M:%S", time.localtime(until))
        self.out.emit(
            Update(
                "info",
                job_id=self.job.id,
                message=(
                    f"cluster unreachable: trying to cancel job {self.job.id} until {by} "
                    "(else it ends itself when its lease runs out); Ctrl-C stops trying"
                ),
            )
        )
        delay = 2.0
        try:
            while time.time() < until:
                try:
                    self.master.close()
                    self.master.start(timeout=min(20.0, max(5.0, until - time.time())))
                except NodebookError:
                    time.sleep(min(delay, max(0.0, until - time.time())))
                    delay = min(delay * 2, 15.0)
                    continue
                if self.remote.responsive():
                    assert self.monitor is not None
                    self.monitor.unreachable = False  # cleanup cancels it now
                    self.out.emit(
                        Update("info", job_id=self.job.id, message="the cluster answers again")
                    )
                    return
        except (KeyboardInterrupt, Stopped):
            return

    def _unreachable_note(self) -> str:
        return (
            f"cluster unreachable: job {self.job.id} was not cancelled from here; "
            + self._how_it_ends(" once the cluster answers")
        )
