"""The ``nodebook`` command (its console script) and ``python -m driver``.

``nodebook stop JOBID --cluster NAME`` of a session this machine holds sends its request to the
session's driver first, with nothing loaded but what the request needs (driver.stop.ask: no
argparse, enum, re, json, pathlib or socket module); everything else is driver.cli's.
"""

import sys


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    from driver.stop import ask, plain_stop

    early = plain_stop(argv)
    asked = None
    if early is not None:
        job_id, cluster, user = early
        asked = ask(cluster, job_id, user)
    from driver.cli import main as cli_main

    return cli_main(argv, asked)


if __name__ == "__main__":
    sys.exit(main())
