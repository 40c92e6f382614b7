"""Command line: ``nodebook COMMAND`` (the same as ``python -m driver COMMAND``).

Errors are NodebookError exceptions with a one-line message; they are caught here, once.
"""

from __future__ import annotations

import sys

from driver.errors import EXIT_CODE_HELP, ExitCode, NodebookError, Stopped

# Each command imports what it needs, when it needs it (typing too: this is
# typing.TYPE_CHECKING without the import); `nodebook stop` of a session this machine holds
# sent its request before this module loaded (driver.__main__).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from driver.inventory import Cluster
    from driver.progress import Renderer
    from driver.stop import Asked

EXAMPLES = f"""\
examples:
  nodebook init mycluster --host login.example.org   describe a cluster (once)
  nodebook setup                                 one-time: install Jupyter, set a password
  nodebook session                               a notebook on a compute node (Ctrl-C ends it)
  nodebook session --time 02:00:00 --cpus 4 --mem 16G --partition long
  nodebook session --gpus a100:1 --no-browser --json
  nodebook session --cluster lab                 a standalone server (no Slurm)
  nodebook list                                  your sessions on each cluster
  nodebook attach 1234                           reconnect to job 1234 (and take it over)
  nodebook stop 1234 | --all                     cancel sessions
  nodebook doctor                                check ssh, module, Slurm, setup, ports
  nodebook kernels                               the kernels notebooks can use (your own envs)

exit codes:
{EXIT_CODE_HELP}
"""

# Each subcommand's --help ends with its own examples.
SUB_EXAMPLES = {
    "session": """\
examples:
  nodebook session                               a notebook, default partition (Ctrl-C ends it)
  nodebook session --time 02:00:00 --cpus 4 --mem 16G --partition long
  nodebook session --gpus a100:1 --no-browser
  nodebook session --cluster lab                 a standalone server (no Slurm)
  nodebook session --tunnel via-login --endpoint tcp-node           no ssh to compute nodes
  nodebook session --json                        one JSON object per line (for scripts)
""",
    "attach": """\
examples:
  nodebook attach 1234                           reconnect to job 1234 and take it over
  nodebook attach 1234 --port 8888               on a chosen local port
""",
    "list": """\
examples:
  nodebook list                                  your sessions on every cluster
  nodebook list --cluster hpc2 --json            one cluster, as JSON lines
""",
    "stop": """\
examples:
  nodebook stop 1234                             cancel job 1234 and confirm it left the queue
  nodebook stop --all --cluster hpc2             every nodebook session of yours on hpc2
""",
    "setup": """\
examples:
  nodebook setup                                 asks the Jupyter password (no echo, twice)
  nodebook setup --cluster hpc2 -v               the full Ansible output as it runs
  nodebook setup -e @vault.yml                   the password from an Ansible Vault file
  nodebook setup -e nodebook_password_mode=token           no password: token only
  nodebook setup --check --diff                  what it would change, changing nothing

other options go to ansible-playbook (-e, --check, --diff, --tags ...). Progress is one line
per phase; the full output is kept in a log file (named when setup fails).
""",
    "ssh-config": """\
examples:
  nodebook ssh-config 1234                       print a Host block for job 1234's node
  nodebook ssh-config 1234 > ~/.ssh/nodebook-1234.conf
  ssh -F ~/.ssh/nodebook-1234.conf nodebook-1234  a shell on the node (or VS Code Remote-SSH)

The block goes through the login node with the inventory's ssh options and pinned host keys,
and through this machine's running session (its ssh master) when there is one, so no second
password or one-time code is asked. It is valid while the job runs.
""",
    "doctor": """\
examples:
  nodebook doctor                                ssh, module, Slurm, setup state, local ports
  nodebook doctor --cluster hpc2 --json
""",
}


def _common(p: argparse.ArgumentParser) -> None:
    from pathlib import Path

    p.add_argument(
        "-i",
        "--inventory",
        type=Path,
        default=None,
        help=(
            "Ansible inventory: a file or a directory (default: $NODEBOOK_INVENTORY, else "
            "the clusters `nodebook init` wrote in ~/.config/nodebook/inventory/)"
        ),
    )
    p.add_argument(
        "--cluster",
        metavar="NAME",
        help="inventory host to use (default: the inventory's only Slurm host)",
    )
    p.add_argument("--user", metavar="USER", help="remote user (overrides ansible_user)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def _sub(sub: Any, name: str, help: str) -> argparse.ArgumentParser:
    """A subcommand whose --help ends with its examples."""
    import argparse

    return sub.add_parser(
        name,
        help=help,
        description=help[0].upper() + help[1:] + ".",
        epilog=SUB_EXAMPLES[name],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


def _tunnel_opts(p: argparse.ArgumentParser) -> None:
    import argparse

    from driver.options import TUNNEL_MODES, USAGE_INTERVAL_S

    p.add_argument(
        "--tunnel",
        choices=TUNNEL_MODES,
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
        help=(
            "after this long without the cluster, say so; reconnecting goes on until the "
            "session's lease ends (--lease; without one: give up, default 60)"
        ),
    )
    p.add_argument(
        "--keepalive",
        type=int,
        default=10,
        metavar="S",
        help="seconds between ssh keepalives; 3 unanswered: the connection is lost (default 10)",
    )
    p.add_argument(
        "--no-notify",
        dest="notify",
        action="store_false",
        default=None,
        help=(
            "no desktop notification (notify-send, osascript, else the terminal's bell) when a "
            "job that waited in the queue is ready, or before its time limit "
            "(inventory: nodebook_notify: false)"
        ),
    )
    p.add_argument(
        "--warn-before",
        type=float,
        metavar="MIN",
        default=None,
        help=(
            "notify this many minutes before the job's time limit (0: never; default 10; "
            "inventory: nodebook_warn_before)"
        ),
    )
    p.add_argument(
        "--usage-interval",
        type=float,
        default=USAGE_INTERVAL_S,
        metavar="S",
        help=argparse.SUPPRESS,
    )
    p.add_argument(
        "--forward",
        action="append",
        metavar="NODEPORT[:LOCALPORT]",
        help=(
            "also forward a web app's port on the node (TensorBoard, a Dask dashboard) to "
            "127.0.0.1:LOCALPORT (default: a free port), over the same connection; repeatable. "
            "With --tunnel via-login or hops the login node connects to the node's address, so "
            "the app must listen there (0.0.0.0, --bind_all), not on 127.0.0.1. "
            "Apps are also reachable through Jupyter at /proxy/NODEPORT/"
        ),
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole command line, or (``command``) only that subcommand's part of it: what the
    command itself needs to parse its arguments, without building (and importing) the rest.
    Each subcommand's arguments are the same either way."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="nodebook",
        description="Jupyter on a Slurm compute node: one-time setup, then one command.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def want(name: str) -> bool:
        return command in (None, name)

    if want("session"):
        s = _sub(sub, "session", "start Jupyter on a compute node and connect to it")
        _common(s)
        from driver.options import add_job_options

        add_job_options(s)
        s.add_argument(
            "--allow-second",
            action="store_true",
            help="start even if a session is already running on this cluster (Jupyter then "
            "listens on the node's loopback, token-protected, unless --endpoint says otherwise: "
            "with a private /tmp per job, another job's socket is out of a tunnel's sight)",
        )
        _tunnel_opts(s)
    if want("attach"):
        a = _sub(sub, "attach", "reconnect to a running session and take it over")
        _common(a)
        a.add_argument("job_id", metavar="JOBID", help="the session's job id (`list` shows it)")
        _tunnel_opts(a)
    if want("list"):
        _common(_sub(sub, "list", "your sessions on each cluster of the inventory"))
    if want("stop"):
        st = _sub(sub, "stop", "cancel a session (or all of them)")
        _common(st)
        st.add_argument("job_id", nargs="?", metavar="JOBID", help="the session's job id")
        st.add_argument("--all", action="store_true", help="every nodebook session of yours")
    if want("setup"):
        se = _sub(sub, "setup", "one-time setup on the cluster (runs playbooks/setup.yml)")
        _common(se)
        se.add_argument(
            "-v",
            "--verbose",
            action="count",
            default=0,
            help="show the full Ansible output as it runs (-vv and more: also ansible-playbook's "
            "-v)",
        )
    if want("doctor"):
        _common(_sub(sub, "doctor", "check ssh, module, Slurm, setup state and ports"))
    if want("ssh-config"):
        sc = _sub(sub, "ssh-config", "an ssh Host block for a session's node (VS Code Remote-SSH)")
        _common(sc)
        sc.add_argument("job_id", metavar="JOBID", help="the session's job id (`nodebook list`)")
    if want("kernels"):
        from driver.kernels import add_parser as add_kernels

        add_kernels(sub, _common)
    if want("init"):
        from driver.init import add_parser as add_init

        add_init(sub)
    if command is not None and not sub.choices:  # not a subcommand: the whole line, to say so
        return build_parser()
    return parser


def _cluster(args: argparse.Namespace) -> Cluster:
    from driver.inventory import load_cluster

    return load_cluster(args.inventory, args.cluster, args.user)


def run(args: argparse.Namespace, out: Renderer) -> ExitCode:
    """Dispatch one subcommand (each imports what it needs: `stop` of a session this machine
    holds reads neither the inventory nor starts ssh)."""
    if args.command in ("session", "attach"):
        from driver.options import notify_settings, session_options
        from driver.session import Session

        opts = session_options(args)  # checked before anything touches the network
        cluster = _cluster(args)
        notify_settings(opts, cluster.hostvars)  # the inventory's too
        session = Session(cluster, opts, out)
        return session.start() if args.command == "session" else session.attach(args.job_id)
    if args.command == "init":
        from driver.init import init

        return init(args, out)
    if args.command == "stop":
        if bool(args.job_id) == bool(args.all):
            raise NodebookError("stop: give a JOBID or --all", ExitCode.USAGE)
        from driver.stop import stop

        return stop(args.job_id, args.cluster, args.user, out, lambda: _cluster(args), args.asked)
    from driver import commands

    if args.command == "list":
        return commands.list_sessions(args.inventory, args.cluster, args.user, out)
    cluster = _cluster(args)
    if args.command == "ssh-config":
        from driver.sshconfig import ssh_config

        return ssh_config(cluster, args.job_id, out)
    if args.command == "kernels":
        from driver.kernels import list_kernels

        return list_kernels(cluster, out)
    if args.command == "setup":
        return commands.setup(cluster, list(args.extra), out, args.verbose)
    from driver.doctor import doctor

    return doctor(cluster, out)


def _prune_stale_state(out: Renderer) -> None:
    """A SIGKILLed driver cannot remove its session record: the next command does, and says so."""
    from driver.progress import Update
    from driver.state import prune_stale, prune_temp_dirs

    removed = prune_temp_dirs()
    if removed:
        out.emit(
            Update(
                "info",
                message=(
                    f"removed what a killed nodebook left: {len(removed)} temporary "
                    "directories (ssh master, Ansible's run); its ssh master was ended too"
                ),
                data={"stale": True, "removed": [str(p) for p in removed]},
            )
        )
    for rec in prune_stale():
        out.emit(
            Update(
                "info",
                job_id=rec.job_id,
                message=(
                    f"removed the stale record of job {rec.job_id} on {rec.cluster}: its driver "
                    f"(pid {rec.driver_pid}) is gone; the job may still run (`nodebook list`, "
                    f"`nodebook attach {rec.job_id}`)"
                ),
                data={"stale": True, "cluster": rec.cluster},
            )
        )


def main(argv: list[str] | None = None, asked: Asked | None = None) -> int:
    """Parse arguments, run a subcommand, map every failure to one line and an exit code.
    ``asked``: the stop request driver.__main__ sent before this module loaded."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv and not argv[0].startswith("-") else None)
    args, unknown = parser.parse_known_args(argv)
    if unknown and args.command != "setup":
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    args.extra = unknown
    args.asked = asked  # (other forms of `stop` ask in driver.stop.stop)
    from driver.progress import Renderer, Update
    from driver.signals import forget_caught_interrupt, resend_lost_signals, shielded
    from driver.state import prune_temp_dirs

    resend_lost_signals()

    out = Renderer(json_mode=args.json)
    try:
        _prune_stale_state(out)
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
    finally:
        with shielded(final=True):  # the exit code is decided; a late Ctrl-C changes nothing
            prune_temp_dirs(own=True)
            forget_caught_interrupt()


if __name__ == "__main__":
    sys.exit(main())
