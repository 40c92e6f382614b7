"""The remote helper's commands, called over the session's ssh master: one round trip each.

Every command the driver runs on the cluster goes through ``Remote``: the installed helper
(``<base dir>/bin/nodebook-remote``, found through the inventory's nodebook_environment_base_dir)
with argv, or, before setup exists (doctor, init), the same helper file piped into ``bash -s``.
The helper answers in JSON lines; an error line becomes a NodebookError with its exit code.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from driver.errors import ExitCode, NodebookError
from driver.inventory import Cluster
from driver.paths import helper_script, rules
from driver.ssh import SESSION_REFUSED, Master
from driver.usage import Usage

# The helper's error kinds and the exit codes they mean.
ERROR_CODES: dict[str, ExitCode] = {
    "usage": ExitCode.USAGE,
    "not-set-up": ExitCode.NOT_SET_UP,
    "version": ExitCode.NOT_SET_UP,
    "missing-module": ExitCode.NOT_SET_UP,
    "no-module-command": ExitCode.NOT_SET_UP,
    "no-python": ExitCode.NOT_SET_UP,
    "scheduler": ExitCode.SCHEDULER,
    "refused": ExitCode.SCHEDULER,
    "pending-limit": ExitCode.SCHEDULER,
    "job-ended": ExitCode.JOB_ENDED,
    "duplicate": ExitCode.DUPLICATE,
    "not-found": ExitCode.NOT_FOUND,
}
# What a shell says when the installed helper is not there (setup never ran, or an older one).
MISSING = ("No such file or directory", "command not found", "Permission denied")
# The most sessions one nodebook session holds on its master at once: the play's task, the
# driver's own wait for Jupyter and a second connection call as it connects (with `--tunnel
# hops` the inner ssh instead, once connected, and the heartbeat). A `nodebook stop` from another
# terminal adds one; OpenSSH's default MaxSessions is 10, the sandbox's 4.
MAX_SESSIONS = 3


@dataclass
class Reply:
    """The helper's answer: its JSON lines, exit status and stderr."""

    rc: int
    lines: list[dict[str, Any]] = field(default_factory=list)
    stderr: str = ""

    def of(self, kind: str) -> list[dict[str, Any]]:
        return [line for line in self.lines if line.get("nodebook") == kind]

    def first(self, kind: str) -> dict[str, Any] | None:
        found = self.of(kind)
        return found[0] if found else None

    @property
    def error(self) -> dict[str, Any] | None:
        return self.first("error")


def parse_lines(text: str) -> list[dict[str, Any]]:
    """The helper's JSON lines in some output (a login shell may print other things first)."""
    lines = []
    for raw in text.splitlines():
        if raw.startswith('{"nodebook":'):
            try:
                parsed = json.loads(raw)
            except ValueError:
                continue
            if isinstance(parsed, dict):
                lines.append(parsed)
    return lines


def error_for(line: dict[str, Any]) -> NodebookError:
    """The NodebookError an error line stands for."""
    kind = str(line.get("error") or "")
    return NodebookError(str(line.get("message") or kind), ERROR_CODES.get(kind, ExitCode.ERROR))


@dataclass
class Remote:
    """The helper on one cluster, reached through one master."""

    master: Master
    cluster: Cluster

    @property
    def helper(self) -> str:
        """The shell words that start the installed helper (protocol included)."""
        return str(rules().helper_command(self.cluster.base_dir))

    def command(self, *args: str) -> str:
        """The remote command line for a helper command (argv, quoted)."""
        return f"{self.helper} {shlex.join(args)}"

    def call(
        self,
        *args: str,
        timeout: float = 30,
        check: bool = True,
        late: NodebookError | None = None,
        on_line: Callable[[dict[str, Any]], None] | None = None,
    ) -> Reply:
        """Run a helper command over the master; with ``check`` every failure is a NodebookError
        (an error line, a lost connection, no answer within ``timeout``: ``late``, when the
        caller knows better what that means, else a lost link). Without it, only what the
        reply says: the callers that tell a lost link from an answer (heartbeat, responsive)
        catch ssh's timeout themselves. With ``on_line`` each of the helper's lines is handed
        to it as it comes, and ``timeout`` counts from the first one."""
        try:
            if on_line is None:
                proc = self.master.run(self.command(*args), timeout=timeout)
            else:

                def each(text: str) -> float | None:
                    lines = parse_lines(text)
                    for line in lines:
                        on_line(line)
                    return timeout if lines else None

                proc = self.master.run_lines(self.command(*args), each)
        except subprocess.TimeoutExpired as exc:
            if not check:
                raise
            raise late or NodebookError(
                f"the login node {self.cluster.host} did not answer `nodebook-remote "
                f"{args[0] if args else ''}` within {timeout:.0f} s: check the connection "
                "(ssh to it by hand), then retry",
                ExitCode.SSH,
            ) from exc
        reply = Reply(proc.returncode, parse_lines(proc.stdout), proc.stderr)
        if check:
            self.raise_for(reply)
        return reply

    def raise_for(self, reply: Reply) -> None:
        if reply.error is not None:
            raise error_for(reply.error)
        refused = self.session_refused(reply)
        if refused is not None:
            raise refused
        if reply.rc == 255:
            raise NodebookError(
                f"lost the ssh connection to {self.cluster.host}: "
                f"{(reply.stderr.strip().splitlines() or ['no answer'])[-1]}",
                ExitCode.SSH,
            )
        if reply.rc != 0 and not reply.lines:
            if any(text in reply.stderr for text in MISSING):
                raise NodebookError(
                    f"nodebook is not set up on {self.cluster.name} (no helper in "
                    f"{self.cluster.base_dir}/bin, or one from an older nodebook): run "
                    "`nodebook setup`",
                    ExitCode.NOT_SET_UP,
                )
            raise NodebookError(
                f"the nodebook helper on {self.cluster.name} failed (exit {reply.rc}): "
                f"{(reply.stderr.strip().splitlines() or ['no output'])[-1]}"
            )

    def session_refused(self, reply: Reply) -> NodebookError | None:
        """The error for a call that failed because the login node refused it a session on the
        shared connection (sshd's MaxSessions); None for any other outcome. (When it is refused,
        ssh logs in anew by itself: with a key that works, and the call succeeds.)"""
        if reply.lines or reply.rc == 0:
            return None
        said = [ln.strip() for ln in reply.stderr.splitlines() if ln.strip()]
        refused = [ln for ln in said if re.search(SESSION_REFUSED, ln)]
        if not refused:
            return None
        return NodebookError(
            f"the login node {self.cluster.host} refused nodebook another session on its ssh "
            f"connection (ssh: {refused[0].rstrip('.')}): its sshd allows only a few sessions "
            f"per connection (MaxSessions), and a nodebook session holds up to {MAX_SESSIONS} "
            "at once; close other ssh sessions that share the connection, or ask the cluster's "
            f"admins to raise MaxSessions to {MAX_SESSIONS + 1} or more",
            ExitCode.SSH,
        )

    def piped(self, *args: str, login: bool = True, timeout: float = 60) -> Reply:
        """The helper of this installation, piped into ``bash -s`` (works before setup)."""
        argv = ["bash", "-l", "-s"] if login else ["bash", "-s"]
        argv += ["--", "--base", self.cluster.base_dir, *args]
        if not self.cluster.base_dir.startswith("/"):
            argv[argv.index("--base") + 1] = "$HOME/" + self.cluster.base_dir
        command = " ".join(f'"{a}"' if a.startswith("$HOME/") else shlex.quote(a) for a in argv)
        proc = self.master.run(command, timeout=timeout, input=helper_script())
        return Reply(proc.returncode, parse_lines(proc.stdout), proc.stderr)

    # -- the session's steps ------------------------------------------------------------------
    def connection(
        self, job_id: str, on_line: Callable[[dict[str, Any]], None] | None = None
    ) -> dict[str, Any]:
        """connection.json of a running job, with its token (never through Ansible). With
        ``on_line`` the job may still be queued: the helper waits for it to start, and each of
        its lines goes to ``on_line`` as it comes (the job's status line once it starts: the
        node, its host keys); it returns once Jupyter answers (or the job gave up starting)."""
        queued = on_line is not None
        reply = self.call(
            "connection",
            job_id,
            "--token",
            *(["--queued"] if queued else ["--timeout", "0"]),
            *self.scheduler_args(),
            timeout=900 if queued else 30,
            on_line=on_line,
        )
        line = reply.first("connection")
        if line is None:
            raise NodebookError(f"job {job_id}: the helper returned no connection")
        return {k: v for k, v in line.items() if k != "nodebook"}

    def state(self, job_id: str) -> str:
        """The scheduler's state of the job now (one query), touching the heartbeat too;
        UNKNOWN when the login node does not answer (the link went down since the heartbeat)."""
        try:
            reply = self.call(
                "heartbeat", job_id, "--check", *self.scheduler_args(), timeout=15, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return "UNKNOWN"
        line = reply.first("heartbeat")
        return str(line.get("state") or "UNKNOWN") if line else "UNKNOWN"

    def tidy_node(self, node: str, job_id: str) -> None:
        """Remove what a job killed outright left in the node's runtime dir (best effort)."""
        argv = self.master.node_argv(node, ["-o", "BatchMode=yes"], self.command("tidy", job_id))
        subprocess.run(argv, capture_output=True, timeout=30, check=False, stdin=subprocess.DEVNULL)

    def heartbeat(self, job_id: str) -> str:
        """Touch the heartbeat: 'alive', 'gone' (Jupyter's connection file is gone) or 'lost'."""
        try:
            reply = self.call("heartbeat", job_id, timeout=10, check=False)
        except (OSError, subprocess.SubprocessError):
            return "lost"
        line = reply.first("heartbeat")
        refused = self.session_refused(reply)
        if refused is not None:
            raise refused  # not a lost connection: reconnecting would change nothing
        if reply.rc == 255 or line is None:
            return "lost"
        return "alive" if line.get("alive") else "gone"

    def ended(self, job_id: str) -> dict[str, Any]:
        """How the job ended: state, exit code, who cancelled it, the last lines of its log."""
        reply = self.call("ended", job_id, *self.scheduler_args(), timeout=40)
        return reply.first("ended") or {}

    def cancel(self, job_id: str) -> bool:
        """The session's own job: scancel at once (nothing read first), then confirm that it
        left the queue and tidy what it left on the login node, in one call. True: it was
        cancelled now; False: it had left the queue already. An error line raises."""
        timeout = 60
        late = NodebookError(
            f"the login node {self.cluster.host} did not confirm job {job_id}'s cancel "
            f"within {timeout} s",
            ExitCode.SCHEDULER,
        )
        reply = self.call(
            "cancel", "--job", job_id, "--own", *self.scheduler_args(), timeout=timeout, late=late
        )
        if reply.first("stopped") is not None:
            return True
        if reply.first("gone") is not None:
            return False
        raise NodebookError(
            f"job {job_id}: the helper's cancel said neither stopped nor gone "
            f"(exit {reply.rc}: {(reply.stderr.strip().splitlines() or ['no output'])[-1]})"
        )

    def usage(self, job_id: str) -> Usage:
        """The job's time left and use (scontrol and sstat of its batch step), one round trip."""
        reply = self.call("usage", job_id, *self.scheduler_args(), timeout=10)
        return Usage.from_line(reply.first("usage") or {"job_id": job_id})

    def sessions(self) -> list[dict[str, Any]]:
        return self.call("list", *self.scheduler_args()).of("session")

    def responsive(self, timeout: float = 5) -> bool:
        """One round trip to the login node (a master hung on a dead link still answers
        ``ssh -O check`` locally; this asks the other end)."""
        if not self.master.control_path.exists():
            return False
        try:
            return self.call("version", timeout=timeout, check=False).rc == 0
        except (OSError, subprocess.SubprocessError):
            return False

    def hold_command(self, job_id: str) -> str:
        """The remote command that holds a tunnel's ssh session open (on a node or login)."""
        return self.command("hold", job_id)

    def hop_command(self, job_id: str, node: str, target: str) -> str:
        """The login node's inner ssh of ``--tunnel hops``."""
        return self.command("hop", job_id, node, target)

    def scheduler_args(self) -> list[str]:
        return ["--scheduler", self.cluster.scheduler]
