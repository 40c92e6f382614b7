"""One OpenSSH ControlMaster per session, shared by Ansible, the tunnel and the heartbeat.

The master authenticates in the foreground (so a password or verification code is asked once,
on the user's terminal), then OpenSSH detaches it into its own session (``-f``): Ctrl-C on the
driver's process group does not reach it, and the driver closes it itself at the end.
ControlPersist bounds its life if the driver is killed: with no client for that long it exits.
"""

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from driver.errors import ExitCode, NodebookError
from driver.hostkeys import node_options
from driver.inventory import Cluster
from driver.state import owned_temp_dir

# The login node refused a session on the master's connection (sshd's MaxSessions): the
# multiplexing client's words, or a channel the server would not open. (A `-W` through the
# master says "Stdio forwarding request failed: Session open refused by peer" for any cause.)
SESSION_REFUSED = (
    r"administratively prohibited|session request failed: Session open refused by peer"
)

# How long an orphaned master (driver killed) outlives its last client.
MASTER_PERSIST = 120
KEEPALIVE_COUNT = 3  # unanswered ssh keepalives after which a connection counts as lost


def target_argv(cluster: Cluster) -> list[str]:
    """The ssh options that reach the cluster's login host, from the inventory (no host)."""
    argv = [*cluster.ssh_args]
    if cluster.identity:
        argv += ["-i", cluster.identity]
    if cluster.port:
        argv += ["-p", str(cluster.port)]
    if cluster.user:
        argv += ["-l", cluster.user]
    return argv


def make_control_dir() -> Path:
    """A private (0700) short directory for the master's socket (unix paths are short)."""
    return owned_temp_dir("nb-")


@dataclass
class Master:
    """The session's ssh master to the login host."""

    cluster: Cluster
    control_dir: Path
    keepalive: int = 10  # ServerAliveInterval: KEEPALIVE_COUNT unanswered and ssh gives up

    @property
    def control_path(self) -> Path:
        return self.control_dir / "m"

    def client_argv(self, *options: str) -> list[str]:
        """ssh argv for a client multiplexed over this master (ends with the host)."""
        return [
            "ssh",
            *target_argv(self.cluster),
            "-o",
            "ControlMaster=no",
            "-o",
            f"ControlPath={self.control_path}",
            # The master is logged in: a client that it refuses (sshd's MaxSessions) would log
            # in anew and ask for the password and code again; it fails instead.
            "-o",
            "BatchMode=yes",
            *options,
            self.cluster.host,
        ]

    def start_argv(self) -> list[str]:
        return [
            "ssh",
            *target_argv(self.cluster),
            "-o",
            "ControlMaster=yes",
            "-o",
            f"ControlPath={self.control_path}",
            "-o",
            f"ControlPersist={MASTER_PERSIST}",
            "-o",
            f"ServerAliveInterval={self.keepalive}",
            "-o",
            f"ServerAliveCountMax={KEEPALIVE_COUNT}",
            "-f",
            "-N",
            self.cluster.host,
        ]

    def start(self, timeout: float = 120) -> None:
        """Connect (asking for a password or code on the terminal if the login node wants one)."""
        connecting = self.begin()
        if connecting is not None:
            connecting.wait(timeout)

    def begin(self) -> "Connecting | None":
        """Start connecting without waiting; None when the master is already up (one local
        connect to its socket: no `ssh -O check` to start before the login)."""
        if self.listening():
            return None
        # The master keeps this file as its stderr once it is in the background: what it says
        # about a channel it could not open (a forward's connect refused, MaxSessions) is there.
        err = open(self.log_path, "w+")  # noqa: SIM115 (closed by Connecting.wait)
        proc = subprocess.Popen(self.start_argv(), stdout=subprocess.DEVNULL, stderr=err)
        return Connecting(self, proc, err)

    @property
    def log_path(self) -> Path:
        """The master's stderr (in its private control dir)."""
        return self.control_dir / "master.err"

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int) -> str:
        """What the master wrote to its stderr after ``offset`` bytes."""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(offset)
                return log.read(16384).decode(errors="replace")
        except OSError:
            return ""

    def alive(self) -> bool:
        return self.pid() is not None

    def listening(self) -> bool:
        """The master accepts clients on its socket: one local connect, no ssh run. Cheaper
        than ``alive()`` (``ssh -O check``) where milliseconds count (``nodebook stop``)."""
        with (
            contextlib.suppress(OSError),
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock,
        ):
            sock.settimeout(1)
            sock.connect(str(self.control_path))
            return True
        return False

    def pid(self) -> int | None:
        """The master's pid from ``ssh -O check`` (None when it is not running)."""
        if not self.control_path.exists():
            return None
        try:
            proc = subprocess.run(
                self.client_argv("-O", "check"),
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            return None
        match = re.search(r"pid=(\d+)", proc.stderr + proc.stdout)
        return int(match.group(1)) if proc.returncode == 0 and match else None

    def run(
        self,
        command: str,
        timeout: float = 30,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command line on the login host over the master (one round trip). Only
        driver.remote calls this, with the helper's command lines."""
        return subprocess.run(
            [*self.client_argv("-T"), command],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def run_lines(
        self, command: str, on_line: Callable[[str], float | None]
    ) -> subprocess.CompletedProcess[str]:
        """Run a command line on the login host over the master, handing each line of its
        output to ``on_line`` as it comes. No timeout until ``on_line`` returns one (seconds,
        counted from then): a call that first waits for a queued job waits as long as the job
        does (the session ends it by closing the master). Only driver.remote calls this."""
        import tempfile

        argv = [*self.client_argv("-T"), command]
        out: list[str] = []
        with tempfile.TemporaryFile("w+") as err:
            proc = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL, text=True
            )
            expired: list[float] = []  # the timeout, once it ran out

            def expire(seconds: float) -> None:
                expired.append(seconds)
                proc.kill()

            timer: threading.Timer | None = None
            try:
                assert proc.stdout is not None
                for raw in proc.stdout:
                    out.append(raw)
                    seconds = on_line(raw.rstrip("\n"))
                    if seconds is not None and timer is None:
                        timer = threading.Timer(seconds, expire, (seconds,))
                        timer.daemon = True
                        timer.start()
                rc = proc.wait()
            finally:
                if timer is not None:
                    timer.cancel()
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            if expired:
                raise subprocess.TimeoutExpired(argv, expired[0])
            err.seek(0)
            return subprocess.CompletedProcess(argv, rc, "".join(out), err.read())

    def forward(self, spec: str, cancel: bool = False) -> None:
        """Add (or cancel) a ``-L`` forwarding held by the master itself."""
        proc = subprocess.run(
            self.client_argv("-O", "cancel" if cancel else "forward", "-L", spec),
            capture_output=True,
            text=True,
            timeout=15,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0 and not cancel:
            why = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise NodebookError(f"cannot forward {spec}: {why}", ExitCode.TUNNEL_LOST)

    def close(self) -> None:
        """Ask the master to exit (it closes every forwarding it holds); kill it if it hangs."""
        if not self.control_path.exists():
            return
        pid = None
        try:
            pid = self.pid()
            subprocess.run(
                self.client_argv("-O", "exit"),
                capture_output=True,
                timeout=10,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (subprocess.SubprocessError, OSError):
            pass
        if pid is not None:  # still there (hung on a dead link): end it by its pid
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if str(self.control_path).encode() in cmdline:
                    os.kill(pid, signal.SIGTERM)
        self.control_path.unlink(missing_ok=True)

    def proxy_command(self) -> str:
        """A ProxyCommand that reaches %h:%p through the master (no second login)."""
        words = [shlex.quote(w) for w in self.client_argv("-W", "%h:%p")]
        # ssh expands % tokens in ProxyCommand; keep literal ones literal, then restore ours.
        return " ".join(w.replace("%", "%%") for w in words).replace("%%h:%%p", "%h:%p")

    def node_argv(self, node: str, options: list[str], command: str | None) -> list[str]:
        """ssh argv that reaches a compute node through this master (honours -F, -i, -l)."""
        cluster = self.cluster
        argv = ["ssh", *cluster.ssh_args]
        if cluster.identity:
            argv += ["-i", cluster.identity]
        if cluster.user:
            argv += ["-l", cluster.user]
        argv += [
            "-o",
            f"ProxyCommand={self.proxy_command()}",
            "-o",
            "ControlMaster=no",
            "-o",
            "ControlPath=none",
            "-o",
            "ExitOnForwardFailure=yes",
            "-o",
            f"ServerAliveInterval={max(1, self.keepalive // 2)}",  # the node's, behind login's
            "-o",
            f"ServerAliveCountMax={KEEPALIVE_COUNT}",
            *node_options(cluster, node),
            "-T",
            *options,
            node,
        ]
        if command:
            argv.append(command)
        return argv

    def ansible_env(self) -> dict[str, str]:
        """Environment that makes Ansible a client of this master."""
        return {
            "ANSIBLE_SSH_CONTROL_PATH_DIR": str(self.control_dir),
            "ANSIBLE_SSH_CONTROL_PATH": str(self.control_path),
        }


@dataclass
class Connecting:
    """A master being started: ssh authenticates, then forks into the background (``-f``)."""

    master: Master
    proc: "subprocess.Popen[bytes]"
    err: IO[str]

    def wait(self, timeout: float = 120) -> None:
        """Until the master is up; NodebookError (cause and fix) if it could not connect.

        A blocking wait returns the moment ssh forks into the background; ``Popen.wait`` with a
        timeout polls instead, with pauses that grow to 50 ms: a login of 0.2 s was seen up to
        that much late. So the timeout is a timer that ends the login, as ``abort`` does."""
        expired = threading.Event()

        def expire() -> None:
            expired.set()
            self.abort()

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
        try:
            try:
                rc = self.proc.wait()
            finally:
                timer.cancel()
            if expired.is_set():
                raise NodebookError(
                    f"ssh to {self.master.cluster.host} did not connect within {timeout:.0f} s",
                    ExitCode.SSH,
                )
            if rc != 0:
                self.err.seek(0)
                lines = [ln for ln in self.err.read().splitlines() if ln.strip()]
                why = ssh_failure_line(lines) or f"ssh exited with {rc}"
                raise NodebookError(
                    f"cannot ssh to {self.master.cluster.host}: {why}; "
                    f"{ssh_hint(why, self.master.cluster)}",
                    ExitCode.SSH,
                )
        finally:
            self.err.close()

    def abort(self) -> None:
        """Stop a login still in progress (a prompt the user never answered, a hung connect)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# (pattern in ssh's last error line, the fix to suggest); the first match wins.
SSH_HINTS: tuple[tuple[str, str], ...] = (
    (
        r"REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed|"
        r"No \S+ host key is known|host key .* not known",
        "the login node's host key is missing from or differs in your known_hosts: verify its "
        "fingerprint with your cluster's admins, then add it (never turn host key checking off)",
    ),
    (
        r"Permission denied|Too many authentication failures",
        "check the user name (--user or ansible_user) and the key "
        "(ansible_ssh_private_key_file): `ssh {target}` must log in",
    ),
    (
        r"Identity file .* not accessible|Load key|invalid format|bad permissions",
        "check ansible_ssh_private_key_file: the key file must exist and be readable by you only",
    ),
    (
        r"[Bb]ad configuration option|bad configuration options|[Cc]an't open user config|"
        r"[Uu]nsupported option|[Kk]eyword .* extra arguments|Missing argument|"
        r"[Cc]onfiguration file .* error|terminating",
        "fix the ssh config error above (`ssh -G {host}` shows the parsed config)",
    ),
    (
        r"Could not resolve hostname|Name or service not known",
        "check ansible_host in the inventory (or its Host entry in your ssh config)",
    ),
    (
        r"timed out|No route to host|Network is unreachable|Connection refused|"
        r"Connection closed|Connection reset",
        "check that the login node is up and reachable from here (network, VPN, "
        "ansible_host/ansible_port), then retry",
    ),
)


def ssh_failure_line(lines: list[str]) -> str:
    """The line of ssh's stderr that says why it failed (banner and warnings skipped)."""
    for pattern, _ in SSH_HINTS:
        for line in lines:
            if re.search(pattern, line):
                return line.strip().rstrip(".")
    return lines[-1].strip().rstrip(".") if lines else ""


def ssh_hint(why: str, cluster: Cluster) -> str:
    """A one-line fix for an ssh failure line."""
    target = f"{cluster.user + '@' if cluster.user else ''}{cluster.host}"
    for pattern, hint in SSH_HINTS:
        if re.search(pattern, why):
            return hint.format(target=target, host=cluster.host)
    return f"run `ssh {target}` by hand to see why"


def cleanup_dir(path: Path) -> None:
    """Remove the control directory (sockets and all) if it is still there."""
    if path.exists():
        for child in path.iterdir():
            child.unlink(missing_ok=True)
        os.rmdir(path)
