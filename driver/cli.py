"""Command line: ``python -m driver session|list|stop|attach|setup|doctor``.

Errors are NodebookError exceptions with a one-line message; they are caught here, once.
"""

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from driver.errors import EXIT_CODE_HELP, ExitCode, NodebookError, Stopped
from driver.inventory import DEFAULT_INVENTORY, load_cluster
from driver.progress import Renderer, Update
from driver.resources import Resources
from driver.tunnel import MODES

if TYPE_CHECKING:
    from driver.session import SessionOptions

EXAMPLES = f"""\
examples:
  python -m driver setup                         one-time: install Jupyter, set a password
  python -m driver session                       a notebook on a compute node (Ctrl-C ends it)
  python -m driver session --time 02:00:00 --cpus 4 --mem 16G --partition long
  python -m driver session --gpus a100:1 --no-browser --json
  python -m driver session --cluster sandbox-server   a standalone server (no Slurm)
  python -m driver list                          your sessions on each cluster
  python -m driver attach 1234                   reconnect to job 1234 (and take it over)
  python -m driver stop 1234 | --all             cancel sessions
  python -m driver doctor                        check ssh, module, Slurm, setup, ports

exit codes:
{EXIT_CODE_HELP}
"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-i",
        "--inventory",
        type=Path,
        default=Path(os.environ.get("NODEBOOK_INVENTORY", DEFAULT_INVENTORY)),
        help="Ansible inventory (default: $NODEBOOK_INVENTORY or the sandbox's)",
    )
    p.add_argument(
        "--cluster",
        metavar="NAME",
        help="inventory host to use (default: the inventory's only Slurm host)",
    )
    p.add_argument("--user", metavar="USER", help="remote user (overrides ansible_user)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def _tunnel_opts(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tunnel",
        choices=MODES,
        help=(
            "jump: ssh to the node through login (default); hops: nested ssh via login; "
            "via-login: TCP through login only; direct: standalone server"
        ),
    )
    p.add_argument("--port", type=int, metavar="LOCAL", help="local port (default: a free one)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument(
        "--heartbeat-timeout",
        type=int,
        default=300,
        metavar="S",
        help="the job ends itself this long after the driver is gone (default 300)",
    )
    p.add_argument("--check-interval", type=float, default=5.0, metavar="S", help=argparse.SUPPRESS)
    p.add_argument(
        "--reconnect-bound",
        type=float,
        default=60.0,
        metavar="S",
        help="give up re-establishing a lost tunnel after this long (default 60)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m driver",
        description="Jupyter on a Slurm compute node: one-time setup, then one command.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser(
        "session",
        help="start Jupyter on a compute node and connect to it",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common(s)
    s.add_argument("--partition", metavar="P")
    s.add_argument("--account", metavar="A")
    s.add_argument("--qos", metavar="Q")
    s.add_argument("--time", metavar="HH:MM:SS", help="walltime (Slurm formats, e.g. 01:30:00)")
    s.add_argument("--cpus", type=int, metavar="N")
    s.add_argument("--mem", metavar="SIZE", help="memory, e.g. 8G")
    s.add_argument("--gpus", metavar="N", help="GPUs: a count or TYPE:COUNT")
    s.add_argument(
        "--endpoint",
        choices=("socket", "tcp", "tcp-node"),
        help="how Jupyter listens on the node (default: setup's choice)",
    )
    s.add_argument(
        "--pending-limit",
        type=int,
        default=3600,
        metavar="S",
        help="cancel if still PENDING after this long (default 3600)",
    )
    s.add_argument(
        "--allow-second",
        action="store_true",
        help="start even if a session is already running on this cluster",
    )
    _tunnel_opts(s)

    a = sub.add_parser("attach", help="reconnect to a running session and take it over")
    _common(a)
    a.add_argument("job_id", metavar="JOBID")
    _tunnel_opts(a)

    ls = sub.add_parser("list", help="your sessions on each cluster of the inventory")
    _common(ls)

    st = sub.add_parser("stop", help="cancel a session (or all of them)")
    _common(st)
    st.add_argument("job_id", nargs="?", metavar="JOBID")
    st.add_argument("--all", action="store_true", help="every nodebook session of yours")

    se = sub.add_parser("setup", help="one-time setup on the cluster (runs playbooks/setup.yml)")
    _common(se)
    se.epilog = "other options go to ansible-playbook, e.g. -e nodebook_password_mode=token"

    d = sub.add_parser("doctor", help="check ssh, module, Slurm, setup state and ports")
    _common(d)
    return parser


def _session_options(args: argparse.Namespace) -> "SessionOptions":
    from driver.session import SessionOptions

    resources = Resources(
        partition=getattr(args, "partition", None),
        account=getattr(args, "account", None),
        qos=getattr(args, "qos", None),
        time=getattr(args, "time", None),
        cpus=getattr(args, "cpus", None),
        mem=getattr(args, "mem", None),
        gpus=getattr(args, "gpus", None),
    ).validate()
    if args.port is not None and not 1024 <= args.port <= 65535:
        raise NodebookError(f"--port {args.port}: pick 1024-65535", ExitCode.USAGE)
    if args.heartbeat_timeout < 0:
        raise NodebookError("--heartbeat-timeout: 0 (off) or more seconds", ExitCode.USAGE)
    endpoint = getattr(args, "endpoint", None)
    if args.tunnel == "via-login" and endpoint in (None, "socket", "tcp"):
        endpoint = "tcp-node"
    return SessionOptions(
        resources=resources,
        tunnel=args.tunnel,
        local_port=args.port,
        browser=not args.no_browser,
        allow_second=getattr(args, "allow_second", False),
        endpoint=endpoint,
        heartbeat_timeout=args.heartbeat_timeout,
        check_interval=max(0.5, args.check_interval),
        pending_limit=getattr(args, "pending_limit", 3600),
        reconnect_bound=args.reconnect_bound,
    )


def run(args: argparse.Namespace, out: Renderer) -> ExitCode:
    """Dispatch one subcommand."""
    if args.command in ("session", "attach"):
        from driver.session import Session

        opts = _session_options(args)  # validate before touching the network
        cluster = load_cluster(args.inventory, args.cluster, args.user)
        session = Session(cluster, opts, out)
        return session.start() if args.command == "session" else session.attach(args.job_id)
    from driver import commands

    if args.command == "list":
        return commands.list_sessions(args.inventory, args.cluster, args.user, out)
    if args.command == "stop":
        if bool(args.job_id) == bool(args.all):
            raise NodebookError("stop: give a JOBID or --all", ExitCode.USAGE)
        cluster = load_cluster(args.inventory, args.cluster, args.user)
        return commands.stop(cluster, args.job_id, out)
    cluster = load_cluster(args.inventory, args.cluster, args.user)
    if args.command == "setup":
        return commands.setup(cluster, list(args.extra))
    return commands.doctor(cluster, out)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, run a subcommand, map every failure to one line and an exit code."""
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "setup":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.extra = unknown
    out = Renderer(json_mode=args.json)
    try:
        return int(run(args, out))
    except NodebookError as exc:
        out.emit(Update("error", message=f"error: {exc.message}", code=int(exc.code)))
        return int(exc.code)
    except KeyboardInterrupt:
        out.emit(Update("info", message="interrupted; cleaned up", code=int(ExitCode.INTERRUPTED)))
        return int(ExitCode.INTERRUPTED)
    except Stopped as exc:
        out.emit(Update("info", message=f"{exc.signame}; cleaned up", code=int(exc.code)))
        return int(exc.code)


if __name__ == "__main__":
    sys.exit(main())
