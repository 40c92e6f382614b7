"""Compute nodes' host keys, on the login node's word.

A laptop knows the login node's host key, never the compute nodes': the cluster's own hosts do
(``/etc/ssh/ssh_known_hosts``, the user's ``~/.ssh/known_hosts`` there). The helper reads those
records for the job's node when it reports the job running (``host_keys`` in its ``status`` and
``connection`` lines, read with ``ssh-keygen -F`` as the login node's ssh would look them up), and
the driver pins them here, in a known_hosts file of nodebook's own per cluster
(``<state>/<cluster>/known_hosts``, 0600). The node's ssh then looks the key up under the node's
name (``HostKeyAlias``) in the user's own files first, then in this one, with host key checking
on. The login node is trusted already (the user's own known_hosts), and the records come over
that checked connection: nothing is trusted on first use, and a key that differs from the
records stops the tunnel with ssh's own warning.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import subprocess
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from driver.inventory import Cluster
from driver.state import StateDir, private_dir

MARKERS = ("@cert-authority", "@revoked")
# A key type (ssh-ed25519, ecdsa-sha2-nistp256, sk-ssh-ed25519@openssh.com, ...) and its
# base64 blob: nothing else is copied from the login node's files.
KEY_TYPE = re.compile(r"[a-z0-9][a-z0-9@.-]{2,80}")
KEY_BLOB = re.compile(r"[A-Za-z0-9+/]{16,16384}={0,2}")
# A node name as Slurm gives it (a host name): it becomes the pattern of the pinned lines.
NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,252}")


def pinned_file(cluster: str) -> Path:
    """The known_hosts file nodebook owns for a cluster's compute nodes."""
    return StateDir(cluster).path / "known_hosts"


def rewrite(node: str, lines: Iterable[str]) -> list[str]:
    """The login node's records of ``node`` as lines for the pinned file: the host field (hashed,
    a pattern, a FQDN) replaced by ``node``, markers kept, anything malformed dropped (pure)."""
    out: list[str] = []
    if not NODE.fullmatch(node):
        return out
    for line in lines:
        words = str(line).split()
        marker = words.pop(0) if words and words[0] in MARKERS else None
        if len(words) < 3 or not KEY_TYPE.fullmatch(words[1]) or not KEY_BLOB.fullmatch(words[2]):
            continue
        pinned = " ".join([*([marker] if marker else []), node, words[1], words[2]])
        if pinned not in out:
            out.append(pinned)
    return out


def merged(current: str, node: str, lines: list[str]) -> str:
    """The pinned file's text with ``node``'s lines replaced by ``lines`` (pure)."""
    kept = []
    for line in current.splitlines():
        words = line.split()
        if words and words[0] in MARKERS:
            words = words[1:]
        if words and words[0] == node:
            continue
        if line.strip():
            kept.append(line)
    return "\n".join([*kept, *lines]) + "\n"


def pin(cluster: str, node: str, records: Iterable[str]) -> int:
    """Pin the login node's records of ``node`` (replacing what was pinned for it before, since
    the login node's word is the current one); returns how many key lines were pinned. Sessions
    on the same cluster may pin at once: the file is rewritten under a lock, atomically."""
    lines = rewrite(node, records)
    if not lines:
        return 0
    path = pinned_file(cluster)
    private_dir(path.parent)
    lock = os.open(path.with_suffix(".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = ""
        with contextlib.suppress(FileNotFoundError):
            current = path.read_text()
        text = merged(current, node, lines)
        if text != current:
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(text)
            os.replace(tmp, path)
    finally:
        os.close(lock)
    return len(lines)


@cache
def _user_files(ssh_args: tuple[str, ...], node: str) -> tuple[str, ...]:
    """The known_hosts files the user's own ssh config names for ``node`` (``ssh -G``)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        proc = subprocess.run(
            ["ssh", "-G", *ssh_args, node],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        for line in proc.stdout.splitlines():
            key, _, value = line.partition(" ")
            if key.lower() == "userknownhostsfile" and value.strip():
                return tuple(value.split())
    return ("~/.ssh/known_hosts", "~/.ssh/known_hosts2")


def quoted(path: str) -> str:
    return f'"{path}"' if " " in path else path


def node_options(cluster: Cluster, node: str) -> list[str]:
    """ssh options that check a compute node's key against the user's own files, then the
    pinned one (never accept-new, never off; a detached ssh cannot ask)."""
    files = [*_user_files(tuple(cluster.ssh_args), node), str(pinned_file(cluster.name))]
    return [
        "-o",
        f"HostKeyAlias={node}",
        "-o",
        f"UserKnownHostsFile={' '.join(quoted(f) for f in dict.fromkeys(files))}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "UpdateHostKeys=no",
    ]
