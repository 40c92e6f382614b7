"""`make demo`: the whole path on the sandbox cluster, from nothing to a notebook URL.

1. start the sandbox cluster (make sandbox-up);
2. run the one-time setup as alice (`python -m driver setup`: its own progress lines), with a
   generated Jupyter password kept in /var/lib/nodebook-sandbox/secrets/alice.jupyter-password
   (root only);
3. start a session from the sandbox's laptop (`python -m driver session --no-browser`: the
   driver's own output, a live status line while the job waits);
4. relay the notebook's port from the laptop to this machine's 127.0.0.1, so the URL that is
   printed opens in a browser here; Ctrl-C ends the session (the job is cancelled).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLUSTER = [sys.executable, str(REPO / "sandbox" / "cluster.py")]
STATE = Path(os.environ.get("NODEBOOK_SANDBOX_STATE", "/var/lib/nodebook-sandbox"))
VENV_BIN = REPO / ".venv" / "bin"
# The sandbox's inventory, passed explicitly: the driver has no default inventory.
INVENTORY = REPO / "inventory" / "sandbox" / "hosts.yml"
# The driver's local state (session records, setup logs) during the demo.
DEMO_STATE = STATE / "demo-driver-state"


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def password_file() -> Path:
    """alice's demo Jupyter password: made once, root-only, reused by later demos."""
    path = STATE / "secrets" / "alice.jupyter-password"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(12) + "\n")
    return path


def driver_argv(*args: str) -> list[str]:
    """`python -m driver ARGS` on the sandbox's laptop, its state in a directory of the demo's."""
    env = ["env", f"NODEBOOK_STATE_DIR={DEMO_STATE}", f"PATH={VENV_BIN}:/usr/bin:/bin"]
    return [*CLUSTER, "exec", "laptop", "--", *env, str(VENV_BIN / "python"), "-m", "driver",
            *args]  # fmt: skip


def run_setup() -> None:
    """The driver's own `setup`, with its own progress lines (the password from a 0600 file)."""
    password = password_file().read_text().strip()
    with tempfile.TemporaryDirectory(prefix="nodebook-demo-") as tmp:
        extra = Path(tmp) / "vars.json"
        fd = os.open(extra, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"nodebook_password_secret": password}, fh)
        argv = driver_argv("setup", "-i", str(INVENTORY), "--cluster", "sandbox", "-e", f"@{extra}")
        subprocess.run(argv, cwd=REPO, check=True)


def free_local(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def session_record() -> dict[str, object] | None:
    """The driver's record of its session (written once Jupyter answers): port, job, node. The
    demo's state dir is emptied before the session starts, so the one record is this one."""
    for path in (DEMO_STATE / "sandbox").glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(path.read_text())
            if isinstance(record, dict) and record.get("driver_pid"):
                return record
    return None


def relay_when_ready(driver: subprocess.Popen[bytes]) -> subprocess.Popen[bytes] | None:
    """Once the session is up, relay its port from the laptop to this machine's 127.0.0.1."""
    while driver.poll() is None:
        record = session_record()
        if record is not None:
            port = int(str(record["local_port"]))
            anchor = (STATE / "run" / "anchor-laptop.pid").read_text().split()[0]
            if not free_local(port):
                print(f"(port {port} is busy here: open the URL inside the sandbox's laptop)")
                return None
            relay = subprocess.Popen(
                [sys.executable, str(REPO / "sandbox" / "relay.py"), str(port), anchor]
            )
            print(
                f"(the URL above opens in a browser on this machine: port {port} is relayed; "
                "Ctrl-C ends the session, the tunnel closes and the job is cancelled)",
                flush=True,
            )
            return relay
        time.sleep(0.2)
    return None


def run_session() -> int:
    """The driver's own `session`, printing its own lines (a live status while it waits)."""
    shutil.rmtree(DEMO_STATE / "sandbox", ignore_errors=True)
    argv = driver_argv("session", "-i", str(INVENTORY), "--cluster", "sandbox", "--no-browser")
    driver = subprocess.Popen(argv, cwd=REPO, start_new_session=True)
    relay: subprocess.Popen[bytes] | None = None
    try:
        relay = relay_when_ready(driver)
        return driver.wait()
    except KeyboardInterrupt:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGINT)
        return driver.wait()
    finally:
        if relay is not None:
            relay.terminate()
            relay.wait()


def main() -> int:
    step("Starting the sandbox cluster (make sandbox-up)")
    subprocess.run([*CLUSTER, "up"], check=True)
    step("One-time setup as alice: python -m driver setup --cluster sandbox")
    run_setup()
    print(f"    (alice's Jupyter password is in {password_file()})")
    step("Session: python -m driver session --cluster sandbox (from the sandbox's laptop)")
    return run_session()


if __name__ == "__main__":
    try:
        sys.exit(main())
    except subprocess.CalledProcessError as err:
        print(f"demo: a step failed ({err.returncode}); see its output above", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
