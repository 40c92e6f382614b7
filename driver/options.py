"""A session's options: defined, documented and checked once.

The job's options (``--time``, ``--cpus`` ...) are the nodebook_job role's variables: a value
given here is passed to playbooks/session.yml as that variable, so it overrides the inventory,
which overrides what setup recorded from the role's defaults. Nothing here has a default of its
own. The options themselves, their help and their rules are the option table in nodebook's
filter plugin (plugins/filter/nodebook.py ``OPTIONS``), which the roles and the playbooks use too.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from driver.errors import ExitCode, NodebookError
from driver.paths import rules


def job_options() -> list[Any]:
    """The option table's rows that `nodebook session` takes (plugins/filter/nodebook.py)."""
    return [opt for opt in rules().OPTIONS if opt.flag]


def add_job_options(parser: argparse.ArgumentParser) -> None:
    """The table's job options as argparse options (every default None: not given)."""
    group = parser.add_argument_group("the job (override setup's and the inventory's values)")
    for opt in job_options():
        group.add_argument(
            opt.flag,
            dest=opt.variable,
            metavar=opt.metavar,
            help=opt.help,
            type=int if rules().RULE_TYPES.get(opt.rule) == "int" else str,
            choices=rules().CHOICES.get(opt.rule),
            default=None,
        )


def check_job(values: Mapping[str, Any]) -> dict[str, str]:
    """The given job options as playbook variables; NodebookError (usage) for the first bad one."""
    checked: dict[str, str] = {}
    for opt in job_options():
        value = values.get(opt.variable)
        if value is None:
            continue
        why = rules().reason(opt.rule, value)
        if why:
            raise NodebookError(f"{opt.flag} {value!r}: {why}", ExitCode.USAGE)
        checked[opt.variable] = str(value)
    return checked


# --tunnel's choices (driver/tunnel.py builds each)
TUNNEL_MODES = ("jump", "hops", "via-login", "direct")
# How often the live line asks for the job's use. One `sstat` costs slurmctld five RPCs (bench:
# REQUEST_FED_INFO, JOB_ALLOCATION_INFO, JOB_STEP_INFO, JOB_USER_INFO, PARTITION_INFO); every
# 10 min keeps a held session under one RPC a minute. `nodebook list` reads it fresh on demand.
USAGE_INTERVAL_S = 600.0


@dataclass(frozen=True)
class SessionOptions:
    """Everything ``session`` and ``attach`` take from the command line, checked."""

    job: dict[str, str] = field(default_factory=dict)  # nodebook_job_* variables given
    tunnel: str | None = None
    local_port: int | None = None
    browser: bool = True
    allow_second: bool = False
    check_interval: float = 5.0
    reconnect_bound: float = 60.0
    keepalive: int = 10  # ssh's ServerAliveInterval for the master (the tunnel's is half)
    forwards: tuple[tuple[int, int | None], ...] = ()  # --forward: (node port, local port)
    notify: bool | None = None  # --no-notify (None: the inventory's nodebook_notify, else on)
    warn_before: float | None = None  # --warn-before minutes (None: the inventory's, else 10)
    usage_interval: float = USAGE_INTERVAL_S  # how often the live line asks for the job's use

    @property
    def endpoint(self) -> str | None:
        return self.job.get("nodebook_job_endpoint")


def session_options(args: argparse.Namespace) -> SessionOptions:
    """Check the command line once, before anything touches the network."""
    values = {opt.variable: getattr(args, opt.variable, None) for opt in job_options()}
    if args.tunnel == "via-login" and values.get("nodebook_job_endpoint") in (
        None,
        "socket",
        "tcp",
    ):
        values["nodebook_job_endpoint"] = "tcp-node"  # the node's address: what login forwards to
    job = check_job(values)
    if args.port is not None and not 1024 <= args.port <= 65535:
        raise NodebookError(f"--port {args.port}: pick 1024-65535", ExitCode.USAGE)
    if args.reconnect_bound <= 0:
        raise NodebookError("--reconnect-bound: more than 0 seconds", ExitCode.USAGE)
    if args.keepalive < 1:
        raise NodebookError("--keepalive: 1 second or more", ExitCode.USAGE)
    forwards = tuple(parse_forward(spec) for spec in getattr(args, "forward", None) or ())
    warn_before = getattr(args, "warn_before", None)
    if warn_before is not None and warn_before < 0:
        raise NodebookError("--warn-before: minutes, 0 or more (0: no warning)", ExitCode.USAGE)
    return SessionOptions(
        job=job,
        tunnel=args.tunnel,
        local_port=args.port,
        browser=not args.no_browser,
        allow_second=getattr(args, "allow_second", False),
        check_interval=max(0.5, args.check_interval),
        reconnect_bound=args.reconnect_bound,
        keepalive=args.keepalive,
        forwards=forwards,
        notify=getattr(args, "notify", None),
        warn_before=warn_before,
        usage_interval=max(1.0, getattr(args, "usage_interval", USAGE_INTERVAL_S)),
    )


# The driver's notifications (driver/notify.py): inventory variables, and their defaults.
NOTIFY_VARIABLE, NOTIFY_DEFAULT = "nodebook_notify", True
WARN_BEFORE_VARIABLE, WARN_BEFORE_DEFAULT = "nodebook_warn_before", 10.0


def notify_settings(opts: SessionOptions, hostvars: Mapping[str, Any]) -> tuple[bool, float]:
    """(notify, warn_before minutes): the command line's, else the inventory's, else the
    defaults; NodebookError (usage) for an inventory value that is not one."""
    notify = opts.notify
    if notify is None:
        value = hostvars.get(NOTIFY_VARIABLE, NOTIFY_DEFAULT)
        if not isinstance(value, bool) and str(value).lower() not in ("true", "false"):
            raise NodebookError(f"{NOTIFY_VARIABLE}: {value!r}: true or false", ExitCode.USAGE)
        notify = value if isinstance(value, bool) else str(value).lower() == "true"
    warn_before = opts.warn_before
    if warn_before is None:
        value = hostvars.get(WARN_BEFORE_VARIABLE, WARN_BEFORE_DEFAULT)
        try:
            warn_before = float(str(value))
        except ValueError:
            warn_before = -1.0
        if warn_before < 0:
            raise NodebookError(
                f"{WARN_BEFORE_VARIABLE}: {value!r}: minutes, 0 or more (0: no warning)",
                ExitCode.USAGE,
            )
    return notify, warn_before


def parse_forward(spec: str) -> tuple[int, int | None]:
    """``NODEPORT[:LOCALPORT]`` -> (node port, local port or None)."""
    node, _, local = spec.partition(":")
    try:
        node_port, local_port = int(node), int(local) if local else None
    except ValueError:
        node_port, local_port = 0, None
    if not 1 <= node_port <= 65535 or (local_port is not None and not 1024 <= local_port <= 65535):
        raise NodebookError(
            f"--forward {spec!r}: NODEPORT[:LOCALPORT], for example 6006 or 6006:16006 "
            "(local ports 1024-65535)",
            ExitCode.USAGE,
        )
    return node_port, local_port
