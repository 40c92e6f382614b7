"""`python -m driver` with the driver's early submit switched off, for bench/scen_submit.py.

``Session._submit_args`` returns None, as it does for an inventory value the driver cannot
evaluate: the driver then submits nothing over its master and lets session.yml's own submit
task run (the gate says "ok"). The driver's code is unchanged. Usage: python -m
bench.play_submit_driver session ... (as `python -m driver`).
"""

from __future__ import annotations

import sys


def main() -> int:
    from driver import cli, session

    session.Session._submit_args = lambda self: None  # type: ignore[method-assign]
    return cli.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
