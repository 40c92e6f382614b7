"""Relay a port on this machine's 127.0.0.1 to the same port on the sandbox laptop's 127.0.0.1.

The sandbox's laptop is a network namespace, so the notebook URL that the driver prints there
is not reachable from a browser on the machine itself. The relay listens in the machine's own
namespace, then moves itself into the laptop's namespace: every connection it opens from then on
starts from the laptop, exactly as the laptop's own browser would.

    python3 sandbox/relay.py PORT LAPTOP_ANCHOR_PID
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000


def enter_netns(pid: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into the laptop's namespace: {os.strerror(err)}")
    finally:
        os.close(fd)


def pipe(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def serve(port: int, laptop_pid: int) -> None:
    listener = socket.create_server(("127.0.0.1", port))  # in this machine's namespace
    enter_netns(laptop_pid)  # sockets made from now on live in the laptop's namespace
    while True:
        client, _ = listener.accept()
        try:
            upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
        except OSError:
            client.close()
            continue
        upstream.settimeout(None)
        for a, b in ((client, upstream), (upstream, client)):
            threading.Thread(target=pipe, args=(a, b), daemon=True).start()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with contextlib.suppress(KeyboardInterrupt):
        serve(int(sys.argv[1]), int(sys.argv[2]))
