"""Start the installed JupyterLab twice with a recording `node` first on PATH; report what ran.

    PYTHON - BASE BIN_DIR CONFIG_DIR < jupyter_start_probe.py     (as the user, on a cluster host)

Once as `jupyter-lab` is usually started, once through `<BASE>/bin/nodebook-jupyter` as the job
starts it. Each start serves on a Unix socket until `/api` and the `/lab` page answer, then gets
SIGTERM. Prints one JSON line: for each way, the HTTP statuses and the `node` runs recorded.
Used by tests/e2e/test_jupyter_start.py; it runs on the cluster host as the sandbox user.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time

FAKE_NODE = '#!/bin/sh\necho "$*" >>"$(dirname "$0")/node-runs"\nexit 1\n'


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=5)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def status(sock: str, path: str, token: str) -> int:
    conn = UnixHTTPConnection(sock)
    try:
        conn.request("GET", path, headers={"Authorization": f"token {token}"})
        return conn.getresponse().status
    except OSError:
        return 0
    finally:
        conn.close()


def start(argv: list[str], work: str, env: dict[str, str]) -> dict[str, object]:
    token = secrets.token_hex(24)
    token_file = os.path.join(work, "token")
    with open(os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(token)
    sock = os.path.join(work, "j.sock")
    env = dict(env, JUPYTER_TOKEN_FILE=token_file, JUPYTER_RUNTIME_DIR=os.path.join(work, "rt"))
    args = [f"--ServerApp.sock={sock}", "--ServerApp.sock_mode=0600", "--no-browser"]
    began = time.monotonic()
    proc = subprocess.Popen(
        [*argv, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    api, deadline = 0, began + 120
    while api != 200 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
        api = status(sock, "/api", token)
    answered = time.monotonic() - began
    lab = status(sock, "/lab", token) if api == 200 else 0
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return {"api": api, "lab": lab, "seconds": round(answered, 2), "stderr": err[-2000:]}


def main() -> None:
    base, bin_dir, config_dir = sys.argv[1:4]
    results: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="nb-start-") as tmp:
        fake_bin = os.path.join(tmp, "fake-bin")
        os.mkdir(fake_bin)
        node = os.path.join(fake_bin, "node")
        with open(node, "w") as f:
            f.write(FAKE_NODE)
        os.chmod(node, 0o755)
        runs = os.path.join(fake_bin, "node-runs")
        env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
        env.update(PATH=f"{fake_bin}:{bin_dir}:{env.get('PATH', '/usr/bin:/bin')}")
        env.update(JUPYTER_CONFIG_DIR=config_dir)
        lab = os.path.join(bin_dir, "jupyter-lab")
        ways = {
            "direct": [lab],
            "launcher": [sys.executable, os.path.join(base, "bin", "nodebook-jupyter"), lab],
        }
        for way, argv in ways.items():
            work = os.path.join(tmp, way)
            os.mkdir(work, 0o700)
            result = start(argv, work, env)
            with open(runs, "a+") as f:
                f.seek(0)
                result["node_runs"] = f.read().splitlines()
                f.truncate(0)
            results[way] = result
    print(json.dumps(results))


if __name__ == "__main__":
    main()
