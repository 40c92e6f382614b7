"""An ``ssh`` first on the driver's PATH that logs every invocation, then runs the real one.

The driver's own ssh calls, Ansible's (its ssh connection plugin runs ``ssh`` from PATH) and
the ProxyCommands ssh runs through ``/bin/sh`` all go through it. Each invocation is one record
in the log: its start time and its argv (fields separated by \\037, records by \\036), written
with one append. ``SshLog.read()`` parses it into ``Invocation``s, which tell what each one is:
a ControlMaster (a new connection to login), a new connection to a node (the jump tunnel: its
own ssh session, no master), a ``-W`` proxy or a ``-O`` control command (no remote command), or
a remote command multiplexed over the master (one round trip).
"""

from __future__ import annotations

import shlex
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

# ssh options that take an argument (ssh(1)); the first other word is the destination.
WITH_ARGUMENT = set("BbcDEeFIiJLlmOopQRSWw")

WRAPPER = """#!/bin/sh
# nodebook tests: log this ssh invocation (time, argv) with one append, then run the real ssh.
rec=$(printf '%s\\037' "$(date +%s.%N)" "$@")
printf '%s\\036\\n' "$rec" >> {log}
exec {ssh} "$@"
"""


@dataclass(frozen=True)
class Invocation:
    """One ssh invocation: when, its options, where to, the remote command (if any)."""

    t: float
    argv: tuple[str, ...]
    options: tuple[str, ...]  # every -X and -o key=value, in order
    destination: str
    command: tuple[str, ...]  # the remote command's words as given to ssh (empty: none)

    def option(self, key: str) -> str | None:
        """The value of ``-o Key=value`` (case-insensitive), last one wins."""
        found = None
        for opt in self.options:
            name, _, value = opt.partition("=")
            if name.lower() == key.lower():
                found = value
        return found

    def flag(self, letter: str) -> bool:
        return f"-{letter}" in self.options or any(
            o.startswith(f"-{letter} ") for o in self.options
        )

    @property
    def control(self) -> bool:
        """``-O check|exit|forward|cancel``: talks to a master; ``-G``: prints the config (the
        known_hosts files a node is checked against). Neither opens anything."""
        return self.flag("O") or self.flag("G")

    @property
    def proxy(self) -> bool:
        """``-W host:port``: a ProxyCommand's stdio channel over the master."""
        return self.flag("W")

    @property
    def master(self) -> bool:
        """A ControlMaster: a new authenticated connection to the login node."""
        return (self.option("ControlMaster") or "").lower() == "yes" or self.flag("M")

    @property
    def own_connection(self) -> bool:
        """A connection of its own, not multiplexed (the jump tunnel to a node)."""
        return (self.option("ControlPath") or "none").lower() == "none" and not self.proxy

    @property
    def opens_connection(self) -> bool:
        """A new ssh connection (a login): a master, or a client with no master to use."""
        return not self.control and (self.master or self.own_connection)

    @property
    def remote_command(self) -> str:
        """The command line the remote shell runs ('' for masters, proxies, -O, -N)."""
        if self.control or self.proxy or self.flag("N"):
            return ""
        return " ".join(self.command)

    @property
    def round_trip(self) -> bool:
        """A remote command over the master: one request and its answer."""
        return bool(self.remote_command) and not self.opens_connection

    def command_words(self) -> list[str]:
        """The remote command as the remote shell splits it (quotes removed)."""
        try:
            return shlex.split(self.remote_command)
        except ValueError:
            return self.remote_command.split()

    def helper_command(self) -> str | None:
        """The helper's subcommand if the remote command runs ``.../nodebook-remote``."""
        words = self.command_words()
        if not words or not words[0].endswith("/nodebook-remote"):
            return None
        rest = words[1:]
        while rest and rest[0] in ("--protocol", "--base"):
            rest = rest[2:]
        return rest[0] if rest else ""


def parse_argv(t: float, argv: list[str]) -> Invocation:
    options: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        letters = arg[1:]
        for j, letter in enumerate(letters):
            if letter in WITH_ARGUMENT:
                value = letters[j + 1 :]
                if not value:
                    i += 1
                    value = argv[i] if i < len(argv) else ""
                options.append(value if letter == "o" else f"-{letter} {value}")
                break
            options.append(f"-{letter}")
        i += 1
    destination = argv[i] if i < len(argv) else ""
    return Invocation(t, tuple(argv), tuple(options), destination, tuple(argv[i + 1 :]))


class SshLog:
    """A directory holding the wrapper (``bin/ssh``) and its log."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.bin = directory / "bin"
        self.log = directory / "ssh.log"
        real = shutil.which("ssh", path="/usr/local/bin:/usr/bin:/bin")
        if real is None:
            raise RuntimeError("no ssh client on this machine")
        self.bin.mkdir(parents=True, exist_ok=True)
        wrapper = self.bin / "ssh"
        wrapper.write_text(WRAPPER.format(log=shlex.quote(str(self.log)), ssh=real))
        wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        self.log.touch()

    def env(self, path: str) -> dict[str, str]:
        """Environment entries that put the wrapper first on ``path``."""
        return {"PATH": f"{self.bin}:{path}"}

    def read(self) -> list[Invocation]:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        found: list[Invocation] = []
        for record in text.split("\036\n"):
            fields = record.split("\037")
            if len(fields) < 2:
                continue
            found.append(parse_argv(float(fields[0]), fields[1:-1]))
        return found

    def clear(self) -> None:
        self.log.write_text("")


def counts(invocations: list[Invocation]) -> dict[str, int]:
    """How many connections were opened, and how many remote round trips made."""
    return {
        "ssh_invocations": len(invocations),
        "connections": sum(1 for i in invocations if i.opens_connection),
        "round_trips": sum(1 for i in invocations if i.round_trip),
        "control": sum(1 for i in invocations if i.control),
        "proxies": sum(1 for i in invocations if i.proxy),
    }


def helper_commands(invocations: list[Invocation]) -> dict[str, int]:
    """How often each helper command ran (``submit``, ``wait``, ``hold`` ...); commands that
    are not the helper's count under ``other``."""
    out: dict[str, int] = {}
    for inv in invocations:
        if not inv.remote_command:
            continue
        name = inv.helper_command()
        key = "other" if name is None else name or "(none)"
        out[key] = out.get(key, 0) + 1
    return out


def phases(invocations: list[Invocation], marks: dict[str, float]) -> dict[str, dict[str, int]]:
    """``counts`` per phase: each mark (epoch seconds) starts a phase that lasts to the next."""
    bounds = sorted(marks.items(), key=lambda kv: kv[1])
    out: dict[str, dict[str, int]] = {}
    for i, (name, start) in enumerate(bounds):
        end = bounds[i + 1][1] if i + 1 < len(bounds) else float("inf")
        out[name] = counts([inv for inv in invocations if start <= inv.t < end])
    return out
