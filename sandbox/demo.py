"""`make demo`: the whole path on the sandbox cluster, from nothing to a notebook URL.

1. start the sandbox cluster (make sandbox-up);
2. run the one-time setup as alice (playbooks/setup.yml), with a generated Jupyter password
   kept in /var/lib/nodebook-sandbox/secrets/alice.jupyter-password (root only);
3. start a session from the sandbox's laptop (python -m driver session --no-browser);
4. relay the notebook's port from the laptop to this machine's 127.0.0.1, so the URL that is
   printed opens in a browser here; Ctrl-C ends the session (the job is cancelled).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CLUSTER = [sys.executable, str(REPO / "sandbox" / "cluster.py")]
STATE = Path(os.environ.get("NODEBOOK_SANDBOX_STATE", "/var/lib/nodebook-sandbox"))
VENV_BIN = REPO / ".venv" / "bin"
# The sandbox's inventory, passed explicitly: the driver has no default inventory.
INVENTORY = REPO / "inventory" / "sandbox" / "hosts.yml"


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


def run_setup() -> None:
    password = password_file().read_text().strip()
    with tempfile.TemporaryDirectory(prefix="nodebook-demo-") as tmp:
        extra = Path(tmp) / "vars.json"
        fd = os.open(extra, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"nodebook_password_secret": password}, fh)
        argv = [*CLUSTER, "exec", "laptop", "--", str(VENV_BIN / "ansible-playbook"),
                "-i", str(INVENTORY), "--limit", "sandbox", "-e", f"@{extra}",
                "playbooks/setup.yml"]  # fmt: skip
        subprocess.run(argv, cwd=REPO, check=True)


def free_local(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def field(obj: dict[str, object], name: str) -> object:
    data = obj.get("data")
    return obj.get(name, data.get(name) if isinstance(data, dict) else None)


def describe(obj: dict[str, object]) -> str:
    """One progress line from the driver's JSON events."""
    if obj.get("message"):
        return str(obj["message"])
    text = f"job {obj.get('job_id', '?')}: {obj.get('event')}"
    if obj.get("state"):
        text += f" {obj['state']}"
    if obj.get("reason") and obj.get("reason") != "None":
        text += f" ({obj['reason']})"
    if obj.get("node"):
        text += f" on {obj['node']}"
    return text


def run_session() -> int:
    session = ["session", "-i", str(INVENTORY), "--cluster", "sandbox", "--no-browser", "--json"]
    argv = [*CLUSTER, "exec", "laptop", "--", str(VENV_BIN / "python"), "-m", "driver", *session]
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}"}
    driver = subprocess.Popen(
        argv, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    relay: subprocess.Popen[bytes] | None = None
    try:
        assert driver.stdout is not None
        for line in driver.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                print(line, end="")
                continue
            if obj.get("event") != "ready":
                print(f"    {describe(obj)}", flush=True)
                continue
            url, port = str(field(obj, "url")), int(str(field(obj, "local_port")))
            anchor = (STATE / "run" / "anchor-laptop.pid").read_text().split()[0]
            if free_local(port):
                relay = subprocess.Popen(
                    [sys.executable, str(REPO / "sandbox" / "relay.py"), str(port), anchor]
                )
                where = "open it in a browser on this machine"
            else:
                where = "inside the sandbox's laptop (make sandbox-shell)"
            print(f"\nJupyter on {field(obj, 'node')} (job {field(obj, 'job_id')}): {where}:")
            print(f"\n    {url}\n")
            print(
                "Ctrl-C ends the session: the tunnel closes and the job is cancelled.", flush=True
            )
        return driver.wait()
    except KeyboardInterrupt:
        print("\nEnding the session ...", flush=True)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(driver.pid, signal.SIGINT)
        for line in driver.stdout or []:
            with contextlib.suppress(ValueError):
                print(f"    {describe(json.loads(line))}", flush=True)
        return driver.wait()
    finally:
        if relay is not None:
            relay.terminate()
            relay.wait()


def main() -> int:
    step("Starting the sandbox cluster (make sandbox-up)")
    subprocess.run([*CLUSTER, "up"], check=True)
    step("One-time setup as alice: ansible-playbook playbooks/setup.yml")
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
