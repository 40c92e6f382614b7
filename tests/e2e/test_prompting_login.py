"""A login node that prompts (keyboard-interactive: password, then "Verification code: ").

The driver runs on a pseudo-terminal, as in a person's shell; the test answers each prompt. One
ssh master is shared by Ansible, the tunnel, the heartbeat and the cleanup, so each driver
command asks exactly once, and Ctrl-C cleans up without asking again. It also keeps nodebook
within the login node's MaxSessions: a session refused on the master makes ssh log in anew, and
ask again.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import tempfile
import threading
import time
from pathlib import Path

import pytest

from driver.errors import ExitCode
from tests.e2e.conftest import http_status, token_of
from tests.harness import alive, leftovers
from tests.harness.driver import driver_argv, driver_env
from tests.harness.setup import FIND_LINKS_ENV, user_password

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(400)]

PROMPTS = ("Password: ", "Verification code: ")


class PtyDriver:
    """`python -m driver ...` in the laptop namespace on a pty; answers the login's prompts."""

    def __init__(self, sandbox, args: list[str], tmp: str, state: Path) -> None:
        self.answers = {
            "Password: ": sandbox.secret("alice.password"),
            "Verification code: ": sandbox.secret("alice.otp"),
        }
        env = {**os.environ, **driver_env(Path(tmp), state)}
        argv = driver_argv(args, json_mode=False)  # --json is in args (setup has no JSON)
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # child: the driver, with the pty as its controlling terminal
            os.chdir(Path(__file__).resolve().parents[2])
            try:
                os.execvpe(argv[0], argv, env)
            finally:
                os._exit(127)
        self.output = ""
        self.prompts: list[str] = []
        self.code: int | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        answered_at = 0
        while True:
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if not ready:
                if self.code is not None:
                    return
                continue
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # EIO: every holder of the terminal closed it
                return
            if not chunk:
                return
            with self._lock:
                self.output += chunk.decode(errors="replace")
                text = self.output
            for prompt, answer in self.answers.items():
                if text.endswith(prompt) and len(text) > answered_at:
                    os.write(self.fd, (answer + "\n").encode())
                    self.prompts.append(prompt)
                    answered_at = len(text)

    def json_lines(self) -> list[dict]:
        with self._lock:
            text = self.output
        found = []
        for line in text.replace("\r", "").splitlines():
            line = line.strip()
            if line.startswith("{") and line.endswith("}"):
                try:
                    found.append(json.loads(line))
                except ValueError:
                    continue
        return found

    def wait_event(self, kind: str, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.json_lines():
                if event.get("event") == kind:
                    return event
            if self.poll() is not None:
                break
            time.sleep(0.2)
        raise AssertionError(f"no {kind!r} event; output:\n{self.output[-4000:]}")

    def ctrl_c(self) -> None:
        """Ctrl-C typed on the terminal: the line discipline signals the foreground group."""
        os.write(self.fd, b"\x03")

    def poll(self) -> int | None:
        if self.code is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.code = os.waitstatus_to_exitcode(status)
        return self.code

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                self.kill()
                raise AssertionError(f"driver still running; output:\n{self.output[-4000:]}")
            time.sleep(0.2)
        self._thread.join(5)
        return self.code  # type: ignore[return-value]

    def kill(self) -> None:
        if self.poll() is None:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
            self.code = -9

    def job_ids(self) -> set[str]:
        return {str(e["job_id"]) for e in self.json_lines() if e.get("job_id")}

    def close(self) -> None:
        """SIGTERM first (the driver cleans up), SIGKILL if it does not end."""
        if self.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while self.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
        self.kill()
        self._thread.join(5)
        os.close(self.fd)


def test_setup_and_session_ask_once_each_and_ctrl_c_asks_nothing(
    sandbox, nodebook_setup, test_tmp, state_dir, nothing_left
):
    nodebook_setup("alice")
    state = state_dir

    # 1. setup through the prompting login, the Jupyter password from a 0600 vars file (never
    #    argv): the login asks once for its password and once for the code, Ansible nothing.
    variables = {"nodebook_password_secret": user_password("alice")}
    if os.environ.get(FIND_LINKS_ENV):
        variables["nodebook_jupyter_pip_find_links"] = os.environ[FIND_LINKS_ENV].split(",")
    with tempfile.TemporaryDirectory(prefix="nodebook-otp-") as vars_dir:
        vars_file = Path(vars_dir) / "vars.json"
        fd = os.open(vars_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(variables, f)
        setup = PtyDriver(
            sandbox, ["setup", "--cluster", "sandbox-otp", "-e", f"@{vars_file}"], test_tmp, state
        )
        try:
            code = setup.wait(timeout=300)
        finally:
            setup.close()
    assert code == 0, setup.output[-4000:]
    assert setup.prompts == list(PROMPTS), setup.output[-4000:]
    assert "Jupyter password" not in setup.output  # taken from the vars file
    assert "sandbox-otp" in setup.output and "failed=0" in setup.output
    assert user_password("alice") not in setup.output
    nothing_left()  # its master is closed, its temp files are gone

    # 2. a whole session: asked once, at the start; the heartbeat, the tunnel and the Ctrl-C
    #    cleanup all go through the same master and ask nothing more.
    args = ["session", "--cluster", "sandbox-otp", "--allow-second", "--no-browser", "--json"]
    d = PtyDriver(sandbox, [*args, "--check-interval", "1"], test_tmp, state)
    try:
        ready = d.wait_event("ready", timeout=120)
        job, port = ready["job_id"], ready["local_port"]
        token = token_of(ready)
        assert ready["node"] == sandbox.scontrol_job(job)["NodeList"]
        assert http_status(sandbox, port, token) == 200
        assert http_status(sandbox, port, None) == 403
        alive.beats(sandbox, job, 2, bound=30)  # a few heartbeats over the master
        assert d.prompts == list(PROMPTS), d.output[-4000:]
        d.ctrl_c()
        assert d.wait(timeout=90) == ExitCode.INTERRUPTED, d.output[-4000:]
        assert d.prompts == list(PROMPTS), d.output[-4000:]
        assert "cancelled" in d.output
        nothing_left(job, port)
    finally:
        d.close()
        leftovers.cancel(sandbox, d.job_ids())

    # 3. the same with `--tunnel hops`, which holds the most sessions on the master (its inner
    #    ssh beside the heartbeat, the play's tasks and the driver's own calls). The login node
    #    allows 4 sessions per connection (MaxSessions); one more and ssh would log in anew by
    #    itself, and ask again.
    d = PtyDriver(sandbox, [*args, "--tunnel", "hops", "--check-interval", "1"], test_tmp, state)
    try:
        ready = d.wait_event("ready", timeout=120)
        assert http_status(sandbox, ready["local_port"], token_of(ready)) == 200
        d.ctrl_c()
        assert d.wait(timeout=90) == ExitCode.INTERRUPTED, d.output[-4000:]
        assert d.prompts == list(PROMPTS), d.output[-4000:]
        nothing_left(ready["job_id"], ready["local_port"])
    finally:
        d.close()
        leftovers.cancel(sandbox, d.job_ids())
