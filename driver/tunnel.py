"""The tunnel from a local port to Jupyter's endpoint, with the OpenSSH client.

Modes (``--tunnel``):
  jump       ssh to the compute node through the login master (ProxyCommand -W) and forward
             the local port to the unix socket (or loopback port) there. The ssh session ends on
             the node, which is what a unix-socket forward needs. Default.
  hops       the classic nested form: the master forwards the local port to a 0600 unix socket
             on login, held by an inner ``ssh -L`` from login to the node (the helper's ``hop``).
             Its remote end is the helper's ``hold``, with stdin tied to the driver, so it ends
             with the driver (no orphan).
  via-login  the master forwards local port -> node:port (TCP endpoint bound to the node's
             cluster address), for clusters that forbid ssh to compute nodes.
  direct     the master forwards to the endpoint on the login host itself (standalone server).
"""

import contextlib
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from driver.errors import ExitCode, NodebookError
from driver.options import TUNNEL_MODES
from driver.remote import Remote
from driver.ssh import SESSION_REFUSED, Master


@dataclass(frozen=True)
class Endpoint:
    """Where Jupyter listens: a unix socket path, or a TCP port on a host (from connection.json)."""

    node: str
    socket: str | None = None
    port: int | None = None
    host: str = "127.0.0.1"

    def target(self) -> str:
        """The right-hand side of an ``ssh -L`` spec as seen from where the session ends."""
        if self.socket:
            return self.socket
        if self.port is None:
            raise NodebookError("connection file has neither socket nor port")
        return f"{self.host}:{self.port}"


class TunnelFailed(NodebookError):
    """The tunnel's ssh ended: what ssh said, worded as a cause and a fix. ``final`` failures
    (a host key, a refused login) come back the same on a second try."""

    def __init__(self, message: str, kind: str, final: bool) -> None:
        super().__init__(message, ExitCode.TUNNEL_LOST)
        self.kind = kind
        self.final = final


# (kind, pattern in ssh's stderr, cause, fix, final); the first match wins. {node} is the
# compute node, {said} ssh's own line(s). The patterns are OpenSSH's messages (client, and the
# login node's channel-open failures relayed through the master), plus pam_slurm_adopt's.
TUNNEL_CAUSES: tuple[tuple[str, str, str, str, bool], ...] = (
    (
        "host-key-changed",
        r"REMOTE HOST IDENTIFICATION HAS CHANGED|POSSIBLE DNS SPOOFING",
        "{node} presented a host key that differs from the login node's record of it, a "
        "possible man-in-the-middle (ssh: {said})",
        "nothing was trusted or changed; tell your cluster's admins, and do not work around it",
        True,
    ),
    (
        "host-key-unknown",
        r"No \S+ host key is known for|Host key verification failed|host key .* not known",
        "{node}'s host key is unknown: neither your known_hosts nor the login node's records "
        "(/etc/ssh/ssh_known_hosts, ~/.ssh/known_hosts there) have it (ssh: {said})",
        "ask your cluster's admins to publish the nodes' keys in the login node's "
        "/etc/ssh/ssh_known_hosts, or run `ssh {node} true` once on the login node and check "
        "the fingerprint it shows",
        True,
    ),
    (
        "no-job-on-node",
        r"pam_slurm_adopt|no active jobs on this node",
        "{node} refused the login: the cluster admits ssh to a node only for a job of yours "
        "running there (ssh: {said})",
        "check with `nodebook list` that the job still runs on {node}",
        True,
    ),
    (
        "permission-denied",
        r"Permission denied|Too many authentication failures|Authentication failed",
        "{node} refused the login (ssh: {said})",
        "the node must accept your key: check that `ssh {node}` works from the login node "
        "with the same key, or use --tunnel hops",
        True,
    ),
    (
        "forward-refused",
        r"forwarding request failed: the login node's sshd refused",
        "the login node's sshd refused to forward to {node}'s port 22, which answers from the "
        "login node itself (ssh: {said})",
        "the login node forbids forwarding (AllowTcpForwarding, PermitOpen): use --tunnel hops "
        "or --tunnel via-login",
        True,
    ),
    (
        "prohibited",
        SESSION_REFUSED,
        "the login node refused to open another channel to {node} (ssh: {said}); its sshd "
        "limits the "
        "sessions per connection (MaxSessions) or forbids forwarding (AllowTcpForwarding)",
        "close other ssh sessions that share this connection and retry (if it persists, ask "
        "your admins), or use --tunnel via-login",
        False,
    ),
    (
        "refused",
        r"Connection refused",
        "nothing on {node} accepts ssh (ssh: {said}); the cluster may forbid ssh to compute nodes",
        "use --tunnel via-login (set nodebook_tunnel: via-login in the inventory to keep it)",
        True,
    ),
    (
        "no-route",
        r"No route to host|Network is unreachable|timed out",
        "the login node cannot reach {node} (ssh: {said})",
        "the node may be down or firewalled from the login node: check `nodebook list`, or use "
        "--tunnel via-login",
        False,
    ),
    (
        "unresolvable",
        r"Name or service not known|Could not resolve hostname|"
        r"Temporary failure in name resolution|nodename nor servname",
        "the login node cannot resolve {node}'s name (ssh: {said})",
        "ask your cluster's admins how nodes are named from the login node, or use "
        "--tunnel via-login",
        True,
    ),
)


def failure(node: str, stderr: str, rc: int | None) -> TunnelFailed:
    """What ssh's stderr says about why the tunnel to ``node`` ended (pure; unit-tested)."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip() and not ln.startswith("@@@")]
    for kind, pattern, cause, fix, final in TUNNEL_CAUSES:
        said = [ln for ln in lines if re.search(pattern, ln)]
        if not said:
            continue
        if kind == "host-key-changed":  # ssh's own warning, with the fingerprint it saw
            said += [ln for ln in lines if "fingerprint" in ln.lower() and ln not in said][:1]
        text = "; ".join(s.rstrip(".") for s in said[:2])
        message = f"{cause.format(node=node, said=text)}; {fix.format(node=node)}"
        return TunnelFailed(message, kind, final)
    said = lines[-1].rstrip(".") if lines else f"ssh exited with status {rc}"
    return TunnelFailed(
        f"the tunnel to {node} closed (ssh: {said}); check that `ssh {node}` works from the "
        "login node, or use --tunnel via-login",
        "other",
        False,
    )


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    """Nothing listens on 127.0.0.1:port. Bound as ssh binds a forward (SO_REUSEADDR): the
    connections a killed tunnel leaves in TIME_WAIT do not stop ssh, so they do not count."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


@dataclass(frozen=True)
class Forward:
    """``--forward NODEPORT[:LOCALPORT]``: a web app's port on the node, on a local port."""

    node_port: int
    local_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.local_port}/"


def jump_argv(
    master: Master,
    endpoint: Endpoint,
    local_port: int,
    hold: str,
    forwards: tuple[Forward, ...] = (),
) -> list[str]:
    """The jump-mode tunnel: the ssh session ends on the node that holds the socket; its remote
    command (``hold``) keeps it open while the driver lives. --forward ports ride along."""
    specs = ["-L", f"127.0.0.1:{local_port}:{endpoint.target()}"]
    for fw in forwards:
        specs += ["-L", f"127.0.0.1:{fw.local_port}:127.0.0.1:{fw.node_port}"]
    return master.node_argv(endpoint.node, specs, hold)


@dataclass
class Tunnel:
    """A running tunnel in one of the four modes; ``alive()`` is cheap, ``close()`` idempotent."""

    remote: Remote
    mode: str
    endpoint: Endpoint
    local_port: int
    job_id: str
    hop_socket: str | None = None  # hops: the login node's socket (from the connection info)
    forwards: tuple[Forward, ...] = ()  # --forward: more node ports, over the same master
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    stderr: Path | None = None  # the tunnel ssh's stderr (in the master's private dir)
    master_log_at: int = 0  # the master's stderr up to the tunnel's start (not its business)
    forward_spec: str | None = None
    extra_specs: list[str] = field(default_factory=list)  # --forward held by the master

    @property
    def master(self) -> Master:
        return self.remote.master

    def start(self) -> None:
        if self.mode not in TUNNEL_MODES:
            raise NodebookError(f"unknown tunnel mode {self.mode!r}", ExitCode.USAGE)
        local = f"127.0.0.1:{self.local_port}"
        if self.mode == "jump":
            hold = self.remote.hold_command(self.job_id)
            self._spawn(jump_argv(self.master, self.endpoint, self.local_port, hold, self.forwards))
        elif self.mode == "hops":
            if not self.hop_socket:
                raise NodebookError("--tunnel hops: the cluster's helper named no hop socket")
            inner = self.remote.hop_command(self.job_id, self.endpoint.node, self.endpoint.target())
            self._spawn([*self.master.client_argv("-T"), inner])
            # A forward to a socket the inner ssh has not made yet fails per connection, not
            # here: the driver's HTTP check retries until it answers.
            self.forward_spec = f"{local}:{self.hop_socket}"
            self.master.forward(self.forward_spec)
        elif self.mode == "via-login":
            if self.endpoint.socket or self.endpoint.host.startswith("127."):
                raise NodebookError(
                    "--tunnel via-login needs Jupyter on the node's cluster address: "
                    "use --endpoint tcp-node (the default with via-login)",
                    ExitCode.USAGE,
                )
            self.forward_spec = f"{local}:{self.endpoint.host}:{self.endpoint.port}"
            self.master.forward(self.forward_spec)
        else:  # direct
            self.forward_spec = f"{local}:{self.endpoint.target()}"
            self.master.forward(self.forward_spec)
        if self.mode != "jump":
            # Through the login node, as the tunnel goes: the app must listen on the node's
            # address (or, on a standalone server, on its loopback).
            host = "127.0.0.1" if self.mode == "direct" else self.endpoint.node
            for fw in self.forwards:
                spec = f"127.0.0.1:{fw.local_port}:{host}:{fw.node_port}"
                self.master.forward(spec)
                self.extra_specs.append(spec)

    def _spawn(self, argv: list[str]) -> None:
        # Own session: Ctrl-C on the driver's terminal does not reach it; the driver closes it.
        # stdin is a pipe the driver holds: when the driver dies, the remote `cat` ends.
        # stderr goes to a file in the master's 0700 dir: why it ended is ssh's to say.
        self.stderr = self.master.control_dir / f"tunnel-{self.local_port}.err"
        self.master_log_at = self.master.log_size()
        with open(self.stderr, "wb") as err:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=err,
                start_new_session=True,
            )

    def alive(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            return False
        return self.forward_spec is None or self.master.alive()

    def failure(self) -> TunnelFailed:
        """Why the tunnel ended, from its ssh's stderr and the master's: through the master, a
        client learns only "Session open refused by peer"; the master says why."""
        text = ""
        with contextlib.suppress(OSError):
            if self.stderr is not None:
                text = self.stderr.read_text(errors="replace")[-8000:]
        text += self.master.log_since(self.master_log_at)
        if "Stdio forwarding request failed: Session open refused by peer" in text:
            text += self._probe()
        rc = self.proc.poll() if self.proc is not None else None
        if not text and self.forward_spec is not None and not self.master.alive():
            text = "the ssh connection to the login node was lost"
        return failure(self.endpoint.node, text, rc)

    def _probe(self) -> str:
        """Through the master a -W learns only that the login node refused it: what the login
        node meets connecting to the node's sshd (one helper call, on failure only)."""
        node = self.endpoint.node
        with contextlib.suppress(NodebookError, OSError, subprocess.SubprocessError):
            line = self.remote.call("probe", node, timeout=15, check=False).first("probe") or {}
            if line.get("open"):
                return (
                    f"\nforwarding request failed: the login node's sshd refused ({node}:22 open)"
                )
            if line.get("error"):
                return f"\n{line['error']}"
        return ""

    def close(self) -> None:
        for spec in self.extra_specs:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.master.forward(spec, cancel=True)
        self.extra_specs = []
        if self.forward_spec is not None:
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.master.forward(self.forward_spec, cancel=True)
            self.forward_spec = None
        if self.proc is not None:
            proc, self.proc = self.proc, None
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    if proc.stdin:
                        proc.stdin.close()
                proc.terminate()
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)


def preload() -> None:
    """Import the HTTP client now (the main thread is idle while the job starts), so that the
    first request at `ready` does not pay for it."""
    import http.client  # noqa: F401


def _status(url: str, token: str, timeout: float) -> tuple[int | None, str]:
    """One GET of ``url`` on this machine's tunnel, the token in a header: (its HTTP status,
    "") or (None, why there was none).

    http.client, not urllib: urllib would send it to an http_proxy from the environment, which
    cannot reach this machine's 127.0.0.1, and would follow redirects.
    """
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        conn.request("GET", path or "/", headers={"Authorization": f"token {token}"})
        return conn.getresponse().status, ""
    except (OSError, http.client.HTTPException) as exc:
        return None, str(exc) or type(exc).__name__
    finally:
        conn.close()


def http_ok(url: str, token: str, timeout: float = 5) -> bool:
    """One request through the tunnel: True when Jupyter answers 200."""
    return _status(url, token, timeout)[0] == 200


def wait_http(url: str, token: str, timeout: float, tunnel: Tunnel | None = None) -> None:
    """Wait until Jupyter answers ``url`` with 200 through the tunnel (token in a header);
    TunnelFailed, with ssh's reason, if the tunnel's ssh ends first."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    delay = 0.05
    while time.monotonic() < deadline:
        if tunnel is not None and not tunnel.alive():
            raise tunnel.failure()
        status, why = _status(url, token, 5)
        if status == 200:
            return
        last = f"HTTP {status}" if status is not None else why
        time.sleep(delay)
        delay = min(delay * 1.5, 0.5)
    raise NodebookError(
        f"Jupyter did not answer through the tunnel within {timeout:.0f} s ({last})",
        ExitCode.TUNNEL_LOST,
    )
