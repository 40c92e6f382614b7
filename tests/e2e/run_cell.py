"""Run code in a Jupyter kernel through a session's tunnel, as a notebook cell would.

Run inside the sandbox's laptop namespace (the tunnel's local port lives there):

    python run_cell.py PORT KERNEL_NAME [--keep] [--in=KERNEL_ID]  <code on stdin; the token in
    $JUPYTER_TOKEN>   (--in: run the cell in that running kernel instead of a new one)

Starts a kernel with Jupyter's REST API, sends one execute_request over the kernel's websocket,
prints one JSON object: {"status": "ok"|"error", "stdout": ..., "stderr": ..., "error": ...}, and
leaves the kernel running when --keep is given (a cell that started a web server), else shuts
it down. Uses websocket-client (installed with selenium).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
import uuid

import websocket


def api(port: int, token: str, method: str, path: str, body: object = None) -> object:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Authorization": f"token {token}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        text = response.read()
    return json.loads(text) if text else None


def run(
    port: int, token: str, kernel: str, code: str, keep: bool, timeout: float, in_id: str = ""
) -> dict:
    if in_id:  # a kernel started before (--keep): its state is what the cell reads
        kernel_id = in_id
    else:
        started = api(port, token, "POST", "/api/kernels", {"name": kernel})
        assert isinstance(started, dict)
        kernel_id = started["id"]
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{port}/api/kernels/{kernel_id}/channels",
        header=[f"Authorization: token {token}"],
        timeout=timeout,
    )
    msg_id = uuid.uuid4().hex
    ws.send(
        json.dumps(
            {
                "header": {
                    "msg_id": msg_id,
                    "msg_type": "execute_request",
                    "username": "test",
                    "session": uuid.uuid4().hex,
                    "version": "5.3",
                },
                "parent_header": {},
                "metadata": {},
                "content": {"code": code, "silent": False, "store_history": False},
                "channel": "shell",
            }
        )
    )
    out: dict = {"status": None, "stdout": "", "stderr": "", "error": None, "kernel_id": kernel_id}
    deadline = time.monotonic() + timeout
    idle = False  # the reply (shell) and the last output (iopub) come in either order
    while time.monotonic() < deadline and (out["status"] is None or not idle):
        msg = json.loads(ws.recv())
        if msg.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = msg["header"]["msg_type"], msg["content"]
        if kind == "stream":
            out[content["name"]] += content["text"]
        elif kind == "error":
            out["error"] = f"{content['ename']}: {content['evalue']}"
        elif kind == "execute_reply":
            out["status"] = content["status"]
        elif kind == "status" and content.get("execution_state") == "idle":
            idle = True
    ws.close()
    if not keep:
        api(port, token, "DELETE", f"/api/kernels/{kernel_id}")
    return out


if __name__ == "__main__":
    port, kernel = int(sys.argv[1]), sys.argv[2]
    keep = "--keep" in sys.argv
    in_id = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--in=")), "")
    token = os.environ["JUPYTER_TOKEN"]
    print(json.dumps(run(port, token, kernel, sys.stdin.read(), keep, 120, in_id)))
