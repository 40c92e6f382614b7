"""Command line: ``python -m driver session|list|stop|attach|setup|doctor``.

Errors are NodebookError exceptions with a one-line message; they are caught here, once.
"""

import argparse
import os
import sys
from pathlib import Path

from driver.errors import EXIT_CODE_HELP, ExitCode, NodebookError, Stopped
from driver.inventory import DEFAULT_INVENTORY, load_cluster
from driver.options import add_job_options, session_options
from driver.progress import Renderer, Update
from driver.tunnel import MODES

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
    add_job_options(s)
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


def run(args: argparse.Namespace, out: Renderer) -> ExitCode:
    """Dispatch one subcommand."""
    if args.command in ("session", "attach"):
        from driver.session import Session

        opts = session_options(args)  # checked before anything touches the network
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
    from driver.doctor import doctor

    return doctor(cluster, out)


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
